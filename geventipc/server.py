"""``ipc.server``: accepts clients, dispatches their events, emits and broadcasts.

One gevent ``StreamServer`` accepts; each client gets a greenlet that reads, decodes and
dispatches its frames in order (see :mod:`geventipc.transports.stream`). ``broadcast``
encodes once and queues the same bytes for every client; consecutive broadcasts are
joined into one chunk per client before they are queued, and any direct write to one
client first commits the broadcasts before it, so per-client order always holds.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import gevent
from gevent.event import Event
from gevent.hub import get_hub
from gevent.server import StreamServer

from .config import Config, check_socket_dir
from .dispatch import Dispatcher
from .errors import IPCError, NotConnectedError, ServeError
from .transports.stream import FLUSH_AT, StreamConnection, listen_tcp, listen_unix, tune_tcp
from .transports.tls import TLSError, accept_tls
from .wire import REPLY_ERROR, REPLY_NO_HANDLER, REPLY_OK, make_codec, names_for

HELLO = "$ipc.hello"
DESCRIBE = "$ipc.describe"


class ServerSocket(StreamConnection):
    """A client's connection as server handlers see it (their ``socket`` argument)."""

    __slots__ = ("server",)

    def emit(self, type: str, data: Any = None) -> bool:
        """Send one event to this client, after any broadcast queued before it."""
        server = self.server
        if server._bcast:
            server._commit_broadcast()
        if self.codec.framed:  # raw mode: emit(data), no event type
            self.names.check_outgoing(type)
        return self.write(self.codec.encode_event(type, data))


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
    """

    def __init__(self, config: Config, log: Callable[..., None], *, path: str | None = None,
                 host: str | None = None, port: int | None = None,
                 ssl_context: Any = None) -> None:
        super().__init__(log)
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
        self._requests: dict[str, Callable[..., Any]] = {}
        self._bcast: list[bytes] = []
        self._bcast_bytes = 0
        self._bcast_scheduled = False
        self._listener: Any = None
        self._stream_server: StreamServer | None = None
        self._bound_inode: tuple[int, int] | None = None
        self._started = False
        self._stopped = Event()
        self.handlers[HELLO] = (self._on_hello,)

    def __repr__(self) -> str:
        where = self.path or f"{self.host}:{self.port}"
        return f"<Server {where} clients={len(self._conns)}>"

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def sockets(self) -> list[ServerSocket]:
        """The connected clients' sockets."""
        return list(self._conns)

    @property
    def started(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._started and not self._stopped.is_set()

    def start(self) -> "Server":
        """Bind and start accepting in greenlets; returns at once, then fires ``start``."""
        if self._started:
            return self
        config = self.config
        if self.path is not None:
            if config.check_socket_root:
                check_socket_dir(os.path.dirname(self.path) or ".")
            self._listener = listen_unix(self.path, unlink=config.unlink,
                                         readable_all=config.readable_all,
                                         writable_all=config.writable_all)
            info = os.stat(self.path)
            self._bound_inode = (info.st_dev, info.st_ino)
        else:
            self._listener = listen_tcp(self.host or config.network_host,
                                        self.port if self.port is not None else
                                        config.network_port)
            self.port = self._listener.getsockname()[1]
        self._stream_server = StreamServer(self._listener, self._handle)
        self._stream_server.start()
        self._started = True
        self.fire("start")
        return self

    def serve_forever(self) -> None:
        """Start if needed, then block this greenlet until :meth:`stop`."""
        self.start()
        self._stopped.wait()

    def stop(self, timeout: float = 2.0) -> None:
        """Close the listener and every client (after flushing what is queued to them), and
        remove the socket file this server made."""
        if not self._started or self._stopped.is_set():
            return
        self._stopped.set()
        if self._bcast:
            self._commit_broadcast()
        assert self._stream_server is not None
        self._stream_server.close()
        if self._handshaking:  # accept_tls closes its socket on the way out
            gevent.killall(list(self._handshaking), timeout=timeout)
        for conn in list(self._conns):
            conn.close()
        with gevent.Timeout(timeout, False):
            while self._conns:
                gevent.sleep(0.005)
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
            os.unlink(self.path)

    # --- connections ---------------------------------------------------------------------

    def _handle(self, sock: Any, address: Any) -> None:
        config = self.config
        if self._stopped.is_set():
            # accepted just before stop() closed the listener: serving it now would leave
            # a client talking to a server that has stopped
            sock.close()
            return
        if len(self._conns) >= config.max_connections:
            self.log("<notice>geventipc: max_connections</notice>", config.max_connections,
                     "<notice>reached; closing new connection</notice>")
            sock.close()
            return
        tune_tcp(sock)
        if self.ssl_context is not None:
            # in this connection's greenlet, under a timeout: a stalled handshake holds
            # only its own greenlet, never the accept loop or other clients
            me = gevent.getcurrent()
            self._handshaking.add(me)
            try:
                sock = accept_tls(sock, self.ssl_context, config.handshake_timeout / 1000.0,
                                  address)
            except TLSError as exc:
                self.report(exc)
                return
            finally:
                self._handshaking.discard(me)
            if self._stopped.is_set():
                sock.close()
                return
        conn = ServerSocket(
            sock, make_codec(config, self.names), self.names,
            address=address or self.path,
            max_pending_bytes=config.max_pending_bytes,
            overflow_policy=config.overflow_policy,
            message_timeout=config.message_timeout / 1000.0,
            on_frames=self._on_frames, on_close=self._on_close,
        )
        conn.server = self
        if self.ssl_context is not None:
            conn.peer_certificate = sock.getpeercert() or None
        self._conns[conn] = None
        self.fire("connect", conn)
        conn.run()

    def _on_close(self, conn: StreamConnection, reason: BaseException | None) -> None:
        self._conns.pop(conn, None)  # type: ignore[call-overload]
        if isinstance(reason, IPCError):
            reason.socket = conn  # type: ignore[attr-defined]
            self.report(reason)
        self.fire("socket.disconnected", conn, conn.id)

    def _on_hello(self, data: Any, conn: StreamConnection) -> None:
        if isinstance(data, dict) and isinstance(data.get("id"), str) and conn.id is None:
            conn.id = data["id"]

    def _on_frames(self, conn: StreamConnection, frames: list) -> None:
        handlers = self.handlers
        wildcard = handlers.get("*")
        for frame in frames:
            if len(frame) == 2:
                event, data = frame
                found = handlers.get(event)
                if found is not None:
                    for handler in found:
                        try:
                            handler(data, conn)
                        except Exception as exc:
                            self.handler_failed(event, exc)
                if wildcard is not None and event[0] != "$":
                    for handler in wildcard:
                        try:
                            handler(event, data, conn)
                        except Exception as exc:
                            self.handler_failed("*", exc)
            elif type(frame[0]) is str:
                self._on_request(conn, *frame)
            # replies to a server: the server sends no requests, so there is nothing to match

    # --- request/reply -------------------------------------------------------------------

    def handle(self, event: str, handler: Callable[..., Any] | None = None) -> Any:
        """Register the request handler of ``event``; its return value is the reply.

        Works as a decorator without ``handler``. A handler that raises sends the
        exception's type name and message back; the client raises ``RemoteError``.
        """
        self.names.check_outgoing(event)
        if handler is None:
            def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
                self.handle(event, func)
                return func
            return decorate
        self._requests[event] = handler
        return handler

    def _on_request(self, conn: StreamConnection, event: str, data: Any, request_id: int) -> None:
        if event == DESCRIBE:
            self._reply(conn, request_id, REPLY_OK, self.define.as_dict())
            return
        handler = self._requests.get(event)
        if handler is None:
            self._reply(conn, request_id, REPLY_NO_HANDLER,
                        {"type": "NoHandlerError", "message": f"no handler for {event!r}"})
            return
        try:
            result = handler(data, conn)
        except Exception as exc:
            self._reply(conn, request_id, REPLY_ERROR,
                        {"type": type(exc).__name__, "message": str(exc)})
            return
        self._reply(conn, request_id, REPLY_OK, result)

    def _reply(self, conn: StreamConnection, request_id: int, status: int, data: Any) -> None:
        if conn.closed:
            return  # the client is gone; it fails its own request
        if self._bcast:
            self._commit_broadcast()
        try:
            frame = conn.codec.encode_reply(request_id, status, data)
        except IPCError as exc:
            frame = conn.codec.encode_reply(request_id, REPLY_ERROR,
                                            {"type": type(exc).__name__, "message": str(exc)})
        conn.write(frame)

    # --- sending -------------------------------------------------------------------------

    def emit(self, socket: StreamConnection, type: str, data: Any = None) -> bool:
        """Send one event to one client. Returns False if dropped by policy."""
        if not isinstance(socket, StreamConnection):
            raise NotConnectedError(f"emit needs a client socket, not {socket!r}")
        if self._bcast:
            self._commit_broadcast()
        if socket.codec.framed:  # raw mode: emit(socket, data), no event type
            self.names.check_outgoing(type)
        return socket.write(socket.codec.encode_event(type, data))

    def broadcast(self, type: str, data: Any = None) -> None:
        """Send one event to every connected client; never waits for a slow one.

        In raw mode: ``broadcast(data)``, the bytes (or str) to send.
        """
        if self._encoder.framed:
            self.names.check_outgoing(type)
        frame = self._encoder.encode_event(type, data)
        self._bcast.append(frame)
        self._bcast_bytes += len(frame)
        if self._bcast_bytes >= FLUSH_AT:
            self._commit_broadcast()
        elif not self._bcast_scheduled:
            self._bcast_scheduled = True
            get_hub().loop.run_callback(self._commit_broadcast)

    def _commit_broadcast(self) -> None:
        self._bcast_scheduled = False
        frames = self._bcast
        if not frames:
            return
        count, size = len(frames), self._bcast_bytes
        chunk = frames[0] if count == 1 else b"".join(frames)
        self._bcast = []
        self._bcast_bytes = 0
        batch = [chunk]
        for conn in self._conns:
            if not conn._closing:
                conn.write_many(batch, size, count)
