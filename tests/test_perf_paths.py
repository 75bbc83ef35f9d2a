"""The fast paths of issue 4 keep the codec's guarantees.

* Codecs return their msgpack unpacker to a shared pool at an exact frame boundary and
  take one back at their next byte: many connections fed in interleaved pieces, split
  anywhere, still decode exactly their own frames, in order.
* A connection at a frame boundary holds no unpacker (the idle-memory target); one inside
  a frame keeps its own, so nothing pending is ever lost or shared; one whose unpacker
  grew for large frames keeps it.
* Frames larger than a small read, mixed with small ones, cross real sockets whole.
"""
from __future__ import annotations

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import wait_until
from geventipc.wire import EventNames, MsgpackCodec
from geventipc.wire import msgpack_codec

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _frames_bytes(tag: int, count: int, width: int) -> tuple[bytes, list]:
    frames = [["m", {"c": tag, "i": i, "p": "x" * (width * (i % 3))}] for i in range(count)]
    return b"".join(msgpack.packb(f) for f in frames), frames


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 300)), min_size=1, max_size=80),
       st.integers(1, 40), st.integers(0, 2000))
def test_interleaved_codecs_sharing_the_pool_decode_their_own_frames(steps, count, width):
    codecs = [MsgpackCodec(EventNames()) for _ in range(4)]
    streams = []
    for tag in range(4):
        data, frames = _frames_bytes(tag, count, width)
        streams.append([data, 0, frames, []])
    for tag, piece in steps:
        data, pos, _, got = streams[tag]
        got.extend(codecs[tag].feed(data[pos:pos + piece]))
        streams[tag][1] = pos + piece
    for tag, (data, pos, frames, got) in enumerate(streams):
        got.extend(codecs[tag].feed(data[pos:]))
        assert got == frames
        assert not codecs[tag].incomplete()


def test_a_codec_at_a_frame_boundary_holds_no_unpacker():
    codec = MsgpackCodec(EventNames())
    assert codec.feed(msgpack.packb(["$ipc.hello", {"id": "a"}])) == [["$ipc.hello", {"id": "a"}]]
    assert codec._unpacker is None and codec.buffered == 0
    frame = msgpack.packb(["m", {"i": 1, "p": "y" * 100}])
    assert codec.feed(frame[:7]) == []
    assert codec._unpacker is not None          # inside a frame: its own unpacker
    assert codec.buffered > 0
    assert codec.feed(frame[7:]) == [["m", {"i": 1, "p": "y" * 100}]]
    assert codec._unpacker is None


def test_a_read_ending_inside_the_next_frame_keeps_it():
    codec = MsgpackCodec(EventNames())
    first = msgpack.packb(["m", 1])
    second = msgpack.packb(["m", [1, 2, 3]])
    # ends after the second frame's array header and name: consumed, yet not finished
    assert codec.feed(first + second[:3]) == [["m", 1]]
    assert codec._unpacker is not None and codec.buffered > 0
    assert codec.feed(second[3:]) == [["m", [1, 2, 3]]]


def test_an_unpacker_that_grew_for_a_large_frame_stays_with_its_connection():
    codec = MsgpackCodec(EventNames())
    blob = msgpack.packb(["m", b"\0" * (3 * 1024 * 1024)])
    got = []
    grown = None
    for start in range(0, len(blob), 256 * 1024):
        got.extend(codec.feed(blob[start:start + 256 * 1024]))
        grown = grown or codec._unpacker
    assert len(got) == 1 and len(got[0][1]) == 3 * 1024 * 1024
    tail = msgpack.packb(["m", 2])
    assert codec.feed(tail) == [["m", 2]]        # ends on a boundary, yet...
    assert codec._unpacker is grown              # ...a connection of large frames keeps it
    pool = msgpack_codec._POOLS.get(codec.max_message_size, [])
    assert not any(u is grown for u in pool)     # and it never reaches the pool


def test_large_and_small_frames_cross_real_sockets_whole(make_ipc):
    world = make_ipc("world")
    hello = make_ipc("hello")
    got = []
    world.serve()
    world.server.on("m", lambda data, socket: got.append(data))
    world.server.start()
    client = hello.connect_to("world")
    client.wait_connected(5)
    sent = []
    for i in range(60):
        size = (i * 7919) % (300 * 1024) if i % 4 == 0 else i
        payload = {"i": i, "b": bytes([i % 251]) * size}
        sent.append(payload)
        client.emit("m", payload)
    wait_until(lambda: len(got) == len(sent), timeout=10, message="all frames")
    assert got == sent


def test_large_bytes_are_framed_exactly_as_the_packer_frames_them():
    codec = MsgpackCodec(EventNames())
    for size in (0, 100, 65535, 65536, 65537, 1024 * 1024 + 3):
        blob = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
        for name in ("m", "n" * 31, "n" * 32, "é" * 200):
            frame = codec.encode_event(name, blob)
            assert frame == msgpack.packb([name, blob], use_bin_type=True)
            assert MsgpackCodec(EventNames()).feed(frame) == [[name, blob]]


def test_many_peers_splitting_frames_anywhere_each_arrive_whole_and_in_order(make_ipc):
    """Real sockets: 20 peers write their frames in random pieces, interleaved, some
    pieces ending on a frame boundary (the codec gives its unpacker back) and some inside a
    frame (it keeps it). Every peer's frames arrive whole, in order, none mixed up."""
    import random

    import gevent
    from gevent import socket as gsocket

    world = make_ipc("world", max_connections=50)
    got: dict[int, list[int]] = {}
    world.serve()
    world.server.on("m", lambda data, socket: got.setdefault(data["c"], []).append(data["i"]))
    world.server.start()
    path = world.server.path
    count = 150

    def peer(tag: int) -> None:
        rnd = random.Random(tag)
        sock = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
        sock.connect(path)
        data = b"".join(msgpack.packb(["m", {"c": tag, "i": i, "p": "q" * rnd.randrange(0, 3000)}])
                        for i in range(count))
        pos = 0
        while pos < len(data):
            step = rnd.choice((1, 7, 50, 300, 5000, 20000))
            sock.sendall(data[pos:pos + step])
            pos += step
            gevent.sleep(0 if rnd.random() < 0.7 else 0.001)
        wait_until(lambda: len(got.get(tag, ())) == count, timeout=20, message=f"peer {tag}")
        sock.close()

    gevent.joinall([gevent.spawn(peer, tag) for tag in range(20)], timeout=30,
                   raise_error=True)
    assert sorted(got) == list(range(20))
    assert all(got[tag] == list(range(count)) for tag in range(20))
