"""Statistics and Prometheus metrics of a server (docs/operations.md): a server with a
metrics endpoint on a free port, a few clients sending events and requests, a broadcast,
then ``server.stats()`` and one scrape of the endpoint printed. Ends by itself.

    pip install 'geventipc[metrics]'
    python examples/metrics.py          # or: make demo-metrics

In a real service, keep the endpoint running and point Prometheus at it; the metrics are
read from ``stats()`` at each scrape, nothing is pushed from the hot path.
"""
from gevent import monkey

monkey.patch_all()  # only so that urllib below scrapes cooperatively; not needed otherwise

import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import urllib.request  # noqa: E402

import gevent  # noqa: E402

from geventipc import IPC  # noqa: E402
from geventipc.metrics import serve_metrics  # noqa: E402

root = tempfile.mkdtemp(prefix="gipc-metrics-")
world = IPC(id="world", socket_root=root, silent=True)
world.serve()
world.server.on("tick", lambda data, socket: None)
world.server.handle("square", lambda data, socket: data * data)
world.server.start()
endpoint = serve_metrics("127.0.0.1", 0, world.server)
print("metrics at", endpoint.url)

clients = []
for n in range(3):
    ipc = IPC(id=f"client-{n}", socket_root=root, silent=True)
    client = ipc.connect_to("world")
    client.wait_connected(5)
    clients.append((ipc, client))
for n, (_ipc, client) in enumerate(clients):
    for i in range(100 * (n + 1)):
        client.emit("tick", {"i": i})
    assert client.request("square", n + 2, timeout=5) == (n + 2) ** 2
world.server.broadcast("news", "hello, everyone")
gevent.sleep(0.2)   # let the events arrive

stats = world.server.stats()
print("server.stats():", json.dumps({k: stats[k] for k in (
    "connections", "events_in", "events_out", "broadcasts", "pending_bytes")}, indent=2))
print("socket.stats() of the busiest client:",
      max(stats["sockets"], key=lambda s: s["events_in"]))

print("--- a scrape of", endpoint.url)
body = urllib.request.urlopen(endpoint.url, timeout=5).read().decode()
for line in body.splitlines():
    if line.startswith("geventipc_") and "_bucket" not in line:
        print(line)

for ipc, _client in clients:
    ipc.disconnect("world")
endpoint.stop()
world.server.stop()
os.rmdir(root)
