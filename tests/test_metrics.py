"""The Prometheus endpoint (issue 14): scraped with a real HTTP client while traffic flows,
parsed with prometheus_client's own parser, numbers checked against what was sent."""
import gevent
import pytest

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from geventipc.metrics import serve_metrics  # noqa: E402
from conftest import serve, wait_until  # noqa: E402


def scrape(url):
    # a real HTTP client over a real socket (cooperative: urllib on a gevent socket would
    # block the hub that serves the endpoint, so gevent's own socket is used)
    from gevent import socket as gsocket
    host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
    sock = gsocket.create_connection((host, int(port)), timeout=5)
    try:
        sock.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"200", head
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            key = (s.name, tuple(sorted((k, v) for k, v in s.labels.items()
                                        if k not in ("server", "transport", "role"))))
            samples.setdefault(s.labels.get("role"), {})[key] = s.value
            samples.setdefault("labels", set()).add(
                (s.labels.get("server"), s.labels.get("transport"), s.labels.get("role")))
    return samples


def test_scrape_while_traffic_flows_matches_what_was_sent(make_ipc):
    world = serve(make_ipc)
    world.server.handle("add", lambda data, socket: data + 1)
    got = []
    world.server.on("m", lambda data, socket: got.append(data))
    hello = make_ipc("hello")
    client = hello.connect_to("world")
    client.wait_connected(5)
    endpoint = serve_metrics("127.0.0.1", 0, world.server, client)
    try:
        sent = 0
        mid = None
        for burst in range(5):
            for i in range(200):
                client.emit("m", i)
                sent += 1
            if burst == 2:
                mid = scrape(endpoint.url)   # while events are still in flight
            gevent.sleep(0)
        for i in range(4):
            assert client.request("add", i, timeout=5) == i + 1
        world.server.broadcast("b", 1)
        wait_until(lambda: len(got) == sent)
        wait_until(lambda: client.stats()["events_in"] >= 5)
        after = scrape(endpoint.url)
    finally:
        endpoint.stop()
    assert 0 < mid["server"][("geventipc_events_received_total", ())] <= sent + 1
    srv, cli = after["server"], after["client"]
    assert srv[("geventipc_events_received_total", ())] == sent + 1 + 4  # hello, requests
    assert cli[("geventipc_events_sent_total", ())] == sent + 1 + 4
    assert srv[("geventipc_received_bytes_total", ())] == \
        cli[("geventipc_sent_bytes_total", ())]
    assert srv[("geventipc_connections", ())] == 1
    assert srv[("geventipc_broadcasts_total", ())] == 1
    assert srv[("geventipc_requests_total", (("outcome", "answered"),))] == 4
    assert cli[("geventipc_requests_total", (("outcome", "answered"),))] == 4
    assert srv[("geventipc_request_duration_seconds_count", ())] == 4
    assert srv[("geventipc_request_duration_seconds_bucket", (("le", "+Inf"),))] == 4
    assert cli[("geventipc_client_connected", ())] == 1
    assert ("world", "unix", "server") in after["labels"]
    assert ("world", "unix", "client") in after["labels"]


def test_udp_server_metrics(make_ipc):
    a = make_ipc("a")
    a.serve_net("127.0.0.1", 0, "udp4")
    got = []
    a.server.on("m", lambda data, socket: got.append(data))
    a.server.start()
    b = make_ipc("b")
    b.serve_net("127.0.0.1", 0, "udp4")
    b.server.start()
    for i in range(7):
        b.server.emit(("127.0.0.1", a.server.port), "m", i)
    wait_until(lambda: len(got) == 7)
    endpoint = serve_metrics("127.0.0.1", 0, a.server)
    try:
        samples = scrape(endpoint.url)["server"]
    finally:
        endpoint.stop()
    assert samples[("geventipc_events_received_total", ())] == 7
    assert samples[("geventipc_udp_peers", ())] == 1


def test_the_metrics_example_runs_and_prints_a_scrape():
    from conftest import run_example
    out = run_example(["examples/metrics.py"], {})
    assert out.returncode == 0, out.stderr
    assert 'geventipc_events_received_total{role="server",server="world",transport="unix"} ' \
           '606.0' in out.stdout
    assert '"broadcasts": 1' in out.stdout
