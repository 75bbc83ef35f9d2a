"""``ipc.of[id]``: a client connection that reconnects, queues while away, and requests.

The connection lives in one greenlet: dial, announce our id (``$ipc.hello``), wait for the
server's ``$ipc.welcome`` (msgpack wire: the server has really taken the connection), send
what was queued, fire ``connect``, read until the connection ends, fire ``disconnect``,
wait ``retry`` ms, dial again; after ``max_retries`` failed dials in a row (or
``stop_retrying``, or ``disconnect()``) it fires ``destroy`` and ends. A server that is full
answers ``$ipc.refused`` instead: ``ServerFullError``, the queue kept, a growing delay.

Delivery: events emitted while not connected (or while reconnecting) are queued
(``max_queued_events``, ``max_queued_bytes``) and sent, in order, once connected. Every
frame on a connection that drops that the kernel had not taken whole is queued again, ahead
of the rest; only bytes the kernel had accepted (its socket buffers) can be lost when the
connection dropped before the server read them (at-most-once).
"""
from __future__ import annotations

import itertools
import socket as _stdsocket
import time
from collections import deque
from typing import Any, Callable, Iterable, Iterator

import gevent
from gevent.event import AsyncResult, Event
from gevent.hub import get_hub

from .config import Config
from .counters import ClientCounts
from .dispatch import WILDCARD, Dispatcher
from .errors import (
    ConnectError, ConnectionLostError, DeadlockError, IPCError, NotConnectedError,
    ProtocolError, QueueFullError, ServerFullError, Timeout, UnsupportedError,
    WireMismatchError,
)
from .server import DESCRIBE, HELLO, STATS
from .transports.liveness import PING, PONG, REFUSED, WELCOME, Heartbeat, capabilities
from .transports.stream import FLUSH_AT, StreamConnection, dial_tcp, dial_unix
from .transports.tls import connect_tls, server_hostname
from .reply import settle
from .threads import call_in_owner, get_ident, owner, request_in_owner
from .wire import REPLY_OK, check_frame, make_codec, names_for
from .wire.mismatch import WIRE_NOTICE, describe
from .wire.msgpack_codec import BIG_BIN, TUPLE_SEEN


class _Pending:
    """A request waiting for its reply: the caller's result, the frame (to tell whether
    it ever left this process) and the timeout timer."""

    __slots__ = ("result", "frame", "timer", "started")

    def __init__(self, result: AsyncResult, frame: bytes) -> None:
        self.result = result
        self.frame = frame
        self.timer: Any = None
        self.started = time.monotonic()

    def fail(self, exc: BaseException) -> None:
        """Stop the timeout and give the caller ``exc``."""
        if self.timer is not None:
            self.timer.stop()
        self.result.set_exception(exc)


#: the arguments client handlers get, by event (any other event: ``(data)``)
CLIENT_ARGS: dict[str, tuple[str, ...]] = {
    "connect": (), "disconnect": (), "destroy": (), "error": ("error",), "data": ("data",),
    WILDCARD: ("type", "data"),
}


