"""Stream connections (Unix, TCP, TLS) on gevent: the read loop and the write queue.

Reading: the connection's own greenlet ``recv_into``s one shared buffer (reads never yield
between ``recv_into`` and the codec's ``frames``, which copies, so one buffer serves every
connection and an idle connection holds no read buffer), and hands the codec's lazily
decoded frames to the owner's dispatch function, which dispatches each as it is decoded
(one pass: no list of frames is kept, so nothing decoded outlives its handlers).

Writing never blocks the caller: frames are appended to a per-connection queue, and a
callback on the gevent hub sends the whole queue in one system call once the emitting
greenlet yields (or at once past ``FLUSH_AT`` bytes). What the kernel does not take is
sent by a writer greenlet started only then. ``max_pending_bytes`` bounds the queue; past
it the overflow policy applies: ``disconnect``, ``drop`` or (clients only) ``wait``.
"""
from __future__ import annotations

import errno
import os
import socket as _stdsocket
import stat
import time
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

#: seconds a gracefully closed connection waits for the peer to close its side
LINGER = 2.0
#: bytes read at once between frames (see ``run``); frames larger than this read in full
BATCH_READ = 16 * 1024

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
        "_on_frames", "_on_close", "_loop", "_raw_send", "_wbuf", "_wbytes", "_pending",
        "_partial", "_writer", "_flush_scheduled", "_closing", "_closed", "_reason",
        "_drained", "_partial_since", "_timer", "_finished", "_linger", "_busy",
        "bytes_in", "events_in", "__weakref__",
    )

    def __init__(self, sock: Any, codec: Any, names: Any, *, address: Any = None,
                 max_pending_bytes: int = 8 * 1024 * 1024, overflow_policy: str = "disconnect",
                 message_timeout: float = 30.0, on_frames: FramesHandler,
                 on_close: CloseHandler) -> None:
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
        self._loop = get_hub().loop
        raw = getattr(sock, "_sock", None)
        # Plain gevent sockets wrap a non-blocking OS socket we can write to directly from
        # a hub callback; TLS sockets cannot, so they always write from a greenlet.
        # gevent's SSLSocket subclasses gevent's socket, yet its ``_sock`` carries ciphertext:
        # writing or reading it directly would bypass TLS, so it is excluded here.
        self._raw_send = raw.send if isinstance(sock, gsocket.socket) and raw is not None \
            and not isinstance(sock, SSLSocket) else None
        self._wbuf: list[bytes] = []
        self._wbytes = 0          # bytes in _wbuf
        self._pending = 0         # bytes accepted and not yet taken by the kernel
        self._partial: memoryview | None = None   # unsent tail of a partly sent chunk
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
        #: bytes read from the peer (counted per read; liveness watches it change)
        self.bytes_in = 0
        #: frames received and dispatched (counted per batch)
        self.events_in = 0

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
        # Small reads keep each decoded batch small: a batch of thousands of frames alive
        # at once costs more in cache misses and garbage-collector passes than the extra
        # system calls. Inside a frame larger than a small read, read in full. Raw mode
        # has no frames to batch: each read is one ``data`` event, so read in full.
        small = want = min(size, BATCH_READ) if codec.framed else size
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
                    want = small
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

    def emit(self, type: str, data: Any = None) -> bool:
        """Send one event to this peer. Returns False if it was dropped by policy.

        In raw mode (``codec.framed`` false) there is no event type: ``emit(data)``.
        """
        if self.codec.framed:
            self.names.check_outgoing(type)
        return self.write(self.codec.encode_event(type, data))

    def write(self, frame: bytes) -> bool:
        """Queue encoded bytes; never blocks unless the policy is ``wait``.

        Returns True if queued, False if dropped under the ``drop`` policy. Raises
        NotConnectedError on a closed connection.
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
        self._wbytes += size
        if self._wbytes >= FLUSH_AT and self._writer is None:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.run_callback(self._scheduled_flush)
        return True

    def write_many(self, frames: list[bytes], size: int, count: int) -> bool:
        """Queue encoded chunks (``size`` bytes, ``count`` events in all) as one unit;
        False if closed or dropped by policy."""
        if self._closing:
            return False
        if self._pending + size > self.max_pending_bytes and self._pending:
            if not self._overflow(size, count):
                return False
        self._pending += size
        self._wbuf.extend(frames)
        self._wbytes += size
        if self._wbytes >= FLUSH_AT and self._writer is None:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.run_callback(self._scheduled_flush)
        return True

    def _overflow(self, size: int, count: int = 1) -> bool:
        """The queue is full: apply the policy. True means go on and queue."""
        policy = self.overflow_policy
        if policy == "drop":
            self.dropped += count
            return False
        if policy == "wait" and gevent.getcurrent() is not get_hub():
            while self._pending and self._pending + size > self.max_pending_bytes:
                if self._closing:
                    raise NotConnectedError(f"connection to {self.address!r} closed while "
                                            f"waiting to write")
                if self._drained is None:
                    self._drained = Event()
                self._drained.clear()
                self._flush()
                self._drained.wait()
            if self._closing:
                raise NotConnectedError(f"connection to {self.address!r} is closed")
            return True
        # disconnect: the caller (often a broadcast loop) goes on; the close reports why
        # a Unix peer has no address of its own: name the socket it came in on
        who = f"peer {self.id!r}" if self.id is not None else \
            f"an unnamed peer on {self.address!r}"
        self.abort(SlowConsumerError(
            f"{who} has over max_pending_bytes={self.max_pending_bytes} unread; "
            f"disconnected"))
        return False

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self._flush()

    def _flush(self) -> None:
        """Hand the queue to the kernel in one call; leave the rest to a writer greenlet."""
        if self._writer is not None or not self._wbuf or self._closed:
            return
        if self._raw_send is None:
            # TLS: only a greenlet may write; it takes the frames from the queue itself,
            # so a send that fails at once leaves them there for take_unsent
            self._writer = gevent.spawn(self._drain)
            return
        buf = self._wbuf
        data = buf[0] if len(buf) == 1 else b"".join(buf)
        self._wbuf = []
        self._wbytes = 0
        try:
            sent = self._raw_send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            # the kernel took none of it (EPIPE: the peer is gone): keep the frames
            # for take_unsent, so a client resends them after reconnecting (the
            # frame objects themselves: the client tells its requests by identity)
            self._wbuf[:0] = buf
            self._wbytes += len(data)
            self.abort(exc)
            return
        self._pending -= sent
        if sent < len(data):
            self._partial = memoryview(data)[sent:]
            self._writer = gevent.spawn(self._drain)
        elif self._drained is not None:
            self._drained.set()

    def _drain(self) -> None:
        """Writer greenlet: send everything queued, cooperatively, then exit."""
        sock = self.sock
        try:
            while not self._closed:
                data: Any = self._partial
                # the whole frames ``data`` is made of; None for the tail of a partly sent one
                frames: list[bytes] | None = None
                if data is not None:
                    self._partial = None
                elif self._wbuf:
                    frames = self._wbuf
                    if len(frames[0]) >= FLUSH_AT:
                        # a large frame goes as it is: joining would copy it once more
                        data = frames.pop(0)
                        frames = [data]
                        self._wbytes -= len(data)
                    else:
                        data = b"".join(frames)
                        self._wbuf = []
                        self._wbytes = 0
                else:
                    break
                view = memoryview(data)
                while view:
                    try:
                        sent = sock.send(view)
                    except (OSError, ValueError):
                        if frames is not None and len(view) == len(data):
                            # untouched: resendable, as the frame objects themselves
                            # (the client tells its hello and requests by identity)
                            self._wbuf[:0] = frames
                            self._wbytes += len(data)
                        raise
                    view = view[sent:]
                    self._pending -= sent
                if self._drained is not None and self._pending <= self.max_pending_bytes // 2:
                    self._drained.set()
        except (OSError, ValueError) as exc:
            self.abort(exc)
        finally:
            self._writer = None
            if self._drained is not None:
                self._drained.set()
        if self._closing and not self._closed:
            self._close_gracefully()

    def take_unsent(self) -> list[bytes]:
        """Whole frames never handed to the kernel (for a client to resend after
        reconnecting); the connection forgets them."""
        frames, self._wbuf, self._wbytes = self._wbuf, [], 0
        return frames

    # --- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Close after sending what is queued (bounded by the writer's own progress)."""
        if self._closing:
            return
        self._closing = True
        if self._pending:
            # _flush leaves nothing queued without a writer to send it, unless it failed
            # and aborted: either way no writer of our own is needed here
            self._flush()
        if self._writer is None:
            self._close_gracefully()

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
        self._closing = True
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
        if self._drained is not None:
            self._drained.set()

    def _finish(self, reason: BaseException | None) -> None:
        if self._finished:
            return
        self._finished = True
        self._closing = True
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


def dial_tcp(host: str, port: int, timeout: float) -> gsocket.socket:
    """Connect over TCP with Nagle off (IPC wants latency, and we batch writes ourselves)."""
    sock = gsocket.create_connection((host, port), timeout=timeout)
    sock.settimeout(None)
    tune_tcp(sock)
    return sock


def tune_tcp(sock: Any) -> None:
    """Turn Nagle's algorithm off on a TCP socket (no-op for other families)."""
    if sock.family in (gsocket.AF_INET, gsocket.AF_INET6):
        try:
            sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
        except OSError:
            pass


__all__ = [
    "FLUSH_AT", "StreamConnection", "refuse_with", "listen_unix", "listen_tcp", "dial_unix", "dial_tcp",
    "tune_tcp",
]
