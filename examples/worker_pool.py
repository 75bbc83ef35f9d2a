"""Greenlet worker pools: the same 100 slow requests from 10 clients, served inline (one
at a time per connection, in order) and then by a pool of 100 (all at once); then a pool
of 5 under a flood, where reading pauses instead of dropping anything.

    python examples/worker_pool.py

Each server runs in a child process (this same file with ``--server``); the clients are
greenlets here, each with its own connection. Prints the timings and exits.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

import gevent
from gevent import subprocess  # its wait() lets the hub close the clients meanwhile

from geventipc import IPC

SLOW = 0.2


def run_server(socket_root: str, pool_size: str) -> None:
    """A server whose ``work`` handler takes SLOW seconds; ``stats`` reports the most
    handlers seen running at once."""
    size = int(pool_size) or None
    ipc = IPC(id="world", socket_root=socket_root, silent=True, handler_pool_size=size)
    ipc.serve()
    server = ipc.server
    state = {"now": 0, "peak": 0}

    @server.handle("work")
    def work(n, socket):
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        gevent.sleep(SLOW)
        state["now"] -= 1
        return n

    @server.handle("stats", pool=False)    # inline even when the server has a pool
    def stats(data, socket):
        return state

    server.start()
    print("ready", flush=True)
    server.serve_forever()


def start_server(root: str, pool_size: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--server", root,
                             str(pool_size)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit("the server did not start")
    return proc


def flood(root: str, clients: int, per_client: int) -> tuple[float, int, bool]:
    """(seconds, peak handlers at once, every reply right and in order)."""
    ipcs = [IPC(id=f"client{i}", socket_root=root, silent=True) for i in range(clients)]
    conns = [ipc.connect_to("world") for ipc in ipcs]
    for conn in conns:
        conn.wait_connected(5)
    started = time.monotonic()
    results = [[conn.request_async("work", n, timeout=60) for n in range(per_client)]
               for conn in conns]
    gevent.wait([r for rs in results for r in rs])
    elapsed = time.monotonic() - started
    correct = all([r.get() for r in rs] == list(range(per_client)) for rs in results)
    peak = conns[0].request("stats")["peak"]
    for ipc in ipcs:
        ipc.disconnect("world")
    return elapsed, peak, correct


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--server":
        run_server(sys.argv[2], sys.argv[3])
        return 0
    root = tempfile.mkdtemp(prefix="gipc-example-")
    os.chmod(root, 0o700)
    try:
        for title, pool_size, clients, per_client in [
            ("inline (no pool)", 0, 10, 10),
            ("handler_pool_size=100", 100, 10, 10),
            ("handler_pool_size=5, flooded", 5, 2, 25),
        ]:
            server = start_server(root, pool_size)
            try:
                elapsed, peak, correct = flood(root, clients, per_client)
            finally:
                server.terminate()
                server.wait(5)
            print(f"{title:30} {clients * per_client} requests of {SLOW} s: "
                  f"{elapsed:5.2f} s, at most {peak:3} handlers at once, "
                  f"all replies right: {correct}")
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
