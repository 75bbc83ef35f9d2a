"""Limits at work: one server, a well-behaved client, and three bad peers.

    python examples/limits.py

The server runs with small limits so the demo is quick. A garbage sender, a peer that
sends a frame over ``max_message_size`` and a peer that never reads what is broadcast to it
are each disconnected with an ``error`` event naming the limit, while the good client's
ping/pong goes on untouched. See docs/limits.md.
"""
import socket
import tempfile

import gevent

from geventipc import IPC

sock_dir = tempfile.mkdtemp(prefix="gipc-limits-")
world = IPC(id="world", socket_root=sock_dir, max_message_size=64 * 1024,
            max_pending_bytes=64 * 1024, overflow_policy="disconnect",
            message_timeout=2000)
world.serve()
world.server.on("error", lambda exc: world.log(
    "<warn>refused a peer:</warn>", f"{type(exc).__name__}: {exc}"))
world.server.on("ping", lambda n, sock: world.server.emit(sock, "pong", n))
world.server.start()

hello = IPC(id="hello", socket_root=sock_dir, silent=True)
pongs = []
client = hello.connect_to("world")
client.on("pong", pongs.append)
client.wait_connected(5)


def pinger():
    for n in range(60):
        client.emit("ping", n)
        gevent.sleep(0.02)


def bad_peer(payload):
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    peer.connect(world.server.path)
    if payload:
        peer.sendall(payload)
    return peer


pinging = gevent.spawn(pinger)
gevent.sleep(0.1)
garbage = bad_peer(b"\xc1\xc1\xc1")                                   # not msgpack
huge = bad_peer(b"\x92\xa4note\xc6" + (10 * 2 ** 20).to_bytes(4, "big")  # 10 MiB coming
                + b"x" * 100_000)                                  # 100 KB of it sent
stalled = bad_peer(b"")                                              # never reads
gevent.sleep(0.1)
for n in range(200):                                  # 200 x 4 KiB: more than it can hold
    world.server.broadcast("news", b"n" * 4096)
    gevent.sleep(0.002)
pinging.join()
gevent.sleep(0.1)
world.log("<good>the good client got</good>", len(pongs), "<good>pongs of 60, in order:</good>",
          pongs == list(range(60)))
for peer in (garbage, huge, stalled):
    peer.close()
hello.disconnect("world")
world.server.stop()
