"""The seed's "world" server over TCP: answers every ``message`` with
``data + " world!"``.

    python examples/tcp_world.py [port]     # default: config.network_port (8000)
    python examples/tcp_hello.py [port]
"""
import sys

from geventipc import ipc

ipc.config.id = "world"
ipc.config.retry = 1500
ipc.config.network_host = "127.0.0.1"   # IPv4 loopback (the default, "localhost", may be ::1)
if len(sys.argv) > 1:
    ipc.config.network_port = int(sys.argv[1])


def started():
    @ipc.server.on("message")
    def on_message(data, socket):
        ipc.log("<debug>got a message:</debug>", data)
        ipc.server.emit(socket, "message", data + " world!")

    ipc.server.on("socket.disconnected",
                  lambda socket, destroyed_id: ipc.log("client", destroyed_id, "left"))
    ipc.log("<good>world is listening on</good>",
            f"{ipc.server.host}:{ipc.server.port}")


ipc.serve_net(started)             # host and port default to network_host, network_port
ipc.server.start()
ipc.server.serve_forever()         # Ctrl-C, SIGTERM, SIGHUP: stops the server, returns here
ipc.log("<notice>world stopped</notice>")
