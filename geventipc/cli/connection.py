"""Talking to a server: one facade client with clear connect failures, an ephemeral UDP
port (UDP has no client), and ``Asker`` for request and describe over either."""
from __future__ import annotations

from typing import Any, Callable

from gevent.event import Event

from ..errors import ConnectError, NotConnectedError, ProtocolError, Timeout, TLSError
from ..ipc import IPC
from .output import one_line
from .targets import Target


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying cannot help: a TLS refusal (an untrusted or missing certificate,
    a server that does not speak TLS), or a peer speaking another wire (ProtocolError)."""
    if isinstance(exc, ProtocolError):   # WireMismatchError, TLSMismatchError included
        return True
    return isinstance(exc, TLSError) and exc.permanent


class Connection:
    """One client of the facade, with its last error kept for a clear failure message.

    A permanent failure (:func:`is_permanent`) ends it at once: the command reports the
    reason instead of retrying until ``--timeout``.
    """

    def __init__(self, ipc: IPC, target: Target, on_ready: Callable[[Any], None] | None = None
                 ) -> None:
        self.ipc = ipc
        self.target = target
        #: the latest error event, for the reason in a connect failure
        self.last_error: BaseException | None = None
        #: the permanent failure that ended the connection, if one did
        self.fatal: BaseException | None = None
        self.ended = Event()
        self.connects = 0
        self.closing = False

        def setup() -> None:
            client = ipc.of[target.id]
            client.on("error", self._on_error)
            client.on("destroy", self.ended.set)
            client.on("connect", self._on_connect)
            client.on("disconnect", self._on_disconnect)
            if on_ready is not None:
                on_ready(client)

        if target.kind == "unix":
            self.client = ipc.connect_to(target.id, target.path, setup)
        else:
            self.client = ipc.connect_to_net(target.id, target.host, target.port, setup)

    def _on_error(self, exc: BaseException) -> None:
        self.last_error = exc
        if is_permanent(exc) and self.fatal is None:
            self.fatal = exc
            self.closing = True
            self.client.disconnect()   # no retry: it would fail the same way
            return
        if not isinstance(exc, ConnectError):
            self.ipc.log("<warn>geventipc:</warn>", one_line(exc))

    def _on_connect(self) -> None:
        self.connects += 1
        if self.connects > 1:
            self.ipc.log("<good>geventipc: reconnected to</good>", str(self.target))

    def _on_disconnect(self) -> None:
        if not self.closing:
            self.ipc.log("<notice>geventipc: lost the connection to</notice>",
                         str(self.target), "<notice>- reconnecting</notice>")

    def wait(self, timeout: float) -> None:
        """Block until connected; ConnectError (with the last reason) after ``timeout``."""
        try:
            self.client.wait_connected(timeout)
        except (Timeout, NotConnectedError):
            if self.fatal is not None:
                raise ConnectError(f"cannot connect to {self.target}: "
                                   f"{one_line(self.fatal)}") from None
            reason = f": {one_line(self.last_error)}" if self.last_error is not None else ""
            raise ConnectError(f"cannot connect to {self.target} within {timeout:.3g} s"
                               f"{reason}") from None

    def close(self, timeout: float) -> None:
        """Disconnect after sending what is queued; NotConnectedError if some was not."""
        self.closing = True
        self.client.disconnect()
        if not self.ended.wait(max(timeout, 0.05)):
            raise Timeout(f"could not finish sending to {self.target} within "
                          f"{timeout:.3g} s")
        if self.client.queued:
            raise NotConnectedError(f"{self.client.queued} event(s) not delivered: the "
                                    f"connection to {self.target} was lost")


def udp_endpoint(ipc: IPC, target: Target) -> Any:
    """UDP has no client: a UDP server on an ephemeral port sends (and gets replies)."""
    loopback = target.host in ("localhost", "127.0.0.1", "::1")
    v6 = target.udp_type == "udp6"
    bind = ("::1" if v6 else "127.0.0.1") if loopback else ("::" if v6 else "0.0.0.0")
    server = ipc.serve_net(bind, 0, target.udp_type)
    try:
        server.start()
    except OSError as exc:
        raise ConnectError(f"cannot bind a UDP port to send from: {one_line(exc)}") from None
    return server


class Asker:
    """``request``, ``describe`` and ``stats`` over a stream client or from an ephemeral UDP
    port."""

    def __init__(self, ipc: IPC, target: Target, timeout: float) -> None:
        self.ipc = ipc
        self.target = target
        self.udp: Any = None
        self.conn: Connection | None = None
        if target.kind == "udp":
            self.udp = udp_endpoint(ipc, target)
            self.peer = {"address": target.host, "port": target.port}
        else:
            self.conn = Connection(ipc, target)
            self.conn.wait(timeout)

    def request(self, type: str, data: Any, timeout: float | None) -> Any:
        """The reply to one request (raises RemoteError, NoHandlerError, Timeout)."""
        if self.udp is not None:
            return self.udp.request(self.peer, type, data, timeout)
        assert self.conn is not None
        try:
            return self.conn.client.request(type, data, timeout)
        except NotConnectedError:
            if self.conn.fatal is not None:   # the reason, not only "connection lost"
                raise ConnectError(f"{self.target}: {one_line(self.conn.fatal)}") from None
            raise

    def describe(self, timeout: float | None) -> dict[str, Any]:
        """The server's define tables."""
        if self.udp is not None:
            return self.udp.describe(self.peer, timeout)
        assert self.conn is not None
        return self.conn.client.describe(timeout)

    def close(self) -> None:
        """Drop the connection (or the UDP port)."""
        if self.udp is not None:
            self.udp.stop()
        else:
            self.ipc.disconnect(self.target.id)

    def __enter__(self) -> Asker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close on the way out, whether or not the command failed."""
        self.close()
