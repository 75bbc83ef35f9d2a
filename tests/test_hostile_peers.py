"""Hostile peers are refused one by one while a healthy client's exchange goes on untouched.

Each test runs a real server on a Unix socket with small limits, a healthy geventipc client
that keeps a ping/pong exchange going the whole time, and one hostile peer on a raw socket.
The hostile peer must be disconnected with an ``error`` event on the server that names the
limit it broke; the healthy client must see every pong, in order, with no disconnect and
no error.
"""
from __future__ import annotations

import gevent
import pytest
from gevent import socket as gsocket

import msgpack

from conftest import wait_until
from geventipc.errors import (
    ForbiddenEventError, IncompleteMessageTimeoutError, MessageTooLargeError, ProtocolError,
)

LIMIT = 64 * 1024
TIMEOUT_MS = 300


class Exchange:
    """A healthy client pinging the server every few ms and checking each pong."""

    def __init__(self, make_ipc, server_ipc, **config) -> None:
        self.ipc = make_ipc("healthy", **config)
        self.sent = 0
        self.pongs: list[int] = []
        self.errors: list[BaseException] = []
        self.disconnects = 0
        self.client = self.ipc.connect_to("srv", server_ipc.server.path)
        self.client.on("pong", self.pongs.append)
        self.client.on("error", self.errors.append)
        self.client.on("disconnect", self._lost)
        self.client.wait_connected(5)
        self._loop = gevent.spawn(self._run)

    def _lost(self) -> None:
        self.disconnects += 1

    def _run(self) -> None:
        while not self.client.destroyed:
            self.client.emit("ping", self.sent)
            self.sent += 1
            gevent.sleep(0.002)

    def finish(self) -> None:
        """Stop pinging, wait for the last pong, check the exchange was untouched."""
        before = self.sent
        wait_until(lambda: self.sent > before + 20, message="pings after the attack")
        self._loop.kill()
        wait_until(lambda: len(self.pongs) == self.sent, message="every pong")
        assert self.pongs == list(range(self.sent))
        assert self.errors == []
        assert self.disconnects == 0


@pytest.fixture
def arena(make_ipc):
    """A server with small limits, and the healthy exchange running against it."""
    def build(**config):
        limits = {"max_message_size": LIMIT, "message_timeout": TIMEOUT_MS}
        srv = make_ipc("srv", **{**limits, **config})
        srv.serve()
        errors: list[BaseException] = []
        srv.server.on("error", errors.append)
        srv.healthy = set()   # the server side of the healthy client's connection

        def ping(n, sock):
            srv.healthy.add(sock)
            srv.server.emit(sock, "pong", n)

        srv.server.on("ping", ping)
        srv.server.start()
        exchange = Exchange(make_ipc, srv, **{k: v for k, v in config.items() if k == "wire"})
        wait_until(lambda: len(exchange.pongs) > 5, message="the exchange to start")
        return srv, errors, exchange
    return build


def raw_peer(path: str) -> gsocket.socket:
    sock = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
    sock.connect(path)
    return sock


def wait_closed(sock: gsocket.socket, timeout: float = 5.0) -> None:
    """Read (discarding) until the server closes the connection."""
    with gevent.Timeout(timeout, AssertionError("the server did not close the peer")):
        while True:
            try:
                if not sock.recv(65536):
                    return
            except ConnectionResetError:
                return


def check_refused(srv, errors, exchange, kind, *words) -> BaseException:
    wait_until(lambda: errors, message="the server's error event")
    assert len(errors) == 1, errors
    exc = errors[0]
    assert isinstance(exc, kind), repr(exc)
    for word in words:
        assert word in str(exc), (word, str(exc))
    assert len(srv.healthy) == 1 and exc.socket not in srv.healthy
    exchange.finish()
    return exc


def event(name, data=None) -> bytes:
    return msgpack.packb([name, data], use_bin_type=True)


# --- malformed and oversized input -------------------------------------------------------


def test_garbage_is_refused(arena):
    srv, errors, exchange = arena()
    peer = raw_peer(srv.server.path)
    peer.sendall(b"\xc1" * 64)   # 0xc1 is never valid msgpack
    wait_closed(peer)
    check_refused(srv, errors, exchange, ProtocolError, "malformed msgpack")


