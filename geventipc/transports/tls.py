"""TLS for the stream transport: contexts from node-ipc's ``tls`` settings, and handshakes.

``make_context`` turns ``config.tls`` (node-ipc's dict, or a ready ``ssl.SSLContext``) into
a context that is safe by default: TLS 1.2 at least, the peer's certificate verified, the
host name checked on the client. Turning verification off takes an explicit
``rejectUnauthorized: False`` and logs a warning.

``accept_tls`` (server) and ``connect_tls`` (client) wrap a connected socket and run the
handshake in the calling greenlet under a timeout, so a peer that stalls its handshake only
holds its own greenlet. Failures become :class:`~geventipc.errors.TLSError` with a plain
reason ("certificate has expired", "no client certificate"...).
"""
from __future__ import annotations

import os
import ssl
from typing import Any, Callable

import gevent
from gevent.ssl import SSLContext as _GeventSSLContext
from gevent.ssl import SSLSocket as _GeventSSLSocket

from gevent import socket as gsocket

from ..errors import ConfigError, TLSError, TLSMismatchError
from ..wire.mismatch import describe, notice, peer_wire
from .stream import refuse_with

#: node-ipc's key names and the snake_case spellings, by canonical name
_KEYS: dict[str, str] = {
    "public": "public",
    "private": "private",
    "passphrase": "passphrase",
    "dhparam": "dhparam",
    "trustedConnections": "trusted_connections",
    "trusted_connections": "trusted_connections",
    "requestCert": "request_cert",
    "request_cert": "request_cert",
    "rejectUnauthorized": "reject_unauthorized",
    "reject_unauthorized": "reject_unauthorized",
    "servername": "servername",
    "serverName": "servername",
    "server_name": "servername",
}

_PATH = (str, os.PathLike)
_TYPES: dict[str, tuple[type, ...]] = {
    "public": _PATH, "private": _PATH, "passphrase": (str, bytes), "dhparam": _PATH,
    "trusted_connections": (str, os.PathLike, list, tuple),
    "request_cert": (bool,), "reject_unauthorized": (bool,), "servername": (str,),
}

#: how long a TLS 1.3 client waits for the server's verdict on its certificate
VERDICT_WAIT = 2.0

#: OpenSSL reason codes in words a user can act on
_REASONS: dict[str, str] = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the client sent no certificate and one is required",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server requires a client certificate",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the {peer} refused the handshake",
    "TLSV1_ALERT_UNKNOWN_CA": "the {peer} does not trust the CA that issued our certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the {peer} rejected our certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the {peer} says our certificate has expired",
    "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS version both sides accept",
    "UNSUPPORTED_PROTOCOL": "no TLS version both sides accept",
    "WRONG_VERSION_NUMBER": "the {peer} does not speak TLS (plain TCP?)",
    "HTTP_REQUEST": "the {peer} does not speak TLS (plain TCP?)",
    "UNEXPECTED_EOF_WHILE_READING": "the {peer} closed the connection during the handshake",
}


