"""Calls from OS threads: handed to the hub that owns the connection, in order.

A client or server belongs to the OS thread that made it (its gevent hub runs there).
Its public send calls (``emit``, ``broadcast``, ``request``, ``request_async``; a server
socket's ``emit``; UDP's) and its ends (``Client.disconnect``, ``stop``) begin with one
cheap check::

    if get_ident() != self._tid: return call_in_owner(self._tid, Client.emit, self, ...)

From the owning thread (any greenlet there; with ``gevent.monkey.patch_all()`` ordinary
threads *are* greenlets of that thread) nothing else happens. From any other OS thread
(a plain ``threading.Thread``, a worker of ``gevent.threadpool.ThreadPool``, a
``concurrent.futures`` pool) the call is queued for the owning hub, which is woken with
``loop.run_callback_threadsafe``; one greenlet there runs the queued calls one after
another, and the calling thread blocks until its call has run there (a ``request``:
until the reply), then gets its return value or its exception.

Order: the calls of one thread run in the order it made them (it waits for each). Calls
of different threads run in the order they reached the queue; relative to the owning
thread's own greenlets, a handed-off call runs at the hub's next turn, like a newly
spawned greenlet.

A hub that never runs (its thread blocked outside gevent, e.g. in an unpatched
``thread.join()`` or ``time.sleep``) would leave the caller waiting for ever: if the hub
has not *started* a call within :data:`HANDOFF_TIMEOUT` seconds, the call is withdrawn
(nothing of it happens) and the caller gets :class:`~geventipc.errors.ThreadHandoffError`.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable

import gevent
from gevent.hub import get_hub
from gevent.monkey import get_original

from .errors import ThreadHandoffError, Timeout

#: the OS thread's id, even under monkey-patching (where ``threading.get_ident`` names
#: the greenlet): the one-line check at every public send call compares it
get_ident: Callable[[], int] = get_original("_thread", "get_ident")
_allocate_lock: Callable[[], Any] = get_original("_thread", "allocate_lock")

#: seconds a call from another thread waits for the owning hub to start it
HANDOFF_TIMEOUT = 10.0

_QUEUED, _RUNNING, _WITHDRAWN = 0, 1, 2

#: owning thread id -> its hand-off; written only by owning threads, read by any
_handoffs: dict[int, "_Handoff"] = {}
_registry_lock = _allocate_lock()


class _Call:
    """One call waiting in (or run by) the owning hub; ``done`` is a real lock, held
    until the outcome is in."""

    __slots__ = ("func", "args", "state", "done", "ok", "value")

    def __init__(self, func: Callable[..., Any], args: tuple) -> None:
        self.func = func
        self.args = args
        self.state = _QUEUED
        self.done = _allocate_lock()
        self.done.acquire()
        self.ok = False
        self.value: Any = None

    def finish(self, ok: bool, value: Any) -> None:
        """Record the outcome and wake the calling thread (runs in the hub's thread)."""
        self.ok = ok
        self.value = value
        self.done.release()


class ThreadResult:
    """What ``request_async`` returns to another OS thread: the reply, waited for with a
    real lock (a gevent ``AsyncResult`` cannot be waited on from a thread without a
    running hub). The same reading methods as ``AsyncResult``."""

    __slots__ = ("_done", "_ok", "value", "exception")

    def __init__(self) -> None:
        self._done = _allocate_lock()
        self._done.acquire()
        self._ok = False
        #: the reply data once successful, else None
        self.value: Any = None
        #: the error once failed, else None
        self.exception: BaseException | None = None

    def _settle(self, result: Any) -> None:
        # rawlink callback of the hub-side AsyncResult (runs in the hub's thread)
        if result.successful():
            self._ok, self.value = True, result.value
        else:
            self.exception = result.exception
        self._done.release()

    def ready(self) -> bool:
        """True once the reply (or the error) is in."""
        return not self._done.locked()

    def successful(self) -> bool:
        """True once a reply is in."""
        return self.ready() and self._ok

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Block this thread until the reply (at most ``timeout`` s: then
        ``geventipc.errors.Timeout``); return its data or raise its error."""
        if not self._done.acquire(block, -1 if timeout is None else timeout):
            raise Timeout(f"no reply within {timeout} s")
        self._done.release()
        if self._ok:
            return self.value
        assert self.exception is not None
        raise self.exception


def _linked(func: Callable[..., Any], *args: Any) -> ThreadResult:
    # in the hub: start the request, and let its AsyncResult complete a ThreadResult
    result = ThreadResult()
    func(*args).rawlink(result._settle)
    return result


class _Handoff:
    """The queue of calls from other threads for one owning thread's hub."""

    def __init__(self) -> None:
        self.loop = get_hub().loop
        self.lock = _allocate_lock()
        self.calls: deque[_Call] = deque()
        self.scheduled = False  # a wake-up or a running drain greenlet will see new calls

    def submit(self, call: _Call) -> None:
        """From another thread: queue ``call`` and wake the hub if nothing will see it."""
        with self.lock:
            self.calls.append(call)
            wake = not self.scheduled
            self.scheduled = True
        if wake:
            self.loop.run_callback_threadsafe(self._wake)

    def _wake(self) -> None:
        # in the hub: calls may block (an overflow wait, a send), so they run in a
        # greenlet, one after another, never in the hub itself
        gevent.spawn(self._drain)

    def _drain(self) -> None:
        calls, lock = self.calls, self.lock
        finished = False
        try:
            while True:
                with lock:
                    if not calls:
                        self.scheduled = False
                        finished = True
                        return
                    call = calls.popleft()
                    call.state = _RUNNING
                try:
                    result = call.func(*call.args)
                except BaseException as exc:  # the caller's exception, raised in its thread
                    call.finish(False, exc)
                    if isinstance(exc, gevent.GreenletExit):
                        raise
                    continue
                call.finish(True, result)
        finally:
            if not finished:  # killed: a fresh greenlet takes what is still queued
                with lock:
                    again = self.scheduled = bool(calls)
                if again:
                    self.loop.run_callback(self._wake)


def owner() -> int:
    """Record the calling OS thread (and its hub) as an owner; returns its id for the
    one-line check. Called once by each Client/Server/UDPServer constructor."""
    ident = get_ident()
    loop = get_hub().loop
    handoff = _handoffs.get(ident)
    # a thread id is reused once its thread has ended, and a hub can be destroyed and
    # made again: hand calls to the loop that runs in this thread now
    if handoff is None or handoff.loop is not loop:
        with _registry_lock:
            handoff = _handoffs.get(ident)
            if handoff is None or handoff.loop is not loop:
                _handoffs[ident] = _Handoff()
    return ident


def call_in_owner(ident: int, func: Callable[..., Any], *args: Any) -> Any:
    """Run ``func(*args)`` in the hub of thread ``ident``; block this thread until it has
    run there and return its result (or raise its exception)."""
    handoff = _handoffs[ident]
    call = _Call(func, args)
    handoff.submit(call)
    if not call.done.acquire(timeout=HANDOFF_TIMEOUT):
        with handoff.lock:
            withdrawn = call.state == _QUEUED
            if withdrawn:
                handoff.calls.remove(call)
                call.state = _WITHDRAWN
        if withdrawn:
            raise ThreadHandoffError(
                f"{getattr(func, '__qualname__', func)} from another thread: the hub of the "
                f"thread that owns this connection did not take the call within "
                f"{HANDOFF_TIMEOUT} s (is that thread blocked outside gevent, e.g. in an "
                f"unpatched join() or time.sleep()?); nothing was sent")
        call.done.acquire()  # started: it finishes as it would in a greenlet
    if call.ok:
        return call.value
    raise call.value


def request_in_owner(ident: int, func: Callable[..., Any], *args: Any) -> ThreadResult:
    """``request_async`` from another thread: ``func(*args)`` (which returns a gevent
    ``AsyncResult``) runs in the owning hub; the returned :class:`ThreadResult` gets its
    outcome. Errors of sending itself are raised here, as in the hub."""
    result: ThreadResult = call_in_owner(ident, _linked, func, *args)
    return result
