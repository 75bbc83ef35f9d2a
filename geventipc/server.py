"""``ipc.server``: accepts clients, dispatches their events, emits and broadcasts.

An ``Acceptor`` (a gevent ``StreamServer``) accepts; each client gets a greenlet that
reads, decodes and dispatches its frames in order (see
:mod:`geventipc.transports.stream`). ``broadcast`` encodes once and queues the same bytes
for every client; consecutive broadcasts are joined into one chunk per client before they
are queued, and any direct write to one client first commits the broadcasts before it, so
per-client order always holds.
"""
from __future__ import annotations

import os
import socket as _stdsocket
import time
from typing import Any, Callable

import gevent
from gevent.event import Event
from gevent.hub import get_hub
from gevent.pool import Pool

from . import lifecycle
from .transports.acceptor import Acceptor, Throttle
from .transports.liveness import PING, PONG, REFUSED, WELCOME, Heartbeat, capabilities

from .config import Config, check_socket_dir
from .counters import ServerCounts
from .dispatch import Dispatcher
from .emitter import WILDCARD, _Once
from .errors import (
    AcceptError, ConfigError, IPCError, NotConnectedError, NotReadyError, ProtocolError,
    ServerFullError, SlowConsumerError, UnsupportedError, WireMismatchError,
)
from .reply import (
    DEFAULT_POOL_SIZE, LATER, FairPool, PooledHandler, error_detail, outcome, resolve_pool,
    spawn_in,
)
from .transports.stream import FLUSH_AT, StreamConnection, listen_tcp, listen_unix, tune_tcp
from .threads import call_in_owner, get_ident, owner
from .transports.tls import TLSError, accept_tls
from .wire.mismatch import WIRE_NOTICE, describe
from .wire.msgpack_codec import BIG_BIN, TUPLE_SEEN
from .wire import LIFECYCLE_EVENTS, REPLY_ERROR, REPLY_NO_HANDLER, REPLY_OK, make_codec, names_for

HELLO = "$ipc.hello"
DESCRIBE = "$ipc.describe"
#: a client asks for ``server.stats()``; answered only with ``config.stats_requests``
STATS = "$ipc.stats"
STATS_OFF = "stats requests are off on this server (its owner sets config.stats_requests)"


#: makes a server whose ``config.cluster`` is set a node of that cluster (it joins when it
#: starts): :func:`geventipc.cluster.attach`, which that package installs here when it is
#: imported (with :func:`install_cluster_join`). Setting ``config.cluster`` imports it (the
#: URL is checked there), so the hook is in place whenever a config has a cluster; this
#: module never imports the cluster, which sits above it.
_cluster_join: Callable[["Server"], Any] | None = None


def install_cluster_join(join: Callable[["Server"], Any]) -> None:
    """Make ``join(server)`` the call that joins every :class:`Server` made with
    ``config.cluster`` set to its cluster (installed by :mod:`geventipc.cluster`)."""
    global _cluster_join
    _cluster_join = join


def builtin_answer(owner: Any, event: str) -> tuple[int, Any] | None:
    """The status and reply of the library's own requests (describe, stats) to a server
    (stream or UDP: ``owner`` has ``define``, ``config`` and ``stats()``); None if
    ``event`` is not one of them."""
    if event == DESCRIBE:
        return REPLY_OK, owner.define.as_dict()
    if event == STATS:
        if owner.config.stats_requests:
            return REPLY_OK, owner.stats()
        return REPLY_NO_HANDLER, {"type": "NoHandlerError", "message": STATS_OFF}
    return None


def no_handler(event: str) -> dict[str, str]:
    """The reply to a request no handler takes."""
    return {"type": "NoHandlerError", "message": f"no handler for {event!r}"}


class ServerSocket(StreamConnection):
    """A client's connection as server handlers see it (their ``socket`` argument)."""

    __slots__ = ("server", "greenlet")

    #: the server this client is connected to
    server: "Server"
    #: the greenlet that reads this connection
    greenlet: Any

    def _name(self, id: str) -> None:
        """The node-ipc wire's codec found the client's id in its data: the socket is
        named after it, unless it has a name already."""
        if self.id is None:
            self.id = id

    def emit(self, type: str, data: Any = None) -> bool:
        """Send one event to this client, after any broadcast queued before it."""
        if get_ident() != self.server._tid:  # another OS thread: hand over (threads.py)
            return call_in_owner(self.server._tid, ServerSocket.emit, self, type, data)
        server = self.server
        if type in server._fast_names:   # known good on the msgpack wire: inlined
            return server._fast_emit(self, type, data)
        return server._emit(self, type, data)