def test_good_frames_before_garbage_are_still_delivered(arena):
    srv, errors, exchange = arena()
    got = []
    srv.server.on("note", lambda data, sock: got.append(data))
    peer = raw_peer(srv.server.path)
    peer.sendall(event("note", 1) + event("note", 2) + b"\xc1")
    wait_closed(peer)
    check_refused(srv, errors, exchange, ProtocolError, "malformed")
    assert got == [1, 2]


def test_oversized_complete_frame_is_refused(arena):
    srv, errors, exchange = arena()
    peer = raw_peer(srv.server.path)
    frame = event("note", b"x" * (LIMIT + 1000))
    try:
        peer.sendall(frame)
    except OSError:
        pass  # the server may close before taking it all
    wait_closed(peer)
    check_refused(srv, errors, exchange, MessageTooLargeError, "max_message_size=65536")


def test_frame_just_under_the_limit_is_accepted(arena):
    srv, errors, exchange = arena()
    got = []
    srv.server.on("note", lambda data, sock: got.append(len(data)))
    peer = raw_peer(srv.server.path)
    body = b"x" * (LIMIT - 64)
    peer.sendall(event("note", body))
    wait_until(lambda: got, message="the large frame")
    assert got == [len(body)] and errors == []
    peer.close()
    exchange.finish()


def test_partial_frame_growing_past_the_limit_is_refused(arena):
    """A bin32 header announcing 10 MB, then the body trickled in 8 KiB pieces: the peer is
    cut off once what it has sent passes the limit, long before the announced size."""
    srv, errors, exchange = arena()
    peer = raw_peer(srv.server.path)
    sent = grow(peer, b"\x92\xa4note\xc6" + (10 * 1024 * 1024).to_bytes(4, "big"),
                b"y" * 8192, 4 * LIMIT)
    wait_closed(peer)
    assert sent <= 4 * LIMIT
    check_refused(srv, errors, exchange, MessageTooLargeError, "max_message_size")


def test_slowloris_is_refused_after_message_timeout(arena):
    """A frame that trickles in one byte every 50 ms never completes: cut off after
    message_timeout even though bytes keep coming."""
    srv, errors, exchange = arena()
    peer = raw_peer(srv.server.path)
    frame = event("note", "z" * 200)
    trickle(peer, frame[:-1], 0.05)
    wait_closed(peer)
    exc = check_refused(srv, errors, exchange, IncompleteMessageTimeoutError,
                        "message_timeout")
    assert "0.3" in str(exc)


def test_steady_stream_split_across_reads_is_not_mistaken_for_slowloris(make_ipc):
    """A peer that streams for several message_timeouts, every read ending mid-frame,
    completes frames all along: only a frame that itself stays incomplete counts."""
    srv = make_ipc("srv", max_message_size=LIMIT, message_timeout=100)
    srv.serve()
    errors: list[BaseException] = []
    got = []
    srv.server.on("error", errors.append)
    srv.server.on("note", lambda data, sock: got.append(data))
    srv.server.start()
    peer = raw_peer(srv.server.path)
    frames = b"".join(event("note", n.to_bytes(4, "big")) for n in range(3000))
    size = len(frames) // 3000
    step = 10 * size + size // 2   # every piece ends in the middle of a frame
    with gevent.Timeout(20, AssertionError("stream did not finish")):
        for start in range(0, len(frames), step):
            peer.sendall(frames[start:start + step])
            gevent.sleep(0.002)   # one piece per read on the server
    wait_until(lambda: len(got) == 3000 or errors, message="the whole stream")
    assert errors == [] and got == [n.to_bytes(4, "big") for n in range(3000)]
    peer.close()


def test_deep_nesting_is_refused(arena):
    srv, errors, exchange = arena()
    peer = raw_peer(srv.server.path)
    peer.sendall(b"\x92\xa4note" + b"\x91" * 5000 + b"\xc0")
    wait_closed(peer)
    check_refused(srv, errors, exchange, ProtocolError, "nest")


def test_ext_types_are_refused(arena):
    srv, errors, exchange = arena()
    peer = raw_peer(srv.server.path)
    peer.sendall(b"\x92\xa4note" + msgpack.packb(msgpack.ExtType(5, b"abcd")))
    wait_closed(peer)
    check_refused(srv, errors, exchange, ProtocolError, "ext type")


