"""Every exception geventipc raises or reports, in one place.

All of them derive from :class:`IPCError`, so ``except IPCError`` catches anything the
library itself decided to raise. Where a standard exception fits the meaning too
(``ValueError`` for bad arguments, ``TimeoutError`` for timeouts) the class inherits from
it as well, so generic handlers keep working.
"""
from __future__ import annotations

from typing import Any


class IPCError(Exception):
    """Base class of every geventipc error."""


# --- configuration and API misuse -----------------------------------------------------


class ConfigError(IPCError, ValueError):
    """An unknown config key, a value of the wrong type, or an inconsistent setting."""


class EventNameError(IPCError, ValueError):
    """An event name that may not be sent: empty, not a string, too long, reserved or not
    in ``allowed_events``."""


class EncodeError(IPCError, ValueError):
    """The data given to ``emit`` cannot be carried by the connection's wire format.

    Nothing was written when this is raised.
    """


class UnsupportedError(IPCError):
    """The operation is not available on this wire or transport (for example request/reply
    on the node-ipc JSON wire)."""


class NotReadyError(IPCError, AttributeError):
    """A name used before the call that makes it, or after the one that ends it:
    ``ipc.server.on`` before ``serve``/``serve_net``, ``ipc.of.world`` before
    ``connect_to("world")``, ``start()`` on a server that was stopped. The message says
    what to call first."""


class UnknownClientError(IPCError, KeyError):
    """``ipc.of[id]`` for an id that has no client: ``connect_to(id)`` first."""

    def __str__(self) -> str:
        # KeyError shows its argument's repr; this message is meant to be read as text
        return str(self.args[0]) if self.args else ""


# --- lifecycle ------------------------------------------------------------------------


class ServeError(IPCError, OSError):
    """A server could not start: address in use by a live server, bad path, no permission."""


class InsecureSocketRootError(ServeError):
    """The Unix socket directory is writable by other users and not sticky."""


class NotConnectedError(IPCError):
    """The operation needs a live connection and there is none (or it was closed)."""


class QueueFullError(IPCError):
    """The client's offline queue (events emitted while not connected) is full."""


class ConnectionLostError(NotConnectedError):
    """The connection closed while an operation (a request, a write) was still waiting."""


class Timeout(IPCError, TimeoutError):
    """A bounded wait ran out (``wait_connected``, ``request``).

    This is geventipc's own class, not ``gevent.Timeout``: catch
    ``geventipc.errors.Timeout`` (or the builtin ``TimeoutError``) around ``request()``.
    """


# --- peers that misbehave -------------------------------------------------------------


class ProtocolError(IPCError):
    """A peer sent bytes that are not a valid frame on this wire.

    The connection that received them is closed (stream transports) or the datagram is
    dropped (UDP); an ``error`` event carries this exception.
    """

    #: frames that decoded cleanly before the bad bytes, still to be dispatched
    frames: list[Any]

    def __init__(self, message: str, frames: list[Any] | None = None) -> None:
        super().__init__(message)
        self.frames = frames or []


class MessageTooLargeError(ProtocolError):
    """A frame (complete or partial) is larger than ``max_message_size``."""


class IncompleteMessageTimeoutError(ProtocolError):
    """A partial frame stayed incomplete for longer than ``message_timeout`` (slowloris)."""


class ForbiddenEventError(ProtocolError):
    """A peer sent an event name that is reserved, too long, empty or not allowed."""


class SlowConsumerError(IPCError):
    """A peer's outbound queue passed ``max_pending_bytes`` and the policy is
    ``"disconnect"``."""


# --- request/reply --------------------------------------------------------------------


class RemoteError(IPCError):
    """A request's handler raised on the remote side.

    ``remote_type`` is the name of the remote exception class, ``remote_message`` its text.
    """

    def __init__(self, remote_type: str, remote_message: str) -> None:
        super().__init__(f"{remote_type}: {remote_message}")
        self.remote_type = remote_type
        self.remote_message = remote_message


class NoHandlerError(RemoteError):
    """The remote side has no request handler for the requested event type."""


class ConnectError(IPCError, OSError):
    """A client could not connect: no socket file, refused, no permission, unknown host,
    timed out, TLS handshake refused. The client retries as its config says."""


class HandlerError(IPCError):
    """A local event handler raised; ``event`` names the event, ``__cause__`` is the error."""

    def __init__(self, event: str, exc: BaseException) -> None:
        super().__init__(f"handler for {event!r} raised {type(exc).__name__}: {exc}")
        self.event = event
        self.__cause__ = exc


# --- UDP ------------------------------------------------------------------------------


class DatagramTooLargeError(EncodeError):
    """An encoded event does not fit in one UDP datagram (65,507 bytes over IPv4, 65,527
    over IPv6). Raised by the UDP server's ``emit``/``broadcast``; nothing was sent."""


class AddressError(IPCError, ValueError):
    """A UDP destination that cannot be used: not an address, an unresolvable host, a
    port out of range, or an address of the other IP family (udp4 vs udp6)."""


