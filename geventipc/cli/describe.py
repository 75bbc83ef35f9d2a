"""``geventipc describe``: print a server's ``define`` tables."""
from __future__ import annotations

import argparse

from .common import OK, add_target_word, request_target
from .connection import Asker
from .options import TARGETS
from .output import make_printer

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
    add_target_word(parser)


def run(args: argparse.Namespace) -> int:
    """Print the server's ``define`` tables."""
    ipc, target, timeout = request_target(args, "describe")
    with make_printer(args) as printer, Asker(ipc, target, timeout) as asker:
        printer.tables(asker.describe(timeout))
    return OK
