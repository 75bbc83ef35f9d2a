"""The kill-run server (soak/kill.py starts, kills -9 and restarts it): serves a Unix
socket and TCP, and appends every numbered event and request it receives to a log file,
one ``client seq`` line each, written straight to the file descriptor so a kill -9 loses
nothing it had received."""
from __future__ import annotations

import os
import sys

from geventipc import IPC


def main() -> None:
    path, port, log_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def record(data: list, sock) -> int:
        os.write(fd, f"{data[0]} {data[1]}\n".encode())
        return data[1]

    servers = []
    for serve in (lambda i: i.serve(path), lambda i: i.serve_net("127.0.0.1", port)):
        ipc = IPC(id="soak", silent=True)
        serve(ipc)
        ipc.server.on("n", record)
        ipc.server.handle("req", record)
        ipc.server.start()
        servers.append(ipc.server)
    print("ready", flush=True)
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
