"""``geventipc stats``: print a running server's ``stats()``; and serve's ``--stats`` and
``--metrics`` (the helpers :mod:`.serve` calls)."""
from __future__ import annotations

import argparse
from typing import Any

from ..errors import ConnectError, UnsupportedError
from ..server import STATS
from .common import OK, add_target_word, request_target
from .connection import Asker
from .options import TARGETS
from .output import Printer, make_printer, to_json
from .targets import parse_host_port

NAME = "stats"
SUMMARY = "print a running server's statistics (msgpack wire; the server must allow it)"
USAGE = "%(prog)s [options] TARGET"
EPILOG = TARGETS + """
The server answers only if its owner turned stats requests on (config.stats_requests,
or geventipc serve --stats): the counts reveal its load and its clients' ids. Prints a
table on a terminal, one JSON object when piped or with --json (fields:
docs/operations.md).

examples:
  geventipc stats world
  geventipc stats tcp://127.0.0.1:8000 --json | jq .connections
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """stats' own words (after the common options)."""
    add_target_word(parser)


def run(args: argparse.Namespace) -> int:
    """Print the server's statistics."""
    ipc, target, timeout = request_target(args, "stats")
    with make_printer(args) as printer, Asker(ipc, target, timeout) as asker:
        stats = asker.request(STATS, None, timeout)
        if printer.json:
            printer.line(to_json(stats))
        else:
            print_table(printer, stats)
    return OK


def _scalar(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) if value else "none"
    return "-" if value is None else str(value)


def print_table(printer: Printer, stats: dict[str, Any]) -> None:
    """The stats as aligned ``name  value`` lines, then one line per connection."""
    rows: list[tuple[str, str]] = []
    for key, value in stats.items():
        if key in ("sockets", "schema"):
            continue
        if isinstance(value, dict) and key in ("connections", "requests", "requests_sent",
                                               "largest_backlog"):
            for sub, inner in value.items():
                if sub == "latency_seconds":
                    buckets = [f"<={le}:{n}" for le, n in inner["buckets"] if n]
                    rows.append((f"{key}.latency", f"count {inner['count']}, sum "
                                 f"{inner['sum']:.6f} s" + (f" ({' '.join(buckets[:4])})"
                                                            if buckets else "")))
                else:
                    rows.append((f"{key}.{sub}", _scalar(inner)))
        else:
            rows.append((key, _scalar(value)))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        printer.line(printer.paint("variable", name.ljust(width)) + "  " + value)
    sockets = stats.get("sockets") or []
    if sockets:
        printer.line(printer.paint("good", f"sockets ({len(sockets)}):"))
        for sock in sorted(sockets, key=lambda s: -s["pending_bytes"]):
            printer.line(f"  {sock['id'] or '(no id)'}  {sock['address']}  in "
                         f"{sock['events_in']} ev/{sock['bytes_in']} B  out "
                         f"{sock['events_out']} ev/{sock['bytes_out']} B  pending "
                         f"{sock['pending_bytes']} B  dropped {sock['dropped']}")


# --- serve --stats / --metrics -------------------------------------------------------


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    """serve's ``--stats`` and ``--metrics HOST:PORT``."""
    parser.add_argument("--stats", action="store_true",
                        help="answer 'geventipc stats' requests (config.stats_requests; off "
                             "by default: the counts reveal load and client ids)")
    parser.add_argument("--metrics", metavar="HOST:PORT",
                        help="serve Prometheus metrics on HOST:PORT (pip install "
                             "'geventipc[metrics]')")


class ServeExtras:
    """What ``--stats`` and ``--metrics`` add to a server; :meth:`stop` ends them."""

    def __init__(self, args: argparse.Namespace, ipc: Any, server: Any) -> None:
        self.endpoint: Any = None
        if args.stats:
            server.config.stats_requests = True
        if args.metrics is None:
            return
        host, port = parse_host_port(args.metrics, "--metrics", allow_zero=True)
        try:
            from ..metrics import serve_metrics  # noqa: PLC0415 - optional extra
        except ImportError as exc:
            raise UnsupportedError(str(exc)) from None
        try:
            self.endpoint = serve_metrics(host, port, server)
        except OSError as exc:
            raise ConnectError(f"cannot serve metrics on {args.metrics}: "
                              f"{exc.strerror or exc}") from None
        ipc.log("<good>geventipc: metrics on</good>", self.endpoint.url)

    def stop(self) -> None:
        """Stop the metrics endpoint, if any."""
        if self.endpoint is not None:
            self.endpoint.stop()
