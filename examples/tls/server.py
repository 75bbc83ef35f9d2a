"""A mutual-TLS server: only clients with a certificate from the client CA get in, and
each is answered by the name in its certificate.

    python examples/tls/server.py [port]      # default 8443 ($GEVENTIPC_TLS_PORT)
    python examples/tls/client.py [port]

Certificates are made on first run with trustme (see certs.py) into a temp directory.
"""
import os
import signal
import sys

import gevent

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from certs import cert  # noqa: E402

from geventipc import ipc  # noqa: E402

PORT = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("GEVENTIPC_TLS_PORT", 8443))
#: who may talk to us: the commonName of the client certificate
ALLOWED = {"client-1"}

ipc.config.id = "world"
ipc.config.tls = {
    "public": cert("server.pem"),             # our certificate
    "private": cert("server.key"),            # our key
    "trustedConnections": [cert("client-ca.pem")],  # client certificates must chain to it
    "requestCert": True,                      # mutual TLS: ask for a client certificate
    "rejectUnauthorized": True,               # the default, spelt out
}


def common_name(socket) -> str:
    """The commonName of a connection's verified client certificate."""
    subject = dict(pair[0] for pair in socket.peer_certificate["subject"])
    return subject.get("commonName", "")


def started():
    @ipc.server.on("connect")
    def on_connect(socket):
        # the certificate is verified already; here the application authorises by name
        name = common_name(socket)
        if name not in ALLOWED:
            ipc.log("<warn>refusing</warn>", name)
            socket.close()
            return
        socket.data["name"] = name
        ipc.log("<good>client connected:</good>", name, socket.sock.version())

    @ipc.server.on("message")
    def on_message(data, socket):
        ipc.server.emit(socket, "message", f"hello {socket.data['name']} #{data}")

    # handshakes refused (no certificate, wrong CA, expired...) arrive here
    ipc.server.on("error", lambda exc: ipc.log("<warn>refused:</warn>", exc))
    print(f"listening on 127.0.0.1:{ipc.server.port}", flush=True)


ipc.serve_net("127.0.0.1", PORT, started)
for signum in (signal.SIGINT, signal.SIGTERM):
    gevent.signal_handler(signum, ipc.server.stop)
ipc.server.serve_forever()
