"""A small Redis-protocol (RESP2) client on gevent sockets, parsing with ``hiredis.Reader``.

Why not redis-py: see docs/cluster.md ("Client library"). In short, every wait here is a
gevent socket wait (never ``select.poll`` or ``time.sleep`` on the hub), and the
publish path is one ``sendall`` of many pipelined commands whose replies are read by a
separate greenlet, which measured several times redis-py's rate.
"""
from __future__ import annotations

from typing import Any, Iterable

try:
    import hiredis
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("geventipc.cluster needs hiredis: pip install 'geventipc[cluster]'"
                      ) from exc
from gevent import socket as gsocket
from gevent import ssl as gssl

from ..errors import ClusterError
from .url import EngineAddress

#: bytes read from the engine at once; bounds what one read hands to the parser
READ_SIZE = 64 * 1024


def pack(*args: Any) -> bytes:
    """One command in RESP: ``pack("PUBLISH", channel, payload)``."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, (int, float)):
            arg = str(arg).encode()
        out.append(b"$%d\r\n" % len(arg))
        out.append(arg)
        out.append(b"\r\n")
    return b"".join(out)


class RespConnection:
    """One connection to the engine: ``call`` for request/response, ``send``/``read``
    for pipelines and pub/sub. Blocks only the calling greenlet."""

    def __init__(self, address: EngineAddress, timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        self.reader = hiredis.Reader()
        if address.scheme == "unix":
            sock = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(address.path)
            except BaseException:
                sock.close()
                raise
        else:
            sock = gsocket.create_connection((address.host, address.port), timeout=timeout)
            sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
            if address.tls:
                # gevent's own SSLContext: gevent.ssl.create_default_context returns the
                # standard library's, whose handshake would block the hub
                context = gssl.SSLContext(gssl.PROTOCOL_TLS_CLIENT)
                if address.ca_certs:
                    context.load_verify_locations(address.ca_certs)
                else:
                    context.load_default_certs()
                try:
                    sock = context.wrap_socket(sock, server_hostname=address.host)
                except BaseException:
                    sock.close()
                    raise
        self.sock = sock
        try:
            if address.password is not None:
                if address.username:
                    self.call("AUTH", address.username, address.password)
                else:
                    self.call("AUTH", address.password)
            if address.db:
                self.call("SELECT", address.db)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the socket (idempotent)."""
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes) -> None:
        """Write already-packed commands."""
        self.sock.sendall(data)

    def read(self, timeout: Any = "default") -> Any:
        """The next reply (an error reply is returned as ``hiredis.ReplyError``).

        Raises ``ConnectionError`` when the engine closes the connection and
        ``socket.timeout`` when nothing complete arrives within ``timeout``.
        """
        reply = self.reader.gets()
        if reply is not False:
            return reply
        self.sock.settimeout(self.timeout if timeout == "default" else timeout)
        while True:
            data = self.sock.recv(READ_SIZE)
            if not data:
                raise ConnectionError("the cluster engine closed the connection")
            self.reader.feed(data)
            reply = self.reader.gets()
            if reply is not False:
                return reply

    def call(self, *args: Any) -> Any:
        """Send one command and return its reply; an error reply raises ClusterError."""
        self.send(pack(*args))
        reply = self.read()
        if isinstance(reply, hiredis.ReplyError):
            raise ClusterError(f"cluster engine refused {args[0]}: {reply}")
        return reply

    def pipeline(self, commands: Iterable[bytes]) -> list[Any]:
        """Send packed commands in one write, then read one reply each."""
        commands = list(commands)
        self.send(b"".join(commands))
        return [self.read() for _ in commands]
