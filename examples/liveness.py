"""Liveness in one process: a server, a client, and a peer that goes silent.

The heartbeat runs fast here (interval 200 ms, timeout 600 ms) so the demo is short:
a hand-written msgpack "server" welcomes the client and then never answers again; the
client finds it silent within timeout + interval, reports PeerTimeoutError, queues what
it emits meanwhile, and delivers it to the real server that takes over the address.

    python examples/liveness.py
"""
from __future__ import annotations

import os
import tempfile
import time

import gevent
import gevent.event
import msgpack
from gevent import socket

from geventipc import IPC
from geventipc.errors import PeerTimeoutError

root = tempfile.mkdtemp(prefix="gipc-liveness-")
path = os.path.join(root, "app.world")

# a peer that takes the connection (the welcome says it answers pings) and then hangs
silent = socket.socket(socket.AF_UNIX)
silent.bind(path)
silent.listen(1)


def hang() -> None:
    conn, _ = silent.accept()
    conn.sendall(msgpack.packb(["$ipc.welcome", {"ping": True}]))
    gevent.sleep(60)  # never reads, never answers


hanger = gevent.spawn(hang)

ipc = IPC(id="hello", socket_root=root, heartbeat_interval=200, heartbeat_timeout=600,
          retry=100, silent=True)
client = ipc.connect_to("world", path)
started = time.monotonic()
lost = gevent.event.Event()


@client.on("error")
def on_error(exc: Exception) -> None:
    if isinstance(exc, PeerTimeoutError):
        print(f"after {time.monotonic() - started:.1f} s: {type(exc).__name__}: {exc}")
        lost.set()


client.wait_connected(5)
print("connected to a peer that will never answer")
lost.wait(5)
client.emit("message", "sent while the server was gone")   # queued for the reconnect
print(f"queued while away: {client.queued}")

# a real server takes over the address; the client reconnects and delivers the queue
hanger.kill()
silent.close()
os.unlink(path)
world = IPC(id="world", socket_root=root, silent=True)
got = gevent.event.AsyncResult()
world.serve(path)
world.server.on("message", lambda data, sock: got.set(data))
world.server.start()
print(f"the new server got: {got.get(timeout=10)!r}")
ipc.disconnect("world")
world.server.stop()
os.rmdir(root)
