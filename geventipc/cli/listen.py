"""``geventipc listen``: print the events a server sends, until interrupted, ``--count``
or ``--timeout``."""
from __future__ import annotations

import argparse
from typing import Any

from ..errors import UsageError
from .common import DEFAULT_TIMEOUT, OK, Deadline, Stopper, check_name, client_setup
from .connection import Connection
from .options import TARGETS, positive
from .output import make_printer

NAME = "listen"
SUMMARY = "print the events a server sends"
USAGE = "%(prog)s [options] TARGET [TYPE ...]"
EPILOG = TARGETS + """
With TYPEs, only those event types are printed. Output: coloured text on a terminal, JSON
lines {"type", "data"} when piped or with --json. Runs until interrupted, until --count
events arrived, or for --timeout seconds (with --count: exit 1 if fewer arrived). A lost
connection is re-made; the first must succeed within 5 s (or --timeout).

examples:
  geventipc listen world
  geventipc listen tcp://127.0.0.1:8000 tick alarm --json
  geventipc listen world --count 1 --timeout 10     # wait for one event, at most 10 s
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """listen's own words and options (after the common ones)."""
    parser.add_argument("words", nargs="*", metavar="TARGET [TYPE ...]",
                        help="where, and the event types to print (default all)")
    parser.add_argument("--count", metavar="N", type=positive,
                        help="exit after N events")


def run(args: argparse.Namespace) -> int:
    """Print the events a server sends, until interrupted, ``--count`` or ``--timeout``."""
    ipc, target, types = client_setup(args)
    if target.kind == "udp":
        raise UsageError("UDP has no connection to listen on: run 'geventipc serve --udp "
                         "HOST:PORT' to receive datagrams")
    if args.raw and types:
        raise UsageError("raw mode has no event types to filter on")
    for name in types:
        check_name(ipc, name)
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
