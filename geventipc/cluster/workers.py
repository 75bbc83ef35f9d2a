"""Pre-fork workers: ``config.workers = N`` serves one listening socket from N processes.

Three kinds of process, so that a fork never copies a running gevent program:

- the **parent** (the application's own process) binds the socket (Unix or TCP), forks
  the supervisor once, at :meth:`WorkersServer.start`, before it fires ``start``; it then
  accepts nothing itself. It logs what the supervisor reports, and on :meth:`stop` has
  the supervisor stop every worker, then removes the socket file. With a cluster, the
  parent is a node without clients: its ``broadcast`` and ``emit_to`` reach every
  worker's clients, as with one process.
- the **supervisor** is a copy of the parent taken before the parent's hub ran anything
  of the server's; it never runs the hub or application code, only blocking calls (the
  originals, even under ``monkey.patch_all()``): it forks the workers, reaps them,
  restarts one that dies after a backoff, and stops them all when the parent says so or
  dies (its control pipe reaches end of file).
- each **worker** is forked from the supervisor, calls ``gevent.reinit()`` and runs the
  application's :class:`~geventipc.server.Server` (the same object, with the handlers
  registered before ``start``) on the inherited listening socket; ``start`` fires in it,
  which is where the cluster joins (one node per worker).

Workers report to the parent over a pipe, one short line per event (``up``, ``fail``,
``exit``), each written whole (shorter than ``PIPE_BUF``).
"""
from __future__ import annotations

import mmap
import os
import signal
import sys
import time
import traceback
from typing import Any, Callable, NoReturn

import gevent
import gevent.os
from gevent.event import Event
from gevent.monkey import get_original

from .. import lifecycle
from ..config import Config
from ..errors import ClusterRequiredError, WorkersError
from ..server import Server
from ..threads import call_in_owner, get_ident

# the process-level calls of the supervisor: never gevent's cooperative versions, since
# the supervisor must not run the hub it inherited (see the module docstring)
_fork, _waitpid, _read, _write, _close = get_original(
    "os", ["fork", "waitpid", "read", "write", "close"])
_select = get_original("select", "select")
_sleep = get_original("time", "sleep")
_signal = get_original("signal", "signal")

#: first restart delay of a worker that died, in seconds; doubled for each death in a row
#: of a worker that had not lived STABLE_AFTER seconds, up to RESTART_DELAY_MAX
RESTART_DELAY = 0.1
RESTART_DELAY_MAX = 10.0
STABLE_AFTER = 5.0
#: how often the supervisor looks for dead workers, and a worker for a dead supervisor
POLL_INTERVAL = 0.1
PARENT_CHECK_INTERVAL = 0.5
#: what a worker gets, after the parent's stop timeout, to flush and exit before SIGKILL
KILL_GRACE = 1.0
#: accept balance: a worker stops accepting while it holds more than BALANCE_SLACK (plus
#: a tenth) connections over the least loaded live worker, and looks again every
#: BALANCE_INTERVAL s; a worker whose heartbeat is older than BALANCE_STALE s (hung, dead)
#: does not count, so the others never wait for it
BALANCE_SLACK = 1
BALANCE_INTERVAL = 0.02
BALANCE_STALE = 1.0


def require_cluster(config: Config) -> None:
    """ClusterRequiredError unless ``config.workers`` is 1 or a cluster URL is set."""
    if config.workers > 1 and not config.cluster:
        raise ClusterRequiredError(
            f"config.workers = {config.workers} needs config.cluster (a redis:// URL; "
            f"serve --cluster URL): without it a broadcast or emit_to made in one worker "
            f"could not reach the clients of the others")


def describe_status(status: int) -> str:
    """A wait status in words: ``exit status 1``, ``killed by signal 9 (SIGKILL)``."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "?"
        return f"killed by signal {number} ({name})"
    if os.WIFEXITED(status):
        return f"exit status {os.WEXITSTATUS(status)}"
    return f"wait status {status}"


def _say(fd: int, *words: Any) -> None:
    """One line to the parent's status pipe; lost if the parent is gone."""
    line = " ".join(str(word) for word in words)[:480].replace("\n", " ") + "\n"
    try:
        _write(fd, line.encode("utf-8", "replace"))
    except OSError:
        pass


