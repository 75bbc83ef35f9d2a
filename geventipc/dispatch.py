"""Running handlers for decoded frames: shared by server and client, so both report a
failing handler the same way (logged once with its traceback, then an ``error`` event)
and go on.

Receiving is one pass: the codec's ``frames(data)`` is iterated and each frame is
dispatched as it is decoded, with one lookup in the dispatch table (see
:mod:`geventipc.emitter`); a name not in the table is checked once (reserved, not allowed,
not a string: ``ForbiddenEventError``) and then remembered with its handlers. No list of
frames is kept, so nothing decoded outlives its handlers.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Iterable

from .emitter import WILDCARD, Emitter
from .errors import HandlerError
from .wire import check_frame
from .wire.names import CACHE_LIMIT

#: the arguments server-side handlers get (stream, UDP), by event
SERVER_ARGS: dict[str, tuple[str, ...]] = {
    "start": (),
    "connect": ("socket",),
    "socket.disconnected": ("socket", "destroyed_socket_id"),
    "error": ("error",),
    "data": ("data", "socket"),
    WILDCARD: ("type", "data", "socket"),
}


class Dispatcher(Emitter):
    """An :class:`Emitter` that can report errors and fire lifecycle events safely."""

    __slots__ = ("log", "handler_errors")

    EVENT_ARGS = SERVER_ARGS
    DEFAULT_ARGS: tuple[str, ...] = ("data", "socket")

    #: event-name rules of incoming frames (subclasses set theirs)
    names: Any

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
                log_failure(self.log, inner, "<error>geventipc: error handler raised</error>")

    def handler_failed(self, event: str, exc: BaseException) -> None:
        """Report a failing handler: logged once, with its traceback, then an ``error``
        event carrying a HandlerError (with no ``error`` handler, the log line is all)."""
        self.handler_errors += 1
        if event == "error":
            log_failure(self.log, exc, "<error>geventipc: error handler raised</error>")
            return
        log_failure(self.log, exc, "<error>geventipc: handler for</error>", repr(event),
                     "<error>raised</error>")
        if self.handlers.get("error"):
            self.report(HandlerError(event, exc))

    def _failed(self, event: str, handler: Any, exc: BaseException) -> None:
        # a wildcard handler reaches the table as partial(handler, event)
        if type(handler) is partial and handler.func in self.handlers.get(WILDCARD, ()):
            event = WILDCARD
        self.handler_failed(event, exc)

    def entry(self, event: Any) -> Any:
        """The dispatch-table entry of ``event``, made on its first use: one callable
        (see :func:`one_call`). Raises ForbiddenEventError for a name a peer may not
        send."""
        self.names.check_incoming(event)
        found = self.handlers.get(event, ())
        if event[0] != "$":   # the library's own events never reach the wildcard
            wildcard = self.handlers.get(WILDCARD)
            if wildcard:
                found = found + tuple(partial(w, event) for w in wildcard)
        table = self.table
        if len(table) >= CACHE_LIMIT:   # endless distinct names cannot grow it
            table.clear()
        table[event] = call = one_call(self, event, found)
        return call

    def dispatch_to(self, socket: Any, frames: Iterable[Any]) -> int:
        """Run handlers for frames from one peer as they are decoded, as
        ``handler(data, socket)`` (the wildcard as ``(type, data, socket)``); request and
        reply frames go to :meth:`on_other_frame`. Returns the number of frames.

        Servers of every transport share this per-event loop; the stream client keeps a
        copy without ``socket`` (see ``Client._on_frames``)."""
        table = self.table
        count = 0
        frame = None
        try:
            # each name's entry is one callable (one_call); an event frame is a list
            # of two, told by its class and the unpacking itself (``type(frame) is list
            # and len(frame) == 2`` was ~410 instructions per frame, this ~130)
            for count, frame in enumerate(frames, 1):
                if frame.__class__ is list:
                    try:
                        event, data = frame
                    except ValueError:
                        pass   # a request, a reply, or not a frame at all: below
                    else:
                        try:
                            handler = table[event]
                        except KeyError:
                            handler = None   # (entry raises outside the except: no chaining)
                        if handler is None:
                            handler = self.entry(event)
                        try:
                            handler(data, socket)
                        except Exception as exc:
                            self._failed(event, handler, exc)
                        continue
                check_frame(frame, self.names)
                self.on_other_frame(socket, frame)
        except TypeError:
            check_frame(frame, self.names)   # an unhashable event name: say so
            raise
        return count

    def dispatch_raw(self, socket: Any, frames: Iterable[Any]) -> int:
        """Raw mode: each frame is ``["data", bytes]``; ``data`` handlers get
        ``(bytes, socket)``, the wildcard ``("data", bytes, socket)``."""
        count = 0
        for _event, data in frames:
            count += 1
            for handler in self.handlers.get("data", ()):
                try:
                    handler(data, socket)
                except Exception as exc:
                    self.handler_failed("data", exc)
            for handler in self.handlers.get(WILDCARD, ()):
                try:
                    handler("data", data, socket)
                except Exception as exc:
                    self.handler_failed(WILDCARD, exc)
        return count

    def on_other_frame(self, socket: Any, frame: list) -> None:
        """A request or reply frame from ``socket``; subclasses that take them override."""


def _nothing(*args: Any) -> None:
    """The entry of an event with no handlers."""


def one_call(dispatcher: Dispatcher, event: str, handlers: tuple[Any, ...]) -> Any:
    """``handlers`` of ``event`` as the one callable a dispatch-table entry holds: the
    handler itself when there is one (the common case: the per-event loop then makes a
    single call, with no tuple to walk: ~8% of a W3 client's instructions per event,
    measured with callgrind), else a function calling each in turn, a failing one
    reported by ``dispatcher`` without stopping the others."""
    if len(handlers) == 1:
        return handlers[0]
    if not handlers:
        return _nothing
    failed = dispatcher._failed

    def each(*args: Any) -> None:
        for handler in handlers:
            try:
                handler(*args)
            except Exception as exc:
                failed(event, handler, exc)
    return each


def log_failure(log: Any, exc: BaseException, *args: str) -> None:
    """One log line for a failing handler (``args`` are theme markup, anything else is
    text), with the traceback where the logger can (``ipc.log.exception``)."""
    plain = getattr(log, "plain", None)
    parts: list[Any] = [a if a.startswith("<") or plain is None else plain(a) for a in args]
    exception = getattr(log, "exception", None)
    if exception is not None:
        exception(*parts, exc=exc)   # it adds "Type: message" (as text) and the traceback
    else:
        log(*parts, f"{type(exc).__name__}: {exc}")


__all__ = ["Dispatcher", "HandlerError", "SERVER_ARGS", "WILDCARD", "log_failure", "one_call"]
