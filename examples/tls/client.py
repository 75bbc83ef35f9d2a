"""A mutual-TLS client: checks the server's certificate (CA and host name), shows its own,
sends a few messages and prints the answers.

    python examples/tls/server.py [port] &
    python examples/tls/client.py [port]      # default 8443 ($GEVENTIPC_TLS_PORT)

Certificates are made on first run with trustme (see certs.py) into a temp directory.
"""
import os
import sys

from gevent.event import Event

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from certs import cert  # noqa: E402

from geventipc import ipc  # noqa: E402

PORT = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("GEVENTIPC_TLS_PORT", 8443))
COUNT = int(os.environ.get("GEVENTIPC_TLS_COUNT", 3))

ipc.config.id = "client-1"
ipc.config.max_retries = 3
ipc.config.tls = {
    "public": cert("client.pem"),             # our certificate, from the client CA
    "private": cert("client.key"),
    "trustedConnections": [cert("server-ca.pem")],  # the only CA we accept the server from
    "servername": "localhost",                # the name the server's certificate must carry
}
replies = []
done = Event()


def ready():
    world = ipc.of.world

    @world.on("connect")
    def on_connect():
        # fires only after the handshake: the server has accepted our certificate
        print(f"connected over {world.conn.sock.version()}", flush=True)
        for i in range(COUNT):
            world.emit("message", i)

    @world.on("message")
    def on_message(data):
        print(f"reply: {data}", flush=True)
        replies.append(data)
        if len(replies) == COUNT:
            done.set()

    # a refused handshake (untrusted server, wrong host name...) arrives here, then retries
    world.on("error", lambda exc: print(f"error: {exc}", file=sys.stderr, flush=True))
    world.on("destroy", done.set)


ipc.connect_to_net("world", "127.0.0.1", PORT, ready)
done.wait(timeout=20)
ipc.disconnect("world")
sys.exit(0 if len(replies) == COUNT else 1)
