"""``ipc.config``: node-ipc's options with their defaults, plus geventipc's own.

Every key has a snake_case name and node-ipc's camelCase alias (``socket_root`` and
``socketRoot`` are the same setting). Setting an unknown key or a value of the wrong type
raises :class:`~geventipc.errors.ConfigError` at once, so a typo never silently does nothing.
"""
from __future__ import annotations

import math
import os
import socket
import ssl
import stat
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .errors import ConfigError, InsecureSocketRootError
from .wire.raw_codec import ENCODINGS

MIB = 1024 * 1024


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True)
class Option:
    """One config key: its default, the types it accepts, and what it means."""

    name: str
    default: Any
    types: tuple[type, ...]
    doc: str
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    #: a further check of the value, not called for None: returns why the value cannot
    #: work (and what would), or None; or raises ConfigError itself (e.g. parsing a URL)
    validate: Callable[[Any], Any] | None = None

    def check(self, value: Any) -> Any:
        """Return ``value`` if it suits this option, else raise ConfigError."""
        if self.types and not isinstance(value, self.types) or (
            isinstance(value, bool) and bool not in self.types and value is not None
            and not any(t is object for t in self.types)
        ):
            names = " or ".join("None" if t is type(None) else t.__name__ for t in self.types)
            raise ConfigError(f"config.{self.name} must be {names}, not {value!r}")
        if self.choices and value not in self.choices:
            raise ConfigError(f"config.{self.name} must be one of {self.choices}, not {value!r}")
        if self.minimum is not None and isinstance(value, (int, float)) and value < self.minimum:
            raise ConfigError(f"config.{self.name} must be >= {self.minimum}, not {value!r}")
        if self.maximum is not None and isinstance(value, (int, float)) and value > self.maximum:
            raise ConfigError(f"config.{self.name} must be <= {self.maximum}, not {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"config.{self.name} must be a finite number, not {value!r}")
        if self.validate is not None and value is not None:
            problem = self.validate(value)
            if isinstance(problem, str) and problem:
                raise ConfigError(f"config.{self.name} {problem}")
        return value


# --- checks of values the types alone cannot refuse (each returns why, or None) ----------


def _non_empty(value: str) -> str | None:
    return None if value else "must not be empty"


def _socket_root(value: str | None) -> str | None:
    if value is None:
        return None
    if not value:
        return "must be a directory path, or None for the per-user default"
    if os.path.exists(value) and not os.path.isdir(value):
        return f"must be a directory, and {value!r} is not one"
    return None


def _callable_or_none(value: Any) -> str | None:
    if value is None or callable(value):
        return None
    return f"must be a function taking one line of text, or None, not {value!r}"


def _event_names(value: Any) -> str | None:
    if value is None:
        return None
    bad = [name for name in value if not isinstance(name, str) or not name]
    if bad:
        return f"must hold non-empty strings (event names), not {bad[0]!r}"
    return None


def _tls(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None   # True/False, or a ready ssl.SSLContext
    from .transports.tls import normalise  # noqa: PLC0415 - only when TLS is configured
    opts = normalise(value)   # ConfigError naming the bad tls key
    files = [opts.get("public"), opts.get("private"), opts.get("dhparam"),
             *(opts.get("trusted_connections") or ())]
    for path in files:
        if path is not None and not os.path.isfile(path):
            return f"names a file that does not exist: {os.fspath(path)!r}"
    return None


def _check_cluster_url(url: str) -> None:
    from .cluster.url import parse_url  # pure stdlib; imported late to keep config light
    parse_url(url)


NoneType = type(None)
_num = (int, float)

OPTIONS: tuple[Option, ...] = (
    # --- node-ipc's own keys ---------------------------------------------------------
    Option("appspace", "app.", (str,), "prefix of the Unix socket file name"),
    Option("socket_root", None, (str, NoneType),
           "directory of Unix sockets; None = a per-user, owner-only directory (read back: "
           "the directory used, ending in a separator)",
           validate=_socket_root),
    Option("id", socket.gethostname(), (str,), "this process's id (server name)"),
    Option("network_host", "localhost", (str,), "host for serve_net / connect_to_net",
           validate=_non_empty),
    Option("network_port", 8000, (int,), "port for serve_net / connect_to_net", minimum=0,
           maximum=65535),
    Option("encoding", "utf8", (str,), "text encoding for raw_buffer mode",
           choices=tuple(ENCODINGS)),
    Option("raw_buffer", False, (bool,), "send and receive raw bytes, no framing"),
    Option("sync", False, (bool,), "client waits for an answer before sending the next event"),
    Option("silent", False, (bool,), "turn off ipc.log entirely"),
    Option("max_connections", 100, (int,), "connections a server accepts at once", minimum=1),
    Option("retry", 500, _num, "milliseconds a client waits before reconnecting", minimum=0),
    Option("max_retries", None, (int, NoneType),
           "reconnect attempts in a row before giving up (None = unlimited)", minimum=0),
    Option("stop_retrying", False, (bool,), "do not reconnect after a lost connection"),
    Option("unlink", True, (bool,), "remove a stale socket file before binding"),
    Option("readable_all", False, (bool,), "socket file readable by all users"),
    Option("writable_all", False, (bool,), "socket file writable by all users"),
    Option("delimiter", "\f", (str,), "frame delimiter of the node-ipc JSON wire",
           validate=_non_empty),
    Option("tls", False, (bool, dict, ssl.SSLContext),
           "TLS settings for serve_net / connect_to_net (dict or ssl.SSLContext)",
           validate=_tls),
    Option("log_in_color", True, (bool,), "colour ipc.log output"),
    Option("log_depth", 5, (int,), "depth to which ipc.log pretty-prints objects", minimum=1),
    Option("logger", None, (object,), "function that receives each log line instead of stderr",
           validate=_callable_or_none),
    Option("log_format", "text", (str,),
           "ipc.log's output: text (node-ipc's theme) or json (one object per line)",
           choices=("text", "json")),
    Option("stats_requests", False, (bool,),
           "answer clients' $ipc.stats requests with server.stats() (off: counts reveal "
           "load and client ids)"),
    # --- geventipc's keys -------------------------------------------------------------
    Option("wire", "msgpack", (str,), "wire format", choices=("msgpack", "node-ipc")),
    Option("max_message_size", 16 * MIB, (int,),
           "largest frame accepted from a peer, in bytes", minimum=64),
    Option("max_pending_bytes", 8 * MIB, (int,),
           "outbound bytes queued for one peer before overflow_policy applies", minimum=1024),
    Option("overflow_policy", "disconnect", (str,),
           "what a server does with a peer past max_pending_bytes",
           choices=("disconnect", "drop")),
    Option("max_event_name_length", 256, (int,), "longest event name, in characters", minimum=1),
    Option("message_timeout", 30000, _num,
           "milliseconds a partial frame may stay incomplete", minimum=1),
    Option("allowed_events", None, (list, tuple, set, frozenset, NoneType),
           "if set, the only event names sent or accepted", validate=_event_names),
    Option("max_queued_events", 10000, (int,),
           "events a client queues while not connected", minimum=0),
    Option("max_queued_bytes", 64 * MIB, (int,),
           "bytes of events a client queues while not connected", minimum=0),
    Option("drain_timeout", 5000, _num,
           "milliseconds an emitting greenlet waits at most for a peer that is behind "
           "(0 = never wait); a peer still behind then is cut under overflow_policy "
           "disconnect", minimum=0),
    Option("connect_timeout", 5000, _num, "milliseconds to wait for a connection to open",
           minimum=1),
    Option("check_socket_root", True, (bool,),
           "refuse a socket root that other users can write to (and is not sticky)"),
    Option("handshake_timeout", 10000, _num,
           "milliseconds a TLS handshake may take before the connection is dropped",
           minimum=1),
    Option("heartbeat_interval", 5000, _num,
           "milliseconds of silence from a peer after which a msgpack stream connection "
           "pings it ($ipc.ping); 0 = no heartbeat (peers' pings are still answered)",
           minimum=0),
    Option("heartbeat_timeout", 10000, _num,
           "milliseconds of silence (no data, no pong) after which a peer that announced "
           "heartbeats is closed as lost (PeerTimeoutError); found within "
           "heartbeat_timeout + heartbeat_interval", minimum=1),
    Option("keepalive", 30000, _num,
           "TCP: milliseconds after which the kernel drops a peer that stopped answering "
           "(keepalive probes after a third of it idle; TCP_USER_TIMEOUT for unacknowledged "
           "data); 0 = kernel defaults (no keepalive, ~15 min retransmits)", minimum=0),
    Option("handler_pool_size", None, (int, NoneType),
           "run server event/request handlers in a gevent Pool of this size "
           "(None = inline, in each connection's greenlet)", minimum=1),
    Option("handler_pool_per_connection", None, (int, NoneType),
           "most slots of a server handler pool one connection holds at once (None = all "
           "but one, at least one), so other connections' handlers still find a slot",
           minimum=1),
    Option("cluster", None, (str, NoneType),
           "Redis/Valkey URL joining servers of this id into one cluster (redis://, "
           "rediss://, unix://; docs/cluster.md)", validate=_check_cluster_url),
    Option("cluster_heartbeat", 1000, _num,
           "milliseconds between cluster presence heartbeats; a dead node's clients "
           "vanish within 3 of them", minimum=50),
    Option("workers", 1, (int,),
           "stream server processes sharing the listening socket (pre-fork, supervised); "
           "more than 1 needs config.cluster", minimum=1),
    Option("handle_signals", True, (bool,),
           "a started server stops cleanly on SIGINT, SIGTERM and SIGHUP (its socket file "
           "removed); False leaves the signals to the application"),
)

_BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
_ALIASES: dict[str, str] = {_camel(o.name): o.name for o in OPTIONS if _camel(o.name) != o.name}
_ALIASES.update({"maxRetries": "max_retries", "stopRetrying": "stop_retrying"})


def canonical_name(key: str) -> str:
    """Return the snake_case name of a config key given in either spelling."""
    name = _ALIASES.get(key, key)
    if name not in _BY_NAME:
        raise ConfigError(f"unknown config key {key!r}")
    return name


class Config:
    """node-ipc's ``ipc.config``: attribute access, camelCase aliases, checked values."""

    __slots__ = ("_values",)

    def __init__(self, **values: Any) -> None:
        object.__setattr__(self, "_values", {o.name: o.default for o in OPTIONS})
        for key, value in values.items():
            setattr(self, key, value)

    def __getattr__(self, key: str) -> Any:
        try:
            name = canonical_name(key)
        except ConfigError as exc:
            raise AttributeError(str(exc)) from None
        if name == "socket_root":
            # the directory actually used, so that node-ipc's
            # config.socketRoot + config.appspace + id is the real path
            return self.resolved_socket_root()
        return self._values[name]

    def __setattr__(self, key: str, value: Any) -> None:
        name = canonical_name(key)
        self._values[name] = _BY_NAME[name].check(value)

    def __getitem__(self, key: str) -> Any:
        name = canonical_name(key)
        return self.resolved_socket_root() if name == "socket_root" else self._values[name]

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __repr__(self) -> str:
        return f"Config({self._values!r})"

    def update(self, **values: Any) -> None:
        """Set several keys at once (either spelling)."""
        for key, value in values.items():
            setattr(self, key, value)

    def copy(self, **overrides: Any) -> "Config":
        """A snapshot of this config, with ``overrides`` applied."""
        new = Config()
        new._values.update(self._values)
        new.update(**overrides)
        return new

    def as_dict(self) -> dict[str, Any]:
        """The current values by snake_case name, as set (``socket_root`` None for the
        per-user default, where reading ``config.socket_root`` gives that directory)."""
        return dict(self._values)

    # --- derived values --------------------------------------------------------------

    def resolved_socket_root(self) -> str:
        """The socket directory, ending in a separator; the default one is created."""
        root = self._values["socket_root"]
        if root is None:
            root = default_socket_root()
        return root if root.endswith(os.sep) else root + os.sep

    def socket_path(self, server_id: str) -> str:
        """node-ipc's default Unix socket path: socket_root + appspace + id."""
        return self.resolved_socket_root() + self.appspace + server_id


def default_socket_root() -> str:
    """A per-user, owner-only directory for sockets, created (mode 0700) if missing.

    Under ``$XDG_RUNTIME_DIR`` where that is set, else in the system temp directory. The
    directory is checked to belong to this user with no group/other access, so another
    user cannot plant or hijack sockets in it.
    """
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    path = os.path.join(base, f"geventipc-{os.getuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise InsecureSocketRootError(
            f"default socket root {path} is not an owner-only directory of this user "
            f"(mode {stat.filemode(info.st_mode)}); remove it or set config.socket_root"
        )
    return path + os.sep


def check_socket_dir(directory: str) -> None:
    """Refuse a socket directory that other users may write to unless it is sticky."""
    try:
        info = os.stat(directory)
    except FileNotFoundError:
        return  # binding reports the missing directory with its own clear error
    writable_by_others = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable_by_others and not info.st_mode & stat.S_ISVTX:
        raise InsecureSocketRootError(
            f"socket directory {directory} is writable by other users and not sticky "
            f"(mode {stat.filemode(info.st_mode)}); use an owner-only directory or set "
            f"config.check_socket_root = False"
        )


def option_table() -> list[tuple[str, str, Any, str]]:
    """(snake name, camelCase alias, default, meaning) for every key, for docs and tools."""
    return [(o.name, _camel(o.name), o.default, o.doc) for o in OPTIONS]


Callback = Callable[..., Any]
