"""Big frames on the write path go to the kernel as they are (issue 16, W1 at 64 KiB and
W4): joining them saved no syscall worth having and made fresh buffers of changing sizes
that glibc gave back to the system on free, so every byte was faulted in again."""
import gevent
from gevent import socket as gsocket

from geventipc.transports.stream import ALONE, StreamConnection
from geventipc.wire import EventNames, MsgpackCodec


class _Recording(StreamConnection):
    """Records how many frames each chunk the write path takes holds."""

    __slots__ = ("chunks",)

    def _next_chunk(self) -> bytes:
        chunk = super()._next_chunk()
        self.chunks.append(len(self._inflight))
        return chunk


def _read_all(sock, want, into):
    while len(into) < want:
        data = sock.recv(256 * 1024)
        if not data:
            return
        into.extend(data)


def _recording_pair():
    """A recording connection on one end of a socketpair: (conn, codec, mine, peer)."""
    mine, peer = gsocket.socketpair()
    names = EventNames()
    codec = MsgpackCodec(names)
    conn = _Recording(mine, codec, names, on_frames=lambda c, f: 0,
                      on_close=lambda c, reason: None)
    conn.chunks = []
    return conn, codec, mine, peer


def _send_all(conn, peer, frames):
    """Write ``frames``, drain, and check the peer got them all, in order (bounded)."""
    got = bytearray()
    reader = gevent.spawn(_read_all, peer, sum(map(len, frames)), got)
    try:
        for frame in frames:
            assert conn.write(frame)
        assert conn.drain(timeout=10)
        reader.join(timeout=10)
        assert bytes(got) == b"".join(frames)   # nothing lost, nothing reordered
    finally:
        reader.kill()


def test_a_stream_of_big_frames_is_sent_frame_by_frame():
    conn, codec, mine, peer = _recording_pair()
    frames = [codec.encode_event("m", "x" * (64 * 1024) + str(i)) for i in range(12)]
    try:
        _send_all(conn, peer, frames)
        assert conn.chunks == [1] * len(frames)
    finally:
        mine.close()
        peer.close()


def test_a_big_frame_in_a_long_queue_ends_the_chunk_before_it():
    conn, _codec, mine, peer = _recording_pair()
    frames = [b"\x92\xa1s\x01"] * 3 + [b"\x92\xa1m\xc6" + (ALONE).to_bytes(4, "big")
                                       + b"\x00" * ALONE]
    conn._wbuf.extend(frames)
    conn._pending = 10 * 1024 * 1024   # as if a long queue: the cutting branch
    chunk = conn._next_chunk()
    assert conn.chunks == [3]
    assert chunk == b"".join(frames[:3])
    assert conn._wbuf == frames[3:]
    mine.close()
    peer.close()


def test_the_first_big_frame_gives_glibc_its_trim_hint_once_per_size():
    from geventipc.transports import stream

    conn, codec, mine, peer = _recording_pair()
    saved = stream._trim_hint[0]
    stream._trim_hint[0] = 0
    frames = [codec.encode_event("m", b"\x01" * (1024 * 1024)) for _ in range(3)]
    try:
        _send_all(conn, peer, frames)
        # a block of four frames was freed once: frames up to twice this size need none
        assert stream._trim_hint[0] == 2 * len(frames[0])
    finally:
        stream._trim_hint[0] = saved
        mine.close()
        peer.close()