class SendError(IPCError, OSError):
    """The operating system refused to send a datagram (network unreachable, no route,
    firewall); ``errno`` is the system's. Over UDP this is the only delivery failure ever
    reported: a datagram the kernel accepted may still be lost on the way."""


class UsageError(IPCError, ValueError):
    """A command-line argument or input the ``geventipc`` command cannot use (exit
    status 2): a bad TARGET, DATA that is not JSON, an option mix that cannot work."""


class TLSError(ConnectError):
    """A TLS handshake or session failed: a certificate not trusted, expired or for
    another host name, no client certificate where one is required, no common protocol
    version, or a handshake that took longer than ``handshake_timeout``.

    A client reports it as an ``error`` event and retries as its config says; a server
    reports it as an ``error`` event (``exc.address`` is the peer) and keeps serving.
    """

    #: the peer's address, where known
    address: Any = None
    #: True when a retry would fail the same way: a certificate refused (by either side),
    #: no common TLS version, a peer that does not speak TLS; False for a handshake that
    #: timed out or a connection closed during it
    permanent: bool = False


class WireMismatchError(ProtocolError):
    """The peer speaks another wire or transport than this side: msgpack against node-ipc's
    JSON wire, or TLS against plain TCP. Recognised from the first bytes of a connection
    (see :mod:`geventipc.wire.mismatch`); the message says what to set
    (``config.wire``, ``tls``). The connection is closed and an ``error`` event carries
    it, on both sides where the peer can be told."""


class TLSMismatchError(WireMismatchError, TLSError):
    """A plain (non-TLS) client connected to a TLS server: a WireMismatchError that is
    also the TLSError a TLS server reports for a failed handshake."""


# --- request/reply (issue 8) ----------------------------------------------------------


class AlreadyAnsweredError(IPCError, RuntimeError):
    """A deferred reply (``Deferred.send`` / ``fail``) was given twice for one request."""


class DeadlockError(IPCError, RuntimeError):
    """A blocking ``request()`` was made from the client connection's own greenlet (inside
    a client event handler or a ``connect`` handler): that greenlet is the one that would
    read the reply, so the call could only time out. Use ``request_async`` there, or
    ``gevent.spawn`` the call."""


class EventTooLargeError(EncodeError):
    """An event whose encoded frame is larger than ``max_message_size``: a peer with the
    same limit would refuse it and close the connection, so it is refused at ``emit``
    instead. Nothing was written."""


# --- liveness and admission (issue 15) ------------------------------------------------


class ServerFullError(ConnectError):
    """The server is at ``max_connections`` and refused this connection with
    ``$ipc.refused`` before reading anything.

    A client reports it as an ``error`` event, keeps its queued events and dials again
    after a growing delay (``retry`` ms, doubled at each refusal in a row, at most 32 x
    ``retry`` and 10 s). A server reports it as an ``error`` event for each refusal
    (``exc.address`` is the peer; its log line is rate-limited).
    """

    #: the refused peer's address, where known (server side)
    address: Any = None


class PeerTimeoutError(ConnectionLostError, TimeoutError):
    """The peer sent nothing, not even a heartbeat answer, for ``heartbeat_timeout`` ms:
    it vanished (host down, cable out, packets dropped) or hung. The connection is closed
    as lost; a client reconnects per its retry settings and queues again what the kernel
    had not taken."""


class AcceptError(IPCError, OSError):
    """The server's accept failed (``EMFILE``: out of file descriptors, ``ENFILE``,
    ``ENOBUFS``, ``ENOMEM``); ``errno`` is the system's. Reported as an ``error`` event
    (the log line is rate-limited); the server keeps serving and accepts again after a
    short, growing pause (gevent's: 10 ms doubling to 1 s)."""


class ThreadHandoffError(IPCError, TimeoutError):
    """A call from another OS thread was not taken by the hub of the thread that owns the
    connection within ``geventipc.threads.HANDOFF_TIMEOUT`` seconds (that thread is
    blocked outside gevent); the call was withdrawn: nothing of it happened."""


# --- cluster (geventipc.cluster) ------------------------------------------------------


class ClusterError(IPCError):
    """The cluster engine (Redis/Valkey) is unreachable or slow, or a message on the
    cluster channel was refused (not ours, garbage, another envelope version or wire).

    Fired as the server's ``error`` event (once per outage, not once per event);
    local clients are served throughout. See docs/cluster.md.
    """


# --- pre-fork workers (issue 12) ------------------------------------------------------


class ClusterRequiredError(ConfigError):
    """``config.workers`` > 1 without ``config.cluster``: each worker process has its own
    clients, so a broadcast or ``emit_to`` made in one could not reach the others' clients
    without the cluster joining them. Raised by ``serve``/``serve_net`` and ``start``."""


class WorkersError(IPCError):
    """The pre-fork workers' supervisor process died (it runs no application code, so
    this is not expected): the server stops, and this is its ``error`` event."""
