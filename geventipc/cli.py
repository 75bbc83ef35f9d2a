"""The ``geventipc`` command line: serve, emit, request, listen and describe from a shell.

A thin layer over the public API (:class:`~geventipc.IPC`, its clients and servers): it
turns arguments into one IPC instance's config, makes one server or one client, and
prints what arrives. Events go to stdout (coloured text on a terminal, JSON lines when
piped or with ``--json``); the library's log and progress go to stderr.

Exit status: 0 success; 1 remote error, timeout or no connection; 2 usage (bad arguments
or input). Every error is one line on stderr. See docs/cli.md.
"""
from __future__ import annotations

import argparse
import base64
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Callable, Iterator, NoReturn, Sequence, TextIO

import gevent
import gevent.os
from gevent.event import Event

from . import __version__
from .config import OPTIONS, Config
from .errors import (
    AddressError, ConfigError, ConnectError, EncodeError, EventNameError, IPCError,
    NotConnectedError, RemoteError, Timeout, UnsupportedError, UsageError,
)
from .ipc import IPC
from .wire import names_for
from .wire.raw_codec import ENCODINGS

OK, FAILED, USAGE = 0, 1, 2

#: seconds a one-shot command (emit, request, describe) waits in all, unless --timeout
DEFAULT_TIMEOUT = 5.0
#: milliseconds between connection attempts: short, since a shell user is waiting
RETRY_MS = 100
#: the JSON form of bytes, both ways (msgpack carries bytes, JSON does not)
BYTES_KEY = "$hex"

PROG = "geventipc"
#: --encoding's choices: exactly the values config.encoding accepts
_ENCODING_CHOICES = next(o.choices for o in OPTIONS if o.name == "encoding")

# --- targets -----------------------------------------------------------------------------


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


# --- data in -----------------------------------------------------------------------------


def _from_json_object(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and BYTES_KEY in obj and isinstance(obj[BYTES_KEY], str):
        try:
            return bytes.fromhex(obj[BYTES_KEY])
        except ValueError:
            raise UsageError(f"{{{BYTES_KEY!r}: ...}} must hold hex digits") from None
    return obj


def parse_value(text: str, where: str, as_text: bool = False) -> Any:
    """One DATA value: JSON (``{"$hex": "..."}`` is bytes), or the text itself."""
    if as_text:
        return text
    try:
        return json.loads(text, object_hook=_from_json_object)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where} is not valid JSON ({exc.msg} at column {exc.colno}); "
                         f"quote a string as '\"text\"' or pass --text") from None


