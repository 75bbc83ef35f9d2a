"""``make bench``: W1-W4 (issue 4) for geventipc and the hand-written floor, in one run.

Each run of a workload starts a server process and a client process (``bench.worker``),
pinned with ``os.sched_setaffinity``: different cores for W1, W3, W4, the same core for W2.
geventipc and the floor alternate run by run, so both see the same machine noise; the
figure is the median of ``--runs`` runs. Prints a table (geventipc, floor, ratio, target),
writes ``bench/results/latest.json`` and, with matplotlib, ``bench/report.png``.

    python -m bench.run            # the full set, median of 3
    python -m bench.run --quick    # under a minute: one run of each, Unix and TCP
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from .common import FULL, MIB

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
IMPLS = ("gipc", "floor")

#: (label, workload, extra params, unit, better, target)
CASES: list[tuple[str, str, dict[str, Any], str, str, float | None]] = [
    ("W1 pipelined events/s", "w1", {}, "events/s", "higher", 1_200_000),
    ("W2 round trip median us", "w2", {}, "us", "lower", 35),
    ("W3 broadcast C=100 events/s", "w3", {"c": 100}, "events/s", "higher", None),
    ("W3 broadcast C=1000 events/s", "w3", {"c": 1000}, "events/s", "higher", 1_500_000),
    ("W4 1 MiB blobs MB/s", "w4", {}, "MB/s", "higher", 2_000),
]
IDLE_TARGET = 40 * 1024   # bytes per idle server connection
#: node-ipc 14.0.0's own figures from issue 4 (Unix socket, its JSON wire): the target for
#: geventipc on the node-ipc wire
NODE_IPC_14 = {"w1": 555_000, "w2": 66, "w3": 473_000, "w4": 57}


class BenchError(RuntimeError):
    """A workload process failed or did not finish in time."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _spawn(impl: str, role: str, workload: str, transport: str, addr: str, cpu: int,
           params: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.worker", impl, role, workload, transport, addr,
         str(cpu), json.dumps(params)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"))


def _line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    """The rest of the next stdout line starting with ``prefix``, within ``timeout`` s.

    Reads the raw pipe with a buffer of its own: a buffered ``readline`` could hold a
    second line that ``select`` no longer sees, and the wait would time out wrongly.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf: bytes = getattr(proc, "_bench_buf", b"")
    deadline = time.monotonic() + timeout
    while True:
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise BenchError(f"no {prefix} line within {timeout} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                err = proc.stderr.read() if proc.stderr else ""
                raise BenchError(f"process ended without {prefix}; stderr:\n{err[-3000:]}")
            buf += chunk
        raw, _, buf = buf.partition(b"\n")
        proc._bench_buf = buf  # type: ignore[attr-defined]
        line = raw.decode()
        if line.startswith(prefix):
            return line[len(prefix):].strip()


def _stop(proc: subprocess.Popen[str], grace: float = 0.0) -> None:
    try:
        proc.wait(grace)   # a process that has reported ends by itself (and saves profiles)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def run_once(impl: str, workload: str, transport: str, params: dict[str, Any],
             timeout: float = 180.0) -> tuple[dict[str, Any], dict[str, Any]]:
    """One run: the server's and the client's result dicts."""
    tmp = tempfile.mkdtemp(prefix="gbench-", dir="/tmp")
    addr = os.path.join(tmp, "s.sock") if transport == "unix" else f"127.0.0.1:{_free_port()}"
    same_core = workload == "w2"
    server = client = None
    try:
        server = _spawn(impl, "server", workload, transport, addr, 0, params)
        _line(server, "READY", 30)
        client = _spawn(impl, "client", workload, transport, addr, 0 if same_core else 1,
                        params)
        client_result = json.loads(_line(client, "RESULT", timeout))
        server_result = json.loads(_line(server, "RESULT", timeout))
        for proc in (client, server):
            _stop(proc, 10)
        return server_result, client_result
    finally:
        for proc in (client, server):
            if proc is not None:
                _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def figure(workload: str, params: dict[str, Any], server: dict[str, Any],
           client: dict[str, Any]) -> dict[str, float]:
    """The workload's figure from one run, after checking counts and order."""
    n = params.get("n", 0)
    if workload in ("w1", "w4"):
        if server["received"] != n or server["bad"]:
            raise BenchError(f"{workload}: received {server['received']} of {n}, "
                             f"{server['bad']} bad")
        elapsed = server["end"] - client["start"]
        if workload == "w1":
            return {"value": n / elapsed}
        return {"value": n * params["size"] / 1e6 / elapsed}
    if workload == "w2":
        times = client["times"]
        if client["bad"] or len(times) != n:
            raise BenchError(f"w2: {client['bad']} wrong replies")
        times = sorted(times)
        return {"value": statistics.median(times) * 1e6,
                "p99": times[int(len(times) * 0.99) - 1] * 1e6}
    if workload == "w3":
        clients = params["c"]
        if client["complete"] != clients or client["bad"]:
            raise BenchError(f"w3: {client['complete']} of {clients} clients complete, "
                             f"{client['bad']} out of order")
        return {"value": clients * n / (client["end"] - server["start"])}
    if workload == "idle":
        clients = params["c"]
        if server["connections"] != clients or server["hellos"] != clients:
            raise BenchError(f"idle: {server['connections']} connections, "
                             f"{server['hellos']} hellos of {clients}")
        return {"value": (server["held"] - server["base"]) / clients}
    raise ValueError(workload)


