"""Soak run: N clients exchanging with one server for a set time, with random disconnects.

``make soak`` (not part of ``make test``); ``python soak/soak.py --seconds 60 --clients 20``.

The server runs in its own process (soak/server.py) on a Unix socket and on TCP; the
clients, half on each, run here. Every client emits numbered events in small bursts; the
server checks each client's numbers arrive in order with none missing or doubled, and
acks every 16th. At random, a client

* drops its connection (a graceful close; its reconnect loop dials again and the events
  emitted meanwhile are queued and sent after reconnecting), or
* restarts: it waits for the ack of its last event, disconnects for good, and a new
  client with the same id carries on the numbering;

and now and then the server closes a random client's connection (``socket.close()``:
graceful, like the drops above, and the client reconnects).

Every few seconds a line shows the events sent, received and lost so far and the
server's RSS; at the end the server reports what it received. The run passes (exit 0)
when nothing was lost, doubled or reordered and the server's RSS stayed flat (grew less
than ``--rss-slack`` MiB between the end of warm-up and the end).

What it does not cover, because no stream transport can: a connection aborted (a reset,
a slow consumer cut off) or a peer that crashes loses what the kernel had taken and the
other side had not read (at-most-once); see "Limits and guarantees" in the README.
soak/kill.py (run next by ``make soak``) kills the server and clients with SIGKILL and
checks that only that much is lost, and nothing doubled or reordered.
"""
from __future__ import annotations

import argparse
import os
import random
import select
import subprocess
import sys
import tempfile
import time

import gevent

