"""Stream connections (Unix, TCP, TLS) on gevent: the read loop and the write queue.

Reading: the connection's own greenlet ``recv_into``s one shared buffer (reads never yield
between ``recv_into`` and the codec's ``frames``, which copies, so one buffer serves every
connection and an idle connection holds no read buffer), and hands the codec's lazily
decoded frames to the owner's dispatch function, which dispatches each as it is decoded
(one pass: no list of frames is kept, so nothing decoded outlives its handlers).

Writing: frames are appended to a per-connection queue of whole frames, and a callback on
the gevent hub sends it in bounded chunks once the emitting greenlet yields (or at once
past ``FLUSH_AT`` bytes). What the kernel does not take is sent by a writer greenlet
started only then. While that writer is busy, a greenlet that writes past ``PACE_AT``
pending bytes waits for it (pacing and flow control, bounded by ``drain_timeout``);
``max_pending_bytes`` bounds the queue, past it the overflow policy applies:
``disconnect``, ``drop`` or (clients only) ``wait``. A connection that dies gives back
every frame the kernel did not take whole (``take_unsent``).
"""
from __future__ import annotations

import errno
import os
import socket as _stdsocket
import stat
import time
from bisect import bisect_right
from itertools import accumulate, islice
from typing import Any, Callable, Iterable

import gevent
from gevent import socket as gsocket
from gevent.event import Event
from gevent.hub import get_hub
from gevent.ssl import SSLSocket

from ..errors import (
    IncompleteMessageTimeoutError, NotConnectedError, ProtocolError, ServeError,
    SlowConsumerError,
)
from ..wire.mismatch import notice
from ..wire.msgpack_codec import READ_SIZE
from .binding import bind_first

#: queued bytes at which a write flushes at once instead of waiting for the hub
FLUSH_AT = 128 * 1024
#: most bytes of small frames joined into one send (the kernel copies them anyway)
CHUNK = 256 * 1024
#: a queue this small is joined whole, without looking for a frame boundary
JOIN_ALL = 512 * 1024
#: frames this large go to the kernel as they are, never joined: joining them saves no
#: syscall worth having, and each join of big frames is a fresh buffer of a new size that
#: glibc serves from mmap or the top of the heap and gives back on free, so every byte
#: was faulted in again (W1 at 64 KiB: 150k page faults per 1.3 GB, vs 3k once not joined)
ALONE = 32 * 1024
#: pending bytes past which a writing greenlet waits for the busy writer (pacing: a W1
#: sender that never yields otherwise queues megabytes while the peer sits idle)
PACE_AT = 256 * 1024
#: ... until the writer has brought the queue down to this
PACE_LOW = 128 * 1024
#: frames this large are not paced at PACE_AT (each one fills the pipe by itself; waiting
#: per frame would stop the pipelining): they wait only past half of max_pending_bytes
PACE_SKIP = 128 * 1024

#: seconds a gracefully closed connection waits for the peer to close its side
LINGER = 2.0
#: bytes read at once between frames (see ``run``); frames larger than this read in full
BATCH_READ = 16 * 1024
#: ... and after a read that came back full (the peer is streaming: more is waiting), so
#: the read loop's and the codec's cost per read is shared by more frames (1 KiB events:
#: 15 a read at 16 KiB, 9,547 instructions each to decode and dispatch; 64 at 64 KiB,
#: 8,920; callgrind)
STREAM_READ = 64 * 1024

#: most bytes of the block ``_raise_trim_threshold`` frees (glibc may then keep up to
#: twice this, 16 MiB, free at the heap top instead of giving it back at once)
TRIM_HINT_MAX = 8 * 1024 * 1024
_trim_hint = [0]   # frames up to this size already had their hint, in this process


def _raise_trim_threshold(size: int) -> None:
    """Have glibc keep the memory of sent big frames for the next ones.

    glibc gives the heap top back to the system once more than its trim threshold is
    free there, and raises that threshold (to twice the block) only when it frees an
    mmap'd block bigger than any before. A process where that raise is too small for the
    swing of its queue (frames of ``size`` up to ``max_pending_bytes``/2 pending) gives
    back memory at nearly every sent frame and faults the next ones in page by page (W4
    over TCP: 360k faults per 2 GiB, twice the sender's CPU). Freeing one calloc'd block
    (its pages never touched) of four frames, at most TRIM_HINT_MAX, gives the raise such
    a process gets from glibc anyway once it frees a block that size. Allocator
    bookkeeping only: with another allocator it is an allocation and a free.
    """
    block = min(4 * size, TRIM_HINT_MAX)
    _trim_hint[0] = block // 2
    bytes(block)


