"""``geventipc request``: send a request (or one per stdin line) and print each reply."""
from __future__ import annotations

import argparse

from .common import (
    DEFAULT_TIMEOUT, OK, add_event_words, client_setup, event_values, event_words, needs_requests,
)
from .connection import Asker
from .options import DATA, TARGETS
from .output import make_printer

NAME = "request"
SUMMARY = "send a request and print the reply (msgpack wire)"
USAGE = "%(prog)s [options] TARGET TYPE [DATA]"
EPILOG = TARGETS + "\n" + DATA + """
The reply is printed as JSON (indented on a terminal). A handler that raised on the server,
no handler, or no reply within --timeout (default 5 s) prints one line on stderr: exit 1.

examples:
  geventipc request world add '[1, 2]'
  geventipc request tcp://127.0.0.1:8000 user.get '{"id": 7}' --timeout 2
  printf '1\\n2\\n3\\n' | geventipc request world square -   # one reply per line
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """request's own words and options (after the common ones)."""
    add_event_words(parser)


def run(args: argparse.Namespace) -> int:
    """Send a request (or one per stdin line) and print each reply."""
    ipc, target, words = client_setup(args)
    needs_requests(args, "request")
    type_, data_arg = event_words(ipc, words, "request")
    values = event_values(ipc, target, type_, data_arg, args.text, request=True)
    timeout = args.timeout or DEFAULT_TIMEOUT
    with make_printer(args) as printer, Asker(ipc, target, timeout) as asker:
        for value in values:
            printer.value(asker.request(type_, value, timeout))
    return OK
