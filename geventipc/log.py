"""``ipc.log``: node-ipc's logger, written through loguru, with node-ipc's colour theme.

Theme names work as tags inside plain ``str`` arguments::

    ipc.log("<debug>got a message:</debug>", data)
    ipc.log("from", ipc.log.style("variable", name))

Only the theme's own tags are markup, and only in arguments that are exactly ``str``:
every other ``<`` is printed as it is, and data (any other object, or text wrapped in
:meth:`Log.plain`) is never read as markup, even when it holds a theme tag.

Colour: on when ``config.log_in_color`` is true, ``NO_COLOR`` is not set, and the output
is a terminal (stderr) or the application's own ``config.logger`` function; never in a
file or a pipe. ``config.log_format = "json"`` writes one JSON object per line instead
(see docs/operations.md for its fields).

Only loguru's public API is used. Records go through the global ``loguru.logger`` at a
level of their own (``GEVENTIPC``, severity 1: below ``TRACE``), bound to this ``Log``
and taken only by this ``Log``'s own sink, so the application's sinks (loguru's default
stderr sink included, level ``DEBUG``) never receive them.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import sys
import traceback
from pprint import pformat
from typing import Any, Callable

from loguru import logger as _loguru

#: the loguru level every ``ipc.log`` record is written at: below every usual handler's
LEVEL = "GEVENTIPC"
LEVEL_NO = 1

try:
    _loguru.level(LEVEL)
except ValueError:  # not yet registered in this process
    _loguru.level(LEVEL, no=LEVEL_NO)

_ids = itertools.count(1)
#: loguru handler ids of Logs garbage-collected, removed at the next sink install
_abandoned: list[int] = []


def _remove(handler: int) -> None:
    try:
        _loguru.remove(handler)
    except ValueError:  # already removed (by the application's logger.remove())
        pass
#: what loguru's markup parser takes for a tag (its own pattern, without the escape)
_TAG_SHAPED = re.compile(r"</?(?:[fb]g\s)?[^<>\s]*>")

#: node-ipc's documented theme: name -> style (colors.js names or loguru tag names)
DEFAULT_THEME: dict[str, str] = {
    "good": "green",
    "notice": "yellow",
    "warn": "red",
    "error": "redBG",
    "debug": "magenta",
    "variable": "cyan",
    "data": "blue",
}

#: the ``level`` a JSON line gets from the first theme tag of its message
THEME_LEVELS: dict[str, str] = {
    "error": "ERROR", "warn": "WARNING", "notice": "INFO", "good": "INFO", "debug": "DEBUG",
}

#: colors.js effects that colour each letter differently: no loguru equivalent
_EFFECTS = frozenset({"rainbow", "zebra", "america", "trap", "random"})
#: colors.js names whose loguru spelling differs
_COLORS_JS = {"inverse": "reverse", "hidden": "hide", "strikethrough": "strike",
              "gray": "light-black", "grey": "light-black"}


def _colour(name: str) -> str:
    """A colors.js colour name (``red``, ``brightRed``, ``gray``) as loguru spells it."""
    name = _COLORS_JS.get(name, name)
    if name.startswith("bright") and name[6:7].isupper():
        return "light-" + name[6:].lower()
    return name


def loguru_tag(style: str) -> str:
    """Translate a colors.js style name to a loguru tag body: ``redBG`` (node-ipc's
    theme) and ``bgRed`` are ``bg red``, ``brightRed`` is ``light-red``, ``gray`` is
    ``light-black``, ``inverse`` is ``reverse``; loguru's own names pass unchanged."""
    if style.endswith("BG") and style[:-2].isalpha():
        base = style[:-2]
    elif style.startswith("bg") and style[2:3].isupper():
        base = style[2:]
    else:
        return _colour(style)
    return "bg " + _colour(base[0].lower() + base[1:])


class Plain(str):
    """Text that is logged as it is: never read as markup (see :meth:`Log.plain`)."""

    __slots__ = ()


class Styled(str):
    """A value styled with one theme entry (see :meth:`Log.style`): the style applies,
    the value's own text is never read as markup."""

    theme: str

    def __new__(cls, theme: str, text: str) -> "Styled":
        self = super().__new__(cls, f"<{theme}>{text}</{theme}>")
        self.theme = theme
        return self


def _only(token: int) -> Callable[[Any], bool]:
    """A loguru filter taking only the records bound to ``token`` (one Log's own)."""
    def only(record: Any) -> bool:
        return bool(record["extra"].get("_geventipc") == token)
    return only


def no_color() -> bool:
    """True when the ``NO_COLOR`` convention (https://no-color.org) asks for no colour:
    the variable is set and not empty."""
    return bool(os.environ.get("NO_COLOR"))


def force_color() -> bool:
    """True when ``FORCE_COLOR`` is set (not empty, not ``0``): colour on stderr even when
    it is not a terminal, e.g. a child whose output a parent shows on its own terminal
    (``make demo``). ``NO_COLOR`` still wins."""
    return os.environ.get("FORCE_COLOR", "") not in ("", "0")