def stdin_lines() -> Iterator[str]:
    """stdin's lines, without their line ends, read in a thread so that the hub (and the
    connection's writes) keep running while the shell is slow to send more."""
    fd = sys.stdin.fileno()
    pending = b""
    while True:
        chunk = gevent.os.tp_read(fd, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.decode("utf-8", "replace").rstrip("\r")
    if pending:
        yield pending.decode("utf-8", "replace").rstrip("\r")


def data_values(arg: str | None, as_text: bool = False, raw: bool = False) -> Iterator[Any]:
    """The values DATA stands for: none given (one None), JSON, ``@file``, or ``-``
    (one per non-empty stdin line, read lazily). All but ``-`` are checked at once, so
    bad DATA is a usage error before anything is opened."""
    if arg == "-":
        return _stdin_values(as_text, raw)
    if arg is None:   # never in raw mode, where DATA is required
        return iter([None])
    if arg.startswith("@"):
        try:
            with open(arg[1:], encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise UsageError(f"cannot read {arg}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise UsageError(f"{arg} is not UTF-8 text") from None
        return iter([parse_value(text, arg, as_text or raw)])
    return iter([parse_value(arg, "DATA", as_text or raw)])


def _stdin_values(as_text: bool, raw: bool) -> Iterator[Any]:
    for number, line in enumerate(stdin_lines(), 1):
        if line.strip() or (raw and line):
            yield parse_value(line, f"stdin line {number}", as_text or raw)


# --- data out ----------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """``value`` with what JSON cannot hold made JSON-safe: bytes as ``{"$hex": ...}``,
    non-string keys as text, tuples and sets as lists."""
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {BYTES_KEY: bytes(value).hex()}
    if isinstance(value, dict):
        return {_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return repr(value)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (bytes, bytearray)):
        return bytes(key).hex()
    return json.dumps(key) if isinstance(key, (int, float, bool)) or key is None else repr(key)


def to_json(value: Any, indent: int | None = None) -> str:
    """One JSON text (one line unless ``indent``), Unicode kept as it is."""
    return json.dumps(jsonable(value), ensure_ascii=False, indent=indent,
                      separators=None if indent else (",", ":"))


def raw_text(data: bytes, encoding: str) -> str:
    """Raw bytes shown in the ``--encoding`` the user asked for."""
    if encoding == "hex":
        return data.hex()
    if encoding == "base64":
        return base64.b64encode(data).decode("ascii")
    return data.decode(ENCODINGS[encoding], "replace")


#: ANSI colours of node-ipc's log theme (geventipc.log.DEFAULT_THEME), for stdout
ANSI = {"good": "32", "notice": "33", "warn": "31", "error": "41", "debug": "35",
        "variable": "36", "data": "34"}


#: ``listen`` has no sender to show; ``serve`` always shows one (None: unknown)
_NO_SENDER: Any = object()


class Printer:
    """Writes what arrives to stdout: JSON lines, or text (in node-ipc's theme colours on
    a terminal). A closed pipe (``| head``) ends the command quietly."""

    def __init__(self, json_mode: bool, colour: bool, out: TextIO | None = None,
                 on_broken: Callable[[], None] | None = None) -> None:
        self.json = json_mode
        self.colour = colour and not json_mode
        self.out = out or sys.stdout
        #: True once stdout's reader has gone away; nothing more is written
        self.broken = False
        self._on_broken = on_broken
        self._flush_scheduled = False

    def paint(self, style: str, text: str) -> str:
        """``text`` in a theme colour when colour is on."""
        return f"\x1b[{ANSI[style]}m{text}\x1b[0m" if self.colour else text

    def line(self, text: str) -> None:
        """Write one line; it is flushed as soon as this batch of events is printed, so
        a reader of a pipe sees each event at once, for one system call per batch."""
        if self.broken:
            return
        try:
            self.out.write(text + "\n")
        except BrokenPipeError:
            self._broke()
            return
        if not self._flush_scheduled:
            self._flush_scheduled = True
            gevent.get_hub().loop.run_callback(self.flush)

    def __enter__(self) -> Printer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Flush on the way out, whether or not the command failed."""
        self.flush()

    def flush(self) -> None:
        """Flush stdout now (the commands call this, or leave a ``with``, before they
        return)."""
        self._flush_scheduled = False
        if self.broken:
            return
        try:
            self.out.flush()
        except BrokenPipeError:
            self._broke()

    def _broke(self) -> None:
        self.broken = True
        _quiet_broken_pipe()
        if self._on_broken is not None:
            self._on_broken()

    def _from(self, record: dict[str, Any], sender: Any) -> str:
        if sender is _NO_SENDER:
            return ""
        record["from"] = sender
        return self.paint("debug", f"[{'?' if sender is None else sender}]") + " "

    def event(self, type: str, data: Any, sender: Any = _NO_SENDER) -> None:
        """An event: ``{"type", "data"[, "from"]}``, or ``[from] type data``."""
        record: dict[str, Any] = {"type": type, "data": data}
        prefix = self._from(record, sender)
        if self.json:
            self.line(to_json(record))
        else:
            self.line(prefix + self.paint("variable", type) + " " +
                      self.paint("data", to_json(data)))

    def raw(self, data: bytes, encoding: str, sender: Any = _NO_SENDER) -> None:
        """Raw-mode bytes: ``{"data": <bytes in --encoding>[, "from"]}``."""
        shown = raw_text(data, encoding)
        record: dict[str, Any] = {"data": shown}
        prefix = self._from(record, sender)
        self.line(to_json(record) if self.json else prefix + self.paint("data", shown))

    def value(self, value: Any) -> None:
        """A reply: one JSON line, or indented JSON on a terminal."""
        self.line(to_json(value) if self.json else self.paint("data", to_json(value, 2)))

    def tables(self, tables: dict[str, Any]) -> None:
        """``describe``'s define tables: one JSON line, or two aligned lists."""
        if self.json:
            self.line(to_json(tables))
            return
        for name in ("listen", "broadcast"):
            entries = tables.get(name) or {}
            self.line(self.paint("good", f"{name}:") + ("" if entries else " (none)"))
            width = max((len(str(k)) for k in entries), default=0)
            for event, meaning in entries.items():
                shown = meaning if isinstance(meaning, str) else to_json(meaning)
                self.line("  " + self.paint("variable", str(event).ljust(width)) + "  " +
                          shown)


# --- shared set-up -----------------------------------------------------------------------


def wants_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def make_printer(args: argparse.Namespace, on_broken: Callable[[], None] | None = None
                 ) -> Printer:
    """stdout's printer: JSON lines with --json or when piped, colour on a terminal."""
    return Printer(args.json or not sys.stdout.isatty(), wants_colour(sys.stdout),
                   on_broken=on_broken)


def make_ipc(args: argparse.Namespace, serving: bool = False) -> IPC:
    """One IPC instance configured from the common options."""
    values: dict[str, Any] = {
        "silent": args.silent,
        "retry": RETRY_MS,
        "wire": args.wire,
        "log_in_color": wants_colour(sys.stderr),
        "id": args.id or f"geventipc-cli-{os.getpid()}",
        "socket_root": args.socket_root,   # None: config's own per-user default
        "raw_buffer": args.raw,
    }
    if args.appspace is not None:
        values["appspace"] = args.appspace
    if args.encoding is not None:
        if not args.raw:
            raise UsageError("--encoding is raw mode's: add --raw")
        values["encoding"] = args.encoding
    tls = tls_settings(args, serving)
    if tls:
        values["tls"] = tls
    try:
        return IPC(**values)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def tls_settings(args: argparse.Namespace, serving: bool = False) -> dict[str, Any]:
    """``config.tls`` from ``--tls-cert/--tls-key/--tls-ca`` (node-ipc's key names).

    A server given ``--tls-ca`` asks clients for a certificate from that CA (mutual TLS).
    """
    tls: dict[str, Any] = {}
    if args.tls_cert:
        tls["public"] = args.tls_cert
    if args.tls_key:
        tls["private"] = args.tls_key
    if args.tls_ca:
        tls["trustedConnections"] = list(args.tls_ca)
        if serving:
            tls["requestCert"] = True
    if args.tls_servername:
        tls["servername"] = args.tls_servername
    for path in [args.tls_cert, args.tls_key, *(args.tls_ca or ())]:
        if path and not os.path.isfile(path):
            raise UsageError(f"TLS file {path} does not exist")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    return tls


def with_tls(args: argparse.Namespace, ipc: IPC, target: Target) -> Target:
    """Check the transport options; TLS is on for ``tls://`` targets and whenever a
    --tls-* option is given (a ``tcp://`` target then becomes ``tls://``)."""
    tls_options = bool(args.tls_cert or args.tls_ca or args.tls_servername)
    if tls_options and target.kind == "unix":
        raise UsageError("TLS works over TCP only: use a tls://HOST:PORT target")
    if tls_options and target.kind == "udp":
        raise UsageError("TLS does not work over UDP")
    if target.kind == "tcp" and tls_options:
        target = Target("tls", host=target.host, port=target.port)
    if target.kind == "tls" and not ipc.config.tls:
        ipc.config.tls = True   # a client verifying against the system's CAs
    return target


class Stopper:
    """The end of a long-running command: SIGINT/SIGTERM, ``--count`` or ``--timeout``."""

    def __init__(self, count: int | None = None, timeout: float | None = None) -> None:
        self.done = Event()
        self.count = count
        #: the whole --timeout, named when ``--count`` was not reached within it
        self.timeout = timeout
        self.seen = 0
        self.interrupted = False
        self._signals = [gevent.signal_handler(sig, self.stop)
                         for sig in (signal.SIGINT, signal.SIGTERM)]

    def stop(self) -> None:
        """End now, as a success (a signal, or stdout's reader went away)."""
        self.interrupted = True
        self.done.set()

    def take(self) -> bool:
        """Count one item; False once ``--count`` items were taken (drop the rest)."""
        if self.done.is_set():
            return False
        self.seen += 1
        if self.count is not None and self.seen >= self.count:
            self.done.set()
        return True

    def wait(self, left: float | None) -> None:
        """Block until done or ``left`` seconds pass; Timeout if ``--count`` was not
        reached (an interrupt is a success)."""
        self.done.wait(left)
        for handler in self._signals:
            handler.cancel()
        if self.count is not None and not self.interrupted and self.seen < self.count:
            raise Timeout(f"{self.seen} of {self.count} events within {self.timeout:g} s")


def sender_of(socket: Any) -> str | None:
    """How a server names the peer an event came from: the id it announced, else its
    address (TCP, UDP); None for a Unix socket client that announced no id."""
    peer_id = getattr(socket, "id", None)
    if peer_id:
        return str(peer_id)
    address = getattr(socket, "address", socket)
    port = getattr(socket, "port", None)
    if isinstance(address, str) and isinstance(port, int):   # a UDP peer
        return host_port(address, port)
    if isinstance(address, tuple) and len(address) >= 2:
        return host_port(address[0], address[1])
    return None


# --- commands: serve ---------------------------------------------------------------------


def serve_target(args: argparse.Namespace, ipc: IPC) -> Target:
    """serve's address: ID / ADDRESS, or --path, --tcp, --udp (exactly one)."""
    given = [x for x in (args.address, args.path, args.tcp, args.udp) if x is not None]
    if len(given) != 1:
        raise UsageError("serve needs exactly one of ID, ADDRESS, --path, --tcp or --udp")
    if args.path is not None:
        return Target("unix", path=args.path)
    for kind in ("tcp", "udp"):
        text = getattr(args, kind)
        if text is not None:
            host, port = parse_host_port(text, f"--{kind}", allow_zero=True)
            return Target(kind, host=host, port=port)
    return parse_target(args.address, ipc.config, serving=True)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run a server that prints every event it receives, until interrupted."""
    ipc = make_ipc(args, serving=True)
    target = with_tls(args, ipc, serve_target(args, ipc))
    if target.name:
        ipc.config.id = target.name   # a server given by id is known by that id
    if target.kind == "tls" and not args.tls_cert:
        raise UsageError("serving TLS needs --tls-cert and --tls-key")
    stopper = Stopper(args.count, args.timeout)
    printer = make_printer(args, on_broken=stopper.stop)
    encoding = ipc.config.encoding
    if target.kind == "unix":
        server = ipc.serve(target.path)
    elif target.kind == "udp":
        server = ipc.serve_net(target.host, target.port, target.udp_type)
    else:
        server = ipc.serve_net(target.host, target.port)

    def on_event(type: str, data: Any, socket: Any) -> None:
        if not stopper.take():
            return
        printer.event(type, data, sender_of(socket))
        if args.echo:
            server.emit(socket, type, data)

    def on_raw(data: bytes, socket: Any) -> None:
        if not stopper.take():
            return
        printer.raw(data, encoding, sender_of(socket))
        if args.echo:
            server.emit(socket, data)  # type: ignore[arg-type]  # raw mode: data only

    server.on("data" if args.raw else "*", on_raw if args.raw else on_event)
    server.on("error", lambda exc: ipc.log("<warn>geventipc:</warn>", one_line(exc)))
    server.on("connect", lambda socket: ipc.log("<good>geventipc: client connected</good>"))
    server.on("socket.disconnected", lambda socket, peer_id: ipc.log(
        "<notice>geventipc: client disconnected:</notice>",
        peer_id or sender_of(socket) or "(no id)"))
    try:
        server.start()
    except OSError as exc:
        raise ConnectError(f"cannot serve on {target}: {one_line(exc)}") from None
    # port 0 asked for any free port: show the one the kernel chose
    bound = replace(target, port=getattr(server, "port", None) or target.port)
    ipc.log("<good>geventipc: serving on</good>", str(bound))
    try:
        stopper.wait(args.timeout)
    finally:
        server.stop()
        printer.flush()
    return OK


# --- commands: clients -------------------------------------------------------------------


def client_target(args: argparse.Namespace, ipc: IPC, words: list[str]) -> tuple[Target,
                                                                                 list[str]]:
    """TARGET from --path or the first word; returns it and the words after it."""
    if args.path is not None:
        return Target("unix", path=args.path), words
    if not words:
        raise UsageError("missing TARGET (a server id, a path, tcp://HOST:PORT, "
                         "tls://HOST:PORT or udp://HOST:PORT)")
    return parse_target(words[0], ipc.config), words[1:]


class Connection:
    """One client of the facade, with its last error kept for a clear failure message."""

    def __init__(self, ipc: IPC, target: Target, on_ready: Callable[[Any], None] | None = None
                 ) -> None:
        self.ipc = ipc
        self.target = target
        #: the latest error event, for the reason in a connect failure
        self.last_error: BaseException | None = None
        self.ended = Event()
        self.connects = 0
        self.closing = False

        def setup() -> None:
            client = ipc.of[target.id]
            client.on("error", self._on_error)
            client.on("destroy", self.ended.set)
            client.on("connect", self._on_connect)
            client.on("disconnect", self._on_disconnect)
            if on_ready is not None:
                on_ready(client)

        if target.kind == "unix":
            self.client = ipc.connect_to(target.id, target.path, setup)
        else:
            self.client = ipc.connect_to_net(target.id, target.host, target.port, setup)

    def _on_error(self, exc: BaseException) -> None:
        self.last_error = exc
        if not isinstance(exc, ConnectError):
            self.ipc.log("<warn>geventipc:</warn>", one_line(exc))

    def _on_connect(self) -> None:
        self.connects += 1
        if self.connects > 1:
            self.ipc.log("<good>geventipc: reconnected to</good>", str(self.target))

    def _on_disconnect(self) -> None:
        if not self.closing:
            self.ipc.log("<notice>geventipc: lost the connection to</notice>",
                         str(self.target), "<notice>- reconnecting</notice>")

    def wait(self, timeout: float) -> None:
        """Block until connected; ConnectError (with the last reason) after ``timeout``."""
        try:
            self.client.wait_connected(timeout)
        except (Timeout, NotConnectedError):
            reason = f": {one_line(self.last_error)}" if self.last_error is not None else ""
            raise ConnectError(f"cannot connect to {self.target} within {timeout:.3g} s"
                               f"{reason}") from None

    def close(self, timeout: float) -> None:
        """Disconnect after sending what is queued; NotConnectedError if some was not."""
        self.closing = True
        self.client.disconnect()
        if not self.ended.wait(max(timeout, 0.05)):
            raise Timeout(f"could not finish sending to {self.target} within "
                          f"{timeout:.3g} s")
        if self.client.queued:
            raise NotConnectedError(f"{self.client.queued} event(s) not delivered: the "
                                    f"connection to {self.target} was lost")


class Deadline:
    """The time left of a command's ``--timeout``."""

    def __init__(self, seconds: float | None) -> None:
        self._end = None if seconds is None else time.monotonic() + seconds

    def left(self) -> float | None:
        """Seconds left (at least a sliver), or None for no bound."""
        if self._end is None:
            return None
        return max(self._end - time.monotonic(), 0.001)


def cmd_emit(args: argparse.Namespace) -> int:
    """Send one event (or one per stdin line) and exit once it is sent."""
    ipc = make_ipc(args)
    target, words = client_target(args, ipc, args.words)
    target = with_tls(args, ipc, target)
    type_: str | None
    data_arg: str | None
    if args.raw:
        if len(words) != 1:
            raise UsageError("with --raw, emit takes TARGET and DATA (no TYPE)")
        type_, data_arg = None, words[0]
    else:
        if not words or len(words) > 2:
            raise UsageError("emit takes TARGET TYPE [DATA]")
        type_, data_arg = words[0], words[1] if len(words) > 1 else None
        _check_name(ipc, type_)
    values = data_values(data_arg, args.text, args.raw)
    timeout = args.timeout or DEFAULT_TIMEOUT
    if target.kind == "udp":
        return _emit_udp(ipc, target, type_, values)
    confirm = _has_requests(args) and not args.no_confirm
    conn = Connection(ipc, target)
    try:
        conn.wait(timeout)
        sent = _send_all(conn.client.emit, type_, values)
        # --timeout bounds connecting, then (afresh, as stdin may have run for hours)
        # finishing: the server's confirmation and the flush before closing
        deadline = Deadline(timeout)
        if confirm:
            _confirm(conn, sent, timeout)
        conn.close(deadline.left() or timeout)
    finally:
        ipc.disconnect(target.id)
    ipc.log("<good>geventipc:</good>", str(sent),
            "<good>event(s) sent to and read by</good>" if confirm else
            "<good>event(s) sent to</good>", str(target))
    return OK


def _confirm(conn: Connection, sent: int, timeout: float) -> None:
    """Ask the server for its define tables: it answers in order, after reading every
    event sent before, so a reply proves they all arrived (a plain TCP client of a TLS
    server, say, gets no reply)."""
    try:
        conn.client.describe(timeout)
    except (Timeout, NotConnectedError) as exc:
        raise type(exc)(f"{sent} event(s) sent but {conn.target} did not confirm reading "
                        f"them: {one_line(exc)} (a geventipc server on the msgpack wire "
                        f"always confirms; see --wire, --no-confirm)") from None


def _send_all(emit: Callable[..., Any], type_: str | None, values: Iterator[Any]) -> int:
    """``emit`` each value, as ``type_`` (raw mode, None: the data alone); the count."""
    sent = 0
    for value in values:
        if type_ is None:
            emit(value)
        else:
            emit(type_, value)
        sent += 1
    return sent


def _emit_udp(ipc: IPC, target: Target, type_: str | None, values: Iterator[Any]) -> int:
    """UDP has no client: send from an ephemeral port, then close it."""
    server = _udp_endpoint(ipc, target)
    peer = {"address": target.host, "port": target.port}
    try:
        sent = _send_all(partial(server.emit, peer), type_, values)
    finally:
        server.stop()
    ipc.log("<good>geventipc: sent</good>", str(sent), "<good>datagram(s) to</good>",
            str(target))
    return OK


def _check_name(ipc: IPC, name: str) -> None:
    """A TYPE the library would refuse to send is a usage error before anything opens."""
    reason = names_for(ipc.config).problem(name)
    if reason:
        raise UsageError(reason)


def _has_requests(args: argparse.Namespace) -> bool:
    """Whether the wire the options chose carries request/reply (msgpack, not raw)."""
    return not args.raw and args.wire == "msgpack"


def _needs_requests(args: argparse.Namespace, what: str) -> None:
    if not _has_requests(args):
        raise UsageError(f"{what} needs the msgpack wire (request/reply is not part of "
                         f"node-ipc's JSON wire or raw mode)")


def _udp_endpoint(ipc: IPC, target: Target) -> Any:
    """UDP has no client: a UDP server on an ephemeral port sends (and gets replies)."""
    loopback = target.host in ("localhost", "127.0.0.1", "::1")
    v6 = target.udp_type == "udp6"
    bind = ("::1" if v6 else "127.0.0.1") if loopback else ("::" if v6 else "0.0.0.0")
    server = ipc.serve_net(bind, 0, target.udp_type)
    try:
        server.start()
    except OSError as exc:
        raise ConnectError(f"cannot bind a UDP port to send from: {one_line(exc)}") from None
    return server


class Asker:
    """``request`` and ``describe`` over a stream client or from an ephemeral UDP port."""

    def __init__(self, ipc: IPC, target: Target, timeout: float) -> None:
        self.ipc = ipc
        self.target = target
        self.udp: Any = None
        self.conn: Connection | None = None
        if target.kind == "udp":
            self.udp = _udp_endpoint(ipc, target)
            self.peer = {"address": target.host, "port": target.port}
        else:
            self.conn = Connection(ipc, target)
            self.conn.wait(timeout)

    def request(self, type: str, data: Any, timeout: float | None) -> Any:
        """The reply to one request (raises RemoteError, NoHandlerError, Timeout)."""
        if self.udp is not None:
            return self.udp.request(self.peer, type, data, timeout)
        assert self.conn is not None
        return self.conn.client.request(type, data, timeout)

    def describe(self, timeout: float | None) -> dict[str, Any]:
        """The server's define tables."""
        if self.udp is not None:
            return self.udp.describe(self.peer, timeout)
        assert self.conn is not None
        return self.conn.client.describe(timeout)

    def close(self) -> None:
        """Drop the connection (or the UDP port)."""
        if self.udp is not None:
            self.udp.stop()
        else:
            self.ipc.disconnect(self.target.id)

    def __enter__(self) -> Asker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close on the way out, whether or not the command failed."""
        self.close()


def cmd_request(args: argparse.Namespace) -> int:
    """Send a request (or one per stdin line) and print each reply."""
    ipc = make_ipc(args)
    target, words = client_target(args, ipc, args.words)
    target = with_tls(args, ipc, target)
    _needs_requests(args, "request")
    if not words or len(words) > 2:
        raise UsageError("request takes TARGET TYPE [DATA]")
    type_, data_arg = words[0], words[1] if len(words) > 1 else None
    _check_name(ipc, type_)
    values = data_values(data_arg, args.text)
    timeout = args.timeout or DEFAULT_TIMEOUT
    with make_printer(args) as printer, Asker(ipc, target, timeout) as asker:
        for value in values:
            printer.value(asker.request(type_, value, timeout))
    return OK


def cmd_describe(args: argparse.Namespace) -> int:
    """Print the server's ``define`` tables."""
    ipc = make_ipc(args)
    target, words = client_target(args, ipc, args.words)
    if words:
        raise UsageError(f"describe takes only TARGET, not {' '.join(words)!r}")
    target = with_tls(args, ipc, target)
    _needs_requests(args, "describe")
    timeout = args.timeout or DEFAULT_TIMEOUT
    with make_printer(args) as printer, Asker(ipc, target, timeout) as asker:
        printer.tables(asker.describe(timeout))
    return OK


def cmd_listen(args: argparse.Namespace) -> int:
    """Print the events a server sends, until interrupted, ``--count`` or ``--timeout``."""
    ipc = make_ipc(args)
    target, types = client_target(args, ipc, args.words)
    target = with_tls(args, ipc, target)
    if target.kind == "udp":
        raise UsageError("UDP has no connection to listen on: run 'geventipc serve --udp "
                         "HOST:PORT' to receive datagrams")
    if args.raw and types:
        raise UsageError("raw mode has no event types to filter on")
    for name in types:
        _check_name(ipc, name)
    wanted = frozenset(types)
    stopper = Stopper(args.count, args.timeout)
    printer = make_printer(args, on_broken=stopper.stop)
    encoding = ipc.config.encoding

    def on_event(type: str, data: Any) -> None:
        if (not wanted or type in wanted) and stopper.take():
            printer.event(type, data)

    def on_raw(data: bytes) -> None:
        if stopper.take():
            printer.raw(data, encoding)

    def ready(client: Any) -> None:
        client.on("data" if args.raw else "*", on_raw if args.raw else on_event)

    deadline = Deadline(args.timeout)
    conn = Connection(ipc, target, ready)
    try:
        conn.wait(min(deadline.left() or DEFAULT_TIMEOUT, DEFAULT_TIMEOUT))
        ipc.log("<good>geventipc: listening to</good>", str(target))
        stopper.wait(deadline.left())
    finally:
        ipc.disconnect(target.id)
        printer.flush()
    return OK


# --- the parser --------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line (UsageError) instead of a usage dump."""

    #: the command parsers by name (on the top-level parser)
    subcommands: dict[str, "Parser"] = {}

    def error(self, message: str) -> NoReturn:
        """Raise UsageError: main prints it in one line and exits with status 2."""
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


TARGETS = """\
TARGET is one of:
  ID                a server id: the Unix socket SOCKET_ROOT/APPSPACE+ID
  PATH, unix://PATH a Unix socket path (a PATH must contain a '/': ./world.sock)
  tcp://HOST:PORT   TCP ([::1]:PORT for IPv6)
  tls://HOST:PORT   TCP with TLS (with --tls-ca, and --tls-cert/--tls-key for mutual TLS)
  udp://HOST:PORT   UDP (emit, request, describe; one datagram per event)
"""

DATA = """\
DATA is JSON ('"text"', 42, '{"a": [1, 2]}'; {"$hex": "00ff"} is bytes), @FILE (a file
holding one JSON value), or - (stdin: one value per line, blank lines skipped). With --text,
DATA is taken as a plain string. Without DATA the event carries null.
"""

EXIT = """\
exit status: 0 success, 1 remote error, timeout or no connection, 2 usage error.
"""

HELP = {
    "serve": ("run a server that prints every event it receives",
              """\
ADDRESS is a server id, a Unix socket path, tcp://HOST:PORT or udp://HOST:PORT (port 0:
any free port; the chosen one is logged). Events are printed to stdout: coloured text on a
terminal, JSON lines {"type", "data", "from"} when piped or with --json. Logs go to stderr.
Runs until interrupted, until --count events arrived, or for --timeout seconds. TLS: --tcp
with --tls-cert and --tls-key; add --tls-ca to require client certificates from that CA
(mutual TLS). With --raw, each chunk of bytes is printed in --encoding.

examples:
  geventipc serve world                       # Unix socket, server id "world"
  geventipc serve --tcp 127.0.0.1:8000 --echo # TCP, every event sent back to its sender
  geventipc serve --udp [::1]:8001 --json     # UDP over IPv6, JSON lines
  geventipc serve world --count 1 --timeout 10 > first.json
"""),
    "emit": ("send an event (or one per stdin line)",
             TARGETS + "\n" + DATA + """
emit waits up to --timeout (default 5 s) for the server, sends, and on the msgpack wire
exits 0 only once the server confirmed it read the events (--no-confirm: once sent).

examples:
  geventipc emit world message '"hello"'
  geventipc emit tcp://127.0.0.1:8000 job '{"id": 7}'
  geventipc emit world message --text 'hello, no quotes needed'
  geventipc emit world message @payload.json
  tail -f app.log | geventipc emit world line --text -
  geventipc emit --raw --encoding hex world 68656c6c6f   # raw mode: DATA only, no TYPE
  geventipc emit udp://127.0.0.1:8001 ping
"""),
    "request": ("send a request and print the reply (msgpack wire)",
                TARGETS + "\n" + DATA + """
The reply is printed as JSON (indented on a terminal). A handler that raised on the server,
no handler, or no reply within --timeout (default 5 s) prints one line on stderr: exit 1.

examples:
  geventipc request world add '[1, 2]'
  geventipc request tcp://127.0.0.1:8000 user.get '{"id": 7}' --timeout 2
  printf '1\\n2\\n3\\n' | geventipc request world square -   # one reply per line
"""),
    "listen": ("print the events a server sends",
               TARGETS + """
With TYPEs, only those event types are printed. Output: coloured text on a terminal, JSON
lines {"type", "data"} when piped or with --json. Runs until interrupted, until --count
events arrived, or for --timeout seconds (with --count: exit 1 if fewer arrived). A lost
connection is re-made; the first must succeed within 5 s (or --timeout).

examples:
  geventipc listen world
  geventipc listen tcp://127.0.0.1:8000 tick alarm --json
  geventipc listen world --count 1 --timeout 10     # wait for one event, at most 10 s
"""),
    "describe": ("print the server's define tables (msgpack wire)",
                 TARGETS + """
examples:
  geventipc describe world
  geventipc describe tcp://127.0.0.1:8000 --json
"""),
}


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection options")
    group.add_argument("--path", metavar="P", help="Unix socket path (instead of TARGET/ID)")
    group.add_argument("--socket-root", metavar="DIR",
                       help="directory of Unix sockets named by id (default: a per-user, "
                            "owner-only directory)")
    group.add_argument("--appspace", metavar="PREFIX",
                       help="prefix of socket file names (default 'app.')")
    group.add_argument("--id", metavar="NAME",
                       help="this process's id, announced to servers (default "
                            "geventipc-cli-PID)")
    group.add_argument("--wire", choices=("msgpack", "node-ipc"), default="msgpack",
                       help="wire format (default msgpack; node-ipc: node-ipc's JSON)")
    group.add_argument("--raw", action="store_true",
                       help="raw mode: bytes with no framing and no event types")
    group.add_argument("--encoding", metavar="ENC",
                       choices=_ENCODING_CHOICES,
                       help="raw mode's text encoding: utf8 (default), hex, base64, ascii, "
                            "latin1, utf16le/ucs2")
    group.add_argument("--tls-cert", metavar="PEM", help="certificate (config.tls 'public')")
    group.add_argument("--tls-key", metavar="PEM", help="private key (config.tls 'private')")
    group.add_argument("--tls-ca", metavar="PEM", action="append",
                       help="CA to trust (config.tls 'trustedConnections'); repeatable")
    group.add_argument("--tls-servername", metavar="NAME",
                       help="host name to verify in the server's certificate")
    group.add_argument("--timeout", metavar="S", type=_seconds,
                       help="seconds to wait in all (emit, request, describe: default 5; "
                            "serve, listen: run for S seconds)")
    group.add_argument("--silent", action="store_true",
                       help="no log lines on stderr (a failing command still prints its "
                            "one-line error)")
    group.add_argument("--json", action="store_true",
                       help="print JSON lines even on a terminal")
    return common


def build_parser() -> Parser:
    """The whole ``geventipc`` argument parser."""
    parser = Parser(
        prog=PROG,
        description="Poke at IPC services from the shell: serve, emit, request, listen, "
                    "describe. Run 'geventipc COMMAND --help' for a command's options.",
        epilog=TARGETS + "\n" + EXIT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=Parser)
    common = _common_options()
    usage = {
        "serve": "%(prog)s [options] (ID | ADDRESS | --path P | --tcp HOST:PORT | "
                 "--udp HOST:PORT)",
        "emit": "%(prog)s [options] TARGET TYPE [DATA]",
        "request": "%(prog)s [options] TARGET TYPE [DATA]",
        "listen": "%(prog)s [options] TARGET [TYPE ...]",
        "describe": "%(prog)s [options] TARGET",
    }
    subs: dict[str, Parser] = {}
    for name, (summary, epilog) in HELP.items():
        subs[name] = commands.add_parser(
            name, parents=[common],  # type: ignore[list-item]
            help=summary, description=summary[0].upper() +
            summary[1:] + ".", epilog=epilog + "\n" + EXIT, usage=usage[name],
            formatter_class=argparse.RawDescriptionHelpFormatter)
    serve = subs["serve"]
    serve.add_argument("address", nargs="?", metavar="ID|ADDRESS",
                       help="server id, socket path, tcp://HOST:PORT or udp://HOST:PORT")
    serve.add_argument("--tcp", metavar="HOST:PORT", help="serve TCP (TLS with --tls-cert)")
    serve.add_argument("--udp", metavar="HOST:PORT", help="serve UDP")
    serve.add_argument("--echo", action="store_true",
                       help="send each event back to its sender")
    serve.add_argument("--count", metavar="N", type=_positive,
                       help="exit after N events")
    subs["emit"].add_argument("--no-confirm", action="store_true",
                              help="do not wait for the server to confirm it read the "
                                   "events (see below)")
    for name in ("emit", "request"):
        subs[name].add_argument("words", nargs="*", metavar="TARGET TYPE [DATA]",
                                help="where, the event type, and its data")
        subs[name].add_argument("--text", action="store_true",
                                help="DATA (and each stdin line) is a plain string, not JSON")
    subs["listen"].add_argument("words", nargs="*", metavar="TARGET [TYPE ...]",
                                help="where, and the event types to print (default all)")
    subs["listen"].add_argument("--count", metavar="N", type=_positive,
                                help="exit after N events")
    subs["describe"].add_argument("words", nargs="*", metavar="TARGET", help="where")
    parser.subcommands = subs
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": cmd_serve, "emit": cmd_emit, "request": cmd_request, "listen": cmd_listen,
    "describe": cmd_describe,
}


def one_line(exc: BaseException) -> str:
    """An exception as one line of text."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, IPCError):
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    return " ".join(text.split())


def _fail(prog: str, message: str, code: int) -> int:
    try:
        sys.stderr.write(f"{prog}: error: {message}\n")
        sys.stderr.flush()
    except OSError:
        pass
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        if words and words[0] in parser.subcommands:
            # per command, so options and words may come in any order
            args = parser.subcommands[words[0]].parse_intermixed_args(words[1:])
            args.command = words[0]
        else:
            args = parser.parse_args(words)
    except UsageError as exc:
        return _fail(PROG, one_line(exc), USAGE)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else OK
    prog = f"{PROG} {args.command}"
    watcher = None
    if args.command not in ("serve", "listen"):   # those two end cleanly on a signal
        watcher = gevent.signal_handler(signal.SIGINT, gevent.kill, gevent.getcurrent(),
                                        KeyboardInterrupt)
    try:
        return COMMANDS[args.command](args)
    except (UsageError, ConfigError, EncodeError, EventNameError, AddressError,
            UnsupportedError) as exc:
        # bad options or input: the config, an address, DATA the wire cannot carry
        return _fail(prog, one_line(exc), USAGE)
    except RemoteError as exc:
        return _fail(prog, f"remote error: {one_line(exc)}", FAILED)
    except (IPCError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            return _quiet_broken_pipe()
        return _fail(prog, one_line(exc), FAILED)
    except KeyboardInterrupt:
        return 130
    finally:
        if watcher is not None:
            watcher.cancel()


def _quiet_broken_pipe() -> int:
    # stdout's reader went away (``| head``): that ends the command, it is not an error;
    # point stdout at /dev/null so the interpreter's final flush does not complain
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except OSError:
        pass
    return OK


__all__ = ["main", "build_parser", "parse_target", "Target", "jsonable", "to_json"]