class WorkersServer(Server):
    """A stream server run by ``config.workers`` pre-forked processes on one socket.

    Made by ``ipc.serve``/``ipc.serve_net`` when ``config.workers`` > 1; the API is the
    :class:`~geventipc.server.Server`'s. Handlers registered before :meth:`start` run in
    every worker; ``start`` fires in each worker and in the parent; code after
    :meth:`start` runs in the parent only. More than one worker needs ``config.cluster``
    (:class:`~geventipc.errors.ClusterRequiredError`).
    """

    runs_workers = True

    def __init__(self, config: Config, log: Callable[..., None], **where: Any) -> None:
        require_cluster(config)
        super().__init__(config, log, **where)
        #: this process's worker number (0 .. workers-1) in a worker, None in the parent
        self.worker_index: int | None = None
        self._supervision: _Supervision | None = None

    def __repr__(self) -> str:
        where = self.path or f"{self.host}:{self.port}"
        if self.worker_index is not None:
            return f"<WorkersServer {where} worker={self.worker_index} clients={len(self._conns)}>"
        return f"<WorkersServer {where} workers={self.config.workers}>"

    @property
    def worker_pids(self) -> dict[int, int]:
        """Worker number -> pid of the workers serving now (parent only; {} in a worker)."""
        return dict(self._supervision.serving) if self._supervision is not None else {}

    @property
    def supervisor_pid(self) -> int | None:
        """The supervisor process's pid (parent only, once started)."""
        return self._supervision.pid if self._supervision is not None else None

    @property
    def restarts(self) -> int:
        """How many times a dead worker was started again (parent only)."""
        return self._supervision.restarts if self._supervision is not None else 0

    def wait_workers(self, timeout: float | None = None) -> bool:
        """Block this greenlet until every worker serves and is subscribed to the cluster,
        and the parent's own cluster node too; False if ``timeout`` ran out."""
        if self._supervision is None:
            return False
        started = time.monotonic()
        if not self._supervision.all_up.wait(timeout):
            return False
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        return _cluster_joined(self, left)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, listener: Any = None) -> "WorkersServer":
        """Bind, fork the supervisor (which forks the workers) and return at once; fires
        ``start`` in the parent (and in each worker once it serves)."""
        if self.worker_index is not None or listener is not None:
            super().start(listener)
            return self
        if self._started:
            return self
        require_cluster(self.config)
        listener = self._bind()
        try:
            self._supervision = _Supervision(self, listener)
        except BaseException:
            self._remove_socket_file()  # no fork (out of processes, memory): no server
            raise
        finally:
            listener.close()  # the supervisor and the workers hold their own copies
        self._started = True
        # SIGINT/SIGTERM/SIGHUP and interpreter exit stop the parent, and so every worker,
        # as they stop a one-process server (geventipc.lifecycle; serve_forever is Server's)
        lifecycle.track(self)
        if self.cluster is not None:
            self.cluster.start()   # the parent is a node too, without clients
        self.fire("start")
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop every worker (each flushes its clients for up to ``timeout`` seconds,
        then is killed), close the cluster and remove the socket file. In a worker: stop
        that worker only (the supervisor then starts it again)."""
        if self.worker_index is not None:
            super().stop(timeout)
            return
        if get_ident() != self._tid:  # another OS thread: hand over (threads.py)
            call_in_owner(self._tid, WorkersServer.stop, self, timeout)
            return
        if not self._started or self._stopped.is_set():
            return
        self._stopped.set()
        try:
            if self._supervision is not None:
                self._supervision.stop(timeout)
            if self.cluster is not None:
                self.cluster.close()
            self._remove_socket_file()
        finally:
            lifecycle.untrack(self)
            self._done.set()

    def _supervisor_died(self) -> None:
        self.report(WorkersError("the workers' supervisor process died; stopping the server"))
        self.stop()


class _Supervision:
    """The parent's side: forks the supervisor, reads its reports, stops it."""

    def __init__(self, server: WorkersServer, listener: Any) -> None:
        self.server = server
        self.count = server.config.workers
        self.serving: dict[int, int] = {}
        self.restarts = 0
        self._seen: set[int] = set()   # worker numbers that have served once
        self.all_up = Event()
        self.stopping = False
        # per worker: connections held, heartbeat (ms, CLOCK_MONOTONIC is machine-wide);
        # an anonymous shared map made before the forks is one memory for all of them
        self.shared = mmap.mmap(-1, 16 * self.count)
        table = memoryview(self.shared).cast("q")
        for index in range(self.count):
            table[2 * index] = -1
        table.release()
        control_r, self.control_w = os.pipe()
        self.status_r, status_w = os.pipe()
        for stream in (sys.stdout, sys.stderr):  # else both processes print what is buffered
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        pid = _fork()
        if pid == 0:  # the supervisor; never returns
            _close(self.control_w)
            _close(self.status_r)
            _Supervisor(server, listener, self.count, control_r, status_w, self.shared).run()
        self.pid = pid
        os.close(control_r)
        os.close(status_w)
        os.set_blocking(self.status_r, False)
        self.reader = gevent.spawn(self._read)

    def _read(self) -> None:
        buffered = b""
        while True:
            try:
                data = gevent.os.nb_read(self.status_r, 4096)
            except OSError:
                data = b""
            if not data:
                break
            buffered += data
            *lines, buffered = buffered.split(b"\n")
            for line in lines:
                self._on_line(line.decode("utf-8", "replace"))
        os.close(self.status_r)
        self._reap()
        self.shared.close()
        if not self.stopping:
            gevent.spawn(self.server._supervisor_died)

    def _on_line(self, line: str) -> None:
        kind, index_text, pid_text, *rest = line.split(" ", 3) + ["", "", ""]
        try:
            index, pid = int(index_text), int(pid_text)
        except ValueError:
            return
        log = self.server.log
        if kind == "up":
            if self.serving.get(index) is None and index in self._seen:
                self.restarts += 1
            self._seen.add(index)
            self.serving[index] = pid
            log("<good>geventipc: worker</good>", index, f"(pid {pid})",
                "<good>serving</good>")
            if len(self.serving) == self.count:
                self.all_up.set()
        elif kind == "fail":
            log("<error>geventipc: worker</error>", index, f"(pid {pid})",
                "<error>failed:</error>", rest[0])
        elif kind == "exit":
            self.serving.pop(index, None)
            self.all_up.clear()
            how, delay = (rest[0].rsplit(" ", 1) + [""])[:2]
            if self.stopping or delay == "-":
                log("<notice>geventipc: worker</notice>", index, f"(pid {pid})",
                    "<notice>stopped</notice>", f"({how})")
            else:
                log("<warn>geventipc: worker</warn>", index, f"(pid {pid})",
                    "<warn>died</warn>", f"({how});",
                    "<warn>restarting it in</warn>", f"{delay} s")

    def stop(self, timeout: float) -> None:
        """Have the supervisor stop every worker; wait for it (bounded), then make sure."""
        self.stopping = True
        try:
            os.write(self.control_w, f"stop {timeout}\n".encode())
        except OSError:
            pass  # the supervisor is gone already
        os.close(self.control_w)
        if not self.reader.join(timeout + KILL_GRACE + 2.0):
            # a supervisor that does not end in time: end it and its workers here
            for pid in [self.pid, *self.serving.values()]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self.reader.kill(block=True, timeout=1.0)
            self._reap()

    def _reap(self) -> None:
        """Collect the supervisor's exit status (bounded; gevent may have reaped it)."""
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                pid, _status = _waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if pid:
                return
            gevent.sleep(0.01)