def params_for(workload: str, extra: dict[str, Any], scale: float) -> dict[str, Any]:
    """The issue's sizes for ``workload`` (``scale`` < 1 shrinks counts, for quick runs)."""
    params = dict(FULL[workload], **extra)
    for key in ("n", "warm"):
        if key in params:
            params[key] = max(1, int(params[key] * scale))
    return params


def measure(workload: str, transport: str, params: dict[str, Any], runs: int,
            log: Any = print, impls: tuple[str, ...] = IMPLS) -> dict[str, dict[str, Any]]:
    """Median figures of ``runs`` alternating runs of geventipc and the floor."""
    figures: dict[str, list[dict[str, float]]] = {impl: [] for impl in impls}
    for _ in range(runs):
        for impl in impls:
            server, client = run_once(impl, workload, transport, params)
            figures[impl].append(figure(workload, params, server, client))
            log(f"  {impl}: {figures[impl][-1]['value']:,.1f}", file=sys.stderr, flush=True)
    out: dict[str, dict[str, Any]] = {}
    for impl, found in figures.items():
        values = [f["value"] for f in found]
        entry: dict[str, Any] = {"value": statistics.median(values), "runs": values}
        if "p99" in found[0]:
            entry["p99"] = statistics.median(f["p99"] for f in found)
        out[impl] = entry
    return out


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import gevent  # noqa: PLC0415
    import msgpack  # noqa: PLC0415
    return {
        "cpu": model, "cores": os.cpu_count(), "kernel": platform.release(),
        "python": platform.python_version(), "gevent": gevent.__version__,
        "msgpack": ".".join(map(str, msgpack.version)),
        "load_before": os.getloadavg()[0],
    }


def _fmt(value: float, unit: str) -> str:
    if unit == "events/s":
        return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.0f}k"
    if unit == "us":
        return f"{value:.1f}"
    if unit == "bytes":
        return f"{value / 1024:.1f} KiB"
    return f"{value:,.0f}"


def speed_ratio(better: str, gipc: float, floor: float) -> float:
    """geventipc's performance as a fraction of the floor's (1.0 = as fast as the floor)."""
    return gipc / floor if better == "higher" else floor / gipc


