"""The ``geventipc`` command line: serve, emit, request, listen, describe and stats from a
shell.

A thin layer over the public API (:class:`~geventipc.IPC`, its clients and servers): it
turns arguments into one IPC instance's config, makes one server or one client, and
prints what arrives. Events go to stdout (coloured text on a terminal, JSON lines when
piped or with ``--json``); the library's log and progress go to stderr.

Exit status: 0 success; 1 remote error, timeout or no connection; 2 usage (bad arguments
or input). Every error is one line on stderr. See docs/cli.md.

Where things are (docs/cli.md, "Adding a command"):

- ``serve.py``, ``emit.py``, ``request.py``, ``listen.py``, ``describe.py``, ``stats.py``:
  one command each (its help text, its own arguments, ``run``);
- ``parser.py``: the argument parser built from those modules;
- ``options.py``: the options every command takes, argparse types, shared help text;
- ``targets.py``: TARGET/ADDRESS parsing; ``data.py``: DATA (JSON, @FILE, stdin);
- ``output.py``: what goes to stdout (JSON lines, colour) and one-line errors;
- ``common.py``: exit statuses, the IPC instance and TARGET from the options, TLS, Stopper;
- ``connection.py``: a client with clear connect failures, UDP sending, request/describe;
- this module: :func:`main`, the entry point, mapping errors to exit statuses.
"""
from __future__ import annotations

import signal
import sys
from typing import Sequence

import gevent

from ..errors import (
    AddressError, ConfigError, EncodeError, EventNameError, IPCError, RemoteError,
    UnsupportedError, UsageError,
)
from .common import FAILED, OK, USAGE
from .options import PROG
from .output import fail, jsonable, one_line, quiet_broken_pipe, to_json
from .parser import COMMANDS, build_parser
from .targets import Target, parse_target


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
        return fail(PROG, one_line(exc), USAGE)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else OK
    prog = f"{PROG} {args.command}"
    watcher = None
    if args.command not in ("serve", "listen"):   # those two end cleanly on a signal
        watcher = gevent.signal_handler(signal.SIGINT, gevent.kill, gevent.getcurrent(),
                                        KeyboardInterrupt)
    try:
        return int(COMMANDS[args.command].run(args))
    except (UsageError, ConfigError, EncodeError, EventNameError, AddressError,
            UnsupportedError) as exc:
        # bad options or input: the config, an address, DATA the wire cannot carry
        return fail(prog, one_line(exc), USAGE)
    except RemoteError as exc:
        return fail(prog, f"remote error: {one_line(exc)}", FAILED)
    except (IPCError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            return quiet_broken_pipe()
        return fail(prog, one_line(exc), FAILED)
    except KeyboardInterrupt:
        return 130
    finally:
        if watcher is not None:
            watcher.cancel()


__all__ = ["main", "build_parser", "parse_target", "Target", "jsonable", "to_json"]