def normalise(tls: dict[str, Any]) -> dict[str, Any]:
    """The ``tls`` dict with canonical key names and checked value types.

    Raises ConfigError for an unknown key, a key given in two spellings, or a value of
    the wrong type.
    """
    out: dict[str, Any] = {}
    for key, value in tls.items():
        name = _KEYS.get(key)
        if name is None:
            raise ConfigError(f"unknown config.tls key {key!r} (known: "
                              f"{', '.join(sorted(set(_KEYS)))})")
        if name in out:
            raise ConfigError(f"config.tls sets {name!r} twice (in two spellings)")
        if value is None:
            continue
        types = _TYPES[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ConfigError(f"config.tls[{key!r}] must be "
                              f"{' or '.join(t.__name__ for t in types)}, not {value!r}")
        out[name] = value
    trusted = out.get("trusted_connections")
    if trusted is not None:
        paths = [trusted] if isinstance(trusted, _PATH) else list(trusted)
        if not all(isinstance(p, _PATH) for p in paths):
            raise ConfigError("config.tls['trustedConnections'] must be a path or a list of "
                              "paths")
        out["trusted_connections"] = paths
    return out


def make_context(tls: Any, side: str, log: Callable[..., None] | None = None
                 ) -> ssl.SSLContext:
    """An SSL context for ``side`` ("server" or "client") from ``config.tls``.

    ``tls`` is an ``ssl.SSLContext`` (used as is), node-ipc's dict, or True (client only:
    verify the server against the system's CAs). Raises ConfigError for unknown keys,
    missing or unreadable files, and settings that cannot work.
    """
    if side not in ("server", "client"):
        raise ValueError(f"side must be 'server' or 'client', not {side!r}")
    say = log or (lambda *args: None)
    if isinstance(tls, ssl.SSLContext):
        _check_given_context(tls, side, say)
        return tls
    if tls is True:
        tls = {}
    if not isinstance(tls, dict):
        raise ConfigError(f"config.tls must be a dict, an ssl.SSLContext or True, not {tls!r}")
    opts = normalise(tls)
    if side == "server":
        return _server_context(opts, say)
    return _client_context(opts, say)


def _server_context(opts: dict[str, Any], say: Callable[..., None]) -> ssl.SSLContext:
    if "public" not in opts:
        raise ConfigError("a TLS server needs config.tls['public'] (its certificate) and "
                          "config.tls['private'] (its key, unless 'public' holds it too)")
    ctx = _GeventSSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, opts)
    if "dhparam" in opts:
        _load(ctx.load_dh_params, opts["dhparam"], what="dhparam")
    trusted = opts.get("trusted_connections")
    if opts.get("request_cert"):
        if not trusted:
            raise ConfigError("config.tls['requestCert'] needs trustedConnections: the CA "
                              "certificate(s) client certificates must chain to")
        for path in trusted:
            _load(ctx.load_verify_locations, path, what="trustedConnections")
        if opts.get("reject_unauthorized", True):
            ctx.verify_mode = ssl.CERT_REQUIRED
        else:
            # Python's ssl cannot accept a certificate that fails verification; the
            # closest to node's behaviour is to accept clients that send none.
            ctx.verify_mode = ssl.CERT_OPTIONAL
            say("<warn>geventipc: TLS server with rejectUnauthorized False: clients "
                "without a certificate are accepted</warn>")
    elif trusted:
        say("<notice>geventipc: config.tls['trustedConnections'] is set but requestCert "
            "is not: client certificates are not requested</notice>")
    elif opts.get("reject_unauthorized") is False:
        say("<notice>geventipc: rejectUnauthorized has no effect on a TLS server without "
            "requestCert</notice>")
    return ctx


def _client_context(opts: dict[str, Any], say: Callable[..., None]) -> ssl.SSLContext:
    ctx = _GeventSSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, checks host names
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    trusted = opts.get("trusted_connections")
    if trusted:
        for path in trusted:
            _load(ctx.load_verify_locations, path, what="trustedConnections")
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if "public" in opts:
        _load_chain(ctx, opts)
    elif "private" in opts:
        raise ConfigError("config.tls['private'] is set without 'public' (the certificate)")
    if opts.get("reject_unauthorized", True) is False:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        say("<warn>geventipc: TLS client with rejectUnauthorized False: the server's "
            "certificate is NOT verified; anyone on the path can impersonate it</warn>")
    return ctx


def _load_chain(ctx: ssl.SSLContext, opts: dict[str, Any]) -> None:
    try:
        ctx.load_cert_chain(opts["public"], opts.get("private"), opts.get("passphrase"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config.tls: no such file {exc.filename or opts['public']!r}") \
            from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"config.tls: cannot load certificate {opts['public']!r} with key "
                          f"{opts.get('private')!r}: {exc}") from None


def _load(method: Callable[[Any], Any], path: Any, *, what: str) -> None:
    try:
        method(path)
    except FileNotFoundError:
        raise ConfigError(f"config.tls[{what!r}]: no such file {os.fspath(path)!r}") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"config.tls[{what!r}]: cannot load {os.fspath(path)!r}: {exc}") \
            from None


