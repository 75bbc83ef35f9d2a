"""Running handlers for decoded frames: shared by server and client, so both report a
failing handler the same way (logged, then an ``error`` event) and go on."""
from __future__ import annotations

from typing import Any

from .emitter import WILDCARD, Emitter
from .errors import HandlerError


class Dispatcher(Emitter):
    """An :class:`Emitter` that can report errors and fire lifecycle events safely."""

    __slots__ = ("log", "handler_errors")

    def __init__(self, log: Any) -> None:
        super().__init__()
        self.log = log
        #: handlers (of any event, ``error`` included) that raised
        self.handler_errors = 0

    def fire(self, event: str, *args: Any) -> None:
        """Call ``event``'s handlers with ``args``; a raising handler becomes an error."""
        for handler in self.handlers.get(event, ()):
            try:
                handler(*args)
            except Exception as exc:
                self.handler_failed(event, exc)

    def report(self, exc: BaseException) -> None:
        """Deliver ``exc`` to the ``error`` handlers, or log it if there are none."""
        handlers = self.handlers.get("error")
        if not handlers:
            self.log("<warn>geventipc:</warn>", f"{type(exc).__name__}: {exc}")
            return
        for handler in handlers:
            try:
                handler(exc)
            except Exception as inner:  # an error handler that fails: log, never recurse
                self.log("<error>geventipc: error handler raised</error>",
                         f"{type(inner).__name__}: {inner}")

    def handler_failed(self, event: str, exc: BaseException) -> None:
        """Log a failing handler and report it as an ``error`` event."""
        self.handler_errors += 1
        if event == "error":
            self.log("<error>geventipc: error handler raised</error>",
                     f"{type(exc).__name__}: {exc}")
            return
        self.log("<error>geventipc: handler for</error>", repr(event),
                 f"<error>raised</error> {type(exc).__name__}: {exc}")
        self.report(HandlerError(event, exc))

    def dispatch_to(self, socket: Any, frames: list) -> None:
        """Run handlers for decoded frames from one peer, as ``handler(data, socket)``
        (the wildcard as ``(type, data, socket)``); request and reply frames go to
        :meth:`on_other_frame`. Servers of every transport share this per-event loop;
        the stream client keeps a copy without ``socket`` (see ``Client._on_frames``)."""
        handlers = self.handlers
        wildcard = handlers.get(WILDCARD)
        for frame in frames:
            if len(frame) == 2:
                event, data = frame
                found = handlers.get(event)
                if found is not None:
                    for handler in found:
                        try:
                            handler(data, socket)
                        except Exception as exc:
                            self.handler_failed(event, exc)
                if wildcard is not None and event[0] != "$":
                    for handler in wildcard:
                        try:
                            handler(event, data, socket)
                        except Exception as exc:
                            self.handler_failed(WILDCARD, exc)
            else:
                self.on_other_frame(socket, frame)

    def on_other_frame(self, socket: Any, frame: list) -> None:
        """A request or reply frame from ``socket``; subclasses that take them override."""


__all__ = ["Dispatcher", "HandlerError", "WILDCARD"]
