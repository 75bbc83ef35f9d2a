"""One node of the "world" cluster: ``python world.py URL PORT NAME``.

Every node serves its own clients on its own port; ``config.cluster`` joins them, so a
broadcast made on any node reaches the clients of all of them, and ``emit_to`` finds a
client by its id on whichever node it is.
"""
import sys

import gevent

from geventipc import IPC

url, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ipc = IPC(id="world", silent=True)
ipc.config.cluster = url             # redis://, rediss:// (TLS) or unix://


def started() -> None:
    print(f"[{name}] serving on 127.0.0.1:{port}, cluster node {ipc.server.cluster.node_id}",
          flush=True)


ipc.serve_net("127.0.0.1", port, started)
server = ipc.server


@server.on("whisper")
def whisper(data, socket):
    # the addressee may be connected to another node: emit_to finds it there
    sent = server.emit_to(data["to"], "whisper", {"from": socket.id, "text": data["text"]})
    print(f"[{name}] whisper from {socket.id} to {data['to']}: "
          f"{'sent' if sent else 'no such client'}", flush=True)


@server.on("error")
def error(exc):
    print(f"[{name}] error: {exc}", flush=True)


def news() -> None:
    for n in range(1, 100):
        gevent.sleep(0.5)
        server.broadcast("news", f"{name} says hi #{n}")
        if n == 4:
            print(f"[{name}] cluster_sockets() = {server.cluster_sockets()}", flush=True)


gevent.spawn(news)
server.serve_forever()
