"""The seed's UDP "World" server: answers every ``message`` it hears with
``{"from": "world", "message": data["message"] + " world!"}``, sent back to the sender.

    python examples/udp_world.py [port]                 # default: config.network_port (8000)
    python examples/udp_hello.py [world_port [own_port]]  # in another terminal

A UDP peer is server and client at once: it binds its own port, hears anyone, and
answers to the address a datagram came from (the handler's ``socket``). Stop it with
Ctrl-C or SIGTERM.
"""
import sys

from geventipc import ipc

ipc.config.id = "world"
ipc.config.retry = 1500            # as in the seed; UDP never reconnects, so it is unused
if len(sys.argv) > 1:
    ipc.config.network_port = int(sys.argv[1])


def started():
    @ipc.server.on("message")
    def on_message(data, socket):
        ipc.log("<debug>got a message from</debug>", ipc.log.style("variable", data["from"]),
                "<debug>:</debug>", ipc.log.style("variable", data["message"]))
        ipc.server.emit(socket, "message",   # socket: the sender's address, straight back
                        {"from": ipc.config.id, "message": data["message"] + " world!"})

    ipc.log("<good>world is listening on udp4</good>",
            f"{ipc.server.host}:{ipc.server.port}")


ipc.serve_net("udp4", started)     # host and port default to network_host, network_port
ipc.server.define.listen.message = \
    "This event type listens for message strings as value of data key."
ipc.server.start()
ipc.server.serve_forever()         # Ctrl-C, SIGTERM, SIGHUP: stops the server, returns here
ipc.log("<notice>world stopped</notice>")
