"""Binding a server socket to the first address a name resolves to that works."""
from __future__ import annotations

from typing import Any, Callable

from gevent import socket as gsocket

from ..errors import ServeError


def bind_first(infos: list[Any], prepare: Callable[[gsocket.socket, Any], None],
               failure: str) -> gsocket.socket:
    """A socket for the first of ``getaddrinfo``'s ``infos`` that ``prepare(sock, addr)``
    (set options, bind, listen) accepts; the others' sockets are closed.

    Raises ServeError with the last system error, prefixed by ``failure``.
    """
    last: OSError | None = None
    for family, type_, proto, _name, addr in infos:
        sock = gsocket.socket(family, type_, proto)
        try:
            prepare(sock, addr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    if last is None:
        raise ServeError(0, f"{failure}: the name resolved to no address")
    raise ServeError(last.errno, f"{failure}: {last.strerror}")
