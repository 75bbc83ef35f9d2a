"""What the commands print: events, replies and tables on stdout (JSON lines or coloured
text), and errors as one line."""
from __future__ import annotations

import argparse
import base64
import json
import math
import os
import sys
from typing import Any, Callable, TextIO

import gevent

from ..errors import IPCError
from ..log import Plain
from ..wire.raw_codec import ENCODINGS
from .data import BYTES_KEY


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
        quiet_broken_pipe()
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


def wants_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def make_printer(args: argparse.Namespace, on_broken: Callable[[], None] | None = None
                 ) -> Printer:
    """stdout's printer: JSON lines with --json or when piped, colour on a terminal."""
    return Printer(args.json or not sys.stdout.isatty(), wants_colour(sys.stdout),
                   on_broken=on_broken)


def one_line(exc: BaseException) -> str:
    """An exception as one line of text."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, IPCError):
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    # Plain: logged as it is (ipc.log reads no markup in it), printed like any str
    return Plain(" ".join(text.split()))


def fail(prog: str, message: str, code: int) -> int:
    """Print ``prog: error: message`` as one line on stderr; returns ``code``."""
    try:
        sys.stderr.write(f"{prog}: error: {message}\n")
        sys.stderr.flush()
    except OSError:
        pass
    return code


def quiet_broken_pipe() -> int:
    """stdout's reader went away (``| head``): that ends the command, it is not an error;
    point stdout at /dev/null so the interpreter's final flush does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except OSError:
        pass
    return 0
