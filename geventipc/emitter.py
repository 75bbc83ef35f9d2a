"""The event registry: ``on``, ``once``, ``off``, shared by server and client.

Two views of the same handlers:

* ``handlers``: event name -> handlers, in registration order (what ``on``/``off`` edit);
* ``table``: a dispatchable name -> one callable that runs the handlers an incoming
  event of that name calls, the wildcard folded in (the handler itself when there is
  one: see ``geventipc.dispatch.one_call``). It is filled lazily, one name at a time,
  by whoever dispatches (see :mod:`geventipc.dispatch`), and emptied whenever
  ``handlers`` changes, so a frame costs one lookup however handlers were registered.

Handler arity: JavaScript ignores extra arguments, so node-ipc code writes handlers that
take fewer than the event supplies (``server.on("m", lambda data: ...)``). :func:`fit`
decides once, at registration, how to call a handler; only a handler that takes fewer
arguments than supplied is wrapped, so the usual handler is called directly.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar

Handler = Callable[..., Any]
H = TypeVar("H", bound=Handler)

WILDCARD = "*"
#: the library's own wire events (hello, welcome, ping...): handled inside, never by users
INTERNAL_PREFIX = "$ipc."

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class _Once:
    """A handler that removes itself after its first call."""

    __slots__ = ("emitter", "event", "handler")

    def __init__(self, emitter: "Emitter", event: str, handler: Handler) -> None:
        self.emitter, self.event, self.handler = emitter, event, handler

    def __call__(self, *args: Any) -> Any:
        self.emitter.off(self.event, self)
        return self.handler(*args)


def _name(handler: Any) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)


def fit(handler: Handler, supplied: tuple[str, ...], event: str) -> Handler:
    """``handler`` as it should be called with the ``supplied`` arguments.

    Returned unchanged when it takes them all (or ``*args``, or has no signature to read,
    as some builtins); wrapped to pass only the first ones when it takes fewer. A handler
    of an event that supplies nothing may take one argument (None is passed, as JavaScript
    passes ``undefined``). Anything else raises TypeError naming the expected signature.
    """
    count = len(supplied)
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return handler
    taken = required = 0
    star = keyword = False
    for param in signature.parameters.values():
        if param.kind in _POSITIONAL:
            taken += 1
            if param.default is param.empty:
                required += 1
        elif param.kind is inspect.Parameter.VAR_POSITIONAL:
            star = True
        elif param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is param.empty:
            keyword = True   # can never be called positionally
    if keyword or (required > count and not (count == 0 and required == 1)):
        expected = f"handler({', '.join(supplied)})"
        need = "a keyword-only argument" if keyword else f"{required} arguments"
        raise TypeError(
            f"handler for {event!r} cannot be called as {expected}: "
            f"{_name(handler)}{signature} needs {need}; a handler may take the first "
            f"{count} of these arguments or fewer (or *args)")
    if required > count:   # count == 0, one parameter: JavaScript's undefined
        def call(*args: Any) -> Any:
            return handler(None)
    elif star or taken >= count:
        return handler
    elif taken == 0:
        def call(*args: Any) -> Any:
            return handler()
    elif taken == 1:
        def call(*args: Any) -> Any:
            return handler(args[0])
    else:
        def call(*args: Any) -> Any:
            return handler(*args[:taken])
    call.handler = handler  # type: ignore[attr-defined]  # so off() finds it
    return call


def _matches(stored: Any, handler: Any) -> bool:
    """True if ``stored`` is ``handler`` or wraps it (once, arity, pool wrappers)."""
    while stored is not None:
        # == rather than `is`: a bound method is a new object at every attribute access
        if stored == handler:
            return True
        stored = getattr(stored, "handler", None)
    return False


class _Registry(dict):
    """``Emitter.handlers``: any change empties the dispatch table, so code that edits
    the handlers directly (the server's own ``$ipc.`` handlers) stays seen."""

    __slots__ = ("table",)

    table: dict[str, Any]

    def __setitem__(self, key: str, value: Any) -> None:
        self.table.clear()
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        self.table.clear()
        dict.__delitem__(self, key)

    def pop(self, *args: Any) -> Any:  # type: ignore[override]
        """dict.pop, emptying the dispatch table."""
        self.table.clear()
        return dict.pop(self, *args)

    def clear(self) -> None:
        """dict.clear, emptying the dispatch table."""
        self.table.clear()
        dict.clear(self)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """dict.update, emptying the dispatch table."""
        self.table.clear()
        dict.update(self, *args, **kwargs)

    def setdefault(self, key: str, default: Any = None) -> Any:
        """dict.setdefault, emptying the dispatch table."""
        self.table.clear()
        return dict.setdefault(self, key, default)


class Emitter:
    """Maps event names to handler lists.

    Lists are replaced, never changed in place, so a handler may add or remove handlers
    while an event is being dispatched without disturbing that dispatch.
    """

    __slots__ = ("handlers", "table")

    #: the arguments each event's handlers are given (see :func:`fit`)
    EVENT_ARGS: dict[str, tuple[str, ...]] = {}
    #: the arguments of any other event
    DEFAULT_ARGS: tuple[str, ...] = ("data",)

    def __init__(self) -> None:
        #: dispatchable name -> the one callable an event calls (see the module docstring)
        self.table: dict[str, Handler] = {}
        #: event name -> tuple of handlers, in registration order
        registry = _Registry()
        registry.table = self.table
        self.handlers: dict[str, tuple[Handler, ...]] = registry

    def fit(self, event: str, handler: Handler) -> Handler:
        """``handler`` wrapped (if needed) to be called with ``event``'s arguments."""
        if not callable(handler) or not isinstance(event, str):
            return handler   # ``on`` reports it
        return fit(handler, self.EVENT_ARGS.get(event, self.DEFAULT_ARGS), event)

    def on(self, event: str, handler: H | None = None) -> Any:
        """Call ``handler`` for every ``event``; without a handler, return a decorator.

        The handler may take fewer arguments than the event supplies (the first ones are
        passed, as in JavaScript); one that cannot take them raises TypeError here."""
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
        self.handlers[event] = self.handlers.get(event, ()) + (self.fit(event, handler),)
        return handler

    def once(self, event: str, handler: H | None = None) -> Any:
        """Like :meth:`on`, for the next ``event`` only."""
        if handler is None:
            def decorate(func: H) -> H:
                self.once(event, func)
                return func
            return decorate
        self.on(event, _Once(self, event, self.fit(event, handler)))
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
        kept = tuple(h for h in current if not _matches(h, handler))
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