class _Supervisor:
    """The supervisor process's loop (runs in the forked child, blocking, no hub)."""

    def __init__(self, server: WorkersServer, listener: Any, count: int, control_r: int,
                 status_w: int, shared: mmap.mmap) -> None:
        self.server = server
        self.shared = shared
        self.table = memoryview(shared).cast("q")
        self.listener = listener
        self.count = count
        self.control_r = control_r
        self.status_w = status_w
        self.children: dict[int, int] = {}   # pid -> worker number
        self.started_at: dict[int, float] = {}
        self.quick_deaths = [0] * count
        self.due: dict[int, float] = {}      # worker number -> when to start it again
        self.stopping = False
        self.stop_timeout = 2.0

    def run(self) -> NoReturn:
        status = 1
        try:
            # the parent decides on Ctrl-C and hang-ups (they reach the process group)
            _signal(signal.SIGINT, signal.SIG_IGN)
            _signal(signal.SIGHUP, signal.SIG_IGN)
            _signal(signal.SIGTERM, self._on_sigterm)
            _signal(signal.SIGCHLD, signal.SIG_DFL)  # never an inherited gevent handler
            for index in range(self.count):
                self._spawn(index)
            while not self.stopping:
                self._tick()
            self._stop_all()
            status = 0
        except BaseException:  # noqa: BLE001 - said, then the process ends either way
            traceback.print_exc()
        finally:
            os._exit(status)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _tick(self) -> None:
        now = time.monotonic()
        wait = min([POLL_INTERVAL] + [max(0.0, at - now) for at in self.due.values()])
        try:
            readable, _, _ = _select([self.control_r], [], [], wait)
        except InterruptedError:
            readable = []
        if readable:
            data = _read(self.control_r, 256)
            if data.startswith(b"stop "):
                try:
                    self.stop_timeout = float(data.split()[1])
                except (IndexError, ValueError):
                    pass
            self.stopping = True   # "stop", or end of file: the parent is gone
            return
        self._reap(stopping=False)
        now = time.monotonic()
        for index, at in list(self.due.items()):
            if at <= now:
                del self.due[index]
                self._spawn(index)

    def _reap(self, stopping: bool) -> None:
        while self.children:
            try:
                pid, status = _waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if not pid:
                return
            index = self.children.pop(pid, None)
            if index is None:
                continue
            self.table[2 * index] = -1   # gone: the others stop waiting for it
            how = describe_status(status)
            if stopping or self.stopping:
                _say(self.status_w, "exit", index, pid, how, "-")
                continue
            if time.monotonic() - self.started_at.pop(pid, 0.0) >= STABLE_AFTER:
                self.quick_deaths[index] = 0
            self.quick_deaths[index] += 1
            delay = min(RESTART_DELAY * 2 ** (self.quick_deaths[index] - 1), RESTART_DELAY_MAX)
            self.due[index] = time.monotonic() + delay
            _say(self.status_w, "exit", index, pid, how, f"{delay:g}")

    def _spawn(self, index: int) -> None:
        pid = _fork()
        if pid == 0:
            _close(self.control_r)
            _run_worker(self.server, self.listener, index, self.status_w, os.getppid(),
                        _Balance(self.server, self.table, index, self.count))
        self.children[pid] = index
        self.started_at[pid] = time.monotonic()

    def _stop_all(self) -> None:
        self._end_children(signal.SIGTERM, self.stop_timeout + KILL_GRACE)
        self._end_children(signal.SIGKILL, 2.0)

    def _end_children(self, sig: int, within: float) -> None:
        """Send ``sig`` to every worker left, then reap them for up to ``within`` s."""
        for pid in list(self.children):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + within
        while self.children and time.monotonic() < deadline:
            self._reap(stopping=True)
            _sleep(0.01)


