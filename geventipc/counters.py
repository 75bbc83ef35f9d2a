"""Plain counters the server and client keep for :mod:`geventipc.stats`.

Kept apart from ``stats`` (which reads servers and clients, so sits above them): the
objects here import nothing of the package, so the server and client can hold them.
Every update is one attribute ``+=`` or one list index, done where the code already
handles a batch or a rare event (a connection closing, a request answered), never per
event on the stream hot path.
"""
from __future__ import annotations

from bisect import bisect_left
from time import monotonic
from typing import Any

#: upper bounds (seconds) of the request latency histogram's buckets; one more bucket
#: (+Inf) takes the rest. Fixed, so histograms of different processes add up.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


class Histogram:
    """Counts of observed durations per fixed bucket (not cumulative), with their sum."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration."""
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds

    def since(self, started: float) -> None:
        """Count the time from ``started`` (a ``time.monotonic()``) to now."""
        self.observe(monotonic() - started)

    def as_dict(self) -> dict[str, Any]:
        """``{"buckets": [[le, cumulative count], ...], "count": n, "sum": s}``, the last
        bucket's ``le`` being ``"+Inf"`` (Prometheus's shape)."""
        out, total = [], 0
        bounds: list[Any] = [*LATENCY_BUCKETS, "+Inf"]
        for le, count in zip(bounds, self.counts):
            total += count
            out.append([le, total])
        return {"buckets": out, "count": total, "sum": self.sum}


class Requests:
    """Request/reply outcomes on one side, with the latency of those answered."""

    __slots__ = ("answered", "failed", "timed_out", "latency")

    def __init__(self) -> None:
        #: replies with a result
        self.answered = 0
        #: error replies (the handler raised, no handler) and requests lost with the
        #: connection
        self.failed = 0
        #: requests with no reply in time (client side)
        self.timed_out = 0
        #: seconds from request to reply, answered and failed alike
        self.latency = Histogram()

    def as_dict(self) -> dict[str, Any]:
        """The counts and the latency histogram as plain values."""
        return {"answered": self.answered, "failed": self.failed,
                "timed_out": self.timed_out, "latency_seconds": self.latency.as_dict()}


class Totals:
    """What closed connections had counted, so totals survive the connections."""

    __slots__ = ("bytes_in", "events_in", "bytes_out", "events_out", "dropped")

    def __init__(self) -> None:
        self.bytes_in = self.events_in = self.bytes_out = self.events_out = 0
        self.dropped = 0

    def add(self, conn: Any) -> None:
        """Take over a closing connection's counters (or another Totals' sums)."""
        self.bytes_in += conn.bytes_in
        self.events_in += conn.events_in
        self.bytes_out += conn.bytes_out
        self.events_out += conn.events_out
        self.dropped += conn.dropped


class ServerCounts:
    """What a stream server counts itself (the rest ``stats`` reads from connections)."""

    __slots__ = ("accepted", "peak", "refused", "closed_by_reason", "protocol_errors",
                 "slow_consumer_cuts", "broadcasts", "totals", "requests", "_started")

    def __init__(self) -> None:
        self.accepted = 0
        self.peak = 0
        #: connections closed at once, by reason: max_connections, stopping, tls_handshake
        self.refused: dict[str, int] = {}
        #: connections ended with an error, by the error's class name
        self.closed_by_reason: dict[str, int] = {}
        #: peers cut for malformed input, by the ProtocolError class name
        self.protocol_errors: dict[str, int] = {}
        self.slow_consumer_cuts = 0
        #: events passed to broadcast (each queued once per connected client)
        self.broadcasts = 0
        self.totals = Totals()
        self.requests = Requests()
        self._started: dict[tuple[Any, int], float] = {}

    def refuse(self, reason: str) -> None:
        """A connection closed as soon as it was accepted, for ``reason``."""
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def connected(self, now: int) -> None:
        """A connection was accepted; ``now`` connections are open."""
        self.accepted += 1
        if now > self.peak:
            self.peak = now

    def closed(self, conn: Any, reason: BaseException | None, protocol: type,
               slow: type) -> None:
        """``conn`` closed: keep its counters, and why it ended if by an error."""
        self.totals.add(conn)
        if reason is None:
            return
        name = type(reason).__name__
        self.closed_by_reason[name] = self.closed_by_reason.get(name, 0) + 1
        if isinstance(reason, slow):
            self.slow_consumer_cuts += 1
        elif isinstance(reason, protocol):
            self.protocol_errors[name] = self.protocol_errors.get(name, 0) + 1

    def request_started(self, conn: Any, request_id: int) -> None:
        """A request came in from ``conn``."""
        self._started[(conn, request_id)] = monotonic()

    def request_done(self, conn: Any, request_id: int, ok: bool) -> None:
        """Its reply is being sent (or the connection is gone)."""
        started = self._started.pop((conn, request_id), None)
        if ok:
            self.requests.answered += 1
        else:
            self.requests.failed += 1
        if started is not None:
            self.requests.latency.since(started)


class ClientCounts:
    """What a client counts: connections made, requests and their outcomes."""

    __slots__ = ("connects", "protocol_errors", "totals", "requests")

    def __init__(self) -> None:
        self.connects = 0
        self.protocol_errors: dict[str, int] = {}
        self.totals = Totals()
        self.requests = Requests()

    def closed(self, conn: Any, reason: BaseException | None, protocol: type) -> None:
        """The connection ended: keep its counters."""
        self.totals.add(conn)
        if isinstance(reason, protocol):
            name = type(reason).__name__
            self.protocol_errors[name] = self.protocol_errors.get(name, 0) + 1


__all__ = ["LATENCY_BUCKETS", "Histogram", "Requests", "Totals", "ServerCounts",
           "ClientCounts"]
