"""Every emit path refuses at ``emit`` (EncodeError) what the peer would refuse.

* Property: whatever the encoders accept (event, request, reply; msgpack and node-ipc
  wires; small and default size limits), a receiving codec decodes, with nothing pending.
* Real sockets: ``emit("x", {(1, 2): "a"})`` raises EncodeError on the client, the server,
  broadcast and UDP; a reply with such data goes back as an error reply; the connection
  stays up and the next event arrives (before: the receiver dropped the connection with
  ``unhashable type: 'list'`` and the next event was lost).
"""
from __future__ import annotations

import collections
import enum

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geventipc.errors import EncodeError, IPCError, ProtocolError, RemoteError
from geventipc.wire import EventNames, MsgpackCodec
from geventipc.wire.nodeipc_codec import NodeIPCCodec

from conftest import free_port, serve, wait_until

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


class Colour(enum.IntEnum):
    RED = 1


text = st.text(max_size=20)   # lone surrogates included: refused or carried, never lost
hashables = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats() | text
    | st.binary(max_size=8) | st.just(Colour.RED),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=2),
    max_leaves=4,
)
values = st.recursive(
    hashables | st.just(float("nan")) | st.builds(bytearray, st.binary(max_size=8)),
    lambda inner: (st.lists(inner, max_size=20) | st.tuples(inner, inner)
                   | st.dictionaries(hashables, inner, max_size=20)
                   | st.builds(collections.OrderedDict, st.dictionaries(text, inner,
                                                                        max_size=3))),
    max_leaves=40,
)


def _decodes(receiver, data: bytes) -> list:
    frames = receiver.feed(data)
    assert not receiver.incomplete()
    return frames


@SETTINGS
@given(values, st.sampled_from([64, 512, 16 * 1024 * 1024]))
def test_whatever_msgpack_encoders_accept_the_peer_decodes(data, limit):
    sender = MsgpackCodec(EventNames(), limit)
    for encode in (lambda: sender.encode_event("x", data),
                   lambda: sender.encode_request("x", data, 7),
                   lambda: sender.encode_reply(7, 0, data)):
        try:
            frame = encode()
        except IPCError:   # EncodeError, EventTooLargeError: refused at emit, fine
            continue
        assert len(_decodes(MsgpackCodec(EventNames(), limit), frame)) == 1


@SETTINGS
@given(values)
def test_whatever_the_node_ipc_encoder_accepts_the_peer_decodes(data):
    sender = NodeIPCCodec(EventNames())
    try:
        frame = sender.encode_event("x", data)
    except IPCError:
        return
    assert len(_decodes(NodeIPCCodec(EventNames()), frame)) == 1


@pytest.mark.parametrize("data", [
    {(1, 2): "a"}, [{"ok": {(1,): 2}}], {"k": [{("a", "b"): None}]},
])
def test_tuple_keys_are_refused_with_where_they_are(data):
    codec = MsgpackCodec(EventNames())
    for encode in (lambda: codec.encode_event("x", data),
                   lambda: codec.encode_request("x", data, 1),
                   lambda: codec.encode_reply(1, 0, data)):
        with pytest.raises(EncodeError, match="tuple"):
            encode()


def test_tuples_as_values_and_subclasses_still_pack_as_before():
    codec = MsgpackCodec(EventNames())
    data = {"t": (1, (2, 3)), "e": Colour.RED, "o": collections.OrderedDict(a=1),
            "b": bytearray(b"xy"), 5: "int key", b"k": "bytes key"}
    (frame,) = MsgpackCodec(EventNames()).feed(codec.encode_event("x", data))
    assert frame == ["x", {"t": [1, [2, 3]], "e": 1, "o": {"a": 1}, "b": b"xy",
                           5: "int key", b"k": "bytes key"}]


def test_an_array_longer_than_the_peer_takes_is_refused():
    codec = MsgpackCodec(EventNames(), 64)
    with pytest.raises(EncodeError, match="array of 17 items"):
        codec.encode_event("x", [0] * 17)
    assert codec.encode_event("x", [0] * 16)


def test_a_long_array_in_a_map_is_named_by_its_key():
    """Where the long array is, as the tuple-key refusal says it: a map's value by its
    key (``data['b']``), not by its position among the values."""
    codec = MsgpackCodec(EventNames(), 64)
    with pytest.raises(EncodeError, match=r"data\['b'\]\[0\] is an array of 17 items"):
        codec.encode_event("x", {"a": 1, "b": [[0] * 17]})


# --- real sockets --------------------------------------------------------------------


BAD = {(1, 2): "a"}


def test_client_and_server_emit_refuse_what_the_peer_cannot_decode(make_ipc):
    world = serve(make_ipc)
    got, server_got, errors = [], [], []
    world.server.on("x", lambda data, socket: server_got.append(data))
    world.server.on("error", errors.append)
    client = make_ipc("hello").connect_to("world")
    client.on("x", got.append)
    client.on("error", errors.append)
    client.wait_connected(15)
    wait_until(lambda: world.server.sockets, timeout=15, message="the server side")
    with pytest.raises(EncodeError, match="tuple"):
        client.emit("x", BAD)
    sock = world.server.sockets[0]
    with pytest.raises(EncodeError, match="tuple"):
        world.server.emit(sock, "x", BAD)
    with pytest.raises(EncodeError, match="tuple"):
        sock.emit("x", BAD)
    with pytest.raises(EncodeError, match="tuple"):
        world.server.broadcast("x", BAD)
    client.emit("x", "next")
    world.server.broadcast("x", "next")
    wait_until(lambda: server_got == ["next"] and got == ["next"], timeout=15,
               message="next events")
    # nothing the peer could not decode was sent: no side dropped the connection for it
    assert not [e for e in errors if isinstance(e, ProtocolError)]


def test_a_reply_the_peer_cannot_decode_comes_back_as_an_error(make_ipc):
    world = serve(make_ipc)
    world.server.handle("q", lambda data, socket: BAD)
    world.server.handle("echo", lambda data, socket: data)
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(15)
    with pytest.raises(RemoteError) as info:
        client.request("q", None, timeout=5)
    assert info.value.remote_type == "EncodeError"
    assert client.request("echo", "next", timeout=5) == "next" and client.connected


def test_udp_emit_refuses_what_the_peer_cannot_decode(make_ipc):
    port = free_port(kind=2)  # SOCK_DGRAM
    world = make_ipc("world")
    server = world.serve_net("127.0.0.1", port, "udp4")
    got = []
    server.on("x", lambda data, socket: got.append(data))
    server.start()
    hello = make_ipc("hello")
    client = hello.serve_net("127.0.0.1", free_port(kind=2), "udp4")
    client.start()
    with pytest.raises(EncodeError, match="tuple"):
        client.emit({"address": "127.0.0.1", "port": port}, "x", BAD)
    client.emit({"address": "127.0.0.1", "port": port}, "x", "next")
    wait_until(lambda: got == ["next"], message="the next datagram")
    assert server.refused == 0
