"""The limits themselves: defaults, config checks, event-name rules on every sending call,
``allowed_events`` both ways, and ``max_message_size`` on the client side too."""
from __future__ import annotations

import gevent
import pytest

from conftest import wait_until
from geventipc import IPC
from geventipc.config import MIB, Config
from geventipc.errors import (
    ConfigError, EventNameError, ForbiddenEventError, MessageTooLargeError,
)
from geventipc.wire import READ_SIZE, EventNames, MsgpackCodec


def test_limits_are_on_by_default():
    config = Config()
    assert config.max_message_size == 16 * MIB
    assert config.max_pending_bytes == 8 * MIB
    assert config.overflow_policy == "disconnect"
    assert config.max_event_name_length == 256
    assert config.message_timeout == 30000
    assert config.allowed_events is None


@pytest.mark.parametrize("key, value", [
    ("max_message_size", 10),
    ("max_message_size", "big"),
    ("max_pending_bytes", 0),
    ("overflow_policy", "block"),
    ("max_event_name_length", 0),
    ("message_timeout", 0),
    ("allowed_events", "ping"),
])
def test_bad_limit_values_are_refused(key, value):
    with pytest.raises(ConfigError, match=key):
        Config(**{key: value})


def test_camel_case_aliases_of_the_limits():
    config = Config(maxMessageSize=1 * MIB, maxPendingBytes=2 * MIB, overflowPolicy="drop",
                    maxEventNameLength=64, messageTimeout=500, allowedEvents=["a"])
    assert (config.max_message_size, config.max_pending_bytes, config.overflow_policy,
            config.max_event_name_length, config.message_timeout,
            config.allowed_events) == (1 * MIB, 2 * MIB, "drop", 64, 500, ["a"])


# --- event names on every sending call ---------------------------------------------------

BAD_NAMES = [
    ("", "empty"),
    (None, "must be a string"),
    (42, "must be a string"),
    ("n" * 257, "max_event_name_length=256"),
    ("connect", "reserved"),
    ("disconnect", "reserved"),
    ("error", "reserved"),
    ("$ipc.hello", "reserved prefix"),
]


@pytest.fixture
def pair(make_ipc):
    world = make_ipc("world")
    world.serve()
    got = []
    world.server.on("*", lambda type, data, sock: got.append(type))
    world.server.start()
    hello = make_ipc("hello")
    client = hello.connect_to("world")
    client.wait_connected(5)
    wait_until(lambda: world.server.sockets and world.server.sockets[0].id == "hello",
               message="the hello")
    return world.server, client, got


@pytest.mark.parametrize("name, words", BAD_NAMES)
def test_bad_names_raise_on_every_sending_call(pair, name, words):
    server, client, got = pair
    sock = server.sockets[0]
    calls = [
        lambda: client.emit(name, 1),
        lambda: client.request(name, 1, timeout=1),
        lambda: server.emit(sock, name, 1),
        lambda: sock.emit(name, 1),
        lambda: server.broadcast(name, 1),
    ]
    for call in calls:
        with pytest.raises(EventNameError, match=words):
            call()
    client.emit("fine", 1)   # nothing bad was sent: the connection is still good
    wait_until(lambda: got == ["fine"], message="the good event")
    assert client.connected


def test_longest_allowed_name_travels(pair):
    server, client, got = pair
    client.emit("n" * 256, 1)
    wait_until(lambda: got == ["n" * 256], message="the long-named event")


def test_bad_name_raises_while_offline_and_nothing_is_queued(make_ipc, sock_dir):
    hello = make_ipc("hello")
    client = hello.connect_to("world", sock_dir + "nobody")
    with pytest.raises(EventNameError):
        client.emit("destroy", 1)
    assert client.queued == 0


# --- allowed_events, both directions -----------------------------------------------------


def test_allowed_events_limit_what_is_sent(make_ipc):
    world = make_ipc("world", allowed_events=["ping", "pong"])
    world.serve()
    world.server.start()
    hello = make_ipc("hello", allowed_events=["ping", "pong"])
    client = hello.connect_to("world")
    client.wait_connected(5)
    wait_until(lambda: world.server.sockets, message="the server to accept")
    with pytest.raises(EventNameError, match="allowed_events"):
        client.emit("other", 1)
    with pytest.raises(EventNameError, match="allowed_events"):
        world.server.broadcast("other", 1)
    with pytest.raises(EventNameError, match="allowed_events"):
        world.server.emit(world.server.sockets[0], "other", 1)
    got = []
    world.server.on("ping", lambda n, sock: world.server.emit(sock, "pong", n))
    client.on("pong", got.append)
    client.emit("ping", 7)   # the library's own $ipc. events still work under the list
    wait_until(lambda: got == [7], message="the pong")


