"""Live statistics of servers and clients, as plain dicts (``server.stats()``).

Sits above the server, client and UDP server: it reads the counters their connections
keep (:class:`~geventipc.transports.stream.StreamConnection`'s ``bytes_in``,
``events_in``, ``bytes_out``, ``events_out``, ``pending_bytes``, ``dropped``) and the
few things they count themselves (:mod:`geventipc.counters`), at the moment it is asked.
Nothing here runs on the hot path. Every field is described in docs/operations.md.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

from .counters import Totals

if TYPE_CHECKING:
    from .client import Client
    from .server import Server
    from .udp import UDPServer

#: bumped when a field changes meaning or goes away (new fields do not bump it)
SCHEMA = 1

#: extra sections of ``stats()`` from layers above (e.g. the cluster layer): name ->
#: function(server or client) returning a dict, or None to leave the section out
SECTIONS: dict[str, Callable[[Any], "dict[str, Any] | None"]] = {}
#: the fields of each extra section that are levels (gauges), not running counts; read
#: by geventipc.metrics to choose the Prometheus type
SECTION_GAUGES: dict[str, frozenset[str]] = {}


def add_section(name: str, read: Callable[[Any], "dict[str, Any] | None"],
                gauges: Iterable[str] = ()) -> None:
    """Add ``name`` to every ``stats()`` dict (servers, UDP servers and clients) as
    ``read(endpoint)``, where it returns a dict: how a layer on top (cluster) reports its
    own counters. ``gauges`` names the numeric fields that are levels (connected, queued
    now) rather than counts that only grow; the metrics export them as gauges, the other
    numbers as counters. A name already used by a field is refused."""
    if name in _RESERVED:
        raise ValueError(f"{name!r} is a stats field, not a free section name")
    SECTIONS[name] = read
    SECTION_GAUGES[name] = frozenset(gauges)


def _sections(endpoint: Any, out: dict[str, Any]) -> dict[str, Any]:
    for name, read in SECTIONS.items():
        section = read(endpoint)
        if section is not None:
            out[name] = section
    return out


def _transport(server: Any) -> str:
    if getattr(server, "udp_type", None):
        return str(server.udp_type)
    if getattr(server, "path", None) is not None:
        return "unix"
    return "tls" if getattr(server, "ssl_context", None) is not None else "tcp"


def _traffic(totals: Totals, conns: list[Any]) -> dict[str, int]:
    """Closed connections' totals plus the open ones' counters."""
    out = Totals()
    for counted in (totals, *conns):
        out.add(counted)
    return {name: getattr(out, name) for name in Totals.__slots__}


def server_stats(server: "Server", *, per_connection: bool = True) -> dict[str, Any]:
    """A stream server's statistics (docs/operations.md, "server.stats()")."""
    counts = server.counts
    conns = list(server._conns)
    traffic = _traffic(counts.totals, conns)
    pending = [conn.pending_bytes for conn in conns]
    largest = max(conns, key=lambda c: c.pending_bytes, default=None)
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": "server",
        "id": server.config.id,
        "transport": _transport(server),
        "address": server.path if server.path is not None else f"{server.host}:{server.port}",
        "started": server.started,
        "connections": {
            "now": len(conns),
            "peak": counts.peak,
            "accepted": counts.accepted,
            "refused": sum(counts.refused.values()),
            "refused_by_reason": dict(counts.refused),
            "handshaking": len(server._handshaking),
            "closed_by_error": dict(counts.closed_by_reason),
        },
        **{key: traffic[key] for key in ("events_in", "bytes_in", "events_out", "bytes_out")},
        "broadcasts": counts.broadcasts,
        "dropped": traffic["dropped"],
        "slow_consumer_cuts": counts.slow_consumer_cuts,
        "protocol_errors": dict(counts.protocol_errors),
        "handler_errors": server.handler_errors,
        "pending_bytes": sum(pending),
        "largest_backlog": {"bytes": largest.pending_bytes, "id": largest.id,
                            "address": largest.address}
        if largest is not None and largest.pending_bytes else None,
        "requests": counts.requests.as_dict(),
    }
    if per_connection:
        out["sockets"] = [conn.stats() for conn in conns]
    return _sections(server, out)


def client_stats(client: "Client") -> dict[str, Any]:
    """A client's statistics (docs/operations.md, "client.stats()")."""
    counts = client.counts
    conn = client.conn
    traffic = _traffic(counts.totals, [conn] if conn is not None else [])
    return _sections(client, {
        "schema": SCHEMA,
        "kind": "client",
        "id": client.config.id,
        "server": client.id,
        "transport": _transport(client),
        "connected": client.connected,
        "connects": counts.connects,
        "reconnects": max(counts.connects - 1, 0),
        **{key: traffic[key] for key in ("events_in", "bytes_in", "events_out", "bytes_out")},
        "queued": client.queued,
        "pending_bytes": conn.pending_bytes if conn is not None else 0,
        "protocol_errors": dict(counts.protocol_errors),
        "handler_errors": client.handler_errors,
        "late_replies": client.late_replies,
        "requests": {**counts.requests.as_dict(), "in_flight": client.in_flight},
    })


def udp_stats(server: "UDPServer") -> dict[str, Any]:
    """A UDP server's statistics (docs/operations.md, "UDP server")."""
    endpoint = server._endpoint
    return _sections(server, {
        "schema": SCHEMA,
        "kind": "udp",
        "id": server.config.id,
        "transport": server.udp_type,
        "address": f"{server.host}:{server.port}",
        "started": server.started,
        "peers": len(server._peers),
        "peers_forgotten": server.forgotten,
        "events_in": endpoint.datagrams_in if endpoint is not None else 0,
        "bytes_in": endpoint.bytes_in if endpoint is not None else 0,
        "events_out": endpoint.datagrams_out if endpoint is not None else 0,
        "bytes_out": endpoint.bytes_out if endpoint is not None else 0,
        "refused": server.refused,
        "handler_errors": server.handler_errors,
        "late_replies": server.late_replies,
        "requests": server.served.as_dict(),
        "requests_sent": server.asked.as_dict(),
    })


_RESERVED = frozenset({
    "schema", "kind", "id", "server", "transport", "address", "started", "connections",
    "events_in", "bytes_in", "events_out", "bytes_out", "broadcasts", "dropped",
    "slow_consumer_cuts", "protocol_errors", "handler_errors", "pending_bytes",
    "largest_backlog", "requests", "requests_sent", "sockets", "connected", "connects",
    "reconnects", "queued", "late_replies", "peers", "peers_forgotten", "refused",
})

__all__ = ["SCHEMA", "SECTIONS", "SECTION_GAUGES", "add_section", "server_stats",
           "client_stats", "udp_stats"]
