"""Draw bench/results/DATE.png from DATE.json: log-scale bars per scenario, one per tool.

    bench/work/tools-venv/bin/python bench/chart.py RESULTS.json OUT.png

Runs in the bench's own venv (matplotlib is not a dependency of Troop).
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SERIES = [
    ("troop", "Troop CLI", "#2a9d8f"),
    ("troop_api", "Troop API", "#8ecae6"),
    ("salt", "Salt CLI", "#e9c46a"),
    ("ansible", "Ansible (ssh)", "#e76f51"),
]


def main(src: str, dst: str) -> int:
    data = json.load(open(src))
    scenarios = list(data["scenarios"])
    fig, ax = plt.subplots(figsize=(max(6, 1.7 * len(scenarios) + 2), 5.2))
    width = 0.8 / len(SERIES)
    for k, (key, label, colour) in enumerate(SERIES):
        xs, ys, lo, hi = [], [], [], []
        for i, s in enumerate(scenarios):
            r = data["scenarios"][s].get(key)
            if not r or r.get("median") is None:
                continue
            xs.append(i + (k - (len(SERIES) - 1) / 2) * width)
            ys.append(r["median"])
            lo.append(r["median"] - r["min"])
            hi.append(r["max"] - r["median"])
        if not xs:
            continue
        bars = ax.bar(xs, ys, width, label=label, color=colour, yerr=[lo, hi], capsize=2, ecolor="#444")
        for bar, y, up in zip(bars, ys, hi, strict=True):
            text = f"{y:.2f}" if y < 10 else f"{y:.0f}"
            ax.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, y + up),
                ha="center",
                va="bottom",
                fontsize=6.5,
                xytext=(0, 2),
                textcoords="offset points",
                rotation=90,
            )
    ax.set_yscale("log")
    ax.set_xticks(range(len(scenarios)))
    labels = []
    for s in scenarios:
        t = data["scenarios"][s].get("troop") or {}
        labels.append(f"{s}\n({t.get('total', '?')} hosts)")
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("wall seconds, median (log scale; whiskers: min-max)")
    m = data.get("machine", {})
    ax.set_title(
        f"Troop vs Salt vs Ansible, {data['date'][:10]}: {m.get('cpus', '?')} cores, "
        f"{'namespaces' if 'namespace' in m.get('network', '') else 'loopback'}",
        fontsize=10,
    )
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_ylim(bottom=min(0.005, ax.get_ylim()[0]))
    fig.tight_layout()
    fig.savefig(dst, dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
