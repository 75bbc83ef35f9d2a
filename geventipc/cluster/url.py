"""Cluster engine URLs: ``redis://``, ``rediss://`` (TLS) and ``unix://``, checked up front.

Pure standard library and no I/O, so ``config.cluster`` can validate a URL the moment it
is set: a typo is a :class:`~geventipc.errors.ConfigError` there, not a failure at start.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import ConfigError

SCHEMES = ("redis", "rediss", "unix")
DEFAULT_PORT = 6379


@dataclass(frozen=True)
class EngineAddress:
    """Where the Redis-protocol engine is and how to log in to it."""

    scheme: str
    host: str | None = None
    port: int = DEFAULT_PORT
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    #: rediss:// only: a CA bundle to trust instead of the system's (``?ssl_ca_certs=PATH``)
    ca_certs: str | None = None

    @property
    def tls(self) -> bool:
        """True for ``rediss://``."""
        return self.scheme == "rediss"

    def __str__(self) -> str:
        # never shows the password: this string goes to logs and error messages
        who = f"{self.username or ''}:***@" if self.password else (
            f"{self.username}@" if self.username else "")
        if self.scheme == "unix":
            return f"unix://{who}{self.path}?db={self.db}"
        return f"{self.scheme}://{who}{self.host}:{self.port}/{self.db}"


def parse_url(url: str) -> EngineAddress:
    """Parse and check an engine URL; raise ConfigError saying what is wrong with it."""
    if not isinstance(url, str) or not url:
        raise ConfigError(f"cluster URL must be a non-empty str, not {url!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"malformed cluster URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigError(f"malformed cluster URL {url!r}: scheme must be one of "
                          f"{', '.join(s + '://' for s in SCHEMES)}")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"db", "ssl_ca_certs"}
    if unknown:
        raise ConfigError(f"malformed cluster URL {url!r}: unknown parameter(s) "
                          f"{', '.join(sorted(unknown))} (db=N; rediss://: ssl_ca_certs=PATH)")
    ca_certs = query.get("ssl_ca_certs", [None])[-1] or None
    if ca_certs is not None and scheme != "rediss":
        raise ConfigError(f"malformed cluster URL {url!r}: ssl_ca_certs needs rediss://")
    db_text = query.get("db", [""])[-1]
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if scheme == "unix":
        if not parts.path or parts.path == "/":
            raise ConfigError(f"malformed cluster URL {url!r}: unix:// needs a socket path, "
                              f"as in unix:///run/redis.sock")
        path = parts.path
        if parts.hostname:  # unix://relative/path: the first segment parsed as a host
            raise ConfigError(f"malformed cluster URL {url!r}: the socket path must be "
                              f"absolute (unix:///path/to.sock)")
        host = None
    else:
        host = parts.hostname
        if not host:
            raise ConfigError(f"malformed cluster URL {url!r}: no host")
        path = None
        tail = parts.path.lstrip("/")
        if tail:
            if db_text:
                raise ConfigError(f"malformed cluster URL {url!r}: db given twice")
            db_text = tail
    db = 0
    if db_text:
        if not db_text.isdigit():
            raise ConfigError(f"malformed cluster URL {url!r}: database must be a number, "
                              f"not {db_text!r}")
        db = int(db_text)
    return EngineAddress(scheme, host, port if port is not None else DEFAULT_PORT, path, db,
                         username, password, ca_certs)