from geventipc import IPC

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib(pid: int) -> float:
    """Resident set size of process ``pid``, in MiB."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2 ** 20


def free_port() -> int:
    import socket  # noqa: PLC0415
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SoakClient:
    """One logical client: a numbered stream of events that survives drops and restarts."""

    def __init__(self, name: str, transport: str, path: str, port: int, rng: random.Random,
                 sock_dir: str) -> None:
        self.name = name
        self.transport = transport
        self.path, self.port = path, port
        self.rng = rng
        self.sock_dir = sock_dir
        self.seq = 0          # next number to send
        self.acked = -1
        self.drops = 0
        self.restarts = 0
        self.errors: list[str] = []
        self.ipc: IPC | None = None
        self.client = None
        self._connect()

    def _connect(self) -> None:
        self.ipc = IPC(id=self.name, silent=True, retry=20, socket_root=self.sock_dir,
                       max_queued_events=1_000_000)
        if self.transport == "unix":
            self.client = self.ipc.connect_to("soak", self.path)
        else:
            self.client = self.ipc.connect_to_net("soak", "127.0.0.1", self.port)
        self.client.on("ack", self._on_ack)
        # refused dials while a restart reconnects are expected; anything else is not
        self.client.on("error", lambda exc: self.errors.append(f"{type(exc).__name__}: {exc}"))

    def _on_ack(self, seq: int) -> None:
        self.acked = max(self.acked, seq)

    def burst(self) -> None:
        for _ in range(self.rng.randint(1, 10)):
            self.client.emit("msg", [self.name, self.seq, "x" * self.rng.randint(0, 200)])
            self.seq += 1

    def drop(self) -> None:
        conn = self.client.conn
        if conn is not None:
            conn.close()
            self.drops += 1

    def restart(self) -> None:
        # the last event needs an ack: pad to the next multiple of 16 (the server acks
        # every 16th), then wait for it, then leave for good
        while self.seq % 16:
            self.client.emit("msg", [self.name, self.seq, ""])
            self.seq += 1
        deadline = time.monotonic() + 10
        while self.acked < self.seq - 1 and time.monotonic() < deadline:
            gevent.sleep(0.01)
        self.ipc.disconnect("soak")
        self.restarts += 1
        self._connect()

    def run(self, until: float, drop_every: float, restart_every: float) -> None:
        while time.monotonic() < until:
            self.burst()
            roll = self.rng.random()
            if roll < 0.02 / restart_every:
                self.restart()
            elif roll < 0.02 / drop_every:
                self.drop()
            gevent.sleep(self.rng.uniform(0.01, 0.03))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="geventipc soak run")
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 60)))
    parser.add_argument("--clients", type=int, default=int(os.environ.get("SOAK_CLIENTS", 20)))
    parser.add_argument("--drop-every", type=float, default=3.0,
                        help="mean seconds between a client's connection drops")
    parser.add_argument("--restart-every", type=float, default=10.0,
                        help="mean seconds between a client's restarts")
    parser.add_argument("--kick-every", type=float, default=0.5,
                        help="mean seconds between the server closing a random client "
                             "(0: never)")
    parser.add_argument("--report-every", type=float, default=5.0)
    parser.add_argument("--rss-slack", type=float, default=8.0,
                        help="MiB the server's RSS may grow after warm-up")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2 ** 32)
    rng = random.Random(seed)

    sock_dir = tempfile.mkdtemp(prefix="gipc-soak-", dir="/tmp")
    os.chmod(sock_dir, 0o700)
    path, port = os.path.join(sock_dir, "soak.sock"), free_port()
    # SOAK_SERVER: another server script (say, one that wraps server.py in tracemalloc)
    script = os.environ.get("SOAK_SERVER", os.path.join(HERE, "server.py"))
    server = subprocess.Popen([sys.executable, script, path, str(port), str(args.kick_every)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        # bounded: a server that hangs before "ready" must not hang the soak with it
        started = select.select([server.stdout], [], [], 30)[0]
        if not started or server.stdout.readline().strip() != "ready":
            print("soak: the server did not start", file=sys.stderr)
            return 2
        return soak(args, rng, seed, server, path, port, sock_dir)
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        for name in os.listdir(sock_dir):
            os.unlink(os.path.join(sock_dir, name))
        os.rmdir(sock_dir)


def soak(args: argparse.Namespace, rng: random.Random, seed: int, server: subprocess.Popen,
         path: str, port: int, sock_dir: str) -> int:
    clients = [SoakClient(f"c{i:03d}", "unix" if i % 2 == 0 else "tcp", path, port,
                          random.Random(rng.random()), sock_dir)
               for i in range(args.clients)]
    print(f"soak: {args.clients} clients (half Unix, half TCP), {args.seconds:g} s, "
          f"seed {seed}, server pid {server.pid}", flush=True)
    start = time.monotonic()
    until = start + args.seconds
    workers = [gevent.spawn(c.run, until, args.drop_every, args.restart_every)
               for c in clients]
    probe = IPC(id="soak-probe", silent=True)
    reporter = probe.connect_to("soak", path)
    reporter.wait_connected(10)
    warm = start + min(10.0, args.seconds / 4)
    rss_warm = None
    rss_start = rss_mib(server.pid)
    print(f"{'t/s':>6} {'sent':>10} {'received':>10} {'in flight':>10} {'drops':>6} "
          f"{'restarts':>8} {'server RSS/MiB':>15}", flush=True)
    while time.monotonic() < until:
        gevent.sleep(min(args.report_every, max(0.0, until - time.monotonic())))
        report = reporter.request("report", timeout=10)
        sent = sum(c.seq for c in clients)
        rss = rss_mib(server.pid)
        if rss_warm is None and time.monotonic() >= warm:
            rss_warm = rss
        print(f"{time.monotonic() - start:6.1f} {sent:10d} {report['received']:10d} "
              f"{sent - report['received']:10d} {sum(c.drops for c in clients):6d} "
              f"{sum(c.restarts for c in clients):8d} {rss:15.1f}", flush=True)
    gevent.joinall(workers, timeout=30)
    # let every queue drain, then compare what was sent with what arrived
    sent = sum(c.seq for c in clients)
    deadline = time.monotonic() + 30
    report = reporter.request("report", timeout=10)
    while report["received"] < sent and time.monotonic() < deadline:
        gevent.sleep(0.2)
        report = reporter.request("report", timeout=10)
    rss_end = rss_mib(server.pid)
    rss_warm = rss_warm if rss_warm is not None else rss_start
    lost = sum(max(0, c.seq - report["next"].get(c.name, 0)) for c in clients)
    unexpected = [e for c in clients for e in c.errors
                  if not e.startswith("ConnectError")]
    print(f"soak: sent {sent}, received {report['received']}, lost {lost}, "
          f"out of order or doubled {len(report['faults'])}, "
          f"drops {sum(c.drops for c in clients)}, restarts {sum(c.restarts for c in clients)}, "
          f"server kicks {report['kicks']}")
    print(f"soak: server RSS {rss_start:.1f} MiB at start, {rss_warm:.1f} after warm-up, "
          f"{rss_end:.1f} at the end ({rss_end - rss_warm:+.1f} MiB)")
    for fault in report["faults"] + report["errors"] + unexpected[:20]:
        print("  ", fault)
    for c in clients:
        c.ipc.disconnect("soak")
    probe.disconnect("soak")
    ok = (lost == 0 and report["received"] == sent and not report["faults"]
          and not report["errors"] and not unexpected
          and rss_end - rss_warm < args.rss_slack)
    print("soak: PASS" if ok else "soak: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
