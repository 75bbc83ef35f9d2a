"""Kill runs: kill -9 of the server, and of clients, while events and requests are in flight.

``make soak`` runs it after soak/soak.py; ``python soak/kill.py --runs 3 --seconds 20``.

Every run has two halves, each reported on its own line:

* **server -9**: ``--clients`` clients (half Unix, half TCP) in this process emit
  numbered events, one in ten a request, while the server process (soak/kill_server.py)
  is killed with SIGKILL every ``--kill-every`` seconds and started again at once. The
  clients reconnect and send again what their connection had not handed to the kernel.
* **client -9**: clients are processes (soak/kill_client.py); now and then one is killed
  with SIGKILL and a new one (another id) takes its place, while one server serves them.

The server logs every event and request it receives, straight to a file (a kill -9 loses
nothing it had). Per run: events sent, delivered, lost, duplicated (must be 0) and out of
order (must be 0). Lost is judged against the kernel-buffer allowance: a stream socket
cannot say which bytes the peer read, so what the kernel had taken when a peer died may be
lost (docs/limits.md). A server kill may lose only the events just before it (the gap
between what the dead server logged last and what its successor logged first; its bytes
are shown against the socket buffers); a killed client only what it emitted itself; a
client never killed loses nothing. Requests: every one answered or failed with an error
(``ConnectionLostError`` when the server died holding it), none left hanging.
"""
from __future__ import annotations

import argparse
import os
import random
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from typing import Any

import gevent

from geventipc import IPC
from geventipc.errors import IPCError

HERE = os.path.dirname(os.path.abspath(__file__))
PAD = 48   # bytes of padding per event: the gap's bytes are compared with the buffers


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def socket_buffers() -> int:
    """Bytes one connection's kernel buffers can hold: the sender's send buffer and the
    receiver's receive buffer, at their maximum (the kernel grows them on demand)."""
    try:
        wmem = int(open("/proc/sys/net/ipv4/tcp_wmem").read().split()[2])
        rmem = int(open("/proc/sys/net/ipv4/tcp_rmem").read().split()[2])
        return wmem + rmem
    except OSError:
        return 8 * 1024 * 1024


class Server:
    """The server process, started again after each kill, logging to one file."""

    def __init__(self, workdir: str) -> None:
        self.path = os.path.join(workdir, "soak.sock")
        self.port = free_port()
        self.log = os.path.join(workdir, "received.log")
        self.proc: subprocess.Popen | None = None
        self.kills = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "kill_server.py"), self.path, str(self.port),
             self.log], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if not select.select([self.proc.stdout], [], [], 30)[0] or \
                self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the kill-run server did not start")
        with open(self.log, "a") as f:
            f.write("--\n")   # an incarnation's boundary

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def received(self) -> list[list[tuple[str, int]]]:
        """What each incarnation logged, in order: [[(client, seq), ...], ...]."""
        runs: list[list[tuple[str, int]]] = [[]]
        with open(self.log) as f:
            for line in f:
                if line.startswith("--"):
                    if runs[-1]:
                        runs.append([])
                    continue
                name, seq = line.split()
                runs[-1].append((name, int(seq)))
        return runs


def judge(received: list[list[tuple[str, int]]], sent: dict[str, int],
          killed_clients: set[str]) -> dict[str, Any]:
    """Delivered, duplicated, out of order, and lost split into what the allowance
    covers (events at a server kill's boundary, or a killed client's own) and what it
    does not."""
    seen: dict[str, list[int]] = defaultdict(list)
    boundary_gaps: dict[str, set[int]] = defaultdict(set)
    last_by_run: list[dict[str, int]] = []
    for run in received:
        last: dict[str, int] = {}
        for name, seq in run:
            seen[name].append(seq)
            last[name] = seq
        last_by_run.append(last)
    # events after what a killed incarnation logged last, before what the next one
    # logged first: the kernel buffers at the kill
    for k in range(len(received) - 1):
        firsts: dict[str, int] = {}
        for name, seq in received[k + 1]:
            firsts.setdefault(name, seq)
        for name, last in last_by_run[k].items():
            boundary_gaps[name].update(range(last + 1, firsts.get(name, sent.get(name, 0))))
    delivered = dup = disorder = lost = allowed = total = 0
    unexplained: list[str] = []
    for name, count in sent.items():
        got = seen.get(name, [])
        unique = set(got)
        if name in killed_clients and unique:
            # it emitted more after its last "sent" line: the server's log says so
            count = max(count, max(unique) + 1)
        delivered += len(unique)
        dup += len(got) - len(unique)
        disorder += sum(1 for a, b in zip(got, got[1:]) if b <= a)
        missing = set(range(count)) - unique
        lost += len(missing)
        if name in killed_clients:
            # a killed client's last events died with it or in its kernel buffer; what
            # reached the server must still be a prefix, without holes
            top = max(unique, default=-1)
            holes = {s for s in missing if s < top}
            allowed += len(missing) - len(holes)
            missing = holes
        else:
            covered = missing & boundary_gaps.get(name, set())
            allowed += len(covered)
            missing -= covered
        if missing:
            unexplained.append(f"{name}: {len(missing)} lost outside the allowance, "
                               f"e.g. {sorted(missing)[:5]}")
        total += count
    return {"sent": total, "delivered": delivered, "lost": lost,
            "allowed": allowed, "duplicated": dup, "out_of_order": disorder,
            "unexplained": unexplained}


