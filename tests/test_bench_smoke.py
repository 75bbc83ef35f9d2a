"""Benchmark smoke (issues 4 and 16): tiny versions of every bench row, in real processes.

A regression guard that is not a timed test: each workload runs at a small size and the
test checks counts and order (every event arrived, in the order sent; every round trip got
its own answer; every broadcast reached every client), never speed. The same checks run
inside ``make bench``, so the benchmark cannot quietly measure a broken run. The node-ipc
14 rows skip where ``make node-deps`` could not install it (Node.js 22 from npm).
"""
from __future__ import annotations

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import bench.run as bench_run  # noqa: E402
from bench.common import MIB  # noqa: E402
from bench.run import (  # noqa: E402
    _tls_files, figure, have_node14, main, make_row, run_once, section_plugins,
)

TINY = {
    "w1": {"n": 3000},
    "w2": {"n": 40, "warm": 5},
    "w3": {"n": 200, "c": 20},
    "w4": {"n": 12, "size": MIB},
}
NODE14 = pytest.mark.skipif(not have_node14(),
                            reason="node-ipc 14 / Node.js 22 not installed: make node-deps")
CASES = [("gipc", w, t, {}) for w in TINY for t in ("unix", "tcp")] + \
        [("floor", w, "unix", {}) for w in TINY] + \
        [("gipc", w, "unix", {"wire": "node-ipc"}) for w in TINY] + \
        [pytest.param("node14", w, "unix", {}, marks=NODE14, id=f"node14-{w}-unix")
         for w in TINY] + \
        [pytest.param("node14", "w1", "tcp", {}, marks=NODE14, id="node14-w1-tcp")] + \
        [(impl, "w1", "unix", {"n": 40, "psize": 64 * 1024}) for impl in ("gipc", "floor")] + \
        [("floor", w, "unix", {"handler": True}) for w in ("w1", "w3")] + \
        [("floor/gipc", "w1", "unix", {}), ("gipc/floor", "w1", "unix", {})]


def check(workload, params, server, client):
    """What every bench run checks: counts and order, never speed."""
    n = params["n"]
    if workload in ("w1", "w4"):
        assert server["received"] == n
        assert server["bad"] == 0          # out of order (W1) or wrong size (W4)
        assert client["sent"] == n
    elif workload == "w2":
        assert len(client["times"]) == n
        assert client["bad"] == 0          # every reply carried its own request's counter
    else:
        assert client["complete"] == params["c"]
        assert client["bad"] == 0          # every client got 0..n-1 in order
    # the runner's own checks agree, and give a figure
    assert figure(workload, params, server, client)["value"] > 0


@pytest.mark.parametrize("impl,workload,transport,extra", CASES)
def test_workload_counts_and_order(impl, workload, transport, extra):
    params = dict(TINY[workload], **extra)
    server, client = run_once(impl, workload, transport, params, timeout=30)
    check(workload, params, server, client)
    if workload == "w3" and impl != "node14":
        assert client["gc_collections"] >= 0   # counted in the client process


@pytest.mark.parametrize("impl", ["gipc", "floor"])
@pytest.mark.parametrize("workload", ["w1", "w4"])
def test_tls_rows(impl, workload, tmp_path):
    params = dict(TINY[workload], tls=_tls_files(str(tmp_path)))
    server, client = run_once(impl, workload, "tls", params, timeout=30)
    check(workload, params, server, client)
    assert server["cpu"] > 0 and client["cpu"] > 0   # each side reports its CPU seconds


def test_idle_connections_all_held():
    params = {"c": 50}
    server, client = run_once("gipc", "idle", "unix", params, timeout=30)
    assert server["connections"] == 50
    assert server["hellos"] == 50          # each socket learnt its client's id
    assert client["connections"] == 50


def test_the_report_prints_each_target_next_to_its_figure(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["--sections", "msgpack", "--only", "w1", "--transports", "unix",
                 "--runs", "1", "--scale", "0.01", "--out", str(out),
                 "--plot", str(tmp_path / "r.png")]) == 0
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert row["a"]["name"] == "geventipc" and row["b"]["name"] == "floor"
    assert row["target"] == {"op": ">=", "value": 0.85, "on": "ratio"}
    assert row["met"] in (True, False)
    line = next(line for line in capsys.readouterr().out.splitlines()
                if line.startswith("W1 pipelined"))
    assert ">= 0.85" in line and "(floor)" in line


def test_plugin_modules_that_do_not_exist_are_skipped(monkeypatch):
    monkeypatch.setattr(bench_run, "PLUGINS", ("bench.no_such_suite",))
    opts = type("Opts", (), {"runs": 1, "quick": True, "scale": 0.01})
    assert section_plugins(opts, lambda *a: None) == []
    row = make_row("s", "x", "unix", "events/s", "lower", {"name": "a", "value": 2.0},
                   {"name": "b", "value": 4.0}, ("<=", 1.15))
    assert row["ratio"] == 0.5 and row["met"] is True


def test_a_side_runs_under_the_command_it_is_given(monkeypatch, tmp_path):
    """bench.instructions runs one side under valgrind (run_once's ``wrap``; from a
    shell, BENCH_WRAP_<ROLE>); the plumbing, with a wrapper that leaves a mark and runs
    the side unchanged."""
    wrapper = tmp_path / "wrap.sh"
    wrapper.write_text('#!/bin/sh\ntouch "$MARK"\nexec "$@"\n')
    wrapper.chmod(0o755)
    params = dict(TINY["w1"])
    by_argument, by_environment = tmp_path / "argument", tmp_path / "environment"
    monkeypatch.setenv("MARK", str(by_argument))
    server, client = run_once("floor", "w1", "unix", params, timeout=30,
                              wrap={"client": [str(wrapper)]})
    check("w1", params, server, client)
    assert by_argument.exists()
    monkeypatch.setenv("MARK", str(by_environment))
    monkeypatch.setenv("BENCH_WRAP_CLIENT", str(wrapper))
    server, client = run_once("floor", "w1", "unix", params, timeout=30)
    check("w1", params, server, client)
    assert by_environment.exists()
