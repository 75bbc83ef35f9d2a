"""UDP on a gevent socket: bind, receive whole datagrams, send whole datagrams.

gevent's stock ``DatagramServer`` reads 8,192 bytes per datagram and the kernel silently
throws the rest away, so this module reads with its own greenlet and a 64 KiB buffer: every
datagram UDP can carry (65,507 bytes over IPv4, 65,527 over IPv6) arrives whole.

This layer knows nothing of events or codecs. :class:`DatagramEndpoint` hands each datagram
(as a memoryview of its reused buffer, valid only during the call) and the sender's socket
address to a callback, and :meth:`DatagramEndpoint.send` sends one datagram or raises.
"""
from __future__ import annotations

import errno
import socket as _stdsocket
from typing import Any, Callable

import gevent
from gevent import socket as gsocket

from ..errors import AddressError, DatagramTooLargeError, NotConnectedError, SendError, \
    ServeError
from .binding import bind_first

#: ``serve_net``'s udp_type -> address family
FAMILIES: dict[str, int] = {"udp4": gsocket.AF_INET, "udp6": gsocket.AF_INET6}

#: largest UDP payload: 65,535 minus the IPv4 (20) and UDP (8) headers; IPv6's payload
#: length field does not count its own 40-byte header, so only the UDP header comes off
MAX_PAYLOAD: dict[int, int] = {gsocket.AF_INET: 65507, gsocket.AF_INET6: 65527}

#: bytes read per datagram: more than any payload, so nothing is ever truncated
RECV_SIZE = 65536

#: kernel buffer asked for (capped by net.core.rmem_max / wmem_max): the default ~200 KiB
#: holds only three 60 KB datagrams, and a datagram that finds the buffer full is lost
SOCKET_BUFFER = 4 * 1024 * 1024

#: datagrams handled back to back before the receive loop lets other greenlets run
_BURST = 64

SockAddr = tuple  # (host, port) for IPv4, (host, port, flowinfo, scope_id) for IPv6
DatagramHandler = Callable[[memoryview, SockAddr], None]
ErrorHandler = Callable[[BaseException], None]


#: the loopback address of each family: what "localhost" means (RFC 6761), whatever
#: /etc/hosts says (many list "localhost" for 127.0.0.1 only, so an IPv6 lookup fails)
LOOPBACK: dict[int, str] = {gsocket.AF_INET: "127.0.0.1", gsocket.AF_INET6: "::1"}


def _host(host: str, family: int) -> str:
    return LOOPBACK[family] if host.lower() in ("localhost", "localhost.") else host


def family_name(family: int) -> str:
    """``"IPv4"`` or ``"IPv6"``, as Node's dgram names them."""
    return "IPv6" if family == gsocket.AF_INET6 else "IPv4"


def bind_udp(host: str, port: int, family: int) -> gsocket.socket:
    """A UDP socket of ``family`` bound to ``host``:``port`` (port 0: any free port).

    ``host`` is resolved within the family; ``"localhost"`` is 127.0.0.1 for IPv4 and
    ::1 for IPv6. Raises ServeError if it cannot be resolved or bound.
    """
    try:
        infos = gsocket.getaddrinfo(_host(host, family), port, family, gsocket.SOCK_DGRAM, 0,
                                    gsocket.AI_PASSIVE)
    except OSError as exc:
        raise ServeError(errno.EADDRNOTAVAIL, f"cannot resolve {host!r} as an "
                         f"{family_name(family)} address: {exc}") from None

    def prepare(sock: gsocket.socket, addr: Any) -> None:
        for option in (gsocket.SO_RCVBUF, gsocket.SO_SNDBUF):
            try:
                sock.setsockopt(gsocket.SOL_SOCKET, option, SOCKET_BUFFER)
            except OSError:
                pass  # a smaller buffer still works; only bursts suffer
        sock.bind(addr)

    return bind_first(infos, prepare, f"cannot bind UDP {host}:{port}")


def resolve(host: Any, port: Any, family: int) -> SockAddr:
    """The socket address to send to ``host``:``port`` from a socket of ``family``.

    Numeric addresses are parsed without a lookup (and normalised, so ``"0::1"`` and
    ``"::1"`` are the same peer); names go through gevent's resolver. Raises AddressError.
    """
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise AddressError(f"UDP port must be an integer from 1 to 65535, not {port!r}")
    if not isinstance(host, str) or not host:
        raise AddressError(f"UDP address must be a non-empty string, not {host!r}")
    host = _host(host, family)
    try:
        text = _stdsocket.inet_ntop(family, _stdsocket.inet_pton(family, host))
    except OSError:
        pass  # a name, a scoped IPv6 address, or an address of the other family
    else:
        return (text, port) if family == gsocket.AF_INET else (text, port, 0, 0)
    try:
        infos = gsocket.getaddrinfo(host, port, family, gsocket.SOCK_DGRAM)
    except OSError as exc:
        other = gsocket.AF_INET if family == gsocket.AF_INET6 else gsocket.AF_INET6
        try:
            _stdsocket.inet_pton(other, host)
        except OSError:
            raise AddressError(f"cannot resolve {host!r} as an {family_name(family)} "
                               f"address: {exc}") from None
        raise AddressError(f"{host!r} is an {family_name(other)} address; this "
                           f"{'udp6' if family == gsocket.AF_INET6 else 'udp4'} socket "
                           f"can only send to {family_name(family)}") from None
    return infos[0][4]


