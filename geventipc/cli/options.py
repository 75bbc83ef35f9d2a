"""The argument parser's shared parts: one-line usage errors, value types, the options
every command takes, and the help texts about TARGET, DATA and exit statuses."""
from __future__ import annotations

import argparse
import math
from typing import NoReturn

from ..config import OPTIONS
from ..errors import UsageError

PROG = "geventipc"
#: --encoding's choices: exactly the values config.encoding accepts
_ENCODING_CHOICES = next(o.choices for o in OPTIONS if o.name == "encoding")


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line (UsageError) instead of a usage dump."""

    #: the command parsers by name (on the top-level parser)
    subcommands: dict[str, "Parser"] = {}

    def error(self, message: str) -> NoReturn:
        """Raise UsageError: main prints it in one line and exits with status 2."""
        raise UsageError(f"{message} (see '{self.prog} --help')")


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text!r}")
    return value


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
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
  udp://HOST:PORT   UDP (emit, request, describe, stats; one datagram each)
"""

DATA = """\
DATA is JSON ('"text"', 42, '{"a": [1, 2]}'; {"$hex": "00ff"} is bytes), @FILE (a file
holding one JSON value), or - (stdin: one value per line, blank lines skipped). With --text,
DATA is taken as a plain string. Without DATA the event carries null.
"""

EXIT = """\
exit status: 0 success, 1 remote error, timeout or no connection, 2 usage error.
"""


def common_options() -> argparse.ArgumentParser:
    """The "connection options" every command takes (a parent parser)."""
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
    group.add_argument("--timeout", metavar="S", type=seconds,
                       help="seconds to wait in all (emit, request, describe, stats: default "
                            "5; "
                            "serve, listen: run for S seconds)")
    group.add_argument("--silent", action="store_true",
                       help="no log lines on stderr (a failing command still prints its "
                            "one-line error)")
    group.add_argument("--json", action="store_true",
                       help="print JSON lines even on a terminal")
    return common
