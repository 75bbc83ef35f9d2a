"""The server's accept loop, with accept errors reported instead of printed.

gevent's ``StreamServer`` hands an error from ``accept()`` (``EMFILE`` when the process is
out of file descriptors, ``ENFILE``, ``ENOBUFS``, ``ENOMEM``) to the hub, which prints a raw
traceback on stderr, bypassing ``ipc.log``, ``silent`` and the ``error`` event.
:class:`Acceptor` gives it to its owner instead, pauses accepting for a growing delay
(10 ms doubling to 1 s, reset by the next accept that works) and keeps serving.
:class:`Throttle` keeps a log line that may repeat (accept errors, refused connections)
to one a second, saying how many it held back.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from gevent.server import StreamServer


class Throttle:
    """Lets one report through per ``every`` seconds and counts the others."""

    __slots__ = ("every", "held", "_next")

    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        #: reports held back since the last one let through
        self.held = 0
        self._next = 0.0

    def allow(self, count: int = 1) -> int | None:
        """None to hold this report (of ``count`` things) back; else how many were held
        back before it."""
        now = time.monotonic()
        if now < self._next:
            self.held += count
            return None
        self._next = now + self.every
        held, self.held = self.held, 0
        return held


class Acceptor(StreamServer):
    """A gevent ``StreamServer`` that reports accept errors to ``on_error`` (an OSError)
    and retries after a pause, instead of printing tracebacks."""

    #: seconds of the first pause after a failed accept, and the most it grows to
    PAUSE_MIN = 0.01
    PAUSE_MAX = 1.0

    def __init__(self, listener: Any, handle: Callable[..., Any],
                 on_error: Callable[[OSError], None]) -> None:
        super().__init__(listener, handle)
        self._on_accept_error = on_error
        self._pause = self.PAUSE_MIN

    def do_read(self) -> Any:
        """Accept one connection; on a passing failure, report it and pause."""
        try:
            accepted = super().do_read()
        except OSError as exc:
            if self.is_fatal_error(exc):  # the listener itself is gone: gevent closes it
                raise
            self._on_accept_error(exc)
            # the listener stays readable while the connection waits in the backlog:
            # accepting again at once would spin, so stop for a while
            self.stop_accepting()
            self._timer = self.loop.timer(self._pause)
            self._timer.start(self._start_accepting_if_started)
            self._pause = min(self.PAUSE_MAX, self._pause * 2)
            return None
        if accepted is not None:
            self._pause = self.PAUSE_MIN
        return accepted


__all__ = ["Acceptor", "Throttle"]
