"""How a library server ends: on SIGINT, SIGTERM and SIGHUP, at interpreter exit, and when
``serve_forever`` is left by an exception. Every way out stops the server cleanly: clients
are closed after what is queued for them is flushed, and the Unix socket file is removed,
so the next start finds no stale file (even with ``config.unlink = False``).

A started server is *tracked* here until it stops. While at least one tracked server has
``config.handle_signals`` (the default), geventipc handles SIGINT, SIGTERM and SIGHUP, but
only those whose handler is still Python's default: an application's own handlers are
never replaced, and ``handle_signals = False`` leaves all three alone. The previous
handlers come back once the last such server stops.

On one of those signals: a short log line, every tracked server is stopped, and then

* ``serve_forever()`` returns normally (no traceback) where it was waiting;
* if nothing was waiting in ``serve_forever()`` (``start()`` and then other work), the
  signal's usual effect follows once the servers are stopped: ``KeyboardInterrupt`` for
  SIGINT, ``SystemExit(128 + signal)`` for SIGTERM and SIGHUP, raised in the main greenlet.

At interpreter exit (the script's end, ``sys.exit``, an uncaught exception) servers still
running are stopped, with a log line saying how to keep serving.

The kernel may deliver a process's signal to any of its threads (gevent's resolver
threads, the application's own). Python then runs the handler in the main thread only when
that thread next runs Python code, and the hub may be asleep in the kernel with nothing
due to wake it (an idle UDP server has no timer at all): the signal would wait for the
next event. So while the signals are handled, a timer wakes the hub every
``SIGNAL_CHECK_INTERVAL`` seconds to run any handler due, as gevent itself does on libuv.
"""
from __future__ import annotations

import atexit
import signal
import threading
from typing import Any, Callable

import gevent

#: the signals a library server ends on
SIGNALS: tuple[int, ...] = tuple(
    sig for sig in (getattr(signal, name, None) for name in ("SIGINT", "SIGTERM", "SIGHUP"))
    if sig is not None)

#: seconds a server stopped at interpreter exit may take to flush to its clients
EXIT_STOP_TIMEOUT = 1.0

#: seconds between the hub's looks for a signal that another thread received (above)
SIGNAL_CHECK_INTERVAL = 0.25

# started servers (in start order) -> their log; dict for order and O(1) removal
_running: dict[Any, None] = {}
# signal -> the handler it had before geventipc took it
_previous: dict[int, Any] = {}
_atexit_registered = False
# the timer that wakes the main thread's hub while the signals are handled, or None
_waker: Any = None


def _default_handler(sig: int) -> Any:
    return signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL


def _wants_signals(server: Any) -> bool:
    return bool(server.config.handle_signals)


def track(server: Any) -> None:
    """A server started: end it cleanly on the signals and at interpreter exit."""
    global _atexit_registered
    _running[server] = None
    if not _atexit_registered:
        atexit.register(_at_exit)
        _atexit_registered = True
    if _wants_signals(server):
        _install()


def untrack(server: Any) -> None:
    """A server stopped: forget it; give the signals back once no server wants them."""
    _running.pop(server, None)
    if _previous and not any(_wants_signals(s) for s in _running):
        _restore()


def _install() -> None:
    global _waker
    if threading.current_thread() is not threading.main_thread():
        return   # signal.signal works in the main thread only
    for sig in SIGNALS:
        if sig in _previous:
            continue
        try:
            current = signal.getsignal(sig)
        except (OSError, ValueError):
            continue
        if current is not _default_handler(sig):
            continue   # the application's own handler (or SIG_IGN): leave it alone
        _previous[sig] = current
        signal.signal(sig, _on_signal)
    if _previous and _waker is None:
        # ref=False: it never keeps the hub running by itself (gevent.wait() returns)
        _waker = gevent.get_hub().loop.timer(SIGNAL_CHECK_INTERVAL, SIGNAL_CHECK_INTERVAL,
                                             ref=False)
        _waker.start(_wake)


def _wake() -> None:
    """Nothing: waking the hub is enough for Python to run the signal handlers due."""


def _restore() -> None:
    global _waker
    if threading.current_thread() is not threading.main_thread():
        return
    if _waker is not None:
        _waker.stop()
        _waker.close()
        _waker = None
    for sig, previous in list(_previous.items()):
        try:
            if signal.getsignal(sig) is _on_signal:
                signal.signal(sig, previous)
        except (OSError, ValueError):
            pass
        del _previous[sig]


def _on_signal(sig: int, frame: Any) -> None:
    # Python runs this in whatever greenlet is current, often the hub, which must never
    # block or raise: the real work goes to a greenlet of its own
    gevent.get_hub().loop.run_callback(gevent.spawn, _stop_all, sig)


def _stop_all(sig: int) -> None:
    servers = [s for s in _running if _wants_signals(s)]
    name = signal.Signals(sig).name
    waited = False
    for server in servers:
        waited = waited or server._forever > 0
        _log(server, f"<notice>geventipc: {name} received; stopping the server on</notice>",
             _where(server))
        try:
            server.stop()
        except Exception as exc:  # noqa: BLE001 - report and go on stopping the others
            _log(server, "<warn>geventipc: stopping the server failed:</warn>",
                 f"{type(exc).__name__}: {exc}")
    if not servers:
        _restore()
    if not waited:
        # nobody was in serve_forever to return: the signal's usual effect, now that the
        # servers are stopped (and their socket files removed)
        effect: BaseException = (KeyboardInterrupt() if sig == signal.SIGINT
                              else SystemExit(128 + sig))
        gevent.kill(gevent.get_hub().parent, effect)


def serve_forever(server: Any, wait: Callable[[], Any]) -> None:
    """``server.serve_forever()``: start, then block in ``wait`` until the server stops.

    Left by an exception (a ``gevent.Timeout``, ``KeyboardInterrupt`` with signals not
    handled...), it stops the server first, so no socket file is left behind. A server
    stopped already (by a signal or a handler, before this call) returns at once.
    """
    if server._stopped.is_set():
        return
    server.start()
    server._forever += 1
    try:
        wait()
    except BaseException:
        server.stop()
        raise
    finally:
        server._forever -= 1


def _at_exit() -> None:
    for server in list(_running):
        if not server.started:
            continue
        _log(server, "<notice>geventipc: the program ended while the server on</notice>",
             _where(server), "<notice>was serving; stopping it (to keep serving, end the "
             "script with ipc.server.serve_forever())</notice>")
        try:
            server.stop(timeout=EXIT_STOP_TIMEOUT)
        except Exception:  # noqa: BLE001 - exiting anyway; stop the others
            pass
    _restore()


def _where(server: Any) -> str:
    path = getattr(server, "path", None)
    if path:
        return str(path)
    host = getattr(server, "host", None)
    return f"{host}:{getattr(server, 'port', None)}"


def _log(server: Any, *parts: Any) -> None:
    log = getattr(server, "log", None)
    if log is not None:
        try:
            log(*parts)
        except Exception:  # noqa: BLE001 - a broken logger must not stop a shutdown
            pass


__all__ = ["SIGNALS", "track", "untrack", "serve_forever"]