def _check_given_context(ctx: ssl.SSLContext, side: str, say: Callable[..., None]) -> None:
    # MINIMUM_SUPPORTED sorts lowest but sets no floor of its own: OpenSSL keeps its own
    minimum = ctx.minimum_version
    if minimum != ssl.TLSVersion.MINIMUM_SUPPORTED and minimum < ssl.TLSVersion.TLSv1_2:
        say("<warn>geventipc: the given SSLContext allows TLS versions below 1.2</warn>")
    if side == "client" and ctx.verify_mode == ssl.CERT_NONE:
        say("<warn>geventipc: the given client SSLContext does not verify the server's "
            "certificate</warn>")


def server_hostname(tls: Any, host: str) -> str:
    """The name a client checks the server's certificate against: ``servername`` from
    the ``tls`` dict if given, else the host dialled."""
    if isinstance(tls, dict):
        name = normalise(tls).get("servername")
        if name:
            return name
    return host


# --- handshakes ----------------------------------------------------------------------------


#: the most application data one TLS record carries (a read returns at most one)
RECORD = 16 * 1024


class TLSSocket(_GeventSSLSocket):
    """gevent's SSLSocket, able to hand back application data read while a TLS 1.3
    client waited for the server's verdict on its certificate."""

    _early = b""
    _peer_cert: Any = None

    def getpeercert(self, binary_form: bool = False) -> Any:
        """As ``ssl.SSLSocket.getpeercert``; the parsed form is kept from the handshake,
        so it stays readable after the peer closed."""
        if not binary_form and self._peer_cert is not None:
            return self._peer_cert
        return super().getpeercert(binary_form)

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        """As ``socket.recv_into``; early data first, and TLS failures as TLSError."""
        early = self._early
        if early:
            count = min(len(early), nbytes or len(buffer))
            buffer[:count] = early[:count]
            self._early = early[count:]
            return count
        try:
            count = super().recv_into(buffer, nbytes, flags)
        except ssl.SSLError as exc:
            role = "client" if self.server_side else "server"
            raise TLSError(f"TLS session with {role} {_peer(self)} failed: "
                           f"{explain(exc, role)}") from exc
        if count and nbytes and nbytes - count >= RECORD:
            count = self._read_more(buffer, count, nbytes)
        return count

    def _read_more(self, buffer: Any, count: int, nbytes: int) -> int:
        """After a read of ``count`` bytes into ``buffer``: add the records already
        readable, without waiting, up to ``nbytes`` in all.

        One TLS read returns at most one record (16 KiB), so a reader of big frames would
        otherwise decode each MiB in 64 pieces (W4 over TLS: 12,800 passes through the
        read loop and the codec for 200 MiB). A failure here ends the batch; the next
        read meets it again and reports it.
        """
        read = self._sslobj.read
        with memoryview(buffer) as view:
            while nbytes - count >= RECORD:
                try:
                    got = read(nbytes - count, view[count:])
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    break
                except (OSError, ValueError, AttributeError):
                    break
                if not got:
                    break
                count += got
        return count


def _peer(sock: Any) -> str:
    try:
        return _where(sock.getpeername())
    except OSError:
        return "peer"


def _where(address: Any) -> str:
    """``host:port`` for an IP socket address, the path for a Unix one."""
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)


