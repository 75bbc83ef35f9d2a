"""The soak server: one process serving a Unix socket and TCP, checking every client's
sequence numbers as they arrive (see soak/soak.py, which starts it)."""
from __future__ import annotations

import random
import sys

import gevent

from geventipc import IPC


def main() -> None:
    path, port = sys.argv[1], int(sys.argv[2])
    kick_every = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    expected: dict[str, int] = {}   # client id -> next sequence number
    faults: list[str] = []
    errors: list[str] = []
    received = 0

    def on_msg(data: list, sock) -> None:
        nonlocal received
        client, seq = data[0], data[1]
        want = expected.get(client, 0)
        if seq != want:
            faults.append(f"{client}: got {seq}, expected {want}")
        expected[client] = max(want, seq + 1)
        received += 1
        if seq % 16 == 15 and not sock.closed:   # a kicked client's last events still come
            sock.emit("ack", seq)

    kicks = 0

    def report(_data, _sock) -> dict:
        return {"received": received, "next": expected, "faults": faults[:20],
                "errors": errors[:20], "kicks": kicks}

    def kicker() -> None:
        # the server closes a random client's connection now and then (gracefully, as
        # socket.close() does: what is queued is sent, and what the client sent is read)
        nonlocal kicks
        rng = random.Random(port)
        while True:
            gevent.sleep(rng.expovariate(1 / kick_every))
            victims = [s for server in servers for s in server.sockets
                       if s.id and s.id != "soak-probe"]
            if victims:
                rng.choice(victims).close()
                kicks += 1

    servers = []
    for ipc, serve in ((IPC(id="soak", silent=True), lambda i: i.serve(path)),
                       (IPC(id="soak", silent=True), lambda i: i.serve_net("127.0.0.1", port))):
        serve(ipc)
        ipc.server.on("msg", on_msg)
        ipc.server.on("error", lambda exc: errors.append(f"{type(exc).__name__}: {exc}"))
        ipc.server.handle("report", report)
        ipc.server.start()
        servers.append(ipc.server)
    if kick_every > 0:
        gevent.spawn(kicker)
    print("ready", flush=True)
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
