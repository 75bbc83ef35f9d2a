"""``ipc.server`` over UDP: ``serve_net(host, port, "udp4" | "udp6", callback)``.

A UDP peer is server and client at once (node-ipc's "UDP Sockets"): it binds its own
port, receives from anyone, and emits to addresses. One datagram carries one event, in the
same envelope (and with the same codec, name rules and size limits) as the stream
transports; each datagram is decoded on its own, so a malformed one is refused with an
``error`` event and never affects the next.

UDP itself promises little: a datagram may be lost, duplicated or overtake an earlier
one, and nothing tells the sender. See docs/udp.md.
"""
from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Callable, Iterator

import gevent
from gevent.event import AsyncResult, Event
from gevent.hub import get_hub

from . import lifecycle
from .config import Config
from .counters import Requests
from .dispatch import Dispatcher, log_failure
from .errors import (
    AddressError, ConfigError, IPCError, MessageTooLargeError, NotConnectedError,
    NotReadyError, ProtocolError, Timeout, UnsupportedError,
)
from .server import DESCRIBE, STATS, Definitions, builtin_answer, no_handler
from .transports.datagram import (
    FAMILIES, MAX_PAYLOAD, DatagramEndpoint, SockAddr, bind_udp, family_name, resolve,
)
from .reply import error_detail, settle
from .threads import call_in_owner, get_ident, owner, request_in_owner
from .wire import REPLY_ERROR, REPLY_NO_HANDLER, REPLY_OK, make_codec, names_for


class UDPSocket:
    """A UDP peer's address, as handlers get it (their ``socket`` argument).

    Pass it straight back to ``server.emit(socket, ...)``, or call ``socket.emit(...)``.
    ``address``, ``port`` and ``family`` (``"IPv4"``/``"IPv6"``) are as Node's dgram gives
    them; ``host, port = socket`` unpacks it like a tuple. The server keeps one object per
    peer it has heard from, so ``id`` and ``data`` set on it are still there next time.
    """

    __slots__ = ("address", "port", "family", "sockaddr", "id", "data", "server")

    def __init__(self, sockaddr: SockAddr, family: str, server: "UDPServer | None" = None
                 ) -> None:
        self.address: str = sockaddr[0]
        self.port: int = sockaddr[1]
        self.family = family
        #: the full socket address the datagrams go to
        self.sockaddr = sockaddr
        #: free for the application to name the peer (UDP has no hello)
        self.id: str | None = None
        #: free for the application
        self.data: dict[str, Any] = {}
        self.server = server

    def __repr__(self) -> str:
        return f"<UDPSocket {self.address!r}:{self.port} {self.family}>"

    def __iter__(self) -> Iterator[Any]:
        return iter((self.address, self.port))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, UDPSocket):
            return (self.address, self.port) == (other.address, other.port)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.address, self.port))

    def emit(self, type: str, data: Any = None) -> bool:
        """Send one event to this peer from the server that heard it."""
        if self.server is None:
            raise NotConnectedError(f"{self!r} belongs to no server; use server.emit")
        return self.server.emit(self, type, data)

    def as_dict(self) -> dict[str, Any]:
        """``{"address", "port", "family"}``, e.g. to send to another process."""
        return {"address": self.address, "port": self.port, "family": self.family}


_NO_DESTINATION = "emit needs a destination: a handler's socket, {'address', 'port'} or " \
                  "(host, port)"


