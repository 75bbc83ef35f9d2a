"""TARGET and ADDRESS arguments: a server id, a Unix socket path, or ``scheme://HOST:PORT``."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..errors import UsageError


@dataclass(frozen=True)
class Target:
    """Where a server is (or will listen): a Unix socket path, or a host and port."""

    kind: str                 # "unix", "tcp", "tls" or "udp"
    path: str | None = None
    host: str | None = None
    port: int | None = None
    name: str | None = None   # the server id, when given by id

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix://{self.path}"
        return f"{self.kind}://{host_port(self.host, self.port)}"

    @property
    def id(self) -> str:
        """The id the facade files the client under (``ipc.of[id]``)."""
        return self.name or str(self)

    @property
    def udp_type(self) -> str:
        """``udp6`` for an IPv6 host, else ``udp4``."""
        return "udp6" if self.host and ":" in self.host else "udp4"


_SCHEMES = ("tcp", "tls", "udp")


def host_port(host: Any, port: Any) -> str:
    """``HOST:PORT``, with an IPv6 host in brackets (``[::1]:8000``)."""
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def parse_host_port(text: str, what: str, allow_zero: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6HOST]:PORT`` (or ``:PORT`` for localhost) as (host, port)."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise UsageError(f"{what}: expected [HOST]:PORT, not {text!r}")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise UsageError(f"{what}: expected HOST:PORT, not {text!r}")
        if ":" in host:
            raise UsageError(f"{what}: write an IPv6 host in brackets: "
                             f"[{host}]:{port_text}")
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError(f"{what}: port must be a number, not {port_text!r}") from None
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise UsageError(f"{what}: port {port} is out of range")
    return host or "localhost", port


def parse_target(text: str, config: Config, serving: bool = False) -> Target:
    """Read a TARGET: ``ID``, a path (``/x``, ``./x``, ``unix://PATH``), or
    ``tcp://``, ``tls://``, ``udp://`` ``HOST:PORT``."""
    if not text:
        raise UsageError("the target must not be empty")
    scheme, sep, rest = text.partition("://")
    if sep:
        scheme = scheme.lower()
        if scheme == "unix":
            if not rest:
                raise UsageError(f"no path in {text!r}")
            return Target("unix", path=rest)
        if scheme not in _SCHEMES:
            raise UsageError(f"unknown scheme {scheme!r} in {text!r} "
                             f"(use unix://, tcp://, tls:// or udp://)")
        host, port = parse_host_port(rest, text, allow_zero=serving)
        return Target(scheme, host=host, port=port)
    if "/" in text:
        return Target("unix", path=text)
    path = config.socket_path(text)
    host_part, colon, port_part = text.rpartition(":")
    if colon and host_part and port_part.isdigit() and not serving and not os.path.exists(path):
        raise UsageError(f"{text!r} looks like HOST:PORT, not a server id: write "
                         f"tcp://{text} (or tls://, udp://)")
    return Target("unix", path=path, name=text)


def client_target(args: argparse.Namespace, config: Config, words: list[str]
                  ) -> tuple[Target, list[str]]:
    """A client command's TARGET from --path or the first word; returns it and the words
    after it."""
    if args.path is not None:
        return Target("unix", path=args.path), words
    if not words:
        raise UsageError("missing TARGET (a server id, a path, tcp://HOST:PORT, "
                         "tls://HOST:PORT or udp://HOST:PORT)")
    return parse_target(words[0], config), words[1:]
