"""``geventipc emit``: send one event (or one per stdin line) and exit once it is sent."""
from __future__ import annotations

import argparse
from functools import partial
from typing import Any, Callable, Iterator

from ..errors import NotConnectedError, Timeout, UsageError
from ..ipc import IPC
from .common import (
    DEFAULT_TIMEOUT, OK, Deadline, add_event_words, client_setup, event_values, event_words,
    has_requests,
)
from .connection import Connection, udp_endpoint
from .options import DATA, TARGETS
from .output import one_line
from .targets import Target

NAME = "emit"
SUMMARY = "send an event (or one per stdin line)"
USAGE = "%(prog)s [options] TARGET TYPE [DATA]"
EPILOG = TARGETS + "\n" + DATA + """
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
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """emit's own words and options (after the common ones)."""
    parser.add_argument("--no-confirm", action="store_true",
                        help="do not wait for the server to confirm it read the "
                             "events (see below)")
    add_event_words(parser)


def run(args: argparse.Namespace) -> int:
    """Send one event (or one per stdin line) and exit once it is sent."""
    ipc, target, words = client_setup(args)
    type_: str | None
    data_arg: str | None
    if args.raw:
        if len(words) != 1:
            raise UsageError("with --raw, emit takes TARGET and DATA (no TYPE)")
        type_, data_arg = None, words[0]
    else:
        type_, data_arg = event_words(ipc, words, "emit")
    values = event_values(ipc, target, type_, data_arg, args.text, args.raw)
    timeout = args.timeout or DEFAULT_TIMEOUT
    if target.kind == "udp":
        return _emit_udp(ipc, target, type_, values)
    confirm = has_requests(args) and not args.no_confirm
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
    server = udp_endpoint(ipc, target)
    peer = {"address": target.host, "port": target.port}
    try:
        sent = _send_all(partial(server.emit, peer), type_, values)
    finally:
        server.stop()
    ipc.log("<good>geventipc: sent</good>", str(sent), "<good>datagram(s) to</good>",
            str(target))
    return OK
