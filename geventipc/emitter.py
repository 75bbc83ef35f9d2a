"""The event registry: ``on``, ``once``, ``off`` and dispatch, shared by server and client."""
from __future__ import annotations

from typing import Any, Callable, TypeVar

Handler = Callable[..., Any]
H = TypeVar("H", bound=Handler)

WILDCARD = "*"
#: the library's own wire events (hello, welcome, ping...): handled inside, never by users
INTERNAL_PREFIX = "$ipc."


class _Once:
    """A handler that removes itself after its first call."""

    __slots__ = ("emitter", "event", "handler")

    def __init__(self, emitter: "Emitter", event: str, handler: Handler) -> None:
        self.emitter, self.event, self.handler = emitter, event, handler

    def __call__(self, *args: Any) -> Any:
        self.emitter.off(self.event, self)
        return self.handler(*args)


class Emitter:
    """Maps event names to handler lists.

    Lists are replaced, never changed in place, so a handler may add or remove handlers
    while an event is being dispatched without disturbing that dispatch.
    """

    __slots__ = ("handlers",)

    def __init__(self) -> None:
        #: event name -> tuple of handlers, in registration order
        self.handlers: dict[str, tuple[Handler, ...]] = {}

    def on(self, event: str, handler: H | None = None) -> Any:
        """Call ``handler`` for every ``event``; without a handler, return a decorator."""
        if not isinstance(event, str) or not event:
            raise ValueError(f"event name must be a non-empty string, not {event!r}")
        if event.startswith(INTERNAL_PREFIX):
            # the library's own frames: a user handler could see (or, with off(), remove
            # the library's handling of) the handshake and heartbeat
            raise ValueError(f"event name {event!r} uses the reserved prefix "
                             f"{INTERNAL_PREFIX!r}")
        if handler is None:
            def decorate(func: H) -> H:
                self.on(event, func)
                return func
            return decorate
        if not callable(handler):
            raise TypeError(f"handler for {event!r} must be callable, not {handler!r}")
        self.handlers[event] = self.handlers.get(event, ()) + (handler,)
        return handler

    def once(self, event: str, handler: H | None = None) -> Any:
        """Like :meth:`on`, for the next ``event`` only."""
        if handler is None:
            def decorate(func: H) -> H:
                self.once(event, func)
                return func
            return decorate
        self.on(event, _Once(self, event, handler))
        return handler

    def off(self, event: str, handler: Handler | None = None) -> None:
        """Remove ``handler`` from ``event`` (also one added with ``once``); without a
        handler, remove all of that event's handlers."""
        if isinstance(event, str) and event.startswith(INTERNAL_PREFIX):
            return  # never registered by on(); the library's own stay
        if handler is None:
            self.handlers.pop(event, None)
            return
        current = self.handlers.get(event, ())
        # == rather than `is`: a bound method is a new object at every attribute access
        kept = tuple(h for h in current
                     if h != handler and getattr(h, "handler", None) != handler)
        if kept:
            self.handlers[event] = kept
        else:
            self.handlers.pop(event, None)

    def listeners(self, event: str) -> tuple[Handler, ...]:
        """The handlers ``event`` would call now."""
        return self.handlers.get(event, ())

    def has(self, event: str) -> bool:
        """True if ``event`` (or the wildcard) has a handler."""
        return event in self.handlers or WILDCARD in self.handlers
