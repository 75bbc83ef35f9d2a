"""Shared fixtures: a private socket directory, free ports, and real helper processes."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Callable, Iterator

import gevent
import pytest

from geventipc import IPC

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def sock_dir() -> Iterator[str]:
    """An owner-only temp directory for Unix sockets (short path: sun_path is ~100 bytes)."""
    path = tempfile.mkdtemp(prefix="gipc-", dir="/tmp")
    os.chmod(path, 0o700)
    yield path + os.sep
    for name in os.listdir(path):
        try:
            os.unlink(os.path.join(path, name))
        except OSError:
            pass
    os.rmdir(path)


def free_port(family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> int:
    """A port nobody listens on right now, on loopback."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, kind) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def ipv6_port() -> int:
    """A free TCP port on ::1; skips the calling test where there is no IPv6 loopback."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        return free_port(socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback")


@pytest.fixture
def port() -> int:
    """A free TCP port on 127.0.0.1."""
    return free_port()


@pytest.fixture
def make_ipc(sock_dir: str) -> Iterator[Callable[..., IPC]]:
    """Factory of IPC instances in the test's socket dir, all torn down afterwards."""
    made: list[IPC] = []

    def factory(id: str = "world", **config: object) -> IPC:
        # the test defaults (quiet, fast retries) give way to what the test asks for
        settings: dict[str, object] = {"socket_root": sock_dir, "silent": True, "retry": 50}
        settings.update(config)
        inst = IPC(id=id, **settings)
        made.append(inst)
        return inst

    yield factory
    for inst in made:
        for server_id in list(inst.of):
            inst.disconnect(server_id)
        if inst.server is not None:
            inst.server.stop(timeout=1)


def serve(make_ipc: Callable[..., IPC], id: str = "world", **config: object) -> IPC:
    """An IPC from ``make_ipc`` whose default (Unix socket) server is started."""
    inst = make_ipc(id, **config)
    inst.serve()
    inst.server.start()
    return inst


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, step: float = 0.005,
               message: str = "condition") -> None:
    """Yield to gevent until ``predicate()`` is true; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        gevent.sleep(step)


def connected_clients(make_ipc: Callable[..., IPC], count: int,
                      **config: object) -> list[IPC]:
    """``count`` clients c0, c1, ... of the server "world", each connected."""
    made = [make_ipc(f"c{i}", **config).connect_to("world") for i in range(count)]
    for client in made:
        client.wait_connected(5)
    return made


def read_pty(leader: int) -> bytes:
    """All a pseudo-terminal's other side wrote, read from ``leader`` until it is closed
    (close the follower first)."""
    data = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the terminal's other side is closed, all read
            break
        if not chunk:
            break
        data += chunk
    return data


def failing_handler_log(make_ipc: Callable[..., IPC]) -> list[str]:
    """The log lines (no colour) of a server "world" whose "boom" event handler raised
    ZeroDivisionError, once the line naming it is there."""
    lines: list[str] = []
    world = serve(make_ipc, silent=False, logger=lines.append, log_in_color=False)
    world.server.on("boom", lambda data, socket: 1 / 0)
    client = make_ipc("hello").connect_to("world")
    client.wait_connected(5)
    client.emit("boom")
    wait_until(lambda: any("ZeroDivisionError" in line for line in lines),
               message="the handler's failure in the log")
    return lines


def python_process(code: str, *args: str, env: dict[str, str] | None = None
                   ) -> subprocess.Popen[str]:
    """Start a real Python process running ``code`` (dedented), stdout/stderr piped."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1")
    full_env.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env, cwd=ROOT,
    )


def run_example(args: list[str], env: dict[str, str], timeout: float = 20
                ) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` from the repository root to the end (at most ``timeout`` s),
    with ``env`` added to the environment; output captured as text."""
    # gevent's run: the hub goes on meanwhile, so the next test's timers do not start from
    # a loop clock left seconds behind (they would expire at once)
    from gevent import subprocess as gsubprocess  # noqa: PLC0415
    return gsubprocess.run([sys.executable, *args], env=dict(os.environ, **env), cwd=ROOT,
                           capture_output=True, text=True, timeout=timeout)


def read_line(proc: subprocess.Popen[str], timeout: float = 10.0) -> str:
    """One stdout line from ``proc``, waiting cooperatively at most ``timeout`` s."""
    from gevent.os import make_nonblocking, nb_read  # noqa: PLC0415
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    make_nonblocking(fd)
    buf = getattr(proc, "_line_buf", b"")
    with gevent.Timeout(timeout, AssertionError(f"no line from process within {timeout} s")):
        while b"\n" not in buf:
            chunk = nb_read(fd, 65536)
            if not chunk:
                err = proc.stderr.read() if proc.stderr else ""
                raise AssertionError(f"process ended without a line; stderr:\n{err}")
            buf += chunk
    line, _, rest = buf.partition(b"\n")
    proc._line_buf = rest  # type: ignore[attr-defined]
    return line.decode()


def stop_process(proc: subprocess.Popen[str], timeout: float = 5.0) -> None:
    """Terminate ``proc`` and reap it, killing it if it does not go in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
