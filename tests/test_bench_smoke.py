"""Benchmark smoke (issue 4): tiny W1-W4 through the real bench code, in real processes.

A regression guard that is not a timed test: each workload runs at a small size and the
test checks counts and order (every event arrived, in the order sent; every round trip got
its own answer; every broadcast reached every client), never speed. The same checks run
inside ``make bench``, so the benchmark cannot quietly measure a broken run.
"""
from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.common import MIB  # noqa: E402
from bench.run import figure, run_once  # noqa: E402

TINY = {
    "w1": {"n": 3000},
    "w2": {"n": 40, "warm": 5},
    "w3": {"n": 200, "c": 20},
    "w4": {"n": 12, "size": MIB},
}
CASES = [("gipc", w, t) for w in TINY for t in ("unix", "tcp")] + \
        [("floor", w, "unix") for w in TINY]


@pytest.mark.parametrize("impl,workload,transport", CASES)
def test_workload_counts_and_order(impl, workload, transport):
    params = TINY[workload]
    server, client = run_once(impl, workload, transport, params, timeout=30)
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


def test_idle_connections_all_held():
    params = {"c": 50}
    server, client = run_once("gipc", "idle", "unix", params, timeout=30)
    assert server["connections"] == 50
    assert server["hellos"] == 50          # each socket learnt its client's id
    assert client["connections"] == 50
