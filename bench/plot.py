"""``bench/report.png``: geventipc against the floor, workload by workload (matplotlib)."""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot(report: dict[str, Any], path: str) -> None:
    """Bars of geventipc as a fraction of the floor (1.0 = the floor), Unix and TCP."""
    rows = [r for r in report["rows"] if r["workload"] != "idle"]
    labels = []
    for row in rows:
        if row["label"] not in labels:
            labels.append(row["label"])
    transports = sorted({r["transport"] for r in rows}, key=lambda t: t != "unix")
    by_key = {(r["label"], r["transport"]): r for r in rows}
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=80)
    width = 0.8 / max(1, len(transports))
    for k, transport in enumerate(transports):
        xs, ys, notes = [], [], []
        for i, label in enumerate(labels):
            row = by_key.get((label, transport))
            if row is None:
                continue
            xs.append(i + (k - (len(transports) - 1) / 2) * width)
            ys.append(row["ratio"])
            notes.append(_short(row["gipc"]["value"], row["unit"]))
        bars = ax.bar(xs, ys, width, label=f"geventipc over {transport}")
        for bar, note in zip(bars, notes):
            ax.annotate(note, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
    # the target, as a fraction of the floor measured in this run (Unix)
    targets = [r for r in rows if r["target"] and r["transport"] == "unix"]
    marks = []
    for row in targets:
        i = labels.index(row["label"])
        floor = row["floor"]["value"]
        target = row["target"]
        ratio = target / floor if row["better"] == "higher" else floor / target
        marks.append(ratio)
        ax.hlines(ratio, i - 0.45, i + 0.45, colors="black", linestyles="dotted")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels([_tick(lab) for lab in labels], fontsize=8)
    ax.set_ylabel("fraction of the hand-written floor (1.0)")
    machine = report.get("machine", {})
    ax.set_title(f"geventipc vs gevent+msgpack floor, median of {report['runs']} "
                 f"({machine.get('cores', '?')} cores; dotted: issue-4 target vs this floor)",
                 fontsize=9)
    idle = [r for r in report["rows"] if r["workload"] == "idle"]
    if idle:
        row = idle[0]
        ax.text(0.01, 0.97, f"idle server connection: {row['gipc']['value'] / 1024:.1f} KiB "
                f"(floor {row['floor']['value'] / 1024:.1f} KiB; target < 40 KiB)",
                transform=ax.transAxes, fontsize=8, va="top")
    top = max([1.2] + [r["ratio"] for r in rows] + marks) * 1.2
    ax.set_ylim(0, top)
    if rows:
        ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _tick(label: str) -> str:
    name, _, rest = label.partition(" ")
    if name == "W3":
        return "W3 broadcast\n" + rest.split()[1]
    return {"W1": "W1 pipelined\nevents/s", "W2": "W2 round trip\nmedian", "W4": "W4 1 MiB\nblobs MB/s"
            }.get(name, label)


def _short(value: float, unit: str) -> str:
    if unit == "events/s":
        return f"{value / 1e6:.2f}M"
    if unit == "us":
        return f"{value:.0f}us"
    return f"{value:,.0f}"
