"""``ipc.log``: node-ipc's logger, written through loguru, with node-ipc's colour theme.

Theme names work as tags inside string arguments::

    ipc.log("<debug>got a message:</debug>", data)
    ipc.log("from", ipc.log.style("variable", name))

Only the theme's own tags are markup; every other ``<`` is printed as it is, so data that
happens to look like markup is shown, never interpreted.
"""
from __future__ import annotations

import re
import sys
from pprint import pformat
from typing import Any, Callable

try:  # an independent loguru logger, so our sinks never touch the application's
    from loguru._logger import Core as _Core
    from loguru._logger import Logger as _Logger

    def _new_logger() -> Any:
        return _Logger(core=_Core(), exception=None, depth=0, record=False, lazy=False,
                       colors=False, raw=False, capture=True, patchers=[], extra={})
except ImportError:  # pragma: no cover - loguru moved its internals
    from loguru import logger as _global_logger

    def _new_logger() -> Any:
        return _global_logger.bind(geventipc=True)

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


class Log:
    """Callable logger: ``log(*args)`` joins args with a space and writes one line."""

    def __init__(self, config: Any) -> None:
        self._config = config
        self.theme: dict[str, str] = dict(DEFAULT_THEME)
        self._logger = _new_logger()
        self._sink_key: tuple[Any, ...] | None = None
        self._tags: re.Pattern[str] | None = None
        self._tag_map: dict[str, str] = {}
        self._built_from: dict[str, str] = {}

    # --- theme -------------------------------------------------------------------------

    def set_theme(self, **styles: str) -> None:
        """Override theme entries, e.g. ``ipc.log.set_theme(good="blue", notice="RED")``.

        New names become tags too. A style loguru does not know raises ValueError.
        """
        for name, style in styles.items():
            if not name.isidentifier():
                raise ValueError(f"theme name must be an identifier, not {name!r}")
            probe = _new_logger()
            probe.add(lambda _m: None, format="{message}", colorize=True)
            try:
                probe.opt(colors=True).info(f"<{loguru_tag(style)}>x</>")
            except ValueError:
                hint = (" (colors.js's multi-colour effects have no single style)"
                        if style in _EFFECTS else "")
                raise ValueError(f"unknown colour style {style!r} for theme {name!r}"
                                 f"{hint}") from None
        self.theme.update(styles)  # _markup sees the theme changed and rebuilds its tags

    def style(self, name: str, value: Any) -> str:
        """``value`` as text wrapped in theme tag ``name``, for use inside a log call."""
        if name not in self.theme:
            raise KeyError(f"no theme entry {name!r}; known: {sorted(self.theme)}")
        return f"<{name}>{self._text(value)}</{name}>"

    # --- writing -----------------------------------------------------------------------

    def __call__(self, *args: Any) -> None:
        """Log ``args`` joined by one space; does nothing at all when ``config.silent``."""
        config = self._config
        if config.silent:
            return
        key = (config.logger, config.log_in_color)
        if key != self._sink_key:
            self._install_sink(*key)
        text = " ".join(a if type(a) is str else self._text(a) for a in args)
        try:
            self._logger.opt(colors=True).info(self._markup(text))
        except ValueError:  # unbalanced theme tags: print the text as it is
            self._logger.info(text)

    def exception(self, exc: BaseException, *args: Any) -> None:
        """Log ``args`` as one line (as a call does), followed by ``exc``'s traceback."""
        config = self._config
        if config.silent:
            return
        key = (config.logger, config.log_in_color)
        if key != self._sink_key:
            self._install_sink(*key)
        text = " ".join(a if type(a) is str else self._text(a) for a in args)
        text += f" {type(exc).__name__}: {exc}"
        try:
            self._logger.opt(colors=True, exception=exc).info(self._markup(text))
        except ValueError:
            self._logger.opt(exception=exc).info(text)

    def _text(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        return pformat(value, depth=self._config.log_depth, compact=True, width=100)

    def _install_sink(self, output: Callable[[str], Any] | None, colour: bool) -> None:
        self._logger.remove()
        if output is None:
            self._logger.add(sys.stderr, format="{message}", colorize=colour)
        else:
            self._logger.add(lambda message: output(str(message).rstrip("\n")),
                             format="{message}", colorize=colour)
        self._sink_key = (output, colour)

    def _markup(self, text: str) -> str:
        if self._tags is None or self._built_from != self.theme:
            # also rebuilt when ``theme`` was changed directly (``log.theme["good"] = ...``)
            self._built_from = dict(self.theme)
            names = "|".join(re.escape(n) for n in sorted(self.theme, key=len, reverse=True))
            self._tags = re.compile(r"\\<(/?)(" + names + r")>")
            self._tag_map = {n: loguru_tag(s) for n, s in self.theme.items()}
        escaped = text.replace("\\", "\\\\").replace("<", "\\<")
        return self._tags.sub(self._tag_sub, escaped)

    def _tag_sub(self, match: re.Match[str]) -> str:
        if match.group(1):
            return "</>"
        return f"<{self._tag_map[match.group(2)]}>"
