"""``geventipc describe``: print a server's ``define`` tables."""
from __future__ import annotations

import argparse

from ..errors import UsageError
from .common import DEFAULT_TIMEOUT, OK, make_ipc, needs_requests, with_tls
from .connection import Asker
from .options import TARGETS
from .output import make_printer
from .targets import client_target

NAME = "describe"
SUMMARY = "print the server's define tables (msgpack wire)"
USAGE = "%(prog)s [options] TARGET"
EPILOG = TARGETS + """
examples:
  geventipc describe world
  geventipc describe tcp://127.0.0.1:8000 --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """describe's own words (after the common options)."""
    parser.add_argument("words", nargs="*", metavar="TARGET", help="where")


def run(args: argparse.Namespace) -> int:
    """Print the server's ``define`` tables."""
    ipc = make_ipc(args)
    target, words = client_target(args, ipc.config, args.words)
    if words:
        raise UsageError(f"describe takes only TARGET, not {' '.join(words)!r}")
    target = with_tls(args, ipc, target)
    needs_requests(args, "describe")
    timeout = args.timeout or DEFAULT_TIMEOUT
    with make_printer(args) as printer, Asker(ipc, target, timeout) as asker:
        printer.tables(asker.describe(timeout))
    return OK
