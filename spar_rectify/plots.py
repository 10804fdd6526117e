"""Pictures that say more than tables: learning curves, returns, support scores.

Defines `plot_learning_curves`, `plot_returns`, `plot_support_scores`. Each writes one PNG and
returns its path. Needs matplotlib (the `video` or `bench` extra).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("plots need matplotlib: pip install 'spar_rectify[video]'") from err
    return plt


def plot_learning_curves(run_dir: str | Path, out: str | Path, keys: Sequence[str] | None = None) -> Path:
    """One panel per logged metric of `<run_dir>/metrics.csv` against the gradient step."""
    plt = _plt()
    with (Path(run_dir) / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    keys = list(keys or [k for k in (rows[0].keys() if rows else []) if k != "step"])
    keys = [k for k in keys if any(r.get(k) for r in rows)]
    cols = min(3, max(len(keys), 1))
    nrows = int(np.ceil(len(keys) / cols)) or 1
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 2.6 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        pts = [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]
        ax.plot(*zip(*pts), marker="o" if len(pts) < 20 else None, ms=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("gradient step", fontsize=8)
        ax.set_ylabel(key, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.suptitle(f"training curves of {Path(run_dir).name} (metrics.csv, averaged per log row)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)


def plot_returns(raw: Sequence[float], rectified: Sequence[float], out: str | Path, title: str = "") -> Path:
    """Per-episode returns, raw against rectified, with their means."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    x = np.arange(len(raw))
    ax.bar(x - 0.2, raw, 0.4, label=f"raw (mean {np.mean(raw):.1f})", color="#999999")
    ax.bar(x + 0.2, rectified, 0.4, label=f"rectified (mean {np.mean(rectified):.1f})", color="#2a7ab9")
    ax.set_xticks(x, [str(i + 1) for i in x])  # whole episodes, no fractional ticks
    ax.set_xlabel("episode (seeded identically)")
    ax.set_ylabel("return")
    ax.set_title(title, fontsize=9)
    top = max(max(raw, default=0.0), max(rectified, default=0.0))
    ax.set_ylim(top=top * 1.3 if top > 0 else None)  # room for the legend above the bars
    ax.legend(fontsize=8, loc="upper center", ncols=2, frameon=False)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)


def plot_support_scores(scores: Sequence[float], out: str | Path) -> Path:
    """Histogram of per-step support scores of the rectified rollouts (1: the data's typical residual)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(np.asarray(scores), bins=40, range=(0, 1), color="#2a7ab9")
    ax.set_xlabel("support score per step (1: the data's typical residual; near 0: far in its tail)")
    ax.set_ylabel("steps")
    ax.set_title(
        f"rectified rollouts: how typical each applied residual is of the data (median {np.median(scores):.3f})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)
