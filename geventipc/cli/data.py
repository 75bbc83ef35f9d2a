"""DATA arguments: JSON (``{"$hex": ...}`` for bytes), ``@FILE``, ``-`` (stdin lines),
``--text``."""
from __future__ import annotations

import json
import sys
from typing import Any, Iterator

import gevent.os

from ..errors import UsageError

#: the JSON form of bytes, both ways (msgpack carries bytes, JSON does not)
BYTES_KEY = "$hex"


def _from_json_object(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and BYTES_KEY in obj and isinstance(obj[BYTES_KEY], str):
        try:
            return bytes.fromhex(obj[BYTES_KEY])
        except ValueError:
            raise UsageError(f"{{{BYTES_KEY!r}: ...}} must hold hex digits") from None
    return obj


def parse_value(text: str, where: str, as_text: bool = False) -> Any:
    """One DATA value: JSON (``{"$hex": "..."}`` is bytes), or the text itself."""
    if as_text:
        return text
    try:
        return json.loads(text, object_hook=_from_json_object)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where} is not valid JSON ({exc.msg} at column {exc.colno}); "
                         f"quote a string as '\"text\"' or pass --text") from None


def stdin_lines() -> Iterator[str]:
    """stdin's lines, without their line ends, read in a thread so that the hub (and the
    connection's writes) keep running while the shell is slow to send more."""
    fd = sys.stdin.fileno()
    pending = b""
    while True:
        chunk = gevent.os.tp_read(fd, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.decode("utf-8", "replace").rstrip("\r")
    if pending:
        yield pending.decode("utf-8", "replace").rstrip("\r")


def data_values(arg: str | None, as_text: bool = False, raw: bool = False) -> Iterator[Any]:
    """The values DATA stands for: none given (one None), JSON, ``@file``, or ``-``
    (one per non-empty stdin line, read lazily). All but ``-`` are checked at once, so
    bad DATA is a usage error before anything is opened."""
    if arg == "-":
        return _stdin_values(as_text, raw)
    if arg is None:   # never in raw mode, where DATA is required
        return iter([None])
    if arg.startswith("@"):
        try:
            with open(arg[1:], encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise UsageError(f"cannot read {arg}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise UsageError(f"{arg} is not UTF-8 text") from None
        return iter([parse_value(text, arg, as_text or raw)])
    return iter([parse_value(arg, "DATA", as_text or raw)])


def _stdin_values(as_text: bool, raw: bool) -> Iterator[Any]:
    for number, line in enumerate(stdin_lines(), 1):
        if line.strip() or (raw and line):
            yield parse_value(line, f"stdin line {number}", as_text or raw)
