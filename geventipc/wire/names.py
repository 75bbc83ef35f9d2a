"""Which event names may cross the wire: the same rules for every codec and direction."""
from __future__ import annotations

from typing import Any, Iterable

from ..errors import EventNameError, ForbiddenEventError

#: Events the library itself raises locally; a peer may never send them.
LIFECYCLE_EVENTS = frozenset({
    "start", "connect", "disconnect", "destroy", "error", "data", "close",
    "socket.disconnected", "*",
})
#: Prefix of the library's own wire events (hello, describe, ...).
INTERNAL_PREFIX = "$ipc."

#: most names a cache keyed by event name holds (a peer sending endless distinct names
#: cannot grow one past it)
CACHE_LIMIT = 4096


class EventNames:
    """Checks event names against the limits; remembers names already found good.

    The cache is what keeps the check off the per-message cost: a name is checked in full
    once, then it is one set lookup. It is bounded, so a peer sending endless distinct
    names cannot grow it.
    """

    __slots__ = ("max_length", "allowed", "good")

    def __init__(self, max_length: int = 256, allowed: Iterable[str] | None = None) -> None:
        self.max_length = max_length
        self.allowed = frozenset(allowed) if allowed is not None else None
        self.good: set[str] = set()

    def problem(self, name: Any, internal_ok: bool = False) -> str | None:
        """Why ``name`` may not travel, or None if it may."""
        if type(name) is not str:
            return f"event name must be a string, not {type(name).__name__}"
        if not name:
            return "event name must not be empty"
        if len(name) > self.max_length:
            return f"event name longer than max_event_name_length={self.max_length}"
        if name in LIFECYCLE_EVENTS:
            return f"event name {name!r} is reserved for the library's lifecycle events"
        if name.startswith(INTERNAL_PREFIX):
            if internal_ok:
                return None
            return f"event name {name!r} uses the reserved prefix {INTERNAL_PREFIX!r}"
        if self.allowed is not None and name not in self.allowed:
            return f"event name {name!r} is not in allowed_events"
        return None

    def _remember(self, name: str) -> None:
        if len(self.good) >= CACHE_LIMIT:
            self.good.clear()
        self.good.add(name)

    def check_outgoing(self, name: Any) -> None:
        """Raise EventNameError unless ``name`` may be sent."""
        if name in self.good:
            return
        reason = self.problem(name)
        if reason:
            raise EventNameError(reason)
        self._remember(name)

    def check_incoming(self, name: Any) -> None:
        """Raise ForbiddenEventError unless a peer may send ``name``.

        The library's own ``$ipc.`` events pass here; the receiver handles them itself.
        """
        if type(name) is str and name in self.good:
            return
        reason = self.problem(name, internal_ok=True)
        if reason:
            raise ForbiddenEventError("peer sent a forbidden event: " + reason)
        if not name.startswith(INTERNAL_PREFIX):
            self._remember(name)
