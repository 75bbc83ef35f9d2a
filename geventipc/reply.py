"""Request handler helpers: deferred replies and greenlet worker pools.

A request handler's return value is its reply. To answer later (from another greenlet,
after waiting on something), a handler returns a :class:`Deferred` and calls
:meth:`Deferred.send` or :meth:`Deferred.fail` when the answer is known; returning any
gevent ``AsyncResult`` or ``Greenlet`` works the same way.

Pools: :func:`resolve_pool` turns the ``pool=`` argument of ``Server.on`` /
``Server.handle`` into a ``gevent.pool.Pool`` (or None for inline), and
:class:`PooledHandler` is what an event handler registered with a pool becomes. The
server's per-frame loop calls it like any handler; it spawns the real handler into the
pool, and ``Pool.spawn`` blocks while the pool is full, which pauses that connection's
reading: backpressure, nothing dropped.
"""
from __future__ import annotations

from typing import Any, Callable

from gevent import GreenletExit
from gevent.event import AsyncResult, Event
from gevent.greenlet import Greenlet
from gevent.pool import Pool

from .errors import AlreadyAnsweredError, NoHandlerError, RemoteError
from .wire import REPLY_NO_HANDLER, REPLY_OK

#: size of the server's shared pool when ``pool=True`` is asked for and
#: ``handler_pool_size`` is not set
DEFAULT_POOL_SIZE = 100

#: what a handler may return to answer later
LATER = (AsyncResult, Greenlet)


class Deferred(AsyncResult):
    """A reply that a request handler sends later, from any greenlet.

    Return one from a ``Server.handle`` handler, keep it, and call :meth:`send` (the reply
    data) or :meth:`fail` (an exception: the caller gets ``RemoteError``) exactly once.
    It is a gevent ``AsyncResult``, so the server side can also ``wait()`` on it.
    If the client is gone by then, the reply is dropped quietly (the client already
    failed that request with ``ConnectionLostError``).
    """

    __slots__ = ()

    def send(self, value: Any = None) -> None:
        """Answer the request with ``value``. Raises AlreadyAnsweredError the second time."""
        if self.ready():
            raise AlreadyAnsweredError("this request was already answered")
        self.set(value)

    def fail(self, exc: BaseException) -> None:
        """Answer the request with an error: the caller raises ``RemoteError`` carrying
        ``type(exc).__name__`` and ``str(exc)``."""
        if not isinstance(exc, BaseException):
            raise TypeError(f"fail() needs an exception instance, not {exc!r}")
        if self.ready():
            raise AlreadyAnsweredError("this request was already answered")
        self.set_exception(exc)

    @property
    def answered(self) -> bool:
        """True once :meth:`send` or :meth:`fail` was called."""
        return self.ready()


def outcome(later: Any) -> tuple[bool, Any]:
    """(ok, value or exception) of a finished ``AsyncResult`` / ``Greenlet``."""
    if later.successful():
        value = later.value
        if isinstance(value, GreenletExit):  # a killed greenlet "succeeds" with this
            return False, value
        return True, value
    return False, later.exception


