"""A Python client saying hello to the Node.js node-ipc server in world.js here.

    node examples/nodejs/world.js &
    python examples/nodejs/hello.py

(or ``make demo-node``). With ``wire = "node-ipc"`` and node-ipc 9's socket root, geventipc
meets the Node.js server by id, exactly as a node-ipc client would.
"""
import os
import sys

from gevent.event import Event

from geventipc import ipc

ipc.config.id = "hello"
ipc.config.wire = "node-ipc"
ipc.config.socket_root = os.environ.get("IPC_SOCKET_ROOT", "/tmp/")
ipc.config.retry = 500
done = Event()


def ready():
    world = ipc.of.world
    # node-ipc servers take the sender's id from the data, so send it along
    world.on("connect", lambda: world.emit("message", {"id": ipc.config.id,
                                                       "message": "hello"}))
    world.on("news", lambda data: ipc.log("<notice>news:</notice>", data))

    @world.on("message")
    def on_message(data):
        ipc.log("<debug>got a message from world (a Node.js process):</debug>", data)
        print("answer:", data["message"], flush=True)
        done.set()


ipc.connect_to("world", ready)
if not done.wait(timeout=10):
    ipc.log("<error>no answer from world within 10 s</error>")
    sys.exit(1)
ipc.disconnect("world")