def test_allowed_events_limit_what_a_client_accepts(make_ipc):
    world = make_ipc("world")
    world.serve()
    world.server.start()
    hello = make_ipc("hello", allowed_events=["pong"])
    client = hello.connect_to("world")
    errors: list[BaseException] = []
    client.on("error", errors.append)
    client.wait_connected(5)
    wait_until(lambda: world.server.sockets, message="the server to accept")
    world.server.emit(world.server.sockets[0], "push", "unwanted")
    wait_until(lambda: errors, message="the client's error event")
    assert isinstance(errors[0], ForbiddenEventError)
    assert "allowed_events" in str(errors[0]) and "push" in str(errors[0])


# --- max_message_size --------------------------------------------------------------------


def test_client_refuses_an_oversized_frame_from_the_server(make_ipc):
    world = make_ipc("world")
    world.serve()
    world.server.start()
    hello = make_ipc("hello", max_message_size=64 * 1024)
    client = hello.connect_to("world")
    errors: list[BaseException] = []
    got = []
    client.on("error", errors.append)
    client.on("big", got.append)
    client.wait_connected(5)
    wait_until(lambda: world.server.sockets, message="the server to accept")
    sock = world.server.sockets[0]
    world.server.emit(sock, "big", b"x" * 60000)
    wait_until(lambda: got, message="the frame within the limit")
    world.server.emit(sock, "big", b"x" * 70000)
    wait_until(lambda: errors, message="the client's error event")
    assert isinstance(errors[0], MessageTooLargeError)
    assert "max_message_size=65536" in str(errors[0])
    assert len(got) == 1
    client.wait_connected(5)   # and it reconnects


def test_a_growing_frame_is_cut_off_within_the_limit_plus_one_read():
    """Fed in small pieces, a frame is refused no later than limit + one read of bytes
    and never before it passes the limit."""
    limit = 64 * 1024
    codec = MsgpackCodec(EventNames(), limit)
    assert codec.read_size <= READ_SIZE
    # arrays of nils: the decoder consumes every element at once, nothing stays buffered
    inner = b"\xdc\x3e\x80" + b"\xc0" * 16000
    stream = b"\x92\xa1e\xdc\x3e\x80" + inner * 16
    fed = 0
    with pytest.raises(MessageTooLargeError):
        while fed <= 2 * limit + codec.read_size:
            codec.feed(stream[fed:fed + 1000])
            fed += 1000
            assert codec.buffered <= limit + codec.read_size
    assert limit < fed + 1000 <= limit + codec.read_size + 1000


def test_large_frames_within_the_limit_pass_whatever_the_reads(make_ipc):
    """Frames just under the limit, sent back to back so reads end mid-frame, all pass."""
    limit = 256 * 1024
    world = make_ipc("world", max_message_size=limit)
    world.serve()
    got = []
    errors: list[BaseException] = []
    world.server.on("blob", lambda data, sock: got.append(len(data)))
    world.server.on("error", errors.append)
    world.server.start()
    hello = make_ipc("hello")
    client = hello.connect_to("world")
    client.wait_connected(5)
    size = limit - 64
    for _ in range(20):
        client.emit("blob", b"b" * size)
    wait_until(lambda: len(got) == 20 or errors, message="twenty large frames")
    assert errors == [] and got == [size] * 20


def test_other_ipc_instances_keep_their_own_limits():
    strict = IPC(max_message_size=1024)
    loose = IPC()
    assert strict.config.max_message_size == 1024
    assert loose.config.max_message_size == 16 * MIB
    gevent.sleep(0)


@pytest.mark.parametrize("header", [
    b"\xc6" + (10 * MIB).to_bytes(4, "big"),          # bin 32
    b"\xdb" + (10 * MIB).to_bytes(4, "big"),          # str 32
])
def test_a_long_body_is_cut_off_as_soon_as_it_passes_the_limit(header):
    """A str or bin body is held back whole until it completes, so its bytes are exact:
    the frame is refused once they pass the limit, not one read later."""
    limit = 64 * 1024
    codec = MsgpackCodec(EventNames(), limit)
    codec.feed(b"\x92\xa1e" + header)
    fed = 0
    with pytest.raises(MessageTooLargeError, match="max_message_size=65536"):
        while fed < 4 * limit:
            codec.feed(b"y" * 1000)
            fed += 1000
    assert limit < fed + 1000 <= limit + 1000


def test_an_array_announcing_more_than_the_limit_is_refused_at_its_header():
    codec = MsgpackCodec(EventNames(), 64 * 1024)
    with pytest.raises(MessageTooLargeError, match="max_message_size=65536"):
        codec.feed(b"\x92\xa1e\xdd" + (10 * MIB).to_bytes(4, "big"))