def test_not_an_event_array_is_refused(arena):
    srv, errors, exchange = arena()
    peer = raw_peer(srv.server.path)
    peer.sendall(msgpack.packb({"type": "note"}))
    wait_closed(peer)
    check_refused(srv, errors, exchange, ProtocolError, "not an event array")


@pytest.mark.parametrize("frame", [
    "mx",                     # two characters: would unpack as the event "m", data "x"
    {"m": 1, "n": 2},         # two keys: would unpack as the event "m"
    b"mx",                    # two bytes
    [],                       # an empty array
    ["m"],                    # one element
    ["m", "x", "y", "z"],     # four
])
def test_only_arrays_of_two_or_three_are_frames(arena, frame):
    """What would unpack into two names (a string, a map, bytes of two) or not at all is
    refused as a protocol error, and no handler of "m" runs (the dispatch loop tells an
    event frame by its class and by unpacking it)."""
    srv, errors, exchange = arena()
    seen = []
    srv.server.on("m", lambda data, socket: seen.append(data))
    peer = raw_peer(srv.server.path)
    peer.sendall(msgpack.packb(frame, use_bin_type=True))
    wait_closed(peer)
    check_refused(srv, errors, exchange, ProtocolError)
    assert seen == []


# --- event names -------------------------------------------------------------------------


@pytest.mark.parametrize("name, words", [
    ("connect", ("reserved",)),
    ("error", ("reserved",)),
    ("socket.disconnected", ("reserved",)),
    ("*", ("reserved",)),
    ("", ("empty",)),
    (7, ("must be a string",)),
    ("n" * 257, ("max_event_name_length=256",)),
])
def test_forbidden_event_names_are_refused(arena, name, words):
    srv, errors, exchange = arena()
    fired = []
    if isinstance(name, str) and name:
        srv.server.on(name, lambda *args: fired.append(args))
    srv.server.on("*", lambda type, data, sock: data == "boo" and fired.append(type))
    peer = raw_peer(srv.server.path)
    peer.sendall(event(name, "boo"))
    wait_closed(peer)
    check_refused(srv, errors, exchange, ForbiddenEventError, *words)
    assert [args for args in fired if "boo" in args] == []   # no handler saw the frame


def test_event_outside_allowed_events_is_refused(arena):
    srv, errors, exchange = arena(allowed_events=["ping", "pong"])
    peer = raw_peer(srv.server.path)
    peer.sendall(event("steal", "secrets"))
    wait_closed(peer)
    check_refused(srv, errors, exchange, ForbiddenEventError, "allowed_events", "steal")


def test_client_refuses_a_hostile_server(make_ipc, sock_dir):
    """The same rules hold the other way: a client drops a server that sends a forbidden
    event, reports it, and reconnects."""
    path = sock_dir + "evil"
    listener = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    hello = make_ipc("hello")
    client = hello.connect_to("evil", path)
    errors: list[BaseException] = []
    client.on("error", errors.append)
    conn, _ = listener.accept()
    conn.sendall(event("destroy", None))
    wait_until(lambda: errors, message="the client's error event")
    assert isinstance(errors[0], ForbiddenEventError) and "reserved" in str(errors[0])
    with gevent.Timeout(5, AssertionError("client did not reconnect")):
        again, _ = listener.accept()
    again.close()
    conn.close()
    listener.close()


def test_slowloris_sending_whole_elements_is_refused(arena):
    """msgpack's decoder consumes each complete element of an unfinished frame, so no
    bytes stay buffered: the frame is still incomplete and must time out."""
    srv, errors, exchange = arena()
    peer = raw_peer(srv.server.path)
    peer.sendall(b"\x92\xa4note\xdc\x3e\x80")   # an array of 16000 elements to come
    closed = False
    with gevent.Timeout(5, AssertionError("slowloris peer never cut off")):
        for _ in range(200):
            try:
                peer.sendall(b"\xc0")
            except OSError:
                closed = True
                break
            gevent.sleep(0.05)
    if not closed:
        wait_closed(peer)
    check_refused(srv, errors, exchange, IncompleteMessageTimeoutError, "message_timeout")


