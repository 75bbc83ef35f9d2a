"""The seed's UDP "Hello" server: binds its own port (8001, as world already has 8000),
sends ``{"from": "hello", "message": "Hello"}`` to world, logs the answer and exits.

    python examples/udp_world.py [world_port] &
    python examples/udp_hello.py [world_port [own_port]]

UDP has no connection and no delivery report: a datagram sent before world is listening
is simply lost. So hello says hello again every half second until world answers, and
gives up (exit status 1) after 10 s.
"""
import sys

from gevent.event import Event

from geventipc import ipc

ipc.config.id = "hello"
ipc.config.retry = 1500            # as in the seed; UDP never reconnects, so it is unused
if len(sys.argv) > 1:
    ipc.config.network_port = int(sys.argv[1])          # world's port
own_port = int(sys.argv[2]) if len(sys.argv) > 2 else 8001
answered = Event()


def say_hello():
    ipc.server.emit({"address": "localhost", "port": ipc.config.network_port}, "message",
                    {"from": ipc.config.id, "message": "Hello"})


def started():
    @ipc.server.on("message")
    def on_message(data, socket):
        ipc.log("<debug>got a message from</debug>", ipc.log.style("variable", data["from"]),
                "<debug>:</debug>", ipc.log.style("variable", data["message"]))
        answered.set()

    say_hello()


ipc.serve_net(own_port, "udp4", started)
ipc.server.define.listen.message = \
    "This event type listens for message strings as value of data key."
ipc.server.start()
for _attempt in range(20):
    if answered.wait(timeout=0.5):
        break
    ipc.log("<notice>no answer from world yet; saying hello again</notice>")
    say_hello()
ipc.server.stop()
if not answered.is_set():
    ipc.log("<error>no answer from world within 10 s</error>")
    sys.exit(1)
