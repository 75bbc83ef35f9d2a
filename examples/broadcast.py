"""Broadcast and per-client emit, with three clients in one process (independent ``IPC()``
instances): the server greets each client by its id, broadcasts a few ticks to all,
and notices each client leaving. Exits by itself.

    python examples/broadcast.py
"""
import os
import tempfile

import gevent
from gevent.event import Event

from geventipc import IPC

root = tempfile.mkdtemp(prefix="geventipc-broadcast-")  # a private socket directory
world = IPC(id="world", socket_root=root)


def started():
    @world.server.on("connect")
    def on_connect(socket):
        world.log("<good>clients connected:</good>", len(world.server.sockets))

    @world.server.on("hi")
    def on_hi(data, socket):                    # socket.id: the client's config.id
        socket.emit("welcome", f"hello {socket.id}")    # to this client only

    world.server.on("socket.disconnected",
                    lambda socket, destroyed_id: world.log("<notice>left:</notice>",
                                                           destroyed_id))


world.serve(started)
world.server.start()

clients = []
for name in ("alpha", "beta", "gamma"):
    peer = IPC(id=name, socket_root=root)
    client = peer.connect_to("world")
    welcomed, last_tick = Event(), Event()
    client.on("connect", lambda client=client: client.emit("hi"))
    client.on("welcome", lambda data, log=peer.log, name=name, done=welcomed:
              (log(f"<debug>{name} got:</debug>", data), done.set()))
    client.on("tick", lambda data, log=peer.log, name=name, done=last_tick:
              (log(f"<data>{name} tick</data>", data), data == 2 and done.set()))
    clients.append((peer, welcomed, last_tick))

gevent.wait([welcomed for _peer, welcomed, _tick in clients], timeout=10)
for n in range(3):
    world.server.broadcast("tick", n)           # every connected client, in order
gevent.wait([tick for _peer, _welcomed, tick in clients], timeout=10)

for peer, _welcomed, _tick in clients:
    peer.disconnect("world")
gevent.sleep(0.1)                               # let the server see them leave
world.server.stop()
os.rmdir(root)