def _run_worker(server: WorkersServer, listener: Any, index: int, status_w: int,
                supervisor: int, balance: "_Balance") -> NoReturn:
    """A worker process: serve on ``listener`` until SIGTERM or the supervisor is gone."""
    code = 1
    try:
        gevent.reinit()
        stop = Event()
        _signal(signal.SIGINT, signal.SIG_IGN)   # as the supervisor (also for lifecycle:
        _signal(signal.SIGHUP, signal.SIG_IGN)   # it leaves handlers that are not default)
        _signal(signal.SIGTERM, lambda signum, frame: stop.set())
        server.worker_index = index
        server._supervision = None
        _own_cluster_node(server)
        server.start(listener)
        balancer = balance.start()
        # "up" once subscribed too, so that what is broadcast after wait_workers() reaches
        # this worker's clients; an engine away for longer does not hold the worker back
        # (it serves its own clients and the cluster reconnects by itself)
        _cluster_joined(server, server.config.connect_timeout / 1000.0)
        _say(status_w, "up", index, os.getpid())
        watcher = gevent.spawn(_watch_supervisor, supervisor, stop)
        gevent.wait([stop, server._done], count=1)
        watcher.kill(block=False)
        balancer.kill(block=False)
        server.stop()
        code = 0
    except BaseException as exc:  # noqa: BLE001 - reported, then the worker ends
        _say(status_w, "fail", index, os.getpid(), f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def _cluster_joined(server: Server, timeout: float | None) -> bool:
    """Wait (bounded) until ``server``'s cluster node, if any, is connected."""
    cluster = server.cluster
    if cluster is None:
        return True
    deadline = None if timeout is None else time.monotonic() + timeout
    while not cluster.connected:
        if deadline is not None and time.monotonic() >= deadline:
            return False
        gevent.sleep(0.01)
    return True


def _own_cluster_node(server: Server) -> None:
    """Give this worker a cluster membership of its own: the one it inherited was made in
    the parent, with the parent's node id (each worker must be a node of its own)."""
    inherited = server.cluster
    if inherited is not None:
        server.cluster = type(inherited)(
            server, inherited.address, heartbeat=inherited.heartbeat,
            max_pending=inherited.max_pending)


class _Balance:
    """Spreads connections over the workers sharing one listening socket.

    Every worker wakes for a new connection and the first to call accept() gets it, so a
    burst (or every client reconnecting at once) can pile onto one worker. Each worker
    publishes its connection count in shared memory; gevent's accept loop asks
    ``full()`` before each accept, and a worker well above the least loaded live one says
    yes and stops accepting until the others catch up.
    """

    def __init__(self, server: Server, table: memoryview, index: int, count: int) -> None:
        self.server = server
        self.table = table
        self.index = index
        self.count = count

    def start(self) -> Any:
        """Hook the worker's accept loop; returns the greenlet that keeps the table."""
        stream_server = self.server._stream_server
        assert stream_server is not None
        # one accept per wake-up, so that full() is asked before each one
        stream_server.max_accept = 1
        stream_server.full = self.full  # type: ignore[method-assign]
        # a connection that ends frees its place at once, not at the next heartbeat
        self.server.on("socket.disconnected", lambda socket, peer_id: self._publish())
        self._publish()
        return gevent.spawn(self._keep, stream_server)

    def _publish(self) -> int:
        server = self.server
        held = len(server._conns) + len(server._handshaking)
        self.table[2 * self.index] = held
        self.table[2 * self.index + 1] = int(time.monotonic() * 1000)
        return held

    def full(self) -> bool:
        """True while this worker holds clearly more connections than the least loaded."""
        held = self._publish()
        table, me = self.table, self.index
        oldest = int((time.monotonic() - BALANCE_STALE) * 1000)
        loads = [table[2 * j] for j in range(self.count)
                 if j != me and table[2 * j] >= 0 and table[2 * j + 1] >= oldest]
        if not loads:
            return False
        least = min(loads)
        return held > least + BALANCE_SLACK + least // 10

    def _keep(self, stream_server: Any) -> None:
        # the heartbeat, and accepting again once the others caught up (gevent's loop
        # stopped accepting when full() said so, and nothing else would restart it)
        while not self.server._stopped.is_set():
            pausing = stream_server._timer is not None and stream_server._timer.active
            if stream_server._watcher is None and not stream_server.closed \
                    and not pausing and not self.full():  # not in an accept-error pause
                stream_server.start_accepting()
            else:
                self._publish()
            gevent.sleep(BALANCE_INTERVAL)


def _watch_supervisor(supervisor: int, stop: Event) -> None:
    """End this worker when its supervisor is gone (killed -9: no one else would)."""
    while os.getppid() == supervisor:
        gevent.sleep(PARENT_CHECK_INTERVAL)
    stop.set()


__all__ = ["WorkersServer", "require_cluster", "describe_status"]