_read_buffer = bytearray(READ_SIZE)
_read_view = memoryview(_read_buffer)

#: ``on_frames(conn, frames) -> count``: dispatches an iterable of frames as they decode
FramesHandler = Callable[["StreamConnection", Iterable[Any]], int]
CloseHandler = Callable[["StreamConnection", "BaseException | None"], None]


class StreamConnection:
    """One connected stream socket.

    Server handlers receive this object as their ``socket`` argument: it has
    :meth:`emit`, :meth:`close`, ``address`` (the peer), ``id`` (the client's id, once it
    announced one), ``dropped`` (events dropped under the ``drop`` policy) and, over TLS,
    ``peer_certificate``.
    """

    __slots__ = (
        "sock", "codec", "names", "address", "id", "dropped", "peer_certificate", "data",
        "max_pending_bytes", "overflow_policy", "message_timeout",
        "_on_frames", "_on_close", "_loop", "_raw_send", "_wbuf", "_pending",
        "_writer", "_flush_scheduled", "_closing", "_closed", "_reason",
        "_drained", "_partial_since", "_timer", "_finished", "_linger", "_busy", "__weakref__",
        "bytes_in", "events_in",
        # the write queue (see "writing" below)
        "_sent", "_frames_taken", "_extra_events", "drain_timeout", "_hub", "_reader",
        "_inflight", "_chunk", "_off", "_wake_at", "_behind_since", "_pace_at", "_pace_low",
        "_big_high", "_room",
    )

    def __init__(self, sock: Any, codec: Any, names: Any, *, address: Any = None,
                 max_pending_bytes: int = 8 * 1024 * 1024, overflow_policy: str = "disconnect",
                 message_timeout: float = 30.0, on_frames: FramesHandler,
                 on_close: CloseHandler, drain_timeout: float = 5.0) -> None:
        self.sock = sock
        self.codec = codec
        self.names = names
        self.address = address
        #: the peer's id: announced by geventipc clients, or set by the application
        self.id: str | None = None
        #: events dropped for this peer under ``overflow_policy = "drop"``
        self.dropped = 0
        #: the peer's verified TLS certificate (dict, as ``ssl.getpeercert()``), or None
        self.peer_certificate: dict[str, Any] | None = None
        #: free for the application (node-ipc code often hangs state on the socket)
        self.data: dict[str, Any] = {}
        self.max_pending_bytes = max_pending_bytes
        self.overflow_policy = overflow_policy
        self.message_timeout = message_timeout
        self._on_frames = on_frames
        self._on_close = on_close
        self._hub = hub = get_hub()
        self._loop = hub.loop
        raw = getattr(sock, "_sock", None)
        # Plain gevent sockets wrap a non-blocking OS socket we can write to directly from
        # a hub callback; TLS sockets cannot, so they always write from a greenlet.
        # gevent's SSLSocket subclasses gevent's socket, yet its ``_sock`` carries ciphertext:
        # writing or reading it directly would bypass TLS, so it is excluded here.
        self._raw_send = raw.send if isinstance(sock, gsocket.socket) and raw is not None \
            and not isinstance(sock, SSLSocket) else None
        self._wbuf: list[bytes] = []
        self._pending = 0         # bytes accepted and not yet taken by the kernel
        self._writer: gevent.Greenlet | None = None
        self._flush_scheduled = False
        self._closing = False
        self._closed = False
        self._finished = False
        self._reason: BaseException | None = None
        self._drained: Event | None = None
        self._partial_since = 0.0
        self._timer: Any = None
        self._linger: Any = None   # timer bounding a graceful close
        self._busy = False         # a batch is being dispatched (see _check_partial)
        #: bytes read from the peer; frames (events, requests, replies) decoded from them
        self.bytes_in = 0
        self.events_in = 0
        # what the application queued on this connection (write side), kept without an
        # addition per event: see the ``bytes_out`` and ``events_out`` properties
        self._sent = 0           # bytes the kernel took
        self._frames_taken = 0   # frames that left _wbuf (to be sent, or given back)
        self._extra_events = 0   # events beyond one per frame (write_many's chunks)
        #: seconds a writing greenlet waits at most for this peer to catch up (0: never)
        self.drain_timeout = drain_timeout
        # made in the greenlet that will read it (server and client both do): writes
        # from that greenlet never wait for this peer to drain
        self._reader = gevent.getcurrent()
        self._inflight: list[bytes] | None = None   # the frames of the chunk being sent
        self._chunk: bytes | None = None            # that chunk
        self._off = 0                               # bytes of it the kernel took
        self._wake_at = 0          # waiters are woken once pending is down to this
        self._behind_since = 0.0   # when a writer first waited for this peer (0: it is not)
        self._pace_at = min(PACE_AT, max_pending_bytes)
        self._pace_low = min(PACE_LOW, self._pace_at // 2)
        self._big_high = max(PACE_AT, max_pending_bytes // 2)
        # pending bytes (a new frame's included) below which the inlined emit paths
        # (client and server) queue a frame with no other check: under the pacing mark,
        # the frame no bigger than the codec lets them send unchecked, and 0 once closing
        self._room = min(self._pace_at, getattr(codec, "fast_limit", 0) + 1)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<StreamConnection id={self.id!r} address={self.address!r} {state}>"

    # --- state ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the connection is closed (or closing) and takes no more writes."""
        return self._closing

    @property
    def pending_bytes(self) -> int:
        """Bytes queued for this peer that the kernel has not taken yet."""
        return self._pending

    @property
    def bytes_out(self) -> int:
        """Bytes the application queued on this connection (what the kernel took plus
        what is pending): every accepted write, whatever became of it. Derived, so a
        write adds nothing per event for it (measured with callgrind: the two counters
        added per emit cost ~7% of a W1 sender's instructions)."""
        return self._sent + self._pending

    @property
    def events_out(self) -> int:
        """Events the application queued on this connection (a broadcast chunk counts
        its events): the frames that left the queue, those still in it, and the events
        chunks carry beyond one. Derived, like ``bytes_out``."""
        return self._frames_taken + len(self._wbuf) + self._extra_events

    def stats(self) -> dict[str, Any]:
        """This connection's counters, as a plain dict (docs/operations.md): ``id``,
        ``address``, ``bytes_in``, ``events_in``, ``bytes_out``, ``events_out``,
        ``pending_bytes``, ``dropped``, ``closed``."""
        return {"id": self.id, "address": self.address, "bytes_in": self.bytes_in,
                "events_in": self.events_in, "bytes_out": self.bytes_out,
                "events_out": self.events_out, "pending_bytes": self._pending,
                "dropped": self.dropped, "closed": self._closing}

    # --- reading -------------------------------------------------------------------------

    def run(self) -> None:
        """Read, decode and dispatch until the connection ends; then report the close.

        Runs in the connection's own greenlet, so frames from one peer are handled one
        after another, in the order sent.
        """
        codec = self.codec
        on_frames = self._on_frames
        sock = self.sock
        size = codec.read_size
        # Small reads between frames: with one-pass dispatch no batch is kept alive
        # whatever the read size, and a small read lets other connections' greenlets in
        # sooner and keeps the unpacker's buffer small; a peer that keeps the kernel
        # buffer full gets bigger reads (STREAM_READ). Inside a frame larger than a read,
        # read in full. Raw mode has no frames to batch: each read is one ``data`` event,
        # so read in full.
        small = want = min(size, BATCH_READ) if codec.framed else size
        stream = min(size, STREAM_READ) if codec.framed else size
        buf, view = _read_buffer, _read_view
        reason: BaseException | None = None
        try:
            if self._raw_send is not None:
                recv_into = sock._sock.recv_into
                wait, read_event = sock._wait, sock._read_event
            else:
                recv_into, wait, read_event = sock.recv_into, None, None
            first = True
            while not self._closed:
                try:
                    n = recv_into(buf, want)
                except BlockingIOError:
                    wait(read_event)
                    continue
                if not n:
                    break
                self.bytes_in += n
                if first:
                    first = False
                    wrong = codec.mismatch(view[:n])
                    if wrong is not None:
                        # the reason first: a write failing on the half-closed socket
                        # (EPIPE) must not take its place; no more writes from now on
                        self._reason = wrong
                        self._stop_writes()
                        self._refuse_wire(bytes(view[:n]))
                        raise wrong
                short = n < want
                # one pass: each frame is dispatched as it is decoded (see
                # geventipc.dispatch); ``frames`` copies what it needs from the shared
                # buffer before returning, so a handler that yields cannot see it reused
                self._busy = True
                try:
                    count = on_frames(self, codec.frames(view[:n]))
                    codec.settle(count)
                except ProtocolError:
                    raise
                except Exception as exc:  # the decoder's own (msgpack's ValueError...)
                    raise codec.fault(exc) from None
                self._busy = False
                if count:
                    self.events_in += count
                    # a full read: keep reading at least as much (big frames stay at a
                    # full read, small ones go up to STREAM_READ); a short one: small
                    want = small if short else want if want > stream else stream
                elif not short:
                    want = size
                if codec.buffered:
                    if not self._partial_since:
                        self._start_partial_timer()
                    elif count:
                        # a frame finished, so what is pending now began in this read:
                        # message_timeout counts from here, not from an older frame
                        self._partial_since = time.monotonic()
                else:
                    self._partial_since = 0.0
                if short and wait is not None and not self._closed:
                    # a short read means the kernel buffer is empty: wait for the next
                    # data instead of paying for a recv that would fail with EAGAIN
                    wait(read_event)
        except ProtocolError as exc:
            # the good frames before the fault were dispatched as they were decoded
            reason = exc
        except (OSError, ValueError) as exc:  # reset by peer, closed under us
            # after our own graceful close, the peer's way of ending is no error of ours
            reason = None if self._closed or self._linger is not None else exc
        finally:
            self._finish(reason)

    def _refuse_wire(self, first: bytes) -> None:
        """The peer is on another wire: tell it (in its own wire, where it has one) before
        the connection closes, so a geventipc peer can report it too."""
        info = {"wire": self.codec.name, "tls": self._raw_send is None and
                isinstance(self.sock, SSLSocket)}
        data = notice(first, info)
        if data is not None:
            refuse_with(self.sock, data)

    def _start_partial_timer(self) -> None:
        self._partial_since = time.monotonic()
        if self._timer is None or not self._timer.active:
            self._timer = self._loop.timer(self.message_timeout)
            self._timer.start(self._check_partial)

    def _check_partial(self) -> None:
        if not self._partial_since or self._closed:
            return
        if self._busy:
            # a handler is running mid-batch: the rest of the batch is ours to decode, not
            # the peer's to send; the run loop restarts the count when the batch is done
            self._timer = self._loop.timer(self.message_timeout)
            self._timer.start(self._check_partial)
            return
        late = time.monotonic() - self._partial_since - self.message_timeout
        if late >= -0.001:
            # ``buffered`` may be an upper bound (msgpack): ask the codec whether a frame
            # really is pending; an idle peer at a frame boundary is left alone
            if not self.codec.incomplete():
                self._partial_since = 0.0
                return
            self.abort(IncompleteMessageTimeoutError(
                f"a frame stayed incomplete for over {self.message_timeout:g} s "
                f"(message_timeout)"))
        else:
            self._timer = self._loop.timer(-late)
            self._timer.start(self._check_partial)

    # --- writing -------------------------------------------------------------------------
    #
    # One bounded, frame-aware queue per connection. ``_wbuf`` holds whole frames (the
    # objects the caller gave: a client tells its hello and requests by identity) that
    # nothing has tried to send yet. A send takes a chunk off its front: one large frame
    # as it is, or small frames joined into at most CHUNK bytes (measured against
    # ``sendmsg`` of the frames themselves: joining is 2.9x faster for 40-byte frames and
    # even at 1 KiB; scatter/gather only won for frames sent alone anyway). The chunk's
    # frames stay in ``_inflight`` and ``_off`` counts the bytes of the chunk the kernel
    # took, so when the connection dies ``take_unsent`` gives back every frame the kernel
    # did not take whole, a partly sent one included (the peer never decoded it).
    #
    # Pacing and flow control: past ``_pace_at`` pending bytes while the writer greenlet
    # is busy (the kernel is full), a greenlet that writes waits until the writer has
    # brought the queue down to PACE_LOW, at most ``drain_timeout`` s from when the peer
    # fell behind; never in the hub nor in the connection's own reader greenlet. A peer
    # still behind after that is cut under ``disconnect``; under the other policies
    # nobody waits for it until it catches up. ``max_pending_bytes`` stays the hard bound.

    def emit(self, type: str, data: Any = None) -> bool:
        """Send one event to this peer. Returns False if it was dropped by policy.

        In raw mode (``codec.framed`` false) there is no event type: ``emit(data)``.
        """
        if self.codec.framed:
            self.names.check_outgoing(type)
        return self.write(self.codec.encode_event(type, data))

    def write(self, frame: bytes) -> bool:
        """Queue one encoded frame; returns True if queued, False if dropped under the
        ``drop`` policy. Raises NotConnectedError on a closed connection.

        May wait (cooperatively) when the peer is behind: see ``drain_timeout``, and the
        ``wait`` policy, under which a connection closing during the wait raises
        NotConnectedError with the frame not queued.
        """
        if self._closing:
            raise NotConnectedError(f"connection to {self.address!r} is closed")
        size = len(frame)
        pending = self._pending + size
        if pending > self.max_pending_bytes and self._pending:
            if not self._overflow(size):
                return False
            pending = self._pending + size
        self._pending = pending
        self._wbuf.append(frame)
        if self._writer is None:
            # no writer: nothing is in flight, so everything pending is in _wbuf
            if pending >= FLUSH_AT:
                self._flush()
            elif not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.run_callback(self._flush)
        elif pending >= self._pace_at and (size < PACE_SKIP or pending >= self._big_high):
            self.pace(size)
        return True

    def write_many(self, frames: list[bytes], size: int, count: int) -> bool:
        """Queue encoded chunks (``size`` bytes, ``count`` events in all) as one unit;
        False if closed or dropped by policy. Never waits (broadcast waits for laggards
        itself, once, after queueing to every peer)."""
        if self._closing:
            return False
        if self._pending + size > self.max_pending_bytes and self._pending:
            if not self._overflow(size, count, wait=False):
                return False
        self._pending += size
        self._wbuf.extend(frames)
        self._extra_events += count - len(frames)
        if self._writer is None:
            if self._pending >= FLUSH_AT:
                self._flush()
            elif not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.run_callback(self._flush)
        return True

    def behind(self, size: int) -> bool:
        """True when a writer of frames of ``size`` bytes should wait for this peer
        (see :meth:`pace`)."""
        pending = self._pending
        return self._writer is not None and pending >= self._pace_at and (
            size < PACE_SKIP or pending >= self._big_high)

    def pace(self, size: int = 0) -> bool:
        """Wait, if this greenlet may, until the writer has brought the queue down
        (bounded by ``drain_timeout`` from when the peer fell behind). True if the
        queue is below the mark (or this greenlet may not wait), False if the peer
        stayed behind (then cut under the ``disconnect`` policy) or closed."""
        if not self.drain_timeout:
            return True
        current = gevent.getcurrent()
        if current is self._reader or current is self._hub:
            return True
        # big frames: down by one frame, not to half (see _next_chunk: a swing of two
        # frames or more lets glibc trim the heap, and every byte is faulted in again)
        target = self._pace_low if size < PACE_SKIP else \
            max(self._big_high // 2, self._big_high - size)
        if self._pending <= target:
            return True
        now = time.monotonic()
        if not self._behind_since:
            self._behind_since = now
        deadline = self._behind_since + self.drain_timeout
        if now < deadline and self._wait_for(target, deadline - now, self._closing_stops):
            return True
        if self._closing:
            return False
        if self._pending > target and time.monotonic() >= deadline \
                and self.overflow_policy == "disconnect":
            self.abort(SlowConsumerError(
                f"{self.who()} stayed over {self._pace_at} bytes unread for "
                f"drain_timeout={self.drain_timeout:g} s; disconnected"))
        return False

    def drain(self, timeout: float | None = None) -> bool:
        """Block this greenlet until everything queued is with the kernel.

        True once drained; False if ``timeout`` (seconds) passed first or the connection
        closed with frames still queued (a client queues those again for its next
        connection). Never cuts the peer, whatever ``drain_timeout`` says.
        """
        if not self._pending:
            return True
        return self._wait_for(0, timeout, self._closed_stops)

    def _closing_stops(self) -> bool:
        return self._closing

    def _closed_stops(self) -> bool:
        return self._closed

    def _wait_for(self, target: int, timeout: float | None,
                  stop: Callable[[], bool]) -> bool:
        """Wait until at most ``target`` bytes are pending: True; False if ``timeout``
        passed or ``stop()`` came true first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pending > target:
            if stop() or self._closed:
                return False
            event = self._drained
            if event is None:
                event = self._drained = Event()
                self._wake_at = target
            elif target > self._wake_at:
                self._wake_at = target
            if self._writer is None:
                self._flush()   # nothing sends yet (the hub's flush has not run)
                if self._pending <= target:
                    break
            if deadline is None:
                event.wait()
            else:
                left = deadline - time.monotonic()
                if left <= 0 or not event.wait(left) and time.monotonic() >= deadline:
                    return self._pending <= target
        return True

    def _wake(self) -> None:
        """The queue shrank: wake the greenlets waiting for it to come down this far."""
        event = self._drained
        if event is not None and self._pending <= self._wake_at:
            self._drained = None
            self._behind_since = 0.0
            event.set()
        elif self._pending <= self._pace_low:
            self._behind_since = 0.0

    def who(self) -> str:
        """This connection's peer as messages name it: ``peer 'id'`` once it has an id,
        else ``an unnamed peer on 'address'``."""
        # a Unix peer has no address of its own: name the socket it came in on
        return f"peer {self.id!r}" if self.id is not None else \
            f"an unnamed peer on {self.address!r}"

    def _overflow(self, size: int, count: int = 1, wait: bool = True) -> bool:
        """The queue is full: apply the policy. True means go on and queue."""
        policy = self.overflow_policy
        if policy == "drop":
            self.dropped += count
            return False
        if policy == "wait" and wait and gevent.getcurrent() is not self._hub:
            # until half drained, however long: a client's one peer is not reading
            while self._pending and self._pending + size > self.max_pending_bytes:
                if not self._wait_for(self.max_pending_bytes // 2, None, self._closing_stops):
                    break
            if self._closing:
                raise NotConnectedError(f"connection to {self.address!r} closed while "
                                        f"waiting to write")
            return True
        # disconnect: the caller (often a broadcast loop) goes on; the close reports why
        self.abort(SlowConsumerError(
            f"{self.who()} has over max_pending_bytes={self.max_pending_bytes} unread; "
            f"disconnected"))
        return False

    def _next_chunk(self) -> bytes:
        """Take the next chunk off the queue: one large frame, or small frames joined
        into at most about CHUNK bytes. Its frames stay in ``_inflight``."""
        buf = self._wbuf
        first = buf[0]
        if len(buf) == 1 or len(first) >= ALONE:
            if len(first) > _trim_hint[0] and len(first) >= PACE_SKIP and \
                    _trim_hint[0] < TRIM_HINT_MAX // 2:
                _raise_trim_threshold(len(first))
            del buf[0]
            frames = [first]
            chunk = first
        elif self._pending <= JOIN_ALL and self._pending < ALONE * len(buf):
            # no chunk in flight: all pending is in _wbuf, small frames on average
            frames = buf
            self._wbuf = []
            chunk = b"".join(frames)
        else:
            # a long queue (the peer was behind) or big frames in it: cut it at CHUNK
            # bytes, on a frame boundary, counting sizes in C; a cut of a few frames
            # may hold a big one, which then ends it (it goes alone next time)
            ends = list(accumulate(map(len, islice(buf, 0, CHUNK // 8))))
            count = max(1, bisect_right(ends, CHUNK))
            if count <= CHUNK // ALONE:
                for i in range(1, count):
                    if ends[i] - ends[i - 1] >= ALONE:
                        count = i
                        break
            frames = buf[:count]
            del buf[:count]
            chunk = frames[0] if count == 1 else b"".join(frames)
        self._frames_taken += len(frames)
        self._inflight = frames
        self._chunk = chunk
        self._off = 0
        return chunk

    def _flush(self) -> None:
        """Hand the queue to the kernel, chunk by chunk, without waiting; leave what it
        does not take to a writer greenlet. Also the hub callback a write schedules (a
        direct call while one is pending lets a later write schedule another, which then
        finds nothing to do: cheaper than a second function per flush)."""
        self._flush_scheduled = False
        if self._writer is not None or self._closed or not (self._wbuf or self._chunk):
            return
        send = self._raw_send
        if send is None:
            # TLS: only a greenlet may write; it takes the frames from the queue itself,
            # so a send that fails at once leaves them there for take_unsent
            self._writer = gevent.spawn(self._drain)
            return
        while True:
            chunk = self._chunk
            if chunk is None:
                if not self._wbuf:
                    break
                chunk = self._next_chunk()
            off = self._off
            try:
                sent = send(memoryview(chunk)[off:] if off else chunk)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                # the peer is gone (EPIPE, reset): take_unsent gives back the chunk's
                # frames the kernel did not take whole, and everything after them
                self.abort(exc)
                return
            self._pending -= sent
            self._sent += sent
            off += sent
            if off < len(chunk):
                self._off = off
                self._writer = gevent.spawn(self._drain)
                break
            self._chunk = self._inflight = None
            self._off = 0
        if self._drained is not None or self._behind_since:
            self._wake()

    def _drain(self) -> None:
        """Writer greenlet: send everything queued, cooperatively, then exit."""
        sock = self.sock
        try:
            while not self._closed:
                chunk = self._chunk
                if chunk is None:
                    if not self._wbuf:
                        break
                    chunk = self._next_chunk()
                off = self._off
                # waits (cooperatively) until the kernel takes some of it
                sent = sock.send(memoryview(chunk)[off:] if off else chunk)
                self._pending -= sent
                self._sent += sent
                off += sent
                if off < len(chunk):
                    self._off = off
                else:
                    self._chunk = self._inflight = None
                    self._off = 0
                if self._drained is not None or self._behind_since:
                    self._wake()
        except (OSError, ValueError, AttributeError) as exc:
            # AttributeError: a gevent SSLSocket closed under the writer has no SSL object
            # left ('NoneType' object has no attribute 'write'); it is a close like the others
            self.abort(exc)
        finally:
            self._writer = None
            event = self._drained
            if event is not None:
                self._drained = None
                event.set()
            if not self._pending:
                self._behind_since = 0.0
        if self._closing and not self._closed:
            self._close_gracefully()

    def take_unsent(self) -> list[bytes]:
        """Whole frames the kernel never took (for a client to resend after
        reconnecting), in order, as the objects queued; the connection forgets them.

        A frame the kernel took only part of comes back too: the peer never got all of
        it, so it never decoded it. Only bytes the kernel accepted can be lost.
        """
        frames = self._wbuf
        inflight = self._inflight
        if inflight:
            off = self._off
            end = 0
            index = len(inflight)
            for i, frame in enumerate(inflight):
                end += len(frame)
                if end > off:
                    index = i
                    break
            frames = inflight[index:] + frames
        self._frames_taken += len(self._wbuf)   # they leave the queue: still counted
        self._wbuf, self._inflight, self._chunk, self._off = [], None, None, 0
        return frames

    # --- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Close after sending what is queued (bounded by the writer's own progress)."""
        if self._closing:
            return
        self._stop_writes()
        if self._pending:
            # _flush leaves nothing queued without a writer to send it, unless it failed
            # and aborted: either way no writer of our own is needed here
            self._flush()
        if self._writer is None:
            self._close_gracefully()

    def _stop_writes(self) -> None:
        """From now on the connection takes no writes: ``closed`` reads True, and the
        inlined emit paths find no room (``_room``)."""
        self._closing = True
        self._room = 0

    def _close_gracefully(self) -> None:
        """Everything queued is with the kernel: send FIN after it, and close once the
        peer has closed its side too (at most ``LINGER`` s later).

        Closing at once would lose data over TCP: with input still unread, the kernel
        answers close() with a reset and throws away what it had not yet sent.
        """
        if self._closed or self._linger is not None:
            return
        # TLS: half-close the TCP socket under it. The TLS layer's own shutdown() would
        # end reading too, and a close_notify sent while the peer still writes loses data
        # (measured); the peer sees an end of stream without close_notify instead.
        sock = self.sock if self._raw_send is not None else getattr(self.sock, "_sock", None)
        if sock is None:
            self._shutdown()
            return
        try:
            sock.shutdown(gsocket.SHUT_WR)
        except OSError:
            self._shutdown()
            return
        # the read loop goes on until the peer's EOF, then closes; this bounds the wait
        self._linger = self._loop.timer(LINGER)
        self._linger.start(self._shutdown)

    def abort(self, reason: BaseException | None = None) -> None:
        """Close at once, dropping anything queued; ``reason`` is reported on close."""
        if self._reason is None:
            self._reason = reason
        self._stop_writes()
        self._shutdown()

    def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.stop()
        if self._linger is not None:
            self._linger.stop()
        try:
            self.sock.close()
        except OSError:
            pass
        event = self._drained
        if event is not None:   # waiting writers see the close
            self._drained = None
            event.set()

    def _finish(self, reason: BaseException | None) -> None:
        if self._finished:
            return
        self._finished = True
        self._stop_writes()
        self._shutdown()
        self._on_close(self, self._reason or reason)


# --- listening and dialling --------------------------------------------------------------


def refuse_with(sock: Any, data: bytes, wait: float = 1.0) -> None:
    """Send ``data`` (a short notice), end our side and read until the peer closes (at
    most ``wait`` s): closing with its bytes unread would reset the connection and could
    throw the notice away before the peer reads it. The caller closes ``sock``."""
    try:
        with gevent.Timeout(wait, False):
            sock.sendall(data)
            sock.shutdown(gsocket.SHUT_WR)
            while sock.recv(65536):
                pass
    except OSError:
        pass


def _is_live_unix_socket(path: str) -> bool:
    probe = _stdsocket.socket(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def listen_unix(path: str, *, unlink: bool = True, readable_all: bool = False,
                writable_all: bool = False, backlog: int = 1024) -> gsocket.socket:
    """A listening Unix socket at ``path``, owner-only unless asked otherwise.

    A stale socket file (nobody listening) is removed when ``unlink``; a live server at
    the same path, or a file that is not a socket, is never touched: ServeError.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    if info is not None:
        if not stat.S_ISSOCK(info.st_mode):
            raise ServeError(errno.EEXIST, f"{path} exists and is not a socket; not replacing it")
        if _is_live_unix_socket(path):
            raise ServeError(errno.EADDRINUSE, f"another server is listening at {path}")
        if not unlink:
            raise ServeError(errno.EADDRINUSE,
                             f"stale socket file {path} exists and config.unlink is False")
        os.unlink(path)
    mode = 0o600 | (0o044 if readable_all else 0) | (0o022 if writable_all else 0)
    sock = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
    old_umask = os.umask(0o177)   # no window in which the file is more open than asked
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        # "AF_UNIX path too long" comes without errno or strerror: keep its text
        raise ServeError(exc.errno or errno.EINVAL,
                         f"cannot bind Unix socket {path}: {exc.strerror or exc}") from None
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    sock.listen(backlog)
    return sock


def listen_tcp(host: str, port: int, backlog: int = 1024) -> gsocket.socket:
    """A listening TCP socket on ``host``:``port`` (IPv4 or IPv6 by what host resolves to)."""
    try:
        infos = gsocket.getaddrinfo(host, port, 0, gsocket.SOCK_STREAM, 0, gsocket.AI_PASSIVE)
    except OSError as exc:
        raise ServeError(errno.EADDRNOTAVAIL, f"cannot resolve {host!r}: {exc}") from None

    def prepare(sock: gsocket.socket, addr: Any) -> None:
        sock.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(backlog)

    return bind_first(infos, prepare, f"cannot listen on {host}:{port}")


def dial_unix(path: str, timeout: float) -> gsocket.socket:
    """Connect to a Unix socket; OSError (FileNotFoundError, ConnectionRefusedError,
    PermissionError) if that fails."""
    sock = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


def dial_tcp(host: str, port: int, timeout: float,
             keepalive: float = 0) -> gsocket.socket:
    """Connect over TCP with Nagle off (IPC wants latency, and we batch writes ourselves)
    and keepalive as :func:`tune_tcp` sets it."""
    sock = gsocket.create_connection((host, port), timeout=timeout)
    sock.settimeout(None)
    tune_tcp(sock, keepalive)
    return sock


def keepalive_timings(keepalive_ms: float) -> tuple[int, int, int]:
    """(TCP_KEEPIDLE s, TCP_KEEPINTVL s, TCP_KEEPCNT) that drop a silent peer about
    ``keepalive_ms`` after the last thing it sent: probes start after a third of it
    idle, then 4 unanswered probes spread over the rest (30000 ms: 10 s, 5 s, 4)."""
    total = max(keepalive_ms / 1000.0, 2.0)
    idle = max(1, int(total / 3))
    count = 4
    interval = max(1, int((total - idle) / count))
    return idle, interval, count


#: SO_SNDBUF of TCP connections (the kernel doubles it: 512 KiB). Measured with 1 MiB
#: frames over loopback (docs/limits.md): 3.4-3.6 GB/s against 1.0-2.1 with the
#: autotuned default, which grows to tcp_wmem's maximum (4 MiB) and falls out of cache;
#: it also bounds what a dying connection can lose on the sending side. Unix sockets keep
#: their default (208 KiB), the fastest of those measured.
TCP_SNDBUF = 256 * 1024


def tune_tcp(sock: Any, keepalive: float = 0) -> None:
    """Turn Nagle's algorithm off on a TCP socket and, with ``keepalive`` (ms, 0 = off),
    have the kernel drop a peer that stopped answering within about that long: TCP
    keepalive probes on an idle connection (:func:`keepalive_timings`) and, where the
    platform has it, ``TCP_USER_TIMEOUT`` for data that stays unacknowledged. The send
    buffer is bounded (``TCP_SNDBUF``). A no-op for other families; an option the
    platform lacks is skipped."""
    if sock.family not in (gsocket.AF_INET, gsocket.AF_INET6):
        return
    options: list[tuple[int, int, int]] = [(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1),
                                           (gsocket.SOL_SOCKET, gsocket.SO_SNDBUF, TCP_SNDBUF)]
    if keepalive:
        idle, interval, count = keepalive_timings(keepalive)
        options.append((gsocket.SOL_SOCKET, gsocket.SO_KEEPALIVE, 1))
        for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval),
                            ("TCP_KEEPCNT", count), ("TCP_USER_TIMEOUT", int(keepalive))):
            option = getattr(_stdsocket, name, None)
            if option is not None:
                options.append((gsocket.IPPROTO_TCP, option, value))
    for level, option, value in options:
        try:
            sock.setsockopt(level, option, value)
        except OSError:
            pass


__all__ = [
    "FLUSH_AT", "StreamConnection", "refuse_with", "listen_unix", "listen_tcp", "dial_unix",
    "dial_tcp", "tune_tcp", "keepalive_timings",
]
