"""node-ipc habits that work as they are: handlers that take fewer arguments than the
event supplies, and a wire mismatch reported on both sides with what to set. Exits by
itself.

    python examples/ported_handlers.py
"""
import tempfile

import gevent
from gevent.event import Event

from geventipc import IPC

root = tempfile.mkdtemp(prefix="geventipc-ported-")   # a private socket directory
done = Event()

world = IPC(id="world", socket_root=root)
world.serve()
# JavaScript ignores extra arguments: so does geventipc, decided once at registration
world.server.on("connect", lambda: world.log("<good>server: a client connected</good>"))
world.server.on("message", lambda data: world.log("<good>server got</good>", data))
world.server.on("*", lambda type: world.log("<debug>server saw event</debug>", type))
world.server.on("error", lambda exc: world.log("<warn>server:</warn>", str(exc)))
world.server.start()

hello = IPC(id="hello", socket_root=root)
client = hello.connect_to("world")
client.on("connect", lambda: client.emit("message", "hello from a ported handler"))
client.on("error", lambda exc: hello.log("<warn>client:</warn>", str(exc)))

# a client on node-ipc's JSON wire talking to this msgpack server: both sides say so
other = IPC(id="other", socket_root=root, wire="node-ipc", max_retries=0)
wrong = other.connect_to("world")
wrong.on("connect", lambda: wrong.emit("message", {"id": "other"}))


def said(exc):
    other.log("<warn>node-ipc-wire client:</warn>", str(exc))
    done.set()


wrong.on("error", said)
done.wait(10)
gevent.sleep(0.2)
for ipc in (hello, other):
    for server_id in list(ipc.of):
        ipc.disconnect(server_id)
world.server.stop()
