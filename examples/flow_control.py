"""Flow control: a burst of large broadcasts reaches every healthy client whole, a client
that never reads is cut after ``drain_timeout``, and ``drain()`` waits for the queues to
empty. Exits by itself (in about ``drain_timeout``, 1 s here).

    python examples/flow_control.py
"""
import socket
import tempfile
import time

import gevent

from geventipc import IPC

root = tempfile.mkdtemp(prefix="geventipc-flow-")  # a private socket directory
# drain_timeout (ms): how long a broadcaster waits at most for a client that is behind
world = IPC(id="world", socket_root=root, silent=True, drain_timeout=1000)
world.serve()
world.server.on("error", lambda exc: print("server error:", type(exc).__name__, exc))
world.server.start()

counts = {}
peers = []
for name in ("alpha", "beta", "gamma"):
    peer = IPC(id=name, socket_root=root, silent=True)
    client = peer.connect_to("world")
    counts[name] = 0
    client.on("blob", lambda data, name=name: counts.__setitem__(name, counts[name] + 1))
    client.wait_connected(5)
    peers.append(client)

# a peer that connects and never reads: it falls behind and stays behind
stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
stalled.connect(world.config.socket_path("world"))
gevent.sleep(0.1)

start = time.monotonic()
for _ in range(200):
    world.server.broadcast("blob", b"x" * 100_000)   # 20 MB to each client
    gevent.sleep(0)
print(f"200 broadcasts queued in {time.monotonic() - start:.1f} s")
print("drained:", world.server.drain(timeout=10))    # everything is with the kernel
gevent.sleep(0.5)
print("received:", counts)                           # 200 each
print("clients left:", len(world.server.sockets))    # the stalled one was cut

peers[0].emit("bye", "done")
print("client drained:", peers[0].drain(timeout=5))
stalled.close()
world.server.stop()