class FairPool(Pool):
    """A ``gevent.pool.Pool`` whose slots the connections share fairly.

    The server's own pools are FairPools (``handler_pool_size``, ``pool=True``, ``pool=N``).
    Each handler is spawned for an *owner*, the connection it came from:

    * one owner holds at most ``per_owner`` slots (default: all but one, at least one), so
      while one connection's slow handlers fill the pool, another connection's handler
      still finds a slot at once;
    * when no slot is free for it, the owner's reading waits (backpressure, as with a
      plain Pool), and a slot that frees goes to the waiting owner holding the fewest,
      not to whoever asked first, so no connection is starved by a busier one.

    A slot cannot be taken from a handler that is running: with more slow connections
    than slots, the others still wait for one of them to finish.
    """

    def __init__(self, size: int, per_owner: int | None = None) -> None:
        super().__init__(size)
        #: the most slots one owner holds at once
        self.per_owner = max(1, min(size, per_owner if per_owner else size - 1))
        self._held: dict[Any, int] = {}
        self._waiting: list[tuple[Any, Event]] = []
        self._promised = 0   # slots handed to woken waiters that have not spawned yet

    @property
    def waiting(self) -> int:
        """How many spawns wait for a turn now (each one a connection not reading)."""
        return len(self._waiting)

    def held(self, owner: Any) -> int:
        """The slots ``owner`` holds now (running, or handed to it and starting)."""
        return self._held.get(owner, 0)

    def spawn_for(self, owner: Any, func: Callable[..., Any], *args: Any) -> Any:
        """``spawn(func, *args)`` for ``owner``, waiting for a fair turn (see above)."""
        held = self._held
        if not self._waiting and held.get(owner, 0) < self.per_owner \
                and self.free_count() - self._promised > 0:
            held[owner] = held.get(owner, 0) + 1
        else:
            turn = Event()
            self._waiting.append((owner, turn))
            self._wake()
            try:
                turn.wait()
            except BaseException:
                if turn.is_set():       # a slot was handed over: give it back
                    self._promised -= 1
                    self._release(owner)
                else:
                    self._waiting.remove((owner, turn))
                raise
            self._promised -= 1
        try:
            greenlet = self.spawn(func, *args)
        except BaseException:
            self._release(owner)
            raise
        greenlet.rawlink(lambda _done: self._release(owner))
        return greenlet

    def _release(self, owner: Any) -> None:
        count = self._held.get(owner, 0) - 1
        if count > 0:
            self._held[owner] = count
        else:
            self._held.pop(owner, None)
        if self._waiting:
            self._wake()

    def _wake(self) -> None:
        """Hand the free slots to waiting owners, the one holding the fewest first."""
        held = self._held
        while self._waiting and self.free_count() - self._promised > 0:
            best = -1
            fewest = self.per_owner
            for index, (owner, _turn) in enumerate(self._waiting):
                count = held.get(owner, 0)
                if count < fewest:
                    best, fewest = index, count
            if best < 0:
                return   # every waiting owner holds its share already
            owner, turn = self._waiting.pop(best)
            held[owner] = fewest + 1
            self._promised += 1
            turn.set()


def spawn_in(pool: Pool, owner: Any, func: Callable[..., Any], *args: Any) -> Any:
    """``pool.spawn(func, *args)``, fairly for ``owner`` when ``pool`` is a FairPool."""
    if isinstance(pool, FairPool):
        return pool.spawn_for(owner, func, *args)
    return pool.spawn(func, *args)


def resolve_pool(pool: Any, shared: Callable[[], Pool],
                 per_owner: int | None = None) -> Pool | None:
    """The pool that ``pool=`` asks for: False/None inline, True the server's shared
    pool, an int a new FairPool of that size (fair turns; each owner capped at
    ``per_owner`` when given, else none), or a ``gevent.pool.Pool`` as given."""
    if pool is None or pool is False:
        return None
    if pool is True:
        return shared()
    if isinstance(pool, int) and not isinstance(pool, bool):
        if pool < 1:
            raise ValueError(f"pool size must be >= 1, not {pool}")
        return FairPool(pool, per_owner or pool)
    if isinstance(pool, Pool):
        return pool
    raise TypeError(f"pool must be True, False, None, a size or a gevent.pool.Pool, "
                    f"not {pool!r}")


class PooledHandler:
    """An event handler that runs in a worker pool instead of the connection's greenlet.

    Compares equal to the handler it wraps, so ``off(event, handler)`` removes it.
    """

    __slots__ = ("handler", "pool", "event", "failed")

    def __init__(self, handler: Callable[..., Any], pool: Pool, event: str,
                 failed: Callable[[str, BaseException], None]) -> None:
        self.handler = handler
        self.pool = pool
        self.event = event
        self.failed = failed

    def __call__(self, *args: Any) -> None:
        # blocks while the pool is full (or this connection holds its share): the caller
        # is the connection's read loop; the connection is the last argument
        spawn_in(self.pool, args[-1], self._run, args)

    def _run(self, args: tuple[Any, ...]) -> None:
        try:
            self.handler(*args)
        except Exception as exc:
            self.failed(self.event, exc)

    def __eq__(self, other: object) -> bool:
        return other is self or self.handler == other

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<PooledHandler {self.handler!r} pool size={self.pool.size}>"


def settle(result: AsyncResult, status: int, data: Any) -> None:
    """Complete a waiting request's ``result`` from a reply frame's status and data:
    the value, or RemoteError / NoHandlerError carrying the remote type and message."""
    if status == REPLY_OK:
        result.set(data)
        return
    detail = data if isinstance(data, dict) else {}
    remote_type = str(detail.get("type", "Error"))
    message = str(detail.get("message", data))
    cls = NoHandlerError if status == REPLY_NO_HANDLER else RemoteError
    result.set_exception(cls(remote_type, message))


def error_detail(exc: BaseException) -> dict[str, str]:
    """The body of an error reply: the exception's class name and message (what
    :func:`settle` turns back into RemoteError on the requesting side)."""
    return {"type": type(exc).__name__, "message": str(exc)}