def _json_line(record: Any) -> str:
    """loguru format function of ``log_format = "json"``: the record as one JSON object.

    The object goes through ``extra`` and a ``{...}`` field so that loguru does not read
    its braces as a format template (loguru's documented recipe for custom serialising).
    """
    extra = record["extra"]
    out: dict[str, Any] = {
        "time": record["time"].isoformat(),
        "level": extra.get("_level", "INFO"),
        "theme": extra.get("_theme"),
        "message": record["message"],
    }
    for key, value in extra.items():
        if not key.startswith("_"):
            out[key] = value
    exc = record["exception"]
    if exc is not None and exc.type is not None:
        out["exception"] = {
            "type": exc.type.__name__, "message": str(exc.value),
            "traceback": "".join(traceback.format_exception(exc.type, exc.value,
                                                            exc.traceback)),
        }
    extra["_json"] = json.dumps(out, default=repr, ensure_ascii=False)
    return "{extra[_json]}\n"


class Log:
    """Callable logger: ``log(*args)`` joins args with a space and writes one line.

    Keyword arguments are structured fields (``server``, ``peer``, ``event``...): kept
    out of the text line, written as fields of a JSON line (``log_format = "json"``).
    """

    def __init__(self, config: Any) -> None:
        self._config = config
        self.theme: dict[str, str] = dict(DEFAULT_THEME)
        self._token = next(_ids)
        self._logger = _loguru.bind(_geventipc=self._token)
        self._handler: int | None = None
        self._sink_key: tuple[Any, ...] | None = None
        self._tags: re.Pattern[str] | None = None
        self._tag_map: dict[str, str] = {}
        self._built_from: dict[str, str] = {}

    def __del__(self) -> None:
        # Never loguru.remove() here: a collection can run inside loguru.add()/remove(),
        # which hold loguru's (non-reentrant) lock, and removing would deadlock. The
        # sink is removed by the next Log that installs one (list.append takes no lock).
        handler = self.__dict__.get("_handler")
        if handler is not None:
            _abandoned.append(handler)

    # --- theme -------------------------------------------------------------------------

    def set_theme(self, **styles: str) -> None:
        """Override theme entries, e.g. ``ipc.log.set_theme(good="blue", notice="RED")``.

        New names become tags too. A style loguru does not know raises ValueError.
        """
        for name, style in styles.items():
            if not name.isidentifier():
                raise ValueError(f"theme name must be an identifier, not {name!r}")
            # loguru parses markup only for a sink that takes the record: a probe sink
            probe = next(_ids)
            handler = _loguru.add(lambda _m: None, format="{message}", colorize=True,
                                  level=LEVEL_NO, filter=_only(probe))
            try:
                _loguru.bind(_geventipc=probe).opt(colors=True).log(
                    LEVEL, f"<{loguru_tag(style)}>x</>")
            except ValueError:
                hint = (" (colors.js's multi-colour effects have no single style)"
                        if style in _EFFECTS else "")
                raise ValueError(f"unknown colour style {style!r} for theme {name!r}"
                                 f"{hint}") from None
            finally:
                _loguru.remove(handler)
        self.theme.update(styles)  # _markup sees the theme changed and rebuilds its tags

    def style(self, name: str, value: Any) -> str:
        """``value`` as text styled with theme entry ``name``, as one argument of a log
        call. The value is data: a theme tag inside it is printed, never applied."""
        if name not in self.theme:
            raise KeyError(f"no theme entry {name!r}; known: {sorted(self.theme)}")
        return Styled(name, self._text(value))

    @staticmethod
    def plain(value: Any) -> Plain:
        """``value`` as text that is never read as markup: for a str from outside
        (a peer's event name, an exception message) logged next to theme tags."""
        return Plain(value if isinstance(value, str) else repr(value))

    def bind(self, **fields: Any) -> "BoundLog":
        """A logger that adds ``fields`` (e.g. ``server="world"``) to every line."""
        return BoundLog(self, fields)

    # --- writing -----------------------------------------------------------------------

    def __call__(self, *args: Any, exc: BaseException | None = None, **fields: Any) -> None:
        """Log ``args`` joined by one space; ``exc`` adds its traceback (once, after the
        line). Does nothing at all when ``config.silent``."""
        if self._config.silent:
            return
        self._write(args, exc, fields)

    def exception(self, *args: Any, exc: BaseException | None = None,
                  **fields: Any) -> None:
        """Log ``args``, then ``Type: message`` of ``exc``, with its traceback, in one
        record (for a failing handler: logged once). ``exc`` defaults to the exception
        being handled; ``log.exception(exc, *args)`` (the exception first) works too."""
        if self._config.silent:
            return
        if exc is None and args and isinstance(args[0], BaseException):
            exc, args = args[0], args[1:]
        if exc is None:
            exc = sys.exc_info()[1]
        if exc is not None:
            args = (*args, Plain(f"{type(exc).__name__}: {exc}"))
        self._write(args, exc, fields)

    def _write(self, args: tuple[Any, ...], exc: BaseException | None,
               fields: dict[str, Any]) -> None:
        config = self._config
        # sys.stderr too: a program (or pytest) that replaces it gets the lines there
        key = (config.logger, config.log_in_color, config.log_format, no_color(),
               force_color(), sys.stderr if config.logger is None else None)
        if key != self._sink_key:
            self._install_sink(*key)
            self._sink_key = key
        parts = []
        theme = None
        for a in args:
            if type(a) is str:
                if theme is None and "<" in a:
                    theme = self._first_theme(a)
                parts.append(self._markup(a))
            elif type(a) is Styled:
                self._rebuild()
                theme = theme or a.theme
                inner = self._escape(a[len(a.theme) + 2:-len(a.theme) - 3])
                parts.append(f"<{self._tag_map[a.theme]}>{inner}</>")
            else:
                parts.append(self._escape(self._text(a)))
        if theme is not None or fields:
            fields = dict(fields, _theme=theme, _level=THEME_LEVELS.get(theme or "", "INFO"))
        logger = self._logger.bind(**fields) if fields else self._logger
        if exc is not None:
            logger = logger.opt(exception=exc, colors=True)
        else:
            logger = logger.opt(colors=True)
        text = " ".join(parts)
        try:
            logger.log(LEVEL, text)
        except ValueError:  # unbalanced theme tags: print the text as it is
            plain = " ".join(a if type(a) is str else str(a) if type(a) is Styled
                             else self._text(a) for a in args)
            logger.log(LEVEL, self._escape(plain))

    def _text(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        return pformat(value, depth=self._config.log_depth, compact=True, width=100)

    def _install_sink(self, output: Callable[[str], Any] | None, colour: bool, fmt: str,
                      no_colour: bool, force: bool, stderr: Any) -> None:
        while _abandoned:   # sinks of collected Logs
            _remove(_abandoned.pop())
        if self._handler is not None:
            _remove(self._handler)
        options: dict[str, Any] = dict(
            level=LEVEL_NO, filter=_only(self._token),
            format=_json_line if fmt == "json" else "{message}",
            backtrace=False, diagnose=False,  # diagnose would print variables' values
        )
        colour = colour and not no_colour and fmt != "json"
        if output is None:
            stream = stderr
            isatty = getattr(stream, "isatty", None)
            colour = colour and (bool(isatty is not None and isatty()) or force)
            self._handler = _loguru.add(stream, colorize=colour, **options)
        else:
            self._handler = _loguru.add(
                lambda message: output(str(message).rstrip("\n")), colorize=colour,
                **options)

    def _rebuild(self) -> re.Pattern[str]:
        if self._tags is None or self._built_from != self.theme:
            # also rebuilt when ``theme`` was changed directly (``log.theme["good"] = ...``)
            self._built_from = dict(self.theme)
            names = "|".join(re.escape(n) for n in sorted(self.theme, key=len, reverse=True))
            self._tags = re.compile(r"\\<(/?)(" + names + r")>")
            self._tag_map = {n: loguru_tag(s) for n, s in self.theme.items()}
        return self._tags

    def _first_theme(self, text: str) -> str | None:
        match = self._rebuild().search(self._escape(text))
        return match.group(2) if match else None

    @staticmethod
    def _escape(text: str) -> str:
        # loguru reads ``\<tag>`` as the text ``<tag>``; a ``<`` not starting something
        # tag-shaped, and every other backslash, it prints as they are
        return _TAG_SHAPED.sub(r"\\\g<0>", text)

    def _markup(self, text: str) -> str:
        tags = self._rebuild()
        return tags.sub(self._tag_sub, self._escape(text))

    def _tag_sub(self, match: re.Match[str]) -> str:
        if match.group(1):
            return "</>"
        return f"<{self._tag_map[match.group(2)]}>"


class BoundLog:
    """``Log.bind(**fields)``: the same log, with fields added to every line."""

    __slots__ = ("log", "fields")

    def __init__(self, log: Log, fields: dict[str, Any]) -> None:
        self.log = log
        self.fields = fields

    def __call__(self, *args: Any, exc: BaseException | None = None, **fields: Any) -> None:
        """As :meth:`Log.__call__`, with the bound fields."""
        self.log(*args, exc=exc, **{**self.fields, **fields})

    def exception(self, *args: Any, exc: BaseException | None = None,
                  **fields: Any) -> None:
        """As :meth:`Log.exception`, with the bound fields."""
        self.log.exception(*args, exc=exc, **{**self.fields, **fields})

    def bind(self, **fields: Any) -> "BoundLog":
        """More fields on top of these."""
        return BoundLog(self.log, {**self.fields, **fields})

    def style(self, name: str, value: Any) -> str:
        """As :meth:`Log.style`."""
        return self.log.style(name, value)

    def plain(self, value: Any) -> Plain:
        """As :meth:`Log.plain`."""
        return self.log.plain(value)