class DatagramEndpoint:
    """One bound UDP socket and the greenlet that receives on it.

    Each datagram goes to ``on_datagram(view, sockaddr)`` in the receive greenlet, one after
    another in arrival order; an exception escaping it goes to ``on_error`` and receiving
    goes on.
    """

    __slots__ = ("sock", "family", "max_payload", "on_datagram", "on_error", "greenlet",
                 "_closed", "_raw_sendto", "bytes_in", "datagrams_in", "bytes_out",
                 "datagrams_out")

    def __init__(self, sock: gsocket.socket, on_datagram: DatagramHandler,
                 on_error: ErrorHandler) -> None:
        self.sock = sock
        self.family: int = sock.family
        #: the largest payload one datagram can carry on this socket
        self.max_payload = MAX_PAYLOAD[self.family]
        self.on_datagram = on_datagram
        self.on_error = on_error
        self.greenlet: gevent.Greenlet | None = None
        self._closed = False
        # gevent's socket wraps a non-blocking OS socket: sending on that directly skips
        # gevent's wrapper, and only a full send buffer needs the cooperative path
        self._raw_sendto = sock._sock.sendto
        #: datagrams (and their bytes) received and sent
        self.bytes_in = self.datagrams_in = self.bytes_out = self.datagrams_out = 0

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def address(self) -> SockAddr:
        """The bound socket address (with the real port when bound to port 0)."""
        return self.sock.getsockname()

    def start(self) -> None:
        """Start the receive greenlet."""
        if self.greenlet is None:
            self.greenlet = gevent.spawn(self._receive)

    def _receive(self) -> None:
        sock = self.sock
        recvfrom_into = sock._sock.recvfrom_into
        wait, read_event = sock._wait, sock._read_event
        buf = bytearray(RECV_SIZE)
        view = memoryview(buf)
        on_datagram = self.on_datagram
        burst = 0
        while not self._closed:
            try:
                n, sockaddr = recvfrom_into(buf, RECV_SIZE)
            except BlockingIOError:
                burst = 0
                try:
                    wait(read_event)
                except OSError:  # the socket was closed while we waited
                    if self._closed:
                        break
                    raise
                continue
            except OSError as exc:
                if self._closed:
                    break
                # e.g. an ICMP error queued on the socket: say so and keep receiving,
                # after a pause so that a persistent fault cannot spin the CPU
                self.on_error(exc)
                gevent.sleep(0.01)
                continue
            self.datagrams_in += 1
            self.bytes_in += n
            try:
                on_datagram(view[:n], sockaddr)
            except Exception as exc:  # a bug must not stop the server from receiving
                self.on_error(exc)
            burst += 1
            if burst >= _BURST:
                burst = 0
                gevent.sleep(0)  # a flood of datagrams must not starve other greenlets

    def check_size(self, size: int) -> None:
        """Raise DatagramTooLargeError if ``size`` bytes do not fit in one datagram."""
        if size > self.max_payload:
            raise DatagramTooLargeError(
                f"an encoded event of {size} bytes does not fit in one "
                f"{family_name(self.family)} UDP datagram (at most {self.max_payload} bytes); "
                f"nothing was sent")

    def send(self, payload: bytes, sockaddr: SockAddr) -> None:
        """Send ``payload`` as one datagram, whole or not at all.

        Raises DatagramTooLargeError (over ``max_payload``), NotConnectedError (closed),
        AddressError (an address this socket cannot send to) or SendError (the system
        refused). Returning means the kernel took the datagram, not that it arrived.
        """
        size = len(payload)
        self.check_size(size)
        if self._closed:
            raise NotConnectedError("the UDP socket is closed")
        try:
            try:
                self._raw_sendto(payload, sockaddr)
            except BlockingIOError:
                self.sock.sendto(payload, sockaddr)  # waits, cooperatively, for room
        except OSError as exc:
            raise _send_error(exc, size, sockaddr, self.family) from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise AddressError(f"cannot send to {sockaddr!r}: {exc}") from None
        self.datagrams_out += 1
        self.bytes_out += size

    def close(self, timeout: float = 1.0) -> None:
        """Close the socket and end the receive greenlet (waiting up to ``timeout`` s)."""
        if self._closed:
            return
        self._closed = True
        self.sock.close()
        greenlet = self.greenlet
        if greenlet is not None and greenlet is not gevent.getcurrent():
            greenlet.join(timeout)
            if not greenlet.dead:
                greenlet.kill(block=False)


def _send_error(exc: OSError, size: int, sockaddr: Any, family: int) -> Exception:
    if exc.errno == errno.EMSGSIZE:
        return DatagramTooLargeError(
            f"the system refused a {size}-byte datagram to {sockaddr[:2]} as too long "
            f"({exc.strerror}); nothing was sent")
    if exc.errno in (errno.EAFNOSUPPORT, errno.EINVAL, errno.EDESTADDRREQ) or \
            isinstance(exc, _stdsocket.gaierror):
        return AddressError(f"this {family_name(family)} UDP socket cannot send to "
                            f"{sockaddr!r}: {exc.strerror or exc}")
    if exc.errno == errno.EBADF:
        return NotConnectedError("the UDP socket is closed")
    return SendError(exc.errno, f"cannot send a datagram to {sockaddr[:2]}: "
                                f"{exc.strerror or exc}")


__all__ = [
    "FAMILIES", "LOOPBACK", "MAX_PAYLOAD", "RECV_SIZE", "SOCKET_BUFFER", "DatagramEndpoint",
    "bind_udp", "family_name", "resolve",
]