class InProcessClient:
    """One client in this process emitting numbered events and requests."""

    def __init__(self, name: str, transport: str, server: Server, rng: random.Random) -> None:
        self.name = name
        self.rng = rng
        self.seq = 0
        self.requests = {"sent": 0, "answered": 0, "failed": 0, "wrong": 0}
        self.pending: list[Any] = []
        self.ipc = IPC(id=name, silent=True, retry=30, max_queued_events=1_000_000)
        self.client = (self.ipc.connect_to("soak", server.path) if transport == "unix"
                       else self.ipc.connect_to_net("soak", "127.0.0.1", server.port))

    def run(self, until: float) -> None:
        while time.monotonic() < until:
            data = [self.name, self.seq, "x" * PAD]
            if self.rng.random() < 0.1:
                result = self.client.request_async("req", data, timeout=30)
                self.pending.append((self.seq, result))
                self.requests["sent"] += 1
            else:
                self.client.emit("n", data)
            self.seq += 1
            gevent.sleep(self.rng.uniform(0.001, 0.006))

    def settle(self) -> None:
        for seq, result in self.pending:
            try:
                value = result.get(timeout=40)
            except IPCError:
                self.requests["failed"] += 1   # ConnectionLostError: the server died with it
                continue
            if value == seq:
                self.requests["answered"] += 1
            else:
                self.requests["wrong"] += 1

    def drained(self) -> bool:
        conn = self.client.conn
        return not self.client.queued and conn is not None and not conn.pending_bytes


def server_kill_run(args: argparse.Namespace, rng: random.Random, workdir: str) -> dict:
    server = Server(workdir)
    server.start()
    clients = [InProcessClient(f"s{i:02d}", "unix" if i % 2 == 0 else "tcp", server,
                               random.Random(rng.random())) for i in range(args.clients)]
    try:
        until = time.monotonic() + args.seconds
        workers = [gevent.spawn(c.run, until) for c in clients]
        while time.monotonic() < until - args.kill_every / 2:
            gevent.sleep(rng.uniform(0.5, 1.5) * args.kill_every)
            if time.monotonic() >= until:
                break
            server.kill()          # events and requests in flight
            gevent.sleep(rng.uniform(0.0, 0.3))
            server.start()
        gevent.joinall(workers, timeout=30)
        deadline = time.monotonic() + 30
        while not all(c.drained() for c in clients) and time.monotonic() < deadline:
            gevent.sleep(0.05)
        gevent.sleep(1.0)          # the server reads what the kernel holds
        for c in clients:
            c.settle()
    finally:
        for c in clients:
            c.ipc.disconnect("soak")
        server.stop()
    verdict = judge(server.received(), {c.name: c.seq for c in clients}, set())
    requests: dict[str, int] = defaultdict(int)
    for c in clients:
        for key, value in c.requests.items():
            requests[key] += value
    verdict.update(kind="server -9", kills=server.kills, requests=dict(requests))
    return verdict