class UDPServer(Dispatcher):
    """A UDP endpoint bound to ``host``:``port``; ``udp_type`` is ``"udp4"`` or ``"udp6"``.

    Events: ``start``; ``error`` (exception; one about a datagram carries the sender as
    ``exc.socket``); ``data`` (raw mode: bytes, socket); ``*`` (type, data, socket); and
    every event type peers send, as ``handler(data, socket)`` where ``socket`` is the
    sender's :class:`UDPSocket`. Handlers run one at a time in the receive greenlet, in
    arrival order.

    ``emit(socket, type, data)`` sends to one address; ``broadcast(type, data)`` to every
    peer this server has heard from (at most ``max_connections`` of them, the most recently
    heard). ``request(socket, type, data)`` asks a peer's ``handle``-registered handler and
    waits for the reply; a lost datagram makes it time out.
    """

    def __init__(self, config: Config, log: Callable[..., None], *, host: str | None = None,
                 port: int | None = None, udp_type: str = "udp4") -> None:
        super().__init__(log)
        self._tid = owner()  # the OS thread whose hub runs this server (threads.py)
        if udp_type not in FAMILIES:
            raise ConfigError(f"udp_type must be one of {tuple(FAMILIES)}, not {udp_type!r}")
        # refused here, not only by ipc.serve_net: made by hand it would ignore them
        if config.workers > 1:
            raise ConfigError("config.workers applies to stream servers (Unix, TCP, TLS); "
                              "a UDP server runs in one process")
        if config.cluster is not None:
            raise ConfigError("config.cluster joins stream servers (serve, serve_net over "
                              "TCP); a UDP server cannot be part of a cluster")
        self.config = config
        self.host = host if host is not None else config.network_host
        self.port = port if port is not None else config.network_port
        self.udp_type = udp_type
        self.family = FAMILIES[udp_type]
        self.define = Definitions()
        self.names = names_for(config)
        #: datagrams refused: malformed, foreign, forbidden or over max_message_size
        self.refused = 0
        #: replies that came after their request had timed out (or from the wrong peer)
        self.late_replies = 0
        #: peers forgotten because more than ``max_connections`` were heard from
        self.forgotten = 0
        self._encoder = make_codec(config, self.names)
        self._decoder = make_codec(config, self.names)
        self._family_name = family_name(self.family)
        self._peers: OrderedDict[tuple[str, int], UDPSocket] = OrderedDict()
        self._requests: dict[str, Callable[..., Any]] = {}
        self._waiting: dict[int, tuple[AsyncResult, tuple[str, int], Any]] = {}
        self._request_ids = itertools.count(1)
        self._endpoint: DatagramEndpoint | None = None
        #: requests this server answered, and those it sent (see :meth:`stats`)
        self.served = Requests()
        self.asked = Requests()
        self._started = False
        self._stopped = Event()
        self._forever = 0  # greenlets waiting in serve_forever (see lifecycle)

    def __repr__(self) -> str:
        return f"<UDPServer {self.udp_type} {self.host}:{self.port} peers={len(self._peers)}>"

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._started and not self._stopped.is_set()

    def stats(self) -> dict[str, Any]:
        """This server's counters as a plain dict (fields: docs/operations.md)."""
        from .stats import udp_stats  # noqa: PLC0415 - stats sits above the server
        return udp_stats(self)

    @property
    def sockets(self) -> list[UDPSocket]:
        """The peers heard from (the targets of :meth:`broadcast`), oldest first."""
        return list(self._peers.values())

    @property
    def max_payload(self) -> int:
        """The largest encoded event one datagram can carry: 65,507 (udp4) or 65,527."""
        return MAX_PAYLOAD[self.family]

    def start(self) -> "UDPServer":
        """Bind and start receiving in a greenlet; returns at once, then fires ``start``.

        ``host`` is resolved within the family (``"localhost"`` is 127.0.0.1 for udp4 and
        ::1 for udp6); port 0 binds a free port, found in ``port`` afterwards. Raises
        ServeError if the address cannot be bound.
        """
        if self._started:
            if self._stopped.is_set():
                raise NotReadyError("this server was stopped and does not start again: "
                                    "make a new one with ipc.serve(...) or "
                                    "ipc.serve_net(...)")
            return self
        sock = bind_udp(self.host, self.port, self.family)
        self._endpoint = DatagramEndpoint(sock, self._on_datagram, self.report)
        self.port = self._endpoint.address[1]
        self._endpoint.start()
        self._started = True
        lifecycle.track(self)
        self.fire("start")
        return self

    def serve_forever(self) -> None:
        """Start if needed, then block this greenlet until :meth:`stop` (or SIGINT,
        SIGTERM, SIGHUP: see :mod:`geventipc.lifecycle`)."""
        lifecycle.serve_forever(self, self._stopped.wait)

    def stop(self, timeout: float = 2.0) -> None:
        """Close the socket; requests still waiting fail with NotConnectedError."""
        if get_ident() != self._tid:  # another OS thread: hand over (threads.py)
            return call_in_owner(self._tid, UDPServer.stop, self, timeout)
        if not self._started or self._stopped.is_set():
            return
        self._stopped.set()
        lifecycle.untrack(self)
        assert self._endpoint is not None
        self._endpoint.close(timeout)
        waiting, self._waiting = self._waiting, {}
        for result, _key, timer in waiting.values():
            if timer is not None:
                timer.stop()
            result.set_exception(NotConnectedError("the UDP server stopped before the "
                                                   "reply came"))

    def forget(self, socket: UDPSocket) -> None:
        """Stop broadcasting to ``socket`` until it sends again."""
        self._peers.pop((socket.address, socket.port), None)

    # --- receiving -----------------------------------------------------------------------

    def _peer(self, sockaddr: SockAddr) -> UDPSocket:
        key = (sockaddr[0], sockaddr[1])
        peer = self._peers.get(key)
        if peer is None:
            return UDPSocket(sockaddr, self._family_name, self)
        return peer

    def _remember(self, peer: UDPSocket) -> None:
        peers = self._peers
        key = (peer.address, peer.port)
        try:
            peers.move_to_end(key)  # a known peer: one lookup per datagram
            return
        except KeyError:
            peers[key] = peer
        if len(peers) > self.config.max_connections:
            peers.popitem(last=False)
            if not self.forgotten:
                self.log("<notice>geventipc: UDP server heard from more than</notice>",
                         self.config.max_connections, "<notice>peers (max_connections); "
                         "broadcast now skips the least recently heard</notice>")
            self.forgotten += 1

    def _refuse(self, exc: ProtocolError, peer: UDPSocket) -> None:
        self.refused += 1
        self._decoder = make_codec(self.config, self.names)  # drop any half-decoded state
        exc.socket = peer  # type: ignore[attr-defined]
        self.report(exc)

    def _on_datagram(self, view: memoryview, sockaddr: SockAddr) -> None:
        peer = self._peer(sockaddr)
        size = len(view)
        limit = self.config.max_message_size
        if size > limit:
            self._refuse(MessageTooLargeError(
                f"datagram of {size} bytes from {peer.address}:{peer.port} is larger than "
                f"max_message_size={limit}"), peer)
            return
        decoder = self._decoder
        if not decoder.framed:
            self._remember(peer)
            self.fire("data", bytes(view), peer)
            return
        try:
            frames = decoder.feed(view)
        except ProtocolError as exc:
            # the whole datagram is refused, even frames before the fault: it is one event
            self._refuse(exc, peer)
            return
        if not frames or _leftover(decoder):
            self._refuse(ProtocolError(
                f"datagram of {size} bytes from {peer.address}:{peer.port} is not a whole "
                f"{decoder.name} event (truncated, empty or foreign)"), peer)
            return
        self._remember(peer)
        self.dispatch_to(peer, frames)

    def on_other_frame(self, socket: Any, frame: list) -> None:
        """A request is answered; a reply completes one of this peer's own requests."""
        if type(frame[0]) is str:
            self._on_request(socket, *frame)
        else:
            self._on_reply(socket, *frame)

    # --- request/reply: answering --------------------------------------------------------

    def handle(self, event: str, handler: Callable[..., Any] | None = None) -> Any:
        """Register the request handler of ``event``: ``handler(data, socket)``; its return
        value is the reply. Works as a decorator without ``handler``. A handler that raises
        sends the exception's type and message back (the requester raises RemoteError).
        Raises UnsupportedError on a wire without request/reply (node-ipc JSON, raw)."""
        self._require_requests()
        self.names.check_outgoing(event)
        if handler is None:
            def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
                self.handle(event, func)
                return func
            return decorate
        self._requests[event] = self.fit(event, handler)
        return handler

    def _require_requests(self) -> None:
        if not self._encoder.supports_requests:
            raise UnsupportedError(f"request/reply needs the msgpack wire, not "
                                   f"{self._encoder.name!r}")

    def _on_request(self, peer: UDPSocket, event: str, data: Any, request_id: int) -> None:
        started = time.monotonic()   # for the latency, counted in _reply
        # handle() refuses "$ipc." names: the library's own requests are never in here
        handler = self._requests.get(event)
        if handler is None:
            builtin = builtin_answer(self, event)
            if builtin is not None:
                self._reply(peer, request_id, *builtin, started)
            else:
                self._reply(peer, request_id, REPLY_NO_HANDLER, no_handler(event), started)
            return
        try:
            result = handler(data, peer)
        except Exception as exc:
            # as on stream servers: logged once, with its traceback, then answered
            log_failure(self.log, exc, "<notice>geventipc: request handler for</notice>",
                        repr(event), "<notice>raised</notice>")
            self._reply(peer, request_id, REPLY_ERROR, error_detail(exc), started)
            return
        self._reply(peer, request_id, REPLY_OK, result, started)

    def _reply(self, peer: UDPSocket, request_id: int, status: int, data: Any,
               started: float) -> None:
        if status == REPLY_OK:
            self.served.answered += 1
        else:
            self.served.failed += 1
        self.served.latency.since(started)
        endpoint = self._endpoint
        if endpoint is None or endpoint.closed:
            return
        encoder = self._encoder
        try:
            frame = encoder.encode_reply(request_id, status, data)
            endpoint.check_size(len(frame))
        except IPCError as exc:
            # the requester gets the reason instead of waiting for its timeout
            frame = encoder.encode_reply(request_id, REPLY_ERROR, error_detail(exc))
        try:
            endpoint.send(frame, peer.sockaddr)
        except IPCError as exc:
            exc.socket = peer  # type: ignore[attr-defined]
            self.report(exc)

    # --- request/reply: asking -----------------------------------------------------------

    def request_async(self, socket: Any, type: str, data: Any = None,
                      timeout: float | None = 10.0) -> AsyncResult:
        """Send a request to one peer; the AsyncResult gets its reply (or the error).

        With ``timeout`` (seconds) the result fails with Timeout if no reply came by then,
        which is also what a lost request or reply looks like: UDP does not resend.
        From another OS thread: a ``geventipc.threads.ThreadResult`` (docs/api.md).
        """
        if get_ident() != self._tid:  # another OS thread: hand over (threads.py)
            return request_in_owner(self._tid, UDPServer.request_async,  # type: ignore[return-value]
                                    self, socket, type, data, timeout)
        self._require_requests()
        sockaddr = self._destination(socket)
        if sockaddr is None:
            raise AddressError(f"a request needs one peer; {_NO_DESTINATION}")
        if type != DESCRIBE and type != STATS:
            self.names.check_outgoing(type)
        request_id = next(self._request_ids)
        frame = self._encoder.encode_request(type, data, request_id)
        result = AsyncResult()
        timer = get_hub().loop.timer(timeout) if timeout is not None else None
        # registered before sending: a send that waits for buffer room yields, and the
        # reply could come in meanwhile
        self._waiting[request_id] = (result, (sockaddr[0], sockaddr[1]), timer)
        try:
            self._send(frame, sockaddr)
        except BaseException:
            self._waiting.pop(request_id, None)  # stop() may have emptied the table already
            raise
        if timer is not None and request_id in self._waiting:  # the reply may be in already
            timer.start(self._expire, request_id, type, timeout)
        return result

    def request(self, socket: Any, type: str, data: Any = None,
                timeout: float | None = 10.0) -> Any:
        """Send a request to one peer and block this greenlet until the reply; returns its
        data. Raises Timeout (no reply: lost or not answered), RemoteError, NoHandlerError.

        Not from inside a handler of this server: handlers run in the greenlet that would
        receive the reply (use :meth:`request_async` there, or spawn a greenlet).
        """
        if get_ident() != self._tid:  # another OS thread: hand over (threads.py)
            return request_in_owner(self._tid, UDPServer.request_async,
                                    self, socket, type, data, timeout).get()
        endpoint = self._endpoint
        if endpoint is not None and endpoint.greenlet is gevent.getcurrent():
            raise UnsupportedError("request() inside this server's own handler would wait "
                                   "for a reply its greenlet can never receive; use "
                                   "request_async() or gevent.spawn")
        return self.request_async(socket, type, data, timeout).get()

    def describe(self, socket: Any, timeout: float | None = 10.0) -> dict[str, dict[str, Any]]:
        """A peer's ``define`` tables: ``{"listen": {...}, "broadcast": {...}}``."""
        return self.request(socket, DESCRIBE, None, timeout)

    def remote_stats(self, socket: Any, timeout: float | None = 10.0) -> dict[str, Any]:
        """A peer's ``stats()``, if it answers stats requests (``config.stats_requests``;
        else NoHandlerError)."""
        return self.request(socket, STATS, None, timeout)

    def _expire(self, request_id: int, type: str, timeout: float) -> None:
        entry = self._waiting.pop(request_id, None)
        if entry is not None:
            self.asked.timed_out += 1
            entry[0].set_exception(Timeout(f"no reply to {type!r} within {timeout} s "
                                           f"(lost, or the peer did not answer)"))

    def _on_reply(self, peer: UDPSocket, request_id: Any, status: int, data: Any) -> None:
        entry = self._waiting.get(request_id)
        if entry is None or entry[1] != (peer.address, peer.port):
            # late, duplicated, or from someone we did not ask
            self.late_replies += 1
            self.log("<notice>geventipc: discarded an unexpected UDP reply</notice>",
                     request_id, "<notice>from</notice>", f"{peer.address}:{peer.port}")
            return
        del self._waiting[request_id]
        result, _key, timer = entry
        if timer is not None:
            timer.stop()
        if status == REPLY_OK:
            self.asked.answered += 1
        else:
            self.asked.failed += 1
        settle(result, status, data)

    # --- sending -------------------------------------------------------------------------

    def _destination(self, socket: Any) -> SockAddr | None:
        """The socket address ``socket`` names, or None if it gives no address and port
        (node-ipc then broadcasts). Raises AddressError for something that is no address."""
        if isinstance(socket, UDPSocket):
            if socket.family != self._family_name:
                raise AddressError(f"{socket!r} is an {socket.family} peer; this "
                                   f"{self.udp_type} server cannot send to it")
            return socket.sockaddr
        if socket is None:
            return None
        if isinstance(socket, Mapping):
            address, port = socket.get("address"), socket.get("port")
        elif isinstance(socket, (tuple, list)):
            if len(socket) not in (2, 4):
                raise AddressError(f"{_NO_DESTINATION}; got {socket!r}")
            address, port = socket[0], socket[1]
        elif isinstance(socket, (str, bytes, bytearray, int, float)):
            raise AddressError(f"{_NO_DESTINATION}; got {socket!r}")
        else:
            address, port = getattr(socket, "address", None), getattr(socket, "port", None)
        if not address or not port:
            return None
        return resolve(address, port, self.family)

    def _live_endpoint(self) -> DatagramEndpoint:
        endpoint = self._endpoint
        if endpoint is None:
            raise NotConnectedError("the UDP server is not started (call start() first)")
        if self._stopped.is_set():
            raise NotConnectedError("the UDP server is stopped")
        return endpoint

    def _send(self, frame: bytes, sockaddr: SockAddr) -> None:
        self._live_endpoint().send(frame, sockaddr)

    def emit(self, socket: Any, type: str, data: Any = None) -> bool:
        """Send one event to one peer as one datagram; True once the kernel took it.

        ``socket`` is a handler's socket, a ``{"address", "port"}`` dict or a
        ``(host, port)`` tuple; in raw mode it is ``emit(socket, data)`` with bytes or str,
        one datagram each. One without address or port makes this a broadcast, with
        a logged notice, as in node-ipc. Raises DatagramTooLargeError (the encoded event
        does not fit in one datagram; nothing sent), EventNameError, EncodeError,
        AddressError, SendError, NotConnectedError. Delivery is not confirmed.
        """
        if get_ident() != self._tid:  # another OS thread: hand over (threads.py)
            return call_in_owner(self._tid, UDPServer.emit, self, socket, type, data)
        sockaddr = self._destination(socket)
        if sockaddr is None:
            self.log("<notice>geventipc: emit to a UDP socket without address or port; "
                     "broadcasting</notice>", repr(type),
                     "<notice>to every peer heard from instead</notice>")
            self.broadcast(type, data)
            return True
        if self._encoder.framed:  # raw mode: emit(socket, data), no event type
            self.names.check_outgoing(type)
        self._send(self._encoder.encode_event(type, data), sockaddr)
        return True

    def broadcast(self, type: str, data: Any = None) -> int:
        """Send one event to every peer this server has heard from; returns how many.

        The event is encoded and size-checked once, before anything is sent. A peer the
        system refuses to send to is reported as an ``error`` event (``exc.socket``) and
        the others still get the event. In raw mode: ``broadcast(data)``.
        """
        if get_ident() != self._tid:  # another OS thread: hand over (threads.py)
            return call_in_owner(self._tid, UDPServer.broadcast, self, type, data)
        if self._encoder.framed:
            self.names.check_outgoing(type)
        frame = self._encoder.encode_event(type, data)
        endpoint = self._live_endpoint()
        endpoint.check_size(len(frame))
        sent = 0
        for peer in list(self._peers.values()):
            try:
                endpoint.send(frame, peer.sockaddr)
            except IPCError as exc:
                exc.socket = peer  # type: ignore[attr-defined]
                self.report(exc)
                continue
            sent += 1
        return sent


def _leftover(decoder: Any) -> bool:
    """True if the datagram just fed ended inside a frame.

    A codec's ``buffered`` may be an upper bound (msgpack's is: its unpacker consumes the
    finished parts of an unfinished frame), so 0 is exact and settles the usual datagram;
    otherwise ``incomplete()``, where a codec has it, is exact.
    """
    if not decoder.buffered:
        return False
    incomplete = getattr(decoder, "incomplete", None)
    return bool(incomplete()) if incomplete is not None else True


__all__ = ["UDPServer", "UDPSocket"]
