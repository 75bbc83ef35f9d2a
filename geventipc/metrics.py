"""Prometheus metrics of geventipc servers and clients (``pip install geventipc[metrics]``).

A collector reads ``stats()`` of the servers and clients it was given at scrape time:
nothing is pushed from the hot path, and an idle endpoint costs nothing. Served by
gevent's own WSGI server (``gevent.pywsgi``) in a greenlet of the application's hub, so
a scrape never blocks the hub and reads the counters from the thread that owns them::

    from geventipc.metrics import serve_metrics
    endpoint = serve_metrics("127.0.0.1", 9100, ipc.server)   # GET /metrics

Why not ``prometheus_client.start_http_server``: it serves from a daemon thread. Both
ways it answers (checked: 50 of 50 scrapes during traffic, with and without
``gevent.monkey.patch_all()``), but without monkey patching that is a real OS thread
running the collector outside the hub, beside it, competing for the GIL and reading the
server's tables between two of the hub's steps; patched, it is a greenlet. gevent's WSGI
server is a greenlet either way, and can be stopped. Metric names and labels:
docs/operations.md.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Iterator

try:
    from prometheus_client import CollectorRegistry, make_wsgi_app
    from prometheus_client.core import (
        CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric,
    )
except ImportError as exc:  # pragma: no cover - the optional extra is not installed
    raise ImportError("geventipc.metrics needs prometheus_client: "
                      "pip install 'geventipc[metrics]'") from exc

from gevent.pywsgi import WSGIServer

from .stats import SECTION_GAUGES, SECTIONS

PREFIX = "geventipc_"
LABELS = ("server", "transport", "role")


def _le(bound: Any) -> str:
    return "+Inf" if bound == "+Inf" else repr(float(bound))


class _Families:
    """Metric families by name, made on first use, each with the common labels."""

    def __init__(self) -> None:
        self.families: dict[str, Any] = {}

    def add(self, kind: type, name: str, doc: str, labels: list[str], value: Any,
            extra: tuple[str, ...] = ()) -> None:
        family = self.families.get(name)
        if family is None:
            family = self.families[name] = kind(PREFIX + name, doc,
                                                labels=[*LABELS, *extra])
        family.add_metric(labels, value)

    def histogram(self, name: str, doc: str, labels: list[str], hist: dict[str, Any]) -> None:
        family = self.families.get(name)
        if family is None:
            family = self.families[name] = HistogramMetricFamily(
                PREFIX + name, doc, labels=list(LABELS))
        family.add_metric(labels, [(_le(le), count) for le, count in hist["buckets"]],
                          sum_value=hist["sum"])


def _common(f: _Families, labels: list[str], s: dict[str, Any]) -> None:
    counter, gauge = CounterMetricFamily, GaugeMetricFamily
    f.add(counter, "events_received", "Events (frames) received", labels, s["events_in"])
    f.add(counter, "events_sent", "Events (frames) queued to send", labels, s["events_out"])
    f.add(counter, "received_bytes", "Bytes received", labels, s["bytes_in"])
    f.add(counter, "sent_bytes", "Bytes queued to send", labels, s["bytes_out"])
    f.add(counter, "handler_errors", "Event handlers that raised", labels,
          s["handler_errors"])
    if "pending_bytes" in s:
        f.add(gauge, "pending_bytes", "Bytes queued and not yet taken by the kernel",
              labels, s["pending_bytes"])
    for kind, count in s.get("protocol_errors", {}).items():
        f.add(counter, "protocol_errors", "Peers cut for malformed input, by error",
              [*labels, kind], count, ("kind",))
    requests = s["requests"]
    for outcome in ("answered", "failed", "timed_out"):
        f.add(counter, "requests", "Requests by outcome", [*labels, outcome],
              requests[outcome], ("outcome",))
    f.histogram("request_duration_seconds", "Seconds from request to reply", labels,
                requests["latency_seconds"])


def _server(f: _Families, labels: list[str], s: dict[str, Any]) -> None:
    counter, gauge = CounterMetricFamily, GaugeMetricFamily
    conns = s["connections"]
    f.add(gauge, "connections", "Connections open now", labels, conns["now"])
    f.add(gauge, "connections_peak", "Most connections open at once", labels, conns["peak"])
    f.add(counter, "connections_accepted", "Connections accepted", labels, conns["accepted"])
    for reason, count in conns["refused_by_reason"].items():
        f.add(counter, "connections_refused", "Connections refused, by reason",
              [*labels, reason], count, ("reason",))
    f.add(counter, "broadcasts", "Events broadcast (each sent to every client)", labels,
          s["broadcasts"])
    f.add(counter, "events_dropped", "Events dropped by overflow_policy drop", labels,
          s["dropped"])
    f.add(counter, "slow_consumer_disconnects",
          "Clients disconnected past max_pending_bytes", labels, s["slow_consumer_cuts"])
    backlog = s["largest_backlog"]
    f.add(gauge, "largest_backlog_bytes", "Pending bytes of the most backed-up client",
          labels, backlog["bytes"] if backlog else 0)


def _client(f: _Families, labels: list[str], s: dict[str, Any]) -> None:
    counter, gauge = CounterMetricFamily, GaugeMetricFamily
    f.add(gauge, "client_connected", "1 while the client is connected", labels,
          int(s["connected"]))
    f.add(counter, "client_reconnects", "Connections made after the first", labels,
          s["reconnects"])
    f.add(gauge, "client_queued_events", "Events queued while not connected", labels,
          s["queued"])


def _udp(f: _Families, labels: list[str], s: dict[str, Any]) -> None:
    counter, gauge = CounterMetricFamily, GaugeMetricFamily
    f.add(gauge, "udp_peers", "UDP peers heard from (broadcast targets)", labels, s["peers"])
    f.add(counter, "udp_refused_datagrams", "Datagrams refused (malformed, too large)",
          labels, s["refused"])


_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


def _sections(f: _Families, labels: list[str], s: dict[str, Any]) -> None:
    """The sections layers add with :func:`geventipc.stats.add_section` (the cluster's):
    ``<section>_<field>``, a counter (``_total``) for each number that only grows, a gauge
    for the fields the layer named as levels (booleans as 0/1), and the text fields (a
    node id) as the labels of one ``<section>_info`` gauge of value 1."""
    for section in SECTIONS:
        fields = s.get(section)
        if not isinstance(fields, dict):
            continue
        prefix = _UNSAFE.sub("_", section)
        gauges = SECTION_GAUGES.get(section, frozenset())
        info: dict[str, str] = {}
        for key, value in fields.items():
            name = f"{prefix}_{_UNSAFE.sub('_', key)}"
            if isinstance(value, str):
                info[_UNSAFE.sub("_", key)] = value
            elif isinstance(value, bool) or key in gauges and isinstance(value, (int, float)):
                f.add(GaugeMetricFamily, name, f"stats()[{section!r}][{key!r}] now",
                      labels, float(value))
            elif isinstance(value, (int, float)):
                f.add(CounterMetricFamily, name, f"stats()[{section!r}][{key!r}]",
                      labels, value)
        if info:
            f.add(GaugeMetricFamily, f"{prefix}_info",
                  f"stats()[{section!r}]'s text fields, as labels", [*labels, *info.values()],
                  1, tuple(info))


class StatsCollector:
    """A ``prometheus_client`` collector of the ``stats()`` of servers, UDP servers and
    clients, read at each scrape. Add more with :meth:`add`."""

    def __init__(self, *sources: Any) -> None:
        self.sources: list[Any] = list(sources)

    def add(self, source: Any) -> None:
        """Collect ``source``'s stats too (a server, UDP server or client)."""
        self.sources.append(source)

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the metrics depend on the sources at scrape time."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Read every source's ``stats()`` now and yield the metric families."""
        f = _Families()
        for source in self.sources:
            s = source.stats() if not isinstance(source, dict) else source
            kind = s["kind"]
            role = "client" if kind == "client" else "server"
            name = s["server"] if kind == "client" else s["id"]
            labels = [str(name), str(s["transport"]), role]
            _common(f, labels, s)
            {"server": _server, "client": _client, "udp": _udp}[kind](f, labels, s)
            _sections(f, labels, s)
        yield from f.families.values()


class MetricsEndpoint:
    """An HTTP endpoint serving the metrics (every path answers with them), in a
    greenlet; ``address`` is ``(host, port)`` with the real port; :meth:`stop` ends it."""

    def __init__(self, collector: StatsCollector, registry: Any, server: WSGIServer) -> None:
        self.collector = collector
        self.registry = registry
        self._server = server

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port."""
        host, port = self._server.address[:2]
        return host, port

    @property
    def url(self) -> str:
        """``http://host:port/metrics``."""
        host, port = self.address
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/metrics"

    def stop(self, timeout: float = 1.0) -> None:
        """Close the listening socket and the scrapes in progress."""
        self._server.stop(timeout=timeout)


def serve_metrics(host: str, port: int, *sources: Any, registry: Any = None
                  ) -> MetricsEndpoint:
    """Start serving the metrics of ``sources`` on ``host``:``port`` (0: a free port);
    returns at once. ``registry``: a ``prometheus_client`` registry to serve instead of
    a new one of its own (the collector is registered in it)."""
    collector = StatsCollector(*sources)
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server = WSGIServer((host, port), make_wsgi_app(registry), log=None, error_log=None)
    server.start()
    return MetricsEndpoint(collector, registry, server)


__all__ = ["StatsCollector", "MetricsEndpoint", "serve_metrics", "PREFIX", "LABELS"]
