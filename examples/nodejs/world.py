"""A Python "world" server that Node.js node-ipc clients talk to (see hello.js here).

    python examples/nodejs/world.py &      # this server, at node-ipc 9's default /tmp/app.world
    node examples/nodejs/hello.js          # a node-ipc client: says hello, prints the answer

(or ``make demo-node``). The only changes from a geventipc-only server are the wire and the
socket root: ``wire = "node-ipc"`` speaks node-ipc's JSON frames, and node-ipc 9 looks for
``/tmp/`` + ``app.`` + id. Set IPC_SOCKET_ROOT to meet it elsewhere.
"""
import os
import signal

import gevent

from geventipc import ipc

ipc.config.id = "world"
ipc.config.wire = "node-ipc"                                   # node-ipc's JSON + "\f" frames
ipc.config.socket_root = os.environ.get("IPC_SOCKET_ROOT", "/tmp/")


def started():
    @ipc.server.on("message")
    def on_message(data, socket):
        # node-ipc clients send {"id": ..., "message": ...}; socket.id is that id
        ipc.log("<debug>got a message from</debug>", socket.id, "<debug>:</debug>", data)
        ipc.server.emit(socket, "message", {"id": ipc.config.id,
                                            "message": data["message"] + " world!"})

    ipc.server.on("socket.disconnected",
                  lambda socket, destroyed_id: ipc.log("client", destroyed_id, "left"))
    ipc.log("<good>world is listening for node-ipc clients at</good>", ipc.server.path)
    print("ready", flush=True)


ipc.serve(started)
ipc.server.start()
for signum in (signal.SIGINT, signal.SIGTERM):
    gevent.signal_handler(signum, ipc.server.stop)
ipc.server.serve_forever()