class Client(Dispatcher):
    """A connection to one server, by Unix ``path`` or TCP ``host``/``port``.

    Events: ``connect``, ``disconnect``, ``destroy`` (no more retries), ``error``
    (exception), ``data`` (raw mode: bytes), ``*`` (type, data), and every event type the
    server sends, as ``handler(data)``.
    """

    EVENT_ARGS = CLIENT_ARGS
    DEFAULT_ARGS = ("data",)

    def __init__(self, server_id: str, config: Config, log: Callable[..., None], *,
                 path: str | None = None, host: str | None = None, port: int | None = None,
                 ssl_context: Any = None, live_config: Config | None = None) -> None:
        super().__init__(log)
        self._tid = owner()  # the OS thread whose hub runs this client (threads.py)
        self.id = server_id
        self.config = config
        # the IPC's own config, read for stop_retrying: node-ipc users set
        # ipc.config.stopRetrying at run time to stop every client's reconnecting. Only a
        # change after this client was made counts, so a per-call stop_retrying=False
        # (connect_to(..., stop_retrying=False)) is not overridden by the IPC's True.
        self._live_config = live_config
        self._live_stop_at_start = bool(live_config is not None and live_config.stop_retrying)
        self.path = path
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.names = names_for(config)
        self.conn: StreamConnection | None = None
        #: replies that arrived after their request had timed out, discarded
        self.late_replies = 0
        self._encoder = make_codec(config, self.names)
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0   # bytes in _queue (max_queued_bytes)
        # the inlined emit (see emit): names known good on the msgpack wire, else none
        self._fast_names: Any = (self.names.good if self._encoder.name == "msgpack"
                                 and not config.sync else frozenset())
        self._fast_pack = getattr(self._encoder, "_pack", None)
        self._fast_max = getattr(self._encoder, "fast_limit", config.max_message_size)
        # ... and on node-ipc's JSON wire, where the codec's encode_event does every check
        self._json_names: Any = (self.names.good if self._encoder.name == "node-ipc"
                                 and not config.sync else frozenset())
        self._connected = Event()
        self._ended = Event()
        self._greenlet: gevent.Greenlet | None = None
        self._stopping = False
        self._request_ids = itertools.count(1)
        self._waiting: dict[int, _Pending] = {}
        self._hello: bytes | None = None   # the hello frame of the current connection
        # sync mode (node-ipc's config.sync): one event in flight until the server answers
        self._awaiting = False
        #: what :meth:`stats` reports beyond the connection's own counters
        self.counts = ClientCounts()
        if config.sync:
            self._send = self._send_sync  # type: ignore[method-assign]
        # the msgpack wire's handshake and heartbeat (handled here, never by user handlers)
        self._dialing: StreamConnection | None = None   # dialled, not yet welcomed
        self._welcome_timer: Any = None
        self._refused = False      # the server answered $ipc.refused on this dial
        self._refusals = 0         # ... on this many dials in a row
        self._reported = False     # this dial's failure was already reported
        self._up = False           # this dial was welcomed and got connected
        self._pong = b""
        self._heartbeat: Heartbeat | None = None
        if self._encoder.supports_requests:
            self.handlers[WELCOME] = (self._on_welcome,)
            self.handlers[REFUSED] = (self._on_refused,)
            self.handlers[PING] = (self._on_ping,)
            self._pong = self._encoder.encode_event(PONG, None)
            if config.heartbeat_interval:
                self._heartbeat = Heartbeat(config.heartbeat_interval,
                                            config.heartbeat_timeout,
                                            self._encoder.encode_event(PING, None))
        self.handlers[WIRE_NOTICE] = (self._on_wire_notice,)

    def __repr__(self) -> str:
        where = self.path or f"{self.host}:{self.port}"
        state = "connected" if self.connected else "not connected"
        return f"<Client {self.id!r} {where} {state}>"

    # --- state ---------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """This client's counters as a plain dict (fields: docs/operations.md)."""
        from .stats import client_stats  # noqa: PLC0415 - stats sits above the client
        return client_stats(self)

    @property
    def connected(self) -> bool:
        """True while a connection to the server is up."""
        return self._connected.is_set()

    @property
    def destroyed(self) -> bool:
        """True once the client gave up (``destroy`` fired) or was disconnected."""
        return self._ended.is_set()

    @property
    def queued(self) -> int:
        """Events waiting for a connection."""
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """Bytes of the events waiting for a connection (``max_queued_bytes``)."""
        return self._queued_bytes

    def wait_connected(self, timeout: float | None = None) -> None:
        """Block this greenlet until connected. Raises Timeout, or NotConnectedError if the
        client has given up."""
        if self._connected.is_set():
            return
        if self._ended.is_set():
            raise NotConnectedError(f"client of {self.id!r} has stopped")
        if gevent.getcurrent() is self._greenlet:
            raise DeadlockError(
                f"wait_connected() from a handler of client {self.id!r} would wait for a "
                f"connection that only this greenlet can make; use the 'connect' event")
        gevent.wait([self._connected, self._ended], timeout=timeout, count=1)
        if self._connected.is_set():
            return
        if self._ended.is_set():
            raise NotConnectedError(f"client of {self.id!r} stopped before connecting")
        raise Timeout(f"not connected to {self.id!r} within {timeout} s")

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> "Client":
        """Start connecting in a greenlet; returns at once."""
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)
        return self

    def disconnect(self) -> None:
        """Stop for good: close the connection (after sending what is queued on it) and
        stop retrying; ``disconnect`` and ``destroy`` fire. From here on nothing more is
        dispatched and ``connected`` is False."""
        if get_ident() != self._tid:  # another OS thread: hand over (threads.py)
            return call_in_owner(self._tid, Client.disconnect, self)
        self._stopping = True
        self._connected.clear()
        conn = self.conn or self._dialing
        if conn is not None:
            conn.close()
        elif self._greenlet is not None and not self._ended.is_set():
            self._greenlet.kill(block=False)
            gevent.spawn(self._end)

    def drain(self, timeout: float | None = None) -> bool:
        """Block this greenlet until every event emitted so far is with the kernel: the
        offline queue sent and the connection's write queue empty.

        Returns True once drained; False if ``timeout`` (seconds) passed first or the
        client stopped. While the client is reconnecting it waits for the next
        connection. Raises DeadlockError from this client's own handlers while not
        connected (only that greenlet can connect).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0 or self._ended.is_set():
                return False
            conn = self.conn
            if conn is not None and not conn._closing and not self._queue:
                if conn.drain(left):
                    if self.conn is conn and not self._queue:
                        return True
                continue
            if conn is None and gevent.getcurrent() is self._greenlet:
                raise DeadlockError(
                    f"drain() from a handler of client {self.id!r} would wait for a "
                    f"connection that only this greenlet can make")
            step = 0.01 if left is None else min(left, 0.01)
            if conn is None:   # reconnecting: wait for the next connection
                gevent.wait([self._connected, self._ended], count=1, timeout=step)
            else:   # closing, or (sync mode) events waiting for answers: look again soon
                gevent.sleep(min(step, 0.005))

    def _where(self) -> str:
        return self.path if self.path is not None else f"{self.host}:{self.port}"

    def _dial(self) -> Any:
        timeout = self.config.connect_timeout / 1000.0
        where = self._where()
        try:
            if self.path is not None:
                return dial_unix(self.path, timeout)
            host = self.host or self.config.network_host
            sock = dial_tcp(host, self.port or self.config.network_port, timeout,
                            self.config.keepalive)
            if self.ssl_context is None:
                return sock
        except FileNotFoundError:
            raise ConnectError(f"no server at {where}: the socket file does not exist") \
                from None
        except ConnectionRefusedError:
            raise ConnectError(f"connection to {where} refused (no server listening)") \
                from None
        except PermissionError:
            raise ConnectError(f"permission denied connecting to {where}") from None
        except _stdsocket.gaierror as exc:
            raise ConnectError(f"cannot resolve host of {where}: {exc.strerror}") from None
        except (_stdsocket.timeout, TimeoutError):
            raise ConnectError(f"connecting to {where} timed out") from None
        except OSError as exc:
            raise ConnectError(f"cannot connect to {where}: {exc.strerror or exc}") from None
        # TLSError (a ConnectError) on failure, so the retry policy applies as to any dial
        return connect_tls(sock, self.ssl_context, server_hostname(self.config.tls, host),
                           self.config.handshake_timeout / 1000.0, where)

    def _run(self) -> None:
        failures = 0
        try:
            while not self._stopping:
                try:
                    sock = self._dial()
                except ConnectError as exc:
                    failures += 1
                    self.report(exc)
                    if self._give_up(failures):
                        break
                    gevent.sleep(self.config.retry / 1000.0)
                    continue
                if self._session(sock):
                    failures = self._refusals = 0
                    if self._give_up(0):
                        break
                    gevent.sleep(self.config.retry / 1000.0)
                    continue
                # no welcome: refused, closed or timed out before the server took us
                failures += 1
                self._refusals = self._refusals + 1 if self._refused else 0
                if self._give_up(failures):
                    break
                gevent.sleep(self._retry_delay(self._refusals))
        finally:
            self._end()

    def _retry_delay(self, refusals: int) -> float:
        """Seconds to wait before dialling again after ``refusals`` refusals by a full
        server in a row: ``retry``, doubled at each refusal, at most 32 x ``retry`` and
        10 s (never less than retry)."""
        retry = self.config.retry / 1000.0
        if not refusals:
            return retry
        cap = max(retry, min(32 * retry, 10.0))
        return min(retry * 2 ** (refusals - 1), cap)

    def _give_up(self, failures: int) -> bool:
        config = self.config
        live = self._live_config
        live_stop = live is not None and live.stop_retrying and not self._live_stop_at_start
        if self._stopping or config.stop_retrying or live_stop:
            return True
        return config.max_retries is not None and failures > config.max_retries

    def _session(self, sock: Any) -> bool:
        """One connection, from dial to close; False if it never got connected (no
        welcome), which counts as a failed dial."""
        config = self.config
        conn = StreamConnection(
            sock, make_codec(config, self.names), self.names, address=self._where(),
            max_pending_bytes=config.max_pending_bytes, overflow_policy="wait",
            drain_timeout=config.drain_timeout / 1000.0,
            message_timeout=config.message_timeout / 1000.0,
            on_frames=self._on_frames_sync if config.sync
            else self._on_frames if self._encoder.framed else self._on_raw,
            on_close=self._on_close,
        )
        if self.ssl_context is not None:  # the server's certificate, verified
            conn.peer_certificate = sock.getpeercert() or None
        hello = None
        if self._encoder.supports_requests:
            hello = self._encoder.encode_event(HELLO, dict(
                capabilities(config.heartbeat_interval, config.heartbeat_timeout),
                id=config.id))
            conn.write(hello)
        self._hello = hello
        if hello is None:
            # node-ipc wire and raw mode: no handshake, connected once dialled; the dial
            # worked either way (a queue lost while sent: retry as after any lost connection)
            if self._open(conn):
                conn.run()
            return True
        # msgpack: connected only once the server's welcome comes (_on_welcome); until
        # then nothing queued is sent, so a full server or one that never takes us (full
        # backlog, no file descriptors) costs no event
        self._dialing, self._refused, self._reported, self._up = conn, False, False, False
        self._welcome_timer = timer = get_hub().loop.timer(config.connect_timeout / 1000.0)
        timer.start(self._no_welcome, conn)
        try:
            conn.run()
        finally:
            timer.stop()
            self._welcome_timer = None
            self._dialing = None
        return self._up

    def _no_welcome(self, conn: StreamConnection) -> None:
        if self._dialing is conn and not conn._closing:
            conn.abort(ConnectError(
                f"no welcome from the server at {self._where()} within "
                f"{self.config.connect_timeout:g} ms (connect_timeout): it has not taken the "
                f"connection (listen backlog full, out of file descriptors) or does not "
                f"speak this geventipc version"))

    def _on_welcome(self, data: Any) -> None:
        conn = self._dialing
        if conn is None or self.conn is not None or conn._closing:
            return  # a second welcome, or one after a timeout: ignored
        if self._welcome_timer is not None:
            self._welcome_timer.stop()
        # only a server that answers pings is ever timed out by our heartbeat
        if self._heartbeat is not None and isinstance(data, dict) and data.get("ping") is True:
            self._heartbeat.watch(conn)
        self._open(conn)

    def _on_refused(self, data: Any) -> None:
        if self._dialing is None or self.conn is not None:
            return
        self._refused = self._reported = True
        info = data if isinstance(data, dict) else {}
        # this refusal counts in _refusals once the connection has closed (_run)
        delay = self._retry_delay(self._refusals + 1)
        self.report(ServerFullError(
            f"the server at {self._where()} refused the connection: "
            f"{info.get('reason', 'server full')} (max_connections="
            f"{info.get('max_connections', '?')}); {len(self._queue)} queued events kept, "
            f"dialing again in {delay:g} s"))

    def _on_ping(self, data: Any) -> None:
        conn = self.conn or self._dialing
        if conn is not None and not conn._closing and \
                conn._pending + len(self._pong) <= conn.max_pending_bytes:
            conn.write(self._pong)

    def _open(self, conn: StreamConnection) -> bool:
        """Send the queue, then the connection is up: ``connect`` fires. False if the
        connection was lost while sending the queue (what it had not taken is queued
        again)."""
        config = self.config
        queue = self._queue
        if config.sync:
            # what was in flight on the last connection is not waited for again
            self._awaiting = False
        else:
            try:
                while queue:
                    frame = queue.popleft()
                    self._queued_bytes -= len(frame)
                    try:
                        conn.write(frame)  # may wait: overflow policy "wait"
                    except NotConnectedError:
                        queue.appendleft(frame)
                        self._queued_bytes += len(frame)
                        raise
            except NotConnectedError:
                # the server went away while a long queue was being sent: keep what the
                # kernel never took, in order, and dial again as after any lost connection
                conn.abort()
                self._requeue_unsent(conn)
                self._reported = True
                self.report(ConnectionLostError(
                    f"connection to {self.id!r} lost while sending queued events; "
                    f"{len(queue)} are still queued"))
                return False
        self.conn = conn
        self._up = True
        self.counts.connects += 1
        self._connected.set()
        if config.sync:
            self._pump()
        self.fire("connect")
        return True

    def _on_close(self, conn: StreamConnection, reason: BaseException | None) -> None:
        if self._heartbeat is not None:
            self._heartbeat.unwatch(conn)
        if conn is not self.conn:
            # closed before the server welcomed it: a failed dial, not a disconnect
            self._requeue_unsent(conn)
            if self._stopping or self._reported:
                return
            if isinstance(reason, IPCError):
                self.report(reason)
            else:
                self.report(ConnectError(
                    f"the server at {self._where()} closed the connection before taking "
                    f"it (no welcome){f': {reason}' if reason else ''}"))
            return
        self.conn = None
        self.counts.closed(conn, reason, ProtocolError)
        self._connected.clear()
        self._requeue_unsent(conn)
        if isinstance(reason, IPCError):
            self.report(reason)
        if self._waiting:
            self._fail_sent_requests()
        self.fire("disconnect")

    def _requeue_unsent(self, conn: StreamConnection) -> None:
        """Put back, in order and ahead of what is queued, the frames ``conn`` never
        handed to the kernel; its hello stays behind (the next connection sends its own)."""
        hello, pong = self._hello, self._pong
        ping = self._heartbeat.ping if self._heartbeat is not None else None
        frames = [f for f in conn.take_unsent()
                  if f is not hello and f is not ping and f is not pong]
        if frames:
            # past max_queued_bytes if need be: these were accepted already, never dropped
            self._queued_bytes += sum(map(len, frames))
            self._queue.extendleft(reversed(frames))

    def _fail_sent_requests(self) -> None:
        """Fail the requests that reached the lost connection; keep those still queued
        here (never sent, or never taken by the kernel): they go out on reconnect."""
        queued = {id(frame) for frame in self._queue}
        for request_id, pending in list(self._waiting.items()):
            if id(pending.frame) in queued:
                continue
            del self._waiting[request_id]
            self.counts.requests.failed += 1
            pending.fail(ConnectionLostError(
                f"connection to {self.id!r} closed before the reply came"))

    def _end(self) -> None:
        if self._ended.is_set():
            return
        self._ended.set()
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self._queue:  # never silently: say what was not sent
            count = len(self._queue)
            self._queue.clear()
            self._queued_bytes = 0
            self.report(NotConnectedError(
                f"{count} queued events were never sent: the client of {self.id!r} stopped"))
        waiting, self._waiting = self._waiting, {}
        self.counts.requests.failed += len(waiting)
        for pending in waiting.values():
            pending.fail(NotConnectedError(
                f"client of {self.id!r} stopped before the request was answered"))
        self.fire("destroy")

    # --- receiving -----------------------------------------------------------------------

    def _on_frames(self, conn: StreamConnection, frames: Iterable[Any]) -> int:
        if self._stopping:
            return 0  # disconnect(): nothing more is dispatched, even while the close lingers
        # Dispatcher.dispatch_to's loop, kept as a copy on purpose: client handlers take
        # (data), server handlers (data, socket), and either way of sharing one loop
        # (handler(data, *extra), or wrapping each handler) costs a slower call per
        # handler per event (measured: ~3x and ~1.7x the direct call).
        table = self.table
        count = 0
        frame = None
        try:
            for count, frame in enumerate(frames, 1):
                if frame.__class__ is list:
                    try:
                        event, data = frame
                    except ValueError:
                        pass   # a reply, or not a frame at all: below
                    else:
                        try:
                            handler = table[event]
                        except KeyError:
                            handler = None   # (entry raises outside the except: no chaining)
                        if handler is None:
                            handler = self.entry(event)
                        try:
                            handler(data)
                        except Exception as exc:
                            self._failed(event, handler, exc)
                        continue
                check_frame(frame, self.names)
                if type(frame[0]) is int:
                    self._on_reply(*frame)
        except TypeError:
            check_frame(frame, self.names)   # an unhashable event name: say so
            raise
        return count

    def _on_wire_notice(self, data: Any) -> None:
        """The server found this client on another wire or without TLS (it closes next):
        say what to set here, as an ``error`` event."""
        if not isinstance(data, dict):
            return
        ours = self._encoder.name
        if data.get("tls") and self.ssl_context is None:
            message = describe("tls", ours)
        elif data.get("wire") in ("msgpack", "node-ipc") and data["wire"] != ours:
            message = describe(data["wire"], ours)
        else:
            return
        self.report(WireMismatchError(f"server at {self._where()}: {message}"))

    def _on_raw(self, conn: StreamConnection, frames: Iterable[Any]) -> int:
        """Raw mode: ``data`` handlers get the bytes, the wildcard ``("data", bytes)``."""
        if self._stopping:
            return 0
        count = 0
        for _event, data in frames:
            count += 1
            self.fire("data", data)
            self.fire(WILDCARD, "data", data)
        return count

    def _on_frames_sync(self, conn: StreamConnection, frames: Iterable[Any]) -> int:
        """Sync mode: dispatch, then the server has answered: send the next queued event
        (node-ipc does this once per batch of events received)."""
        answered = [not self._encoder.framed]

        def watch(frames: Iterable[Any]) -> Iterator[Any]:
            for frame in frames:
                if not (type(frame) is list and frame and type(frame[0]) is str
                        and frame[0].startswith("$ipc.")):
                    answered[0] = True
                yield frame

        count = self._on_frames(conn, watch(frames)) if self._encoder.framed \
            else self._on_raw(conn, frames)
        if not answered[0]:
            return count  # the library's own frames (welcome, ping) are no answer
        self._awaiting = False
        self._pump()
        return count

    def _on_reply(self, request_id: int, status: int, data: Any) -> None:
        pending = self._waiting.pop(request_id, None)
        if pending is None:
            self.late_replies += 1
            self.log("<notice>geventipc: discarded a late reply to request</notice>",
                     request_id)
            return
        if pending.timer is not None:
            pending.timer.stop()
        requests = self.counts.requests
        requests.latency.since(pending.started)
        if status == REPLY_OK:
            requests.answered += 1
        else:
            requests.failed += 1
        settle(pending.result, status, data)

    # --- sending -------------------------------------------------------------------------

    def emit(self, type: str, data: Any = None) -> None:
        """Send one event; queued (in order) while not connected or reconnecting.

        Waits (cooperatively) while the server is behind: past the pacing mark while the
        kernel is full (at most ``drain_timeout``), and past ``max_pending_bytes``; never
        in this client's own handlers' greenlet for pacing.
        Raises EventNameError, EncodeError (nothing sent), QueueFullError
        (``max_queued_events`` / ``max_queued_bytes``), and NotConnectedError only after
        ``disconnect()`` or ``destroy``. In raw mode
        (``config.raw_buffer``) it is ``emit(data)``: bytes, or str in ``config.encoding``.
        """
        if get_ident() != self._tid:  # another OS thread: hand over (threads.py)
            return call_in_owner(self._tid, Client.emit, self, type, data)
        conn = self.conn
        if conn is not None:
            # The common case inlined: a known-good name, connected, and the queue short
            # (below pacing). Same checks, same order as the general path below (name,
            # encode, size, then the connection's write); anything else (an error to
            # raise, a peer behind) goes the general way.
            frame = None
            # msgpack: the packer, called directly; a big bytes payload goes the general
            # way, where encode_event copies it once instead of twice (W4: 1 MiB blobs)
            if type in self._fast_names and (data.__class__ is not bytes
                                             or len(data) < BIG_BIN):
                try:
                    frame = self._fast_pack([type, data])  # type: ignore[misc]
                except Exception:
                    frame = None   # the general path raises the codec's EncodeError
                if TUPLE_SEEN[0]:
                    frame = None   # maybe a tuple as a dict key: the general path checks
            elif type in self._json_names:
                # node-ipc's wire: its encode_event checks everything (and raises); the
                # _send/write calls skipped here were ~40% of a node-ipc emit (measured)
                frame = self._encoder.encode_event(type, data)
            if frame is not None:
                pending = conn._pending + len(frame)
                # one mark for three checks: below pacing, within the size the inlined
                # path may send unchecked, and the connection open (see ``_room``)
                if pending < conn._room:
                    # StreamConnection.write's queueing, inlined (a call per emit costs
                    # ~500 instructions, callgrind); Server._fast_emit has the same
                    # lines: keep the three in step
                    conn._pending = pending
                    conn._wbuf.append(frame)
                    if conn._writer is None:
                        if pending >= FLUSH_AT:
                            conn._flush()
                        elif not conn._flush_scheduled:
                            conn._flush_scheduled = True
                            conn._loop.run_callback(conn._flush)
                    return
                if len(frame) <= self._fast_max:
                    self._send(frame)
                    return
        encoder = self._encoder
        # a name already found good is one set lookup, without a call
        if encoder.framed and type not in self.names.good:
            self.names.check_outgoing(type)
        self._send(encoder.encode_event(type, data))

    def _send(self, frame: bytes) -> None:
        conn = self.conn
        if conn is not None and not conn._closing:   # ``closed``, without a property call
            try:
                conn.write(frame)
                return
            except NotConnectedError:
                # closed while this write waited (overflow policy "wait"): the client is
                # reconnecting, so the frame waits for the next connection like any other
                pass
        if self._ended.is_set() or self._stopping:
            raise NotConnectedError(f"client of {self.id!r} has stopped")
        self._check_room(frame, "")
        self._queue.append(frame)
        self._queued_bytes += len(frame)

    def _check_room(self, frame: bytes, why: str) -> None:
        """Raise QueueFullError unless ``frame`` fits in the offline queue."""
        queue = self._queue
        config = self.config
        if len(queue) >= config.max_queued_events:
            raise QueueFullError(f"{len(queue)} events already queued for {self.id!r} "
                                 f"(max_queued_events{why})")
        if queue and self._queued_bytes + len(frame) > config.max_queued_bytes:
            raise QueueFullError(f"{self._queued_bytes} bytes already queued for {self.id!r}; "
                                 f"{len(frame)} more would pass max_queued_bytes="
                                 f"{config.max_queued_bytes}{why}")

    def _send_sync(self, frame: bytes) -> None:
        """Sync mode's ``_send``: everything waits in the queue; one frame is sent at a
        time, the next only once the server has sent something back."""
        if self._ended.is_set() or self._stopping:
            raise NotConnectedError(f"client of {self.id!r} has stopped")
        conn = self.conn
        if not self._awaiting and not self._queue and conn is not None and not conn.closed:
            self._awaiting = True
            conn.write(frame)
            return
        self._check_room(frame, "; sync mode waits for answers")
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        self._pump()

    def _pump(self) -> None:
        conn = self.conn
        if self._awaiting or conn is None or conn.closed or not self._queue:
            return
        self._awaiting = True
        frame = self._queue.popleft()
        self._queued_bytes -= len(frame)
        conn.write(frame)

    @property
    def in_flight(self) -> int:
        """Requests sent (or queued) and not yet answered, failed or timed out."""
        return len(self._waiting)

    def request_async(self, type: str, data: Any = None,
                      timeout: float | None = None) -> AsyncResult:
        """Send a request; the returned gevent ``AsyncResult`` gets the reply data, or
        the error (``RemoteError``, ``NoHandlerError``, ``Timeout``,
        ``ConnectionLostError``, ``NotConnectedError``). Never blocks for the reply (it
        waits only as ``emit`` does while the server is behind): start many, then
        ``gevent.wait`` or ``.get()`` them.

        Made while not connected, the request is queued like an event and sent on
        connect; ``timeout`` (seconds) counts from now. A reply that comes after the
        timeout is discarded and counted in ``late_replies``.
        Raises UnsupportedError on a wire without request/reply (node-ipc JSON, raw).
        From another OS thread it returns a ``geventipc.threads.ThreadResult`` instead,
        which that thread can wait on (docs/api.md, Threads).
        """
        if get_ident() != self._tid:  # another OS thread: hand over (threads.py)
            return request_in_owner(self._tid, Client.request_async, self, type, data, timeout)  # type: ignore[return-value]  # noqa: E501
        encoder = self._encoder
        if not encoder.supports_requests:
            raise UnsupportedError(f"request/reply needs the msgpack wire; this client uses "
                                   f"{encoder.name!r}, which has no reply frames")
        if type != DESCRIBE and type != STATS:
            self.names.check_outgoing(type)
        request_id = next(self._request_ids)
        frame = encoder.encode_request(type, data, request_id)
        pending = _Pending(AsyncResult(), frame)
        # registered before sending: a send that waits (overflow policy) yields, and the
        # reply may be read meanwhile
        self._waiting[request_id] = pending
        try:
            self._send(frame)
        except BaseException:
            self._waiting.pop(request_id, None)
            raise
        if timeout is not None and request_id in self._waiting:
            pending.timer = timer = get_hub().loop.timer(max(timeout, 0.0))
            timer.start(self._expire, request_id, type, timeout)
        return pending.result

    def _expire(self, request_id: int, type: str, timeout: float) -> None:
        pending = self._waiting.pop(request_id, None)
        if pending is None:
            return
        if self._queue:
            # still held here (offline, or behind sync mode): never send it now; request
            # frames are unique (the id), so equality finds this one
            try:
                self._queue.remove(pending.frame)
                self._queued_bytes -= len(pending.frame)
            except ValueError:
                pass
        self.counts.requests.timed_out += 1
        pending.result.set_exception(Timeout(f"no reply to {type!r} within {timeout} s"))

    def request(self, type: str, data: Any = None, timeout: float | None = 10.0) -> Any:
        """Send a request and block this greenlet until the reply; returns its data.

        Raises ``geventipc.errors.Timeout`` (a ``TimeoutError``; not gevent's), RemoteError
        (the handler raised; ``remote_type``/``remote_message``), NoHandlerError,
        ConnectionLostError, NotConnectedError, UnsupportedError, and DeadlockError
        when called from this client's own event handlers (use ``request_async`` there).
        """
        if get_ident() != self._tid:  # another OS thread: hand over (threads.py)
            return request_in_owner(self._tid, Client.request_async, self, type, data, timeout).get()  # noqa: E501
        if gevent.getcurrent() is self._greenlet:
            raise DeadlockError(
                f"request({type!r}) from a handler of client {self.id!r} would wait for a "
                f"reply that only this greenlet can read; use request_async() or "
                f"gevent.spawn(client.request, ...)")
        return self.request_async(type, data, timeout).get()

    def describe(self, timeout: float | None = 10.0) -> dict[str, dict[str, Any]]:
        """The server's ``define`` tables: ``{"listen": {...}, "broadcast": {...}}``."""
        return self.request(DESCRIBE, None, timeout)

    def remote_stats(self, timeout: float | None = 10.0) -> dict[str, Any]:
        """The server's ``stats()``, if its owner turned stats requests on
        (``config.stats_requests``; else NoHandlerError)."""
        return self.request(STATS, None, timeout)
