"""The seed's "world" server over a Unix socket: answers every ``message`` with
``data + " world!"``.

    python examples/world.py          # then, in another terminal: python examples/hello.py

The socket is ``config.socket_root + config.appspace + config.id``: by default
``$XDG_RUNTIME_DIR/geventipc-<uid>/app.world`` (or the same under the temp dir). Stop it with
Ctrl-C or SIGTERM; the socket file is removed on the way out.
"""

from geventipc import ipc

ipc.config.id = "world"
ipc.config.retry = 1500            # milliseconds, as in node-ipc


def started():
    @ipc.server.on("message")
    def on_message(data, socket):
        ipc.log("<debug>got a message:</debug>", data)
        ipc.server.emit(socket, "message", data + " world!")

    ipc.server.on("socket.disconnected",
                  lambda socket, destroyed_id: ipc.log("client", destroyed_id, "left"))
    ipc.log("<good>world is listening at</good>", ipc.server.path)


ipc.serve(started)                 # path defaults to socket_root + appspace + id
ipc.server.start()                 # returns at once; serving runs in greenlets
ipc.server.serve_forever()         # until stop(), or Ctrl-C / SIGTERM / SIGHUP: stops cleanly
ipc.log("<notice>world stopped</notice>")
