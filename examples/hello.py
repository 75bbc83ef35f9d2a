"""The seed's "hello" client over a Unix socket: says ``hello`` to the world server,
logs the answer, then disconnects.

    python examples/world.py &        # the server
    python examples/hello.py          # this client
"""
import sys

from gevent.event import Event

from geventipc import ipc

ipc.config.id = "hello"
ipc.config.retry = 1500
done = Event()
gone = Event()


def ready():
    world = ipc.of.world           # also ipc.of["world"]
    world.on("connect", lambda: (ipc.log("<good>## connected to world ##</good>"),
                                 world.emit("message", "hello")))
    world.on("disconnect", lambda: (ipc.log("<notice>disconnected from world</notice>"),
                                    gone.set()))

    @world.on("message")
    def on_message(data):
        ipc.log("<debug>got a message from world:</debug>", data)
        done.set()


ipc.connect_to("world", ready)     # returns at once; the connection lives in a greenlet
if not done.wait(timeout=10):      # a real client would keep running; the example stops
    ipc.log("<error>no answer from world within 10 s</error>")
    sys.exit(1)
ipc.disconnect("world")
gone.wait(timeout=5)               # the connection closes in its greenlet: let it finish