def client_kill_run(args: argparse.Namespace, rng: random.Random, workdir: str) -> dict:
    server = Server(workdir)
    server.start()
    procs: dict[str, subprocess.Popen] = {}
    sent: dict[str, int] = {}
    killed: set[str] = set()
    lines: dict[str, bytes] = defaultdict(bytes)
    count = 0

    def spawn(seconds: float) -> None:
        nonlocal count
        name = f"p{count:03d}"
        transport = "unix" if count % 2 == 0 else "tcp"
        count += 1
        procs[name] = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "kill_client.py"), name, transport,
             server.path, str(server.port), str(seconds)], stdout=subprocess.PIPE)
        os.set_blocking(procs[name].stdout.fileno(), False)
        sent[name] = 0

    def read(name: str) -> None:
        try:
            chunk = os.read(procs[name].stdout.fileno(), 65536)
        except BlockingIOError:
            return
        lines[name] += chunk
        for line in lines[name].split(b"\n"):
            word = line.split()
            if len(word) == 2 and word[0] in (b"sent", b"done"):
                sent[name] = max(sent[name], int(word[1]))

    try:
        for _ in range(args.clients // 2 or 1):
            spawn(args.seconds)
        until = time.monotonic() + args.seconds
        while time.monotonic() < until - 1:
            gevent.sleep(rng.uniform(0.5, 1.5) * args.kill_every)
            victims = [n for n, p in procs.items() if p.poll() is None and n not in killed]
            for name in procs:
                read(name)
            if victims:
                name = rng.choice(victims)
                procs[name].send_signal(signal.SIGKILL)
                procs[name].wait(10)
                read(name)
                killed.add(name)
                spawn(max(1.0, until - time.monotonic()))
        deadline = time.monotonic() + 60
        while any(p.poll() is None for p in procs.values()) and time.monotonic() < deadline:
            gevent.sleep(0.1)
            for name in procs:
                read(name)
        for name in procs:
            read(name)
        gevent.sleep(0.5)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(5)
        server.stop()
    verdict = judge(server.received(), sent, killed)
    verdict.update(kind="client -9", kills=len(killed), requests={})
    return verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="geventipc kill -9 runs")
    parser.add_argument("--runs", type=int, default=int(os.environ.get("SOAK_KILL_RUNS", 2)))
    parser.add_argument("--seconds", type=float,
                        default=float(os.environ.get("SOAK_KILL_SECONDS", 15)))
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--kill-every", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2 ** 32)
    rng = random.Random(seed)
    allowance = socket_buffers()
    print(f"kill runs: {args.runs} x (server -9, client -9), {args.seconds:g} s each, "
          f"{args.clients} clients, a kill every ~{args.kill_every:g} s, seed {seed}; "
          f"kernel-buffer allowance per connection {allowance // 1024} KiB", flush=True)
    print(f"{'run':>3} {'kind':<10} {'kills':>5} {'sent':>8} {'delivered':>9} {'lost':>6} "
          f"{'(allowed)':>9} {'dup':>4} {'order':>5}  requests", flush=True)
    ok = True
    for run in range(1, args.runs + 1):
        for half in (server_kill_run, client_kill_run):
            workdir = tempfile.mkdtemp(prefix="gipc-kill-", dir="/tmp")
            os.chmod(workdir, 0o700)
            try:
                v = half(args, rng, workdir)
            finally:
                for name in os.listdir(workdir):
                    os.unlink(os.path.join(workdir, name))
                os.rmdir(workdir)
            req = v["requests"]
            req_text = (f"{req['sent']} sent, {req['answered']} answered, {req['failed']} "
                        f"failed with an error, {req['wrong']} wrong" if req else "-")
            print(f"{run:>3} {v['kind']:<10} {v['kills']:>5} {v['sent']:>8} "
                  f"{v['delivered']:>9} {v['lost']:>6} {v['allowed']:>9} "
                  f"{v['duplicated']:>4} {v['out_of_order']:>5}  {req_text}", flush=True)
            gap_bytes = (v["allowed"] * (PAD + 30)) / max(1, v["kills"])
            if v["kind"] == "server -9" and gap_bytes > allowance * args.clients:
                v["unexplained"].append(f"~{gap_bytes:.0f} bytes lost per kill, over the "
                                        f"buffers of {args.clients} connections")
            for line in v["unexplained"]:
                print("    ", line)
            if v["duplicated"] or v["out_of_order"] or v["unexplained"] or \
                    req.get("wrong") or req and req["answered"] + req["failed"] != req["sent"]:
                ok = False
    print("kill runs: PASS" if ok else "kill runs: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