class Table(dict):
    """A dict with attribute access: ``define.listen.message = "..."``."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        del self[key]


class Definitions:
    """``server.define``: human descriptions of the events a server listens for and
    broadcasts, which clients can fetch with ``describe()``."""

    def __init__(self) -> None:
        self.listen = Table()
        self.broadcast = Table()

    def __getitem__(self, key: str) -> Table:
        if key not in ("listen", "broadcast"):
            raise KeyError(key)
        return getattr(self, key)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """Both tables as plain dicts."""
        return {"listen": dict(self.listen), "broadcast": dict(self.broadcast)}


class Server(Dispatcher):
    """A stream server on a Unix socket (``path``) or TCP (``host``, ``port``).

    Events: ``start``; ``connect`` (socket); ``socket.disconnected`` (socket,
    destroyed_socket_id); ``error`` (exception; a connection's errors carry it as
    ``exc.socket``); ``data`` (raw mode: bytes, socket); ``*`` (type, data, socket); and
    every event type clients send, as ``handler(data, socket)``.

    With ``config.cluster`` set it is a node of that cluster (docs/cluster.md), however it
    was made. It runs in one process: ``config.workers`` > 1 is refused here
    (:class:`~geventipc.cluster.workers.WorkersServer` runs several).
    """

    #: True for a server that runs ``config.workers`` processes (WorkersServer)
    runs_workers = False

    def __init__(self, config: Config, log: Callable[..., None], *, path: str | None = None,
                 host: str | None = None, port: int | None = None,
                 ssl_context: Any = None) -> None:
        super().__init__(log)
        if config.workers > 1 and not self.runs_workers:
            # it would serve from this one process, silently
            raise ConfigError(
                f"config.workers = {config.workers}: a Server runs in one process; make a "
                f"geventipc.cluster.workers.WorkersServer (ipc.serve and ipc.serve_net "
                f"do) or set config.workers = 1")
        self._tid = owner()  # the OS thread whose hub runs this server (threads.py)
        self.config = config
        self.path = path
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self._handshaking: set[Any] = set()  # greenlets still in their TLS handshake
        self.define = Definitions()
        self.names = names_for(config)
        self._encoder = make_codec(config, self.names)
        self._conns: dict[ServerSocket, None] = {}
        #: event -> (request handler, the pool it runs in or None for inline)
        self._requests: dict[str, tuple[Callable[..., Any], Pool | None]] = {}
        self._pool: Pool | None = (FairPool(config.handler_pool_size,
                                            config.handler_pool_per_connection)
                                   if config.handler_pool_size else None)
        self._shared: Pool | None = None
        self._pools: list[Pool] = [self._pool] if self._pool is not None else []
        self._bcast: list[bytes] = []
        self._bcast_bytes = 0
        self._bcast_scheduled = False
        self._bcast_biggest = 0   # largest frame in _bcast (big frames are paced apart)
        self._bcast_extra = 0     # events in _bcast beyond one per frame (cluster batches)
        self._laggards: list[StreamConnection] = []   # peers behind at the last commit
        self._lag_size = 0    # the largest frame of that commit
        # the inlined emit (see _fast_emit): names known good on the msgpack wire
        self._fast_names: Any = (self.names.good if self._encoder.name == "msgpack"
                                 else frozenset())
        self._fast_pack = getattr(self._encoder, "_pack", None)
        self._fast_max = getattr(self._encoder, "fast_limit", config.max_message_size)
        self._listener: Any = None
        self._stream_server: Acceptor | None = None
        self._bound_inode: tuple[int, int] | None = None
        self._started = False
        self._stopped = Event()
        self._done = Event()  # set once stop() has finished: socket file gone, clients closed
        self._forever = 0  # greenlets waiting in serve_forever (see lifecycle)
        #: the :class:`geventipc.cluster.Cluster` this server belongs to, or None (set by
        #: ``geventipc.cluster.attach``, at the end of this method when config.cluster is
        #: set; this module only calls it, never imports it)
        self.cluster: Any = None
        #: what :meth:`stats` reports beyond the connections' own counters
        self.counts = ServerCounts()
        self.handlers[HELLO] = (self._on_hello,)
        self.handlers[PING] = (self._on_ping,)
        self.handlers[WIRE_NOTICE] = (self._on_wire_notice,)
        # msgpack wire: the first frame of a connection taken is a welcome, of one refused
        # a refusal (node-ipc and raw peers would not understand either)
        self._welcome: bytes | None = None
        self._refused: bytes | None = None
        self._pong = b""
        self._heartbeat: Heartbeat | None = None
        self._refusals = Throttle()     # the log lines of refused connections
        self._accept_errors = Throttle()
        if config.cluster is not None:  # a node, however it was made (docs/cluster.md)
            if _cluster_join is None:  # Config imports geventipc.cluster: not expected
                raise ConfigError("config.cluster is set but geventipc.cluster is not "
                                  "loaded: import geventipc.cluster before making the "
                                  "server")
            _cluster_join(self)

    def __repr__(self) -> str:
        where = self.path or f"{self.host}:{self.port}"
        return f"<Server {where} clients={len(self._conns)}>"

    # --- lifecycle -----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """This server's counters as a plain dict (fields: docs/operations.md)."""
        from .stats import server_stats  # noqa: PLC0415 - stats sits above the server
        return server_stats(self)

    @property
    def sockets(self) -> list[ServerSocket]:
        """The connected clients' sockets."""
        return list(self._conns)

    @property
    def started(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._started and not self._stopped.is_set()

    @property
    def pool(self) -> Pool | None:
        """The server-wide handler pool (``handler_pool_size``, or the one ``pool=True``
        made), or None: ``len(server.pool)`` is the handlers running in it now."""
        return self._pool if self._pool is not None else self._shared

    def start(self, listener: Any = None) -> "Server":
        """Bind and start accepting in greenlets; returns at once, then fires ``start``.

        ``listener``: a socket already listening, to accept on instead of binding one (each
        pre-fork worker accepts on its parent's); :meth:`stop` then leaves its file alone.
        """
        if self._started:
            if self._stopped.is_set():
                raise NotReadyError("this server was stopped and does not start again: "
                                    "make a new one with ipc.serve(...) or "
                                    "ipc.serve_net(...)")
            return self
        if listener is not None:
            self._listener = listener
            if self.path is None:
                self.port = listener.getsockname()[1]
        else:
            self._listener = self._bind()
        self._handshake_frames()
        self._stream_server = Acceptor(self._listener, self._handle, self._on_accept_error)
        self._stream_server.start()
        self._started = True
        lifecycle.track(self)
        if self.cluster is not None:
            self.cluster.start()
        self.fire("start")
        return self

    def _bind(self) -> Any:
        """Bind and listen on this server's Unix path or TCP address; returns the listener
        (the Unix socket file's inode noted for stop, the TCP port read back)."""
        config = self.config
        if self.path is not None:
            if config.check_socket_root:
                check_socket_dir(os.path.dirname(self.path) or ".")
            listener = listen_unix(self.path, unlink=config.unlink,
                                   readable_all=config.readable_all,
                                   writable_all=config.writable_all)
            info = os.stat(self.path)
            self._bound_inode = (info.st_dev, info.st_ino)
        else:
            listener = listen_tcp(self.host or config.network_host,
                                  self.port if self.port is not None else config.network_port)
            self.port = listener.getsockname()[1]
        return listener

    def _handshake_frames(self) -> None:
        """The welcome, refusal and pong frames of the msgpack wire, and the heartbeat
        (made at start, so config changed between serve() and start() counts)."""
        encoder, config = self._encoder, self.config
        if not encoder.supports_requests:
            return
        self._welcome = encoder.encode_event(WELCOME, capabilities(
            config.heartbeat_interval if config.heartbeat_interval else 0,
            config.heartbeat_timeout))
        self._refused = encoder.encode_event(REFUSED, {
            "reason": "server full", "max_connections": config.max_connections})
        self._pong = encoder.encode_event(PONG, None)
        if config.heartbeat_interval:
            self._heartbeat = Heartbeat(config.heartbeat_interval, config.heartbeat_timeout,
                                        encoder.encode_event(PING, None))

    def serve_forever(self) -> None:
        """Start if needed, then block this greenlet until :meth:`stop`.

        SIGINT, SIGTERM and SIGHUP stop the server and return from here (unless
        ``config.handle_signals`` is False); an exception that ends the wait stops the
        server before it propagates. See :mod:`geventipc.lifecycle`.
        """
        lifecycle.serve_forever(self, self._done.wait)

    def stop(self, timeout: float = 2.0) -> None:
        """Close the listener and every client (after flushing what is queued to them), and
        remove the socket file this server made."""
        if get_ident() != self._tid:  # another OS thread: hand over (threads.py)
            return call_in_owner(self._tid, Server.stop, self, timeout)
        if not self._started or self._stopped.is_set():
            return
        self._stopped.set()
        if self.cluster is not None:
            self.cluster.close()
        try:
            self._stop(timeout)
        finally:
            lifecycle.untrack(self)
            self._done.set()

    def _stop(self, timeout: float) -> None:
        if self._bcast:
            self._commit_broadcast()
        if self._heartbeat is not None:
            self._heartbeat.stop()
        assert self._stream_server is not None
        self._stream_server.close()
        if self._handshaking:  # accept_tls closes its socket on the way out
            gevent.killall(list(self._handshaking), timeout=timeout)
        for conn in list(self._conns):
            conn.close()
        pools = self._pools
        # stop() may run inside a handler: never wait for (or kill) the calling greenlet
        me = gevent.getcurrent()
        with gevent.Timeout(timeout, False):
            # pooled handlers still running get the same grace as unflushed writes
            while (any(conn.greenlet is not me for conn in self._conns)
                   or any(len(pool) - (me in pool) for pool in pools)):
                gevent.sleep(0.005)
        for pool in pools:
            if me in pool:
                pool.discard(me)  # so kill() below spares the greenlet running stop()
            pool.kill(block=True, timeout=timeout)
        for conn in list(self._conns):
            conn.abort()
        self._stream_server.stop(timeout=timeout)
        self._remove_socket_file()

    def _remove_socket_file(self) -> None:
        if self.path is None or self._bound_inode is None:
            return
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return
        if (info.st_dev, info.st_ino) == self._bound_inode:  # never another server's file
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass   # removed since the stat: pre-forked workers share the file

    # --- connections ---------------------------------------------------------------------

    def _handle(self, sock: Any, address: Any) -> None:
        config = self.config
        if self._stopped.is_set():
            # accepted just before stop() closed the listener: serving it now would leave
            # a client talking to a server that has stopped
            self.counts.refuse("stopping")
            sock.close()
            return
        # connections still in their TLS handshake count: they hold a socket and a greenlet
        if len(self._conns) + len(self._handshaking) >= config.max_connections:
            self.counts.refuse("max_connections")
            self._refuse(sock, address)
            return
        tune_tcp(sock, config.keepalive)
        if self.ssl_context is not None:
            # in this connection's greenlet, under a timeout: a stalled handshake holds
            # only its own greenlet, never the accept loop or other clients
            me = gevent.getcurrent()
            self._handshaking.add(me)
            try:
                sock = accept_tls(sock, self.ssl_context, config.handshake_timeout / 1000.0,
                                  address, self._encoder.name)
            except TLSError as exc:
                self.counts.refuse("tls_handshake")
                self.report(exc)
                return
            finally:
                self._handshaking.discard(me)
            if self._stopped.is_set():
                sock.close()
                return
        codec = make_codec(config, self.names)
        conn = ServerSocket(
            sock, codec, self.names,
            address=address or self.path,
            max_pending_bytes=config.max_pending_bytes,
            drain_timeout=config.drain_timeout / 1000.0,
            overflow_policy=config.overflow_policy,
            message_timeout=config.message_timeout / 1000.0,
            on_frames=self.dispatch_to if codec.framed else self.dispatch_raw,
            on_close=self._on_close,
        )
        if codec.framed and not codec.supports_requests:
            # node-ipc has no hello: its clients put their id in the data ({"id": ...,
            # ...}) and node-ipc servers name the socket after it; the codec reports the
            # first such id, before that frame is dispatched
            codec.namer = conn._name
        conn.server = self
        conn.greenlet = gevent.getcurrent()
        if self.ssl_context is not None:
            conn.peer_certificate = sock.getpeercert() or None
        self._conns[conn] = None
        self.counts.connected(len(self._conns))
        if self._welcome is not None:
            # before anything a connect handler sends: the client fires its own connect
            # (and sends its queue) only now that this server has really taken it
            conn.write(self._welcome)
        self.fire("connect", conn)
        conn.run()

    def _refuse(self, sock: Any, address: Any) -> None:
        """At max_connections: tell a msgpack client why (so it keeps its queue and backs
        off), close without reading, and report it (the log line rate-limited)."""
        where = address or self.path
        if self._refused is not None and self.ssl_context is None:
            # over TLS the refusal would need a handshake first: a plain close there
            try:
                sock.send(self._refused)  # a few bytes: a fresh socket's buffer takes them
            except OSError:
                pass
        # what the client sent already is thrown away, so close() sends FIN, not a reset
        # that could overtake the refusal
        raw = getattr(sock, "_sock", sock)
        try:
            for _ in range(16):
                if not raw.recv(65536, _stdsocket.MSG_DONTWAIT):
                    break
        except OSError:
            pass
        sock.close()
        exc = ServerFullError(f"max_connections={self.config.max_connections} reached: "
                              f"refused a connection from {where!r}")
        exc.address = where
        self._report_throttled(exc, self._refusals)

    def _on_accept_error(self, exc: OSError) -> None:
        where = self.path or f"{self.host}:{self.port}"
        error = AcceptError(exc.errno or 0, f"accept failed on {where}: "
                            f"{exc.strerror or exc}; still serving, accepting again shortly")
        self._report_throttled(error, self._accept_errors)

    def _report_throttled(self, exc: BaseException, throttle: Throttle) -> None:
        """An error that can come in floods: every one to the ``error`` handlers; without
        handlers, at most one log line a second, counting the rest."""
        if self.handlers.get("error"):
            self.report(exc)
            return
        held = throttle.allow()
        if held is None:
            return
        more = f" (and {held} more in the last {throttle.every:g} s)" if held else ""
        self.log("<warn>geventipc:</warn>", f"{type(exc).__name__}: {exc}{more}")

    def _on_close(self, conn: StreamConnection, reason: BaseException | None) -> None:
        self._conns.pop(conn, None)  # type: ignore[call-overload]
        if getattr(conn.codec, "namer", None) is not None:
            conn.codec.namer = None   # its reference back to conn: no cycle left behind
        if self._heartbeat is not None:
            self._heartbeat.unwatch(conn)
        self.counts.closed(conn, reason, ProtocolError, SlowConsumerError)
        if isinstance(reason, IPCError):
            reason.socket = conn  # type: ignore[attr-defined]
            self.report(reason)
        self.fire("socket.disconnected", conn, conn.id)

    def _on_hello(self, data: Any, conn: StreamConnection) -> None:
        if not isinstance(data, dict):
            return
        if isinstance(data.get("id"), str) and conn.id is None:
            conn.id = data["id"]
        # only a client that said it answers pings is ever timed out by the heartbeat
        if data.get("ping") is True and self._heartbeat is not None and not conn._closing:
            self._heartbeat.watch(conn)

    def _on_wire_notice(self, data: Any, conn: StreamConnection) -> None:
        """A client found this server on another wire (it closes next): say so here."""
        if isinstance(data, dict) and data.get("wire") in ("msgpack", "node-ipc") \
                and data["wire"] != conn.codec.name:
            exc = WireMismatchError(describe(data["wire"], conn.codec.name))
            exc.socket = conn  # type: ignore[attr-defined]
            self.report(exc)

    def _on_ping(self, data: Any, conn: StreamConnection) -> None:
        # a full queue is answer enough: the client sees its bytes arrive (and on the
        # node-ipc wire there is no pong: a node-ipc peer never pings)
        if self._pong and not conn._closing \
                and conn._pending + len(self._pong) <= conn.max_pending_bytes:
            conn.write(self._pong)

    def on_other_frame(self, socket: Any, frame: list) -> None:
        """A request from a client is answered; a reply to a server matches nothing (a
        stream server sends no requests), so it is ignored."""
        if type(frame[0]) is str:
            self._on_request(socket, *frame)

    # --- request/reply -------------------------------------------------------------------

    def handle(self, event: str, handler: Callable[..., Any] | None = None, *,
               pool: Any = None) -> Any:
        """Register the request handler of ``event``: ``handler(data, socket)``.

        Its return value is the reply; to answer later, return a
        :class:`~geventipc.reply.Deferred` (or any gevent ``AsyncResult``/``Greenlet``)
        and complete it from any greenlet. A handler that raises sends the exception's
        type name and message back; the client raises ``RemoteError``. Works as a
        decorator without ``handler``.

        ``event`` ``"*"`` registers the handler of every request that has no handler of
        its own, called as ``handler(type, data, socket)`` (as the ``*`` event handler).

        ``pool``: None runs it where ``config.handler_pool_size`` says (the server's pool
        if set, else inline in the connection's greenlet, one request after another);
        False always inline; True the server's pool; an int a pool of its own of that
        size; or a ``gevent.pool.Pool`` to share between chosen events.
        """
        if not self._encoder.supports_requests:
            raise UnsupportedError(f"request/reply needs the msgpack wire, not "
                                   f"{self._encoder.name!r} (config.wire / raw_buffer)")
        if event != WILDCARD:   # "*": requests no other handler takes, (type, data, socket)
            self.names.check_outgoing(event)
        if handler is None:
            def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
                self.handle(event, func, pool=pool)
                return func
            return decorate
        if not callable(handler):
            raise TypeError(f"handler for {event!r} must be callable, not {handler!r}")
        self._requests[event] = (self.fit(event, handler), self._resolve_pool(pool))
        return handler

    def unhandle(self, event: str) -> None:
        """Remove the request handler of ``event``; its callers then get NoHandlerError."""
        self._requests.pop(event, None)

    def _on_request(self, conn: StreamConnection, event: str, data: Any, request_id: int) -> None:
        self.counts.request_started(conn, request_id)
        entry = self._requests.get(event)
        if entry is None:
            builtin = builtin_answer(self, event)
            if builtin is not None:
                self._reply(conn, request_id, *builtin)
                return
            entry = self._any_request(event)
        if entry is None:
            self._reply(conn, request_id, REPLY_NO_HANDLER, no_handler(event))
            return
        handler, pool = entry
        if pool is None:
            self._answer(conn, request_id, handler, data, event)
        else:
            # blocks while the pool is full, pausing this connection's reads
            spawn_in(pool, conn, self._answer, conn, request_id, handler, data, event)

    def _any_request(self, event: str) -> tuple[Callable[..., Any], Pool | None] | None:
        """The ``handle("*", ...)`` handler bound to ``event``, for a request no handler
        of its own takes (never the library's own ``$ipc.`` requests)."""
        entry = self._requests.get(WILDCARD)
        if entry is None or event.startswith("$ipc."):
            return None
        handler, pool = entry
        return (lambda data, conn: handler(event, data, conn)), pool

    def _answer(self, conn: StreamConnection, request_id: int, handler: Callable[..., Any],
                data: Any, event: str) -> None:
        try:
            result = handler(data, conn)
        except Exception as exc:
            # the event name and the message are data, never markup (Log.plain); the
            # fields go into JSON log lines (only geventipc's Log takes them)
            plain = getattr(self.log, "plain", None)
            # ipc.log takes the traceback too (exc=): logged once, with it
            fields = {"event": event, "peer": conn.id, "exc": exc} if plain is not None else {}
            plain = plain or str
            self.log("<notice>geventipc: request handler for</notice>", plain(repr(event)),
                     "<notice>raised</notice>", plain(f"{type(exc).__name__}: {exc}"),
                     **fields)
            self._reply(conn, request_id, REPLY_ERROR, error_detail(exc))
            return
        if isinstance(result, LATER):
            result.rawlink(lambda done: self._settle(conn, request_id, done))
            return
        self._reply(conn, request_id, REPLY_OK, result)

    def _settle(self, conn: StreamConnection, request_id: int, done: Any) -> None:
        """A deferred reply is ready (runs in the hub)."""
        ok, value = outcome(done)
        if ok:
            self._reply(conn, request_id, REPLY_OK, value)
        else:
            self._reply(conn, request_id, REPLY_ERROR, error_detail(value))

    def _reply(self, conn: StreamConnection, request_id: int, status: int, data: Any) -> None:
        self.counts.request_done(conn, request_id, status == REPLY_OK)
        if conn.closed:
            return  # the client is gone; it fails its own request
        if self._bcast:
            self._commit_broadcast()
            if conn.closed:
                return  # the broadcasts before it overflowed this client: closed by policy
        try:
            frame = conn.codec.encode_reply(request_id, status, data)
        except IPCError as exc:
            frame = conn.codec.encode_reply(request_id, REPLY_ERROR, error_detail(exc))
        if not conn.write(frame):
            self.log("<warn>geventipc: reply to request</warn>", request_id,
                     "<warn>dropped (overflow_policy drop); the caller will time out</warn>")

    # --- worker pools --------------------------------------------------------------------

    def on(self, event: str, handler: Callable[..., Any] | None = None, *,
           pool: Any = None) -> Any:
        """Call ``handler`` for every ``event``; without a handler, return a decorator.

        ``pool`` is as for :meth:`handle`: client events (and ``*``) registered with a
        pool run in it, so a slow handler does not hold up the connection's next events.
        Lifecycle events (``connect``, ``error``...) always run inline.
        """
        if handler is None:
            def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
                self.on(event, func, pool=pool)
                return func
            return decorate
        # registered wrapped (when pooled), but the caller gets back what it gave, as from
        # Emitter.on, once and the decorator form; fitted to its arity inside the pool
        super().on(event, self._pooled(event, self.fit(event, handler), pool))
        return handler

    def once(self, event: str, handler: Callable[..., Any] | None = None, *,
             pool: Any = None) -> Any:
        """Like :meth:`on`, for the next ``event`` only."""
        if handler is None:
            def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
                self.once(event, func, pool=pool)
                return func
            return decorate
        # _Once outside the pool wrapper: removed at dispatch, before it is spawned
        super().on(event, _Once(self, event, self._pooled(event, self.fit(event, handler),
                                                          pool)))
        return handler

    def _pooled(self, event: str, handler: Callable[..., Any], pool: Any) -> Any:
        if not callable(handler) or not isinstance(event, str):
            return handler  # Emitter.on reports it
        if event in LIFECYCLE_EVENTS and event != "*" or event.startswith("$ipc."):
            if pool is not None and pool is not False:
                raise ValueError(f"{event!r} is a lifecycle event; its handlers run inline")
            return handler
        chosen = self._resolve_pool(pool)
        if chosen is None:
            return handler
        return PooledHandler(handler, chosen, event, self.handler_failed)

    def _resolve_pool(self, pool: Any) -> Pool | None:
        if pool is None:
            return self._pool
        chosen = resolve_pool(pool, self._shared_pool,
                              self.config.handler_pool_per_connection)
        if type(pool) is int and chosen is not None:
            self._pools.append(chosen)  # made here, so stop() ends it; a Pool given is yours
        return chosen

    def _shared_pool(self) -> Pool:
        """``pool=True``: the ``handler_pool_size`` pool, else one of DEFAULT_POOL_SIZE
        made on first use (which does not change where ``pool=None`` handlers run)."""
        if self._pool is not None:
            return self._pool
        if self._shared is None:
            self._shared = FairPool(DEFAULT_POOL_SIZE, self.config.handler_pool_per_connection)
            self._pools.append(self._shared)
        return self._shared

    # --- sending -------------------------------------------------------------------------

    def emit(self, socket: StreamConnection, type: str, data: Any = None) -> bool:
        """Send one event to one client. Returns False if dropped by policy."""
        if get_ident() != self._tid:  # another OS thread: hand over (threads.py)
            return call_in_owner(self._tid, Server.emit, self, socket, type, data)
        if not isinstance(socket, StreamConnection):
            raise NotConnectedError(f"emit needs a client socket, not {socket!r}")
        if type in self._fast_names:   # known good on the msgpack wire: inlined
            return self._fast_emit(socket, type, data)
        return self._emit(socket, type, data)

    def _emit(self, socket: StreamConnection, type: str, data: Any) -> bool:
        """``emit``'s general path (``socket.emit`` shares it): the name checked, the
        broadcasts queued before it committed, then the codec's checked encoding."""
        # raw mode: emit(socket, data), no event type; a known-good name costs no call
        if socket.codec.framed and type not in self.names.good:
            self.names.check_outgoing(type)
        if self._bcast and not socket._closing:
            self._commit_broadcast()
            if socket._closing:
                return False  # the broadcasts before it overflowed this peer: closed by policy
        return socket.write(socket.codec.encode_event(type, data))

    def _fast_emit(self, socket: StreamConnection, type: str, data: Any) -> bool:
        """``emit`` for the common case, inlined: a known-good name on the msgpack wire
        and the peer's queue short. Same checks, same order as the general path
        (broadcasts before it, encode, size, the connection's write); anything else goes
        the general way."""
        if self._bcast and not socket._closing:
            self._commit_broadcast()
            if socket._closing:
                return False  # the broadcasts before it overflowed this peer: closed by policy
        if data.__class__ is bytes and len(data) >= BIG_BIN:
            # encode_event copies a big bytes payload once, the packer twice
            return socket.write(socket.codec.encode_event(type, data))
        try:
            frame = self._fast_pack([type, data])  # type: ignore[misc]
        except Exception:
            return socket.write(socket.codec.encode_event(type, data))  # raises EncodeError
        if TUPLE_SEEN[0]:   # maybe a tuple as a dict key: the codec checks (and raises)
            return socket.write(socket.codec.encode_event(type, data))
        pending = socket._pending + len(frame)
        if pending >= socket._room:   # behind, closing, or a frame to check (see _room)
            if len(frame) > self._fast_max:   # the codec checks size and item counts (raises)
                frame = socket.codec.encode_event(type, data)
            return socket.write(frame)
        # StreamConnection.write's queueing, inlined as in Client.emit: keep them in step
        socket._pending = pending
        socket._wbuf.append(frame)
        if socket._writer is None:
            if pending >= FLUSH_AT:
                socket._flush()
            elif not socket._flush_scheduled:
                socket._flush_scheduled = True
                socket._loop.run_callback(socket._flush)
        return True

    def drain(self, timeout: float | None = None) -> bool:
        """Block this greenlet until everything queued for every client (broadcasts
        included) is with the kernel. True once drained; False if ``timeout`` (seconds)
        passed first. Closed clients are skipped; no client is cut for being slow."""
        if self._bcast:
            self._commit_broadcast()
        deadline = None if timeout is None else time.monotonic() + timeout
        for conn in list(self._conns):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not conn.drain(left) and not conn._closed:
                return False
        return True

    def broadcast(self, type: str, data: Any = None) -> None:
        """Send one event to every connected client.

        Never held up by a peer for long: when a peer is behind (its queue past the pacing
        mark while the kernel is full), the calling greenlet waits for it to catch up, at
        most ``drain_timeout`` from when it fell behind (then, under the ``disconnect``
        policy, it is cut). It never waits in the gevent hub or in that peer's own
        greenlet. ``drain_timeout = 0`` never waits.

        In raw mode: ``broadcast(data)``, the bytes (or str) to send.
        """
        if get_ident() != self._tid:  # another OS thread: hand over (threads.py)
            return call_in_owner(self._tid, Server.broadcast, self, type, data)
        if self._encoder.framed and type not in self.names.good:  # known-good: no call
            self.names.check_outgoing(type)
        frame = self._encoder.encode_event(type, data)
        self._bcast.append(frame)
        self._bcast_bytes += len(frame)
        if len(frame) > self._bcast_biggest:
            self._bcast_biggest = len(frame)
        if self._bcast_bytes >= FLUSH_AT:
            self._commit_broadcast()
        elif not self._bcast_scheduled:
            self._bcast_scheduled = True
            get_hub().loop.run_callback(self._commit_broadcast)
        if self.cluster is not None:  # after local delivery is queued: never delays it
            self.cluster.publish(frame)
        if self._laggards:
            self._wait_for_laggards()

    def _wait_for_laggards(self) -> None:
        """Let the peers that were behind at the last commit catch up (each bounded by
        its drain_timeout; see StreamConnection.pace)."""
        laggards, self._laggards = self._laggards, []
        size = self._lag_size
        for conn in laggards:
            if not conn._closing:
                conn.pace(size)

    # --- cluster hooks (geventipc.cluster; see docs/cluster.md) ---------------------------

    def broadcast_frame(self, frame: bytes, count: int = 1) -> None:
        """Queue an already-encoded frame of this server's wire to every local client, as
        :meth:`broadcast` does after encoding (the cluster hands other nodes' frames here).
        Unlike :meth:`broadcast` it never waits for clients that are behind: the cluster's
        reader must keep reading the engine. ``count``: the events ``frame`` holds."""
        if count != 1:
            self._bcast_extra += count - 1
        # the same queueing as broadcast(), which inlines it (per event, a method call
        # there costs ~12% of its own time, measured): keep the two in step
        self._bcast.append(frame)
        self._bcast_bytes += len(frame)
        if len(frame) > self._bcast_biggest:
            self._bcast_biggest = len(frame)
        if self._bcast_bytes >= FLUSH_AT:
            self._commit_broadcast()
        elif not self._bcast_scheduled:
            self._bcast_scheduled = True
            get_hub().loop.run_callback(self._commit_broadcast)

    def _by_id(self, client_id: str) -> ServerSocket | None:
        for conn in self._conns:
            if conn.id == client_id and not conn._closing:
                return conn
        return None

    def send_frame(self, client_id: str, frame: bytes) -> bool:
        """Write an already-encoded frame to the local client of that id (after the
        broadcasts queued before it); False if there is none here or it was dropped."""
        conn = self._by_id(client_id)
        if conn is None:
            return False
        if self._bcast:
            self._commit_broadcast()
            if conn._closing:
                return False
        # never waits for a client that is behind (as broadcast_frame): the cluster's
        # reader must keep reading the engine
        return conn.write_many([frame], len(frame), 1)

    def emit_to_local(self, client_id: str, type: str, data: Any = None) -> bool:
        """Send one event to the local client that announced ``client_id``; False if
        none here."""
        conn = self._by_id(client_id)
        return False if conn is None else self.emit(conn, type, data)

    def emit_to(self, client_id: str, type: str, data: Any = None) -> bool:
        """Send one event to the client that announced ``client_id`` (its ``id``):
        on this server, or with a cluster on whichever node has it. False if no client of
        that id is known (or it was dropped by policy); never raises for an unknown id."""
        if get_ident() != self._tid:  # another OS thread: hand over (threads.py)
            return call_in_owner(self._tid, Server.emit_to, self, client_id, type, data)
        if self.cluster is not None:
            return bool(self.cluster.emit_to(client_id, type, data))
        return self.emit_to_local(client_id, type, data)

    def cluster_sockets(self) -> list[tuple[str, str | None]]:
        """``[(client_id, node_id), ...]`` of the clients with an id on every node of the
        cluster (node_id None without a cluster: this server's own clients)."""
        if self.cluster is not None:
            return list(self.cluster.sockets())
        return sorted((conn.id, None) for conn in self._conns if conn.id is not None)

    def _commit_broadcast(self) -> None:
        self._bcast_scheduled = False
        frames = self._bcast
        if not frames:
            return
        count, size, biggest = len(frames), self._bcast_bytes, self._bcast_biggest
        chunk = frames[0] if count == 1 else b"".join(frames)
        if self._bcast_extra:  # frames from other cluster nodes carry several events each
            count += self._bcast_extra
            self._bcast_extra = 0
        self.counts.broadcasts += count
        self._bcast = []
        self._bcast_bytes = self._bcast_biggest = 0
        batch = [chunk]
        # the peers now behind: the next broadcast() waits for them (it may; a commit may
        # run in the hub, where nothing can wait)
        laggards = self._laggards = []
        self._lag_size = biggest
        for conn in self._conns:
            if not conn._closing:
                conn.write_many(batch, size, count)
                if conn._writer is not None and conn._pending >= conn._pace_at \
                        and conn.behind(biggest):
                    laggards.append(conn)
