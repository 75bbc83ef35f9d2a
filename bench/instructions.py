"""Instructions per event, counted by callgrind: ``make bench-instructions``.

Wall-clock ratios on a shared 2-core VM swing by 2x from run to run (the floor's own W1
ranged 0.73M-1.62M events/s in one session); instruction counts do not. Each case runs
one side of a real two-process workload (``bench.run.run_once``: real sockets, the
same worker code as ``make bench``) under ``valgrind --tool=callgrind``, the other side
natively, twice: with ``n1`` and with ``n2`` events. ``(count(n2) - count(n1)) / (n2 -
n1)`` is that side's instructions per event, start-up and connecting cancelled out.

The rows answer "what does each side cost per event, against the floor": the floor as
``make bench`` runs it (counting inline), and the floor calling a counting handler per
event (the issue's "hand-written loop with a counting handler", ``params["handler"]``),
which is the same Python function geventipc's bench handler is.

    python -m bench.instructions              # every case (minutes: see the Makefile)
    python -m bench.instructions --only w3    # the cases whose label starts with W3
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from typing import Any

from .run import BenchError, run_once

#: (label, workload, measured role, [(name, impl, params)], n1, n2, extra params).
#: ``impl`` is run_once's (``server/client`` mixes sides); the measured side is ``role``.
CASES: list[tuple[str, str, str, list[tuple[str, str, dict[str, Any]]], int, int,
                  dict[str, Any]]] = [
    ("W1 client (emit)", "w1", "client",
     [("geventipc", "gipc", {}), ("floor", "floor", {})], 10_000, 30_000, {}),
    ("W1 server (receive, counting handler)", "w1", "server",
     [("geventipc", "gipc/floor", {}), ("floor", "floor", {}),
      ("floor + handler", "floor", {"handler": True})], 10_000, 30_000, {}),
    ("W3 client process (C=50 clients)", "w3", "client",
     [("geventipc", "gipc", {}), ("floor", "floor", {}),
      ("floor + handler", "floor", {"handler": True})], 400, 1_200, {"c": 50}),
]

VALGRIND = ["valgrind", "--tool=callgrind", "--dump-instr=no", "--collect-jumps=no"]


def _count(case: tuple[Any, ...], impl: str, params: dict[str, Any], n: int) -> int:
    """Instructions the measured side of one run executed, in all."""
    label, workload, role = case[0], case[1], case[2]
    directory = tempfile.mkdtemp(prefix="gbench-callgrind-")
    out = os.path.join(directory, "callgrind.out")
    try:
        run_once(impl, workload, "unix", dict(params, n=n), timeout=900,
                 wrap={role: VALGRIND + [f"--callgrind-out-file={out}"]})
        with open(out, encoding="ascii", errors="replace") as dump:
            for line in dump:
                found = re.match(r"(?:summary|totals):\s+(\d+)", line)
                if found:
                    return int(found.group(1))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    raise BenchError(f"{label}: no instruction total in callgrind's output")


def measure(case: tuple[Any, ...]) -> list[tuple[str, float]]:
    """(name, instructions per event) of each side of ``case``."""
    label, workload, role, sides, n1, n2, extra = case
    found = []
    for name, impl, params in sides:
        params = dict(extra, **params)
        low = _count(case, impl, params, n1)
        high = _count(case, impl, params, n2)
        per_event = (high - low) / ((n2 - n1) * params.get("c", 1))
        found.append((name, per_event))
        print(f"  {label}: {name} {per_event:,.0f}", file=sys.stderr, flush=True)
    return found


def main(argv: list[str] | None = None) -> int:
    """Run the cases and print a table (Markdown with ``--markdown``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the cases whose label starts with this (w1, w3)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    cases = [c for c in CASES if not args.only or c[0].lower().startswith(args.only.lower())]
    # one run at a time: a valgrind'd process is slow enough without sharing a core
    results = [measure(case) for case in cases]
    print()
    if args.markdown:
        print("| process | side | instructions per event | floor / side | "
              "floor + handler / side |")
        print("|---|---|---|---|---|")
    for case, found in zip(cases, results):
        floor = dict(found).get("floor")
        handler = dict(found).get("floor + handler")
        for name, value in found:
            ratio = f"{floor / value:.2f}" if floor else ""
            other = f"{handler / value:.2f}" if handler else ""
            if args.markdown:
                print(f"| {case[0]} | {name} | {value:,.0f} | {ratio} | {other} |")
            else:
                print(f"{case[0]:42s} {name:16s} {value:8,.0f}   floor/side {ratio:5s}"
                      f"   floor+handler/side {other}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
