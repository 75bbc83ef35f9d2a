"""The soak server: one process serving a Unix socket and TCP, checking every client's
sequence numbers as they arrive (see soak/soak.py, which starts it)."""
from __future__ import annotations

import sys

from geventipc import IPC


def main() -> None:
    path, port = sys.argv[1], int(sys.argv[2])
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
        if seq % 16 == 15:
            sock.emit("ack", seq)

    def report(_data, _sock) -> dict:
        return {"received": received, "next": expected, "faults": faults[:20],
                "errors": errors[:20]}

    servers = []
    for ipc, serve in ((IPC(id="soak", silent=True), lambda i: i.serve(path)),
                       (IPC(id="soak", silent=True), lambda i: i.serve_net("127.0.0.1", port))):
        serve(ipc)
        ipc.server.on("msg", on_msg)
        ipc.server.on("error", lambda exc: errors.append(f"{type(exc).__name__}: {exc}"))
        ipc.server.handle("report", report)
        ipc.server.start()
        servers.append(ipc.server)
    print("ready", flush=True)
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
