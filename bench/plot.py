"""``bench/report.png``: every ratio of a bench report next to its target (matplotlib).

One horizontal bar per row that has a baseline: geventipc / the floor, / node-ipc 14, TLS /
plain TCP, plug-in suites. Bars of ``better="lower"`` figures (latency, memory, GC rate)
are drawn inverted (baseline / geventipc), so that for every bar right is better and 1.0
means "as good as the baseline"; the target is a black tick on the same scale. Green: the
target is met, red: missed, grey: no target.
"""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SHORT = {
    "msgpack wire: geventipc vs the floor": "vs floor",
    "W1 by payload size: geventipc vs the floor": "vs floor",
    "node-ipc JSON wire: geventipc vs node-ipc 14": "node wire vs node-ipc 14",
    "TLS: geventipc over TLS vs plain TCP": "TLS / TCP",
    "idle connections": "vs floor",
}


def _speed(row: dict[str, Any]) -> float | None:
    """The row's ratio with right = better."""
    ratio = row["ratio"]
    if ratio is None or ratio != ratio or ratio <= 0:
        return None
    return ratio if row["better"] == "higher" else 1.0 / ratio


def _target(row: dict[str, Any]) -> float | None:
    """The row's target on the same right-is-better scale, if it is on the ratio."""
    target = row["target"]
    if target is None or not row["b"]:
        return None
    if target["on"] == "ratio":
        bound = target["value"]
    else:   # a bound on geventipc's own value: as a ratio to this run's baseline
        if not row["b"]["value"]:
            return None
        bound = target["value"] / row["b"]["value"]
    if row["better"] == "higher":
        return bound
    return 1.0 / bound if bound else None


def plot(report: dict[str, Any], path: str) -> None:
    """Draw the report's ratios (see the module docstring) into ``path``."""
    rows = [r for r in report["rows"] if _speed(r) is not None]
    height = max(2.5, 0.32 * len(rows) + 1.3)
    fig, ax = plt.subplots(figsize=(9, height), dpi=80)
    labels, values, colours = [], [], []
    for row in rows:
        where = f" {row['transport']}" if row["transport"] else ""
        labels.append(f"{row['label']}{where} ({SHORT.get(row['section'], row['section'])})")
        values.append(_speed(row))
        colours.append({True: "tab:green", False: "tab:red", None: "tab:grey"}[row["met"]])
    ys = list(range(len(rows)))[::-1]
    bars = ax.barh(ys, values, color=colours, height=0.7)
    for y, bar, row in zip(ys, bars, rows):
        note = f"{row['ratio']:.2f}" + (" (lower is better: bar inverted)"
                                         if row["better"] == "lower" else "")
        ax.annotate(note, (bar.get_width(), y), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=7)
        mark = _target(row)
        if mark is not None:
            ax.plot([mark, mark], [y - 0.42, y + 0.42], color="black", linewidth=2)
    ax.axvline(1.0, color="grey", linewidth=0.8)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("geventipc relative to the baseline (1.0 = as good; right is better); "
                  "black tick: issue 16's target; green met, red missed, grey no target",
                  fontsize=8)
    machine = report.get("machine", {})
    ax.set_title(f"geventipc benchmark ratios, median of {report['runs']} "
                 f"({machine.get('cores', '?')} cores, load {machine.get('load_before', 0):.1f})",
                 fontsize=9)
    right = max([1.2] + values + [m for m in (_target(r) for r in rows) if m]) * 1.25
    ax.set_xlim(0, min(right, 8.0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