def table(report: dict[str, Any]) -> str:
    """The printed table of a report."""
    rows = [("workload", "transport", "geventipc", "floor", "vs floor", "target", "met")]
    for row in report["rows"]:
        gipc, floor = row["gipc"]["value"], row["floor"]["value"]
        target = row["target"]
        if target is None:
            met = ""
        elif row["better"] == "higher":
            met = "yes" if gipc >= target else "NO"
        else:
            met = "yes" if gipc <= target else "NO"
        label = row["label"]
        if "p99" in row["gipc"]:
            label += f" (p99 {row['gipc']['p99']:.0f} / {row['floor']['p99']:.0f})"
        rows.append((label, row["transport"], _fmt(gipc, row["unit"]), _fmt(floor, row["unit"]),
                     f"{row['ratio']:.2f}", "" if target is None else _fmt(target, row["unit"]),
                     met))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    tcp = report.get("tcp_vs_unix") or {}
    if tcp:
        lines.append("")
        lines.append("geventipc over TCP as a fraction of Unix (target: within 25%, >= 0.75):")
        for label, ratio in tcp.items():
            lines.append(f"  {label}: {ratio:.2f}")
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    """The table of a report in Markdown (for docs/benchmarks.md)."""
    lines = ["| workload | transport | geventipc | floor | geventipc / floor | target | met |",
             "|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        gipc, floor, target = row["gipc"]["value"], row["floor"]["value"], row["target"]
        met = ""
        if target is not None:
            ok = gipc >= target if row["better"] == "higher" else gipc <= target
            met = "yes" if ok else "**no**"
        label = row["label"]
        if "p99" in row["gipc"]:
            label += f" (p99 {row['gipc']['p99']:.0f} / {row['floor']['p99']:.0f})"
        lines.append(f"| {label} | {row['transport']} | {_fmt(gipc, row['unit'])} | "
                     f"{_fmt(floor, row['unit'])} | {row['ratio']:.2f} | "
                     f"{'' if target is None else _fmt(target, row['unit'])} | {met} |")
    return "\n".join(lines)


def node_wire(runs: int, scale: float, only: set[str] | None = None) -> list[str]:
    """geventipc on the node-ipc JSON wire (Unix), against node-ipc 14's own figures."""
    lines = ["geventipc on the node-ipc JSON wire (Unix) vs node-ipc 14.0.0 (issue 4):",
             "  workload                       geventipc    node-ipc 14  met"]
    for label, workload, extra, unit, better, _target in CASES:
        if extra.get("c") == 100 or only is not None and workload not in only:
            continue
        params = params_for(workload, dict(extra, wire="node-ipc"), scale)
        print(f"{label} on the node-ipc wire ...", file=sys.stderr, flush=True)
        value = measure(workload, "unix", params, runs, impls=("gipc",))["gipc"]["value"]
        theirs = NODE_IPC_14[workload]
        met = value >= theirs if better == "higher" else value <= theirs
        lines.append(f"  {label:<30} {_fmt(value, unit):<12} {_fmt(theirs, unit):<12} "
                     f"{'yes' if met else 'NO'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; print the table; write results and the plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a one-minute subset")
    parser.add_argument("--runs", type=int, help="runs per figure (median); default 3, quick 1")
    parser.add_argument("--only", help="comma-separated workloads: w1,w2,w3,w4,idle")
    parser.add_argument("--transports", default="unix,tcp")
    parser.add_argument("--out", default=os.path.join(RESULTS, "latest.json"))
    parser.add_argument("--plot", default=os.path.join(ROOT, "bench", "report.png"))
    parser.add_argument("--node-wire", action="store_true",
                        help="only geventipc on the node-ipc JSON wire vs node-ipc 14")
    parser.add_argument("--markdown", action="store_true",
                        help="also print the table in Markdown")
    parser.add_argument("--from-json", metavar="PATH",
                        help="print (and plot) a saved report instead of running")
    args = parser.parse_args(argv)
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as saved:
            report = json.load(saved)
        print(table(report))
        if args.markdown:
            print("\n" + markdown(report))
        return 0
    runs = args.runs or (1 if args.quick else 3)
    scale = 1.0   # quick runs keep the sizes (smaller ones only add noise)
    if args.node_wire:
        only = set(args.only.split(",")) if args.only else None
        print("\n".join(node_wire(runs, scale, only)))
        return 0
    only = set(args.only.split(",")) if args.only else None
    transports = args.transports.split(",")
    report: dict[str, Any] = {"machine": machine(), "runs": runs, "quick": args.quick,
                              "rows": [], "started": time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                                   time.gmtime())}
    for label, workload, extra, unit, better, target in CASES:
        if only is not None and workload not in only:
            continue
        params = params_for(workload, extra, scale)
        for transport in transports:
            print(f"{label} over {transport} ...", file=sys.stderr, flush=True)
            found = measure(workload, transport, params, runs)
            report["rows"].append({
                "label": label, "workload": workload, "transport": transport,
                "params": params, "unit": unit, "better": better, "target": target,
                "gipc": found["gipc"], "floor": found["floor"],
                "ratio": speed_ratio(better, found["gipc"]["value"], found["floor"]["value"]),
            })
    if only is None or "idle" in only:
        params = params_for("idle", {"c": 2_000} if args.quick else {}, 1.0)
        print(f"idle connections ({params['c']}) ...", file=sys.stderr, flush=True)
        found = measure("idle", "unix", params, 1)
        report["rows"].append({
            "label": f"idle memory per connection (C={params['c']})", "workload": "idle",
            "transport": "unix", "params": params, "unit": "bytes", "better": "lower",
            "target": IDLE_TARGET, "gipc": found["gipc"], "floor": found["floor"],
            "ratio": speed_ratio("lower", found["gipc"]["value"], found["floor"]["value"]),
        })
    by_key = {(r["label"], r["transport"]): r for r in report["rows"]}
    report["tcp_vs_unix"] = {
        label: speed_ratio(r["better"], r["gipc"]["value"],
                           by_key[(label, "unix")]["gipc"]["value"])
        for (label, transport), r in by_key.items()
        if transport == "tcp" and (label, "unix") in by_key
    }
    report["load_after"] = os.getloadavg()[0]
    text = table(report)
    print(text)
    if args.markdown:
        print("\n" + markdown(report))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(report, out, indent=1)
    print(f"\nresults: {os.path.relpath(args.out, ROOT)}")
    try:
        from .plot import plot  # noqa: PLC0415
    except ImportError:
        print("(matplotlib not installed: no plot; make bench installs it)")
    else:
        plot(report, args.plot)
        print(f"plot: {os.path.relpath(args.plot, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