def explain(exc: BaseException, peer: str = "peer") -> str:
    """A plain reason for a failed handshake; ``peer`` names the other side's role."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        return f"the {peer}'s certificate failed verification: {detail}"
    reason = getattr(exc, "reason", None)
    # a plain server closes on a ClientHello (and says why in its own error event)
    hint = " (a plain, non-TLS server? set tls only where the server has it)" \
        if peer == "server" else ""
    if reason in _REASONS:
        if reason != "UNEXPECTED_EOF_WHILE_READING":
            hint = ""
        return f"{_REASONS[reason].format(peer=peer)}{hint} ({reason})"
    if isinstance(exc, (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError)):
        return f"the {peer} closed the connection during the handshake{hint}"
    return str(exc) or type(exc).__name__


def accept_tls(sock: Any, ctx: ssl.SSLContext, timeout: float, address: Any,
               wire: str = "msgpack") -> TLSSocket:
    """Server side: wrap an accepted socket and handshake within ``timeout`` seconds.

    On failure the socket is closed and TLSError raised (``exc.address`` is the peer).
    A plain client (its first bytes no TLS record) is told so in its own wire (``$ipc.wire``
    naming this server's ``wire``) and refused with TLSMismatchError.
    """
    first = b""
    try:
        with gevent.Timeout(timeout, False):
            first = sock.recv(16, gsocket.MSG_PEEK)
    except OSError:
        pass
    if first and peer_wire(first) != "tls":
        data = notice(first, {"wire": wire, "tls": True})
        if data is not None:
            refuse_with(sock, data)
        sock.close()
        exc = TLSMismatchError(f"TLS handshake with client {_where(address)} failed: "
                               f"{describe('plain', wire, tls=True)}")
        exc.address = address
        raise exc
    return _handshake(sock, ctx, timeout, f"client {_where(address)}", "client", address,
                      server_side=True)


def connect_tls(sock: Any, ctx: ssl.SSLContext, hostname: str, timeout: float,
                where: str) -> TLSSocket:
    """Client side: wrap a connected socket, handshake within ``timeout`` seconds and,
    over TLS 1.3, wait for the server's verdict on our certificate.

    On failure the socket is closed and TLSError raised.
    """
    return _handshake(sock, ctx, timeout, where, "server", where, server_side=False,
                      server_hostname=hostname)


def _handshake(sock: Any, ctx: ssl.SSLContext, timeout: float, where: str, peer: str,
               address: Any, **wrap: Any) -> TLSSocket:
    """Wrap ``sock`` and handshake within ``timeout`` s; ``peer`` is the other side's role.

    On failure ``sock`` is closed and TLSError raised, its ``address`` set to ``address``.
    """
    try:
        tls = TLSSocket(sock=sock, do_handshake_on_connect=False, _context=ctx, **wrap)
    except (OSError, ValueError) as exc:
        sock.close()
        raise _error(f"TLS handshake with {where} failed: {explain(exc, peer)}", address)
    permanent = False
    try:
        with gevent.Timeout(timeout, False):
            tls.do_handshake()
            tls._peer_cert = tls.getpeercert()
            if not tls.server_side and tls.version() == "TLSv1.3":
                _await_verdict(tls, min(timeout, VERDICT_WAIT))
            return tls
        message = f"TLS handshake with {where} timed out after {timeout:g} s"
    except (OSError, ValueError) as exc:
        message = f"TLS handshake with {where} failed: {explain(exc, peer)}"
        # a refusal (certificate, version, plain TCP) happens again on every retry; a
        # connection closed or timed out mid-handshake may not
        permanent = isinstance(exc, ssl.SSLError) and not isinstance(
            exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError))
    except BaseException:  # killed (server stopping, client disconnecting): still close
        tls.close()
        raise
    tls.close()
    error = _error(message, address)
    error.permanent = permanent
    raise error


def _await_verdict(tls: TLSSocket, wait: float) -> None:
    """TLS 1.3 clients finish their handshake before the server has checked their
    certificate; the server's answer is its first record (session tickets, or an alert).
    Read it so that a refused certificate fails here, not after ``connect``. Application
    data read on the way is kept for the connection's first ``recv_into``."""
    early = bytearray()
    with gevent.Timeout(wait, False):
        tls._wait(tls._read_event)
    while True:
        try:
            chunk = tls._sslobj.read(65536)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            break
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            chunk = b""
        if not chunk:
            if early:  # it sent something, then closed: the connection reads both
                break
            raise ssl.SSLEOFError(ssl.SSL_ERROR_EOF, "the server closed the connection")
        early += chunk
    tls._early = bytes(early)


def _error(message: str, address: Any) -> TLSError:
    exc = TLSError(message)
    exc.address = address
    return exc


__all__ = ["TLSError", "make_context", "normalise", "server_hostname", "accept_tls", "connect_tls",
           "explain", "TLSSocket", "VERDICT_WAIT"]
