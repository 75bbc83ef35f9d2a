"""take_unsent after a write the kernel refused: the frames themselves come back.

The client filters its hello and matches its requests by identity (client.py), so frames
queued on a connection that writes from a greenlet (TLS) must come back as the same
objects, not lost nor joined into one blob.
"""
import gevent

from geventipc.transports.stream import StreamConnection
from geventipc.wire import EventNames, MsgpackCodec


class _RefusingSocket:
    """A socket that is not a plain gevent socket (so writes go through the writer
    greenlet, as over TLS) and whose peer is gone."""

    def send(self, data):
        raise BrokenPipeError(32, "Broken pipe")

    def close(self):
        pass


def test_frames_refused_by_the_writer_greenlet_come_back_whole():
    names = EventNames()
    closed = []
    conn = StreamConnection(_RefusingSocket(), MsgpackCodec(names), names,
                            on_frames=lambda c, f: None,
                            on_close=lambda c, reason: closed.append(reason))
    first, second = b"\x92\xa1a\x01", b"\x92\xa1b\x02"
    conn.write(first)
    conn.write(second)
    gevent.sleep(0)
    gevent.sleep(0)
    unsent = conn.take_unsent()
    assert len(unsent) == 2
    assert unsent[0] is first and unsent[1] is second
