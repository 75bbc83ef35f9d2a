"""The seed's "hello" client over TCP: says ``hello`` to the world server, logs the
answer, then disconnects.

    python examples/tcp_world.py [port] &
    python examples/tcp_hello.py [port]
"""
import sys

from gevent.event import Event

from geventipc import ipc

ipc.config.id = "hello"
ipc.config.retry = 1500
ipc.config.network_host = "127.0.0.1"   # IPv4 loopback (the default, "localhost", may be ::1)
if len(sys.argv) > 1:
    ipc.config.network_port = int(sys.argv[1])
done = Event()
gone = Event()


def ready():
    world = ipc.of.world
    world.on("connect", lambda: (ipc.log("<good>## connected to world ##</good>"),
                                 world.emit("message", "hello")))
    world.on("disconnect", lambda: (ipc.log("<notice>disconnected from world</notice>"),
                                    gone.set()))

    @world.on("message")
    def on_message(data):
        ipc.log("<debug>got a message from world:</debug>", data)
        done.set()


ipc.connect_to_net("world", ready)  # host and port from config; may be left out in order
if not done.wait(timeout=10):
    ipc.log("<error>no answer from world within 10 s</error>")
    sys.exit(1)
ipc.disconnect("world")
gone.wait(timeout=5)               # the connection closes in its greenlet: let it finish
