"""A cluster node as its own process, driven line by line over stdin by the cluster tests.

``python tests/cluster_node.py URL INDEX [HEARTBEAT_MS]``: serves TCP on a free port with
``config.cluster = URL``; prints ``READY <port> <node_id>`` once joined, then answers each
command with one JSON line:

* ``broadcast N [SIZE]``: N broadcasts of ``news`` = [INDEX, i, padding]; ``{"ok": true}``
* ``stream N MS``: as broadcast, one every MS milliseconds (answers at once, runs on)
* ``stats``: the cluster's counters plus ``clients`` (local) and ``streamed``
* ``sockets``: ``cluster_sockets()``; ``emit_to ID EVENT``: its result; ``errors``: the
  ``error`` events seen (as text)
* ``block S``: time.sleep(S), holding the hub (a node too slow to read; not with
  GEVENTIPC_PATCH_ALL=1 in the environment, which runs the node monkey-patched)
"""
from __future__ import annotations

import os

if os.environ.get("GEVENTIPC_PATCH_ALL"):  # a node of an application that monkey-patches
    from gevent import monkey
    monkey.patch_all()

import json
import sys
import time

import gevent
from gevent.fileobject import FileObjectPosix

from geventipc import IPC

url, index = sys.argv[1], int(sys.argv[2])
heartbeat = int(sys.argv[3]) if len(sys.argv) > 3 else 200
ipc = IPC(id="world", cluster=url, cluster_heartbeat=heartbeat, silent=True,
          max_connections=1000)
ipc.serve_net("127.0.0.1", 0)
server = ipc.server
errors: list[str] = []
server.on("error", lambda exc: errors.append(f"{type(exc).__name__}: {exc}"))
server.start()
streamed = [0]


def out(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def stream(count: int, ms: float) -> None:
    for i in range(count):
        server.broadcast("news", [index, i, ""])
        streamed[0] = i + 1
        gevent.sleep(ms / 1000.0)


deadline = time.monotonic() + 10
while not server.cluster.connected and time.monotonic() < deadline:
    gevent.sleep(0.01)
sys.stdout.write(f"READY {server.port} {server.cluster.node_id}\n")
sys.stdout.flush()
stdin = FileObjectPosix(sys.stdin.fileno(), "rb")
for raw in stdin:
    cmd, *args = raw.decode().split()
    if cmd == "broadcast":
        pad = "x" * (int(args[1]) if len(args) > 1 else 0)
        for i in range(int(args[0])):
            server.broadcast("news", [index, i, pad])
            if i % 100 == 99:
                gevent.sleep(0)  # let the hub write, as a real application would
        out({"ok": True})
    elif cmd == "stream":
        gevent.spawn(stream, int(args[0]), float(args[1]))
        out({"ok": True})
    elif cmd == "stats":
        out(dict(server.cluster.stats(), clients=len(server.sockets), streamed=streamed[0]))
    elif cmd == "sockets":
        out(server.cluster_sockets())
    elif cmd == "emit_to":
        out(server.emit_to(args[0], args[1], [index, "direct"]))
    elif cmd == "errors":
        out(errors)
    elif cmd == "block":
        time.sleep(float(args[0]))
        out({"ok": True})
    elif cmd == "quit":
        break
server.stop()
