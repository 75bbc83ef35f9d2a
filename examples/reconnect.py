"""What a client does while its server is away: events emitted meanwhile are queued and
arrive once, in order, after it reconnects to the restarted server. Exits by itself.

    python examples/reconnect.py
"""
import os
import tempfile

import gevent
from gevent.event import Event

from geventipc import IPC

root = tempfile.mkdtemp(prefix="geventipc-reconnect-")   # a private socket directory
last_count_in = Event()


def start_server(label):
    """A world server at the same path each time; logs what it receives."""
    world = IPC(id="world", socket_root=root)

    def on_count(data, socket):
        world.log(f"<good>{label} server got</good>", data)
        if data == 4:
            last_count_in.set()

    world.serve(lambda: world.server.on("count", on_count))
    world.server.start()
    return world.server


hello = IPC(id="hello", socket_root=root, retry=200)   # redial every 200 ms
client = hello.connect_to("world")
lost = Event()
client.on("connect", lambda: hello.log("<notice>client: connected</notice>"))
client.on("disconnect", lambda: (hello.log("<notice>client: disconnected</notice>"),
                                 lost.set()))
client.on("error", lambda exc: hello.log("<warn>client:</warn>", str(exc)))

client.emit("count", 0)                 # queued: not connected yet
server = start_server("first")
client.wait_connected(timeout=5)
client.emit("count", 1)
gevent.sleep(0.1)

server.stop()                           # the server goes away...
lost.wait(timeout=5)
for n in (2, 3, 4):
    client.emit("count", n)             # ...so these wait in the client's queue
hello.log("queued while away:", client.queued)

server = start_server("second")         # same path: the client finds it again
last_count_in.wait(timeout=10)
hello.disconnect("world")
server.stop()
os.rmdir(root)