def test_partial_frame_of_small_elements_growing_past_the_limit_is_refused(arena):
    """Elements the decoder has consumed still count toward the frame's size: a frame that
    never finishes cannot grow the server's memory past the limit plus one read."""
    # the slowloris bound is not under test here: a loaded machine may take longer than
    # TIMEOUT_MS to send the pieces, and the timeout would then refuse the frame first
    srv, errors, exchange = arena(message_timeout=10_000)
    peer = raw_peer(srv.server.path)
    inner = b"\xdc\x3e\x80" + b"\x90" * 16000   # an array of 16000 empty arrays
    sent = grow(peer, b"\x92\xa4note\xdc\x3e\x80", inner, 16 * LIMIT)
    wait_closed(peer)
    assert sent <= 4 * LIMIT
    check_refused(srv, errors, exchange, MessageTooLargeError, "max_message_size=65536")


@pytest.mark.parametrize("bad", [event("connect", "boo"), msgpack.packb(0)])
def test_a_bad_frame_just_before_garbage_is_not_dispatched(arena, bad):
    """Frames decoded ahead of a fault are dispatched, but only after the same checks."""
    srv, errors, exchange = arena()
    fired = []
    srv.server.on("connect", lambda *args: len(args) == 2 and fired.append(args))
    srv.server.on("note", lambda data, sock: fired.append(data))
    peer = raw_peer(srv.server.path)
    peer.sendall(event("note", 1) + bad + b"\xc1")
    wait_closed(peer)
    check_refused(srv, errors, exchange, ProtocolError)
    assert fired == [1]


# --- the same limits on node-ipc's JSON wire ----------------------------------------------


def json_frame(name, data=None) -> bytes:
    import json
    return json.dumps({"type": name, "data": data}).encode() + b"\f"


def trickle(peer, data: bytes, pause: float) -> None:
    """Send ``data`` one byte every ``pause`` s until done or the server cuts the peer off."""
    with gevent.Timeout(5, AssertionError("slowloris peer never cut off")):
        for byte in data:
            try:
                peer.sendall(bytes([byte]))
            except OSError:
                return
            gevent.sleep(pause)


def grow(peer, head: bytes, piece: bytes, most: int, timeout: float = 10.0) -> int:
    """Send ``head``, then ``piece`` again and again until ``most`` bytes of pieces are out
    or the server cuts the peer off; the bytes of pieces sent. Fails if the server neither
    reads nor closes in time."""
    sent = 0
    with gevent.Timeout(timeout, AssertionError("the server neither read nor closed")):
        try:
            peer.sendall(head)
            while sent < most:
                peer.sendall(piece)
                sent += len(piece)
                gevent.sleep(0.001)
        except OSError:
            pass
    return sent


@pytest.mark.parametrize("attack, kind, words", [
    (lambda p: p.sendall(b"\x00\xff{{{\f"), ProtocolError, ("not valid",)),
    (lambda p: p.sendall(b"[1, 2]\f"), ProtocolError, ("JSON object",)),
    (lambda p: p.sendall(json_frame("note", "x" * (LIMIT + 10))), MessageTooLargeError,
     ("max_message_size=65536",)),
    (lambda p: grow(p, b'{"type":"note","data":"', b"y" * 8192, 8 * LIMIT),
     MessageTooLargeError, ("max_message_size=65536",)),
    (lambda p: trickle(p, json_frame("note", "z" * 100), 0.05),
     IncompleteMessageTimeoutError, ("message_timeout",)),
    (lambda p: p.sendall(b'{"type":"note","data":' + b"[" * 5000 + b"]" * 5000 + b"}\f"),
     ProtocolError, ()),
    (lambda p: p.sendall(json_frame("connect", 1)), ForbiddenEventError, ("reserved",)),
    (lambda p: p.sendall(json_frame("n" * 257, 1)), ForbiddenEventError,
     ("max_event_name_length=256",)),
    (lambda p: p.sendall(json_frame("steal", 1)), ForbiddenEventError, ("allowed_events",)),
], ids=["garbage", "not-an-object", "oversized", "growing", "slowloris", "deep",
        "reserved", "too-long", "not-allowed"])
def test_node_ipc_wire_refuses_hostile_peers(arena, attack, kind, words):
    srv, errors, exchange = arena(wire="node-ipc", allowed_events=["ping", "pong", "note"])
    peer = raw_peer(srv.server.path)
    attack(peer)
    wait_closed(peer)
    check_refused(srv, errors, exchange, kind, *words)
