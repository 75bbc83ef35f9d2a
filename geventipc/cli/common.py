"""What every command shares at run time: exit statuses, the IPC instance built from the
options (with TLS), event-name checks, and the end of a long-running command."""
from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
from typing import Any, Iterator

import gevent
from gevent.event import Event

from ..errors import ConfigError, Timeout, UsageError
from ..ipc import IPC
from ..transports.datagram import MAX_PAYLOAD
from ..wire import make_codec, names_for
from .data import data_values
from .output import wants_colour
from .targets import Target, client_target, host_port

OK, FAILED, USAGE = 0, 1, 2

#: seconds a one-shot command (emit, request, describe, stats) waits in all, unless --timeout
DEFAULT_TIMEOUT = 5.0
#: milliseconds between connection attempts: short, since a shell user is waiting
RETRY_MS = 100


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
        "handle_signals": False,   # each command ends on signals its own way
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
        target = Target("tls", host=target.host, port=target.port, name=target.name)
    if target.kind == "tls" and not ipc.config.tls:
        ipc.config.tls = True   # a client verifying against the system's CAs
    return target


def check_name(ipc: IPC, name: str) -> None:
    """A TYPE the library would refuse to send is a usage error before anything opens."""
    reason = names_for(ipc.config).problem(name)
    if reason:
        raise UsageError(reason)


def check_data(ipc: IPC, target: Target, type_: str | None, values: list[Any],
               request: bool = False) -> list[Any]:
    """DATA the wire cannot carry (or too big for the wire, or for one datagram) is a
    usage error before anything opens: each value is encoded once here. Returns
    ``values``."""
    codec = make_codec(ipc.config)
    for value in values:
        if request:
            frame = codec.encode_request(type_, value, 1)
        elif type_ is None:
            frame = codec.encode_event(value)
        else:
            frame = codec.encode_event(type_, value)
        if target.kind == "udp":
            family = socket.AF_INET6 if target.udp_type == "udp6" else socket.AF_INET
            if len(frame) > MAX_PAYLOAD[family]:
                raise UsageError(f"DATA encodes to {len(frame)} bytes, more than one UDP "
                                 f"datagram carries ({MAX_PAYLOAD[family]})")
    return values


def add_event_words(parser: argparse.ArgumentParser) -> None:
    """The words TARGET TYPE [DATA] and ``--text`` (emit, request)."""
    parser.add_argument("words", nargs="*", metavar="TARGET TYPE [DATA]",
                        help="where, the event type, and its data")
    parser.add_argument("--text", action="store_true",
                        help="DATA (and each stdin line) is a plain string, not JSON")


def event_words(ipc: IPC, words: list[str], what: str) -> tuple[str, str | None]:
    """TYPE and DATA (None if not given) from the words after TARGET; TYPE checked."""
    if not words or len(words) > 2:
        raise UsageError(f"{what} takes TARGET TYPE [DATA]")
    type_, data_arg = words[0], words[1] if len(words) > 1 else None
    check_name(ipc, type_)
    return type_, data_arg


def event_values(ipc: IPC, target: Target, type_: str | None, data_arg: str | None,
                 text: bool, raw: bool = False, request: bool = False) -> Iterator[Any]:
    """The values to send: DATA's, or one per stdin line (``-``); DATA given on the
    command line is checked (:func:`check_data`) before anything opens."""
    values = data_values(data_arg, text, raw)
    if data_arg != "-":   # stdin lines are checked as they come
        values = iter(check_data(ipc, target, type_, list(values), request=request))
    return values


def has_requests(args: argparse.Namespace) -> bool:
    """Whether the wire the options chose carries request/reply (msgpack, not raw)."""
    return not args.raw and args.wire == "msgpack"


def needs_requests(args: argparse.Namespace, what: str) -> None:
    """UsageError unless the options chose a wire with request/reply."""
    if not has_requests(args):
        raise UsageError(f"{what} needs the msgpack wire (request/reply is not part of "
                         f"node-ipc's JSON wire or raw mode)")


def add_target_word(parser: argparse.ArgumentParser) -> None:
    """The one word of a command that takes only TARGET (describe, stats)."""
    parser.add_argument("words", nargs="*", metavar="TARGET", help="where")


def client_setup(args: argparse.Namespace) -> tuple[IPC, Target, list[str]]:
    """A client command's IPC instance (from the options), its TARGET (TLS options
    applied: :func:`with_tls`) and the words after TARGET."""
    ipc = make_ipc(args)
    target, words = client_target(args, ipc.config, args.words)
    return ipc, with_tls(args, ipc, target), words


def request_target(args: argparse.Namespace, what: str) -> tuple[IPC, Target, float]:
    """The IPC instance, the TARGET (alone: other words are a usage error) and the
    timeout of a command that asks its server one request (describe, stats)."""
    ipc, target, words = client_setup(args)
    if words:
        raise UsageError(f"{what} takes only TARGET, not {' '.join(words)!r}")
    needs_requests(args, what)
    return ipc, target, args.timeout or DEFAULT_TIMEOUT


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


class Deadline:
    """The time left of a command's ``--timeout``."""

    def __init__(self, seconds: float | None) -> None:
        self._end = None if seconds is None else time.monotonic() + seconds

    def left(self) -> float | None:
        """Seconds left (at least a sliver), or None for no bound."""
        if self._end is None:
            return None
        return max(self._end - time.monotonic(), 0.001)


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
