"""PNG plots of evaluation results (matplotlib, imported here only).

- ``plot_distribution``: accuracy distribution of the evaluated subnets against the benchmark's for the same
  archs (the paper's Fig. 7).
- ``plot_accuracy_vs_rank``: supernet accuracy against the benchmark's rank of each arch (the paper's Fig. 6).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from khnet.checkpoint import atomic_write
from khnet.errors import KhnetError
from khnet.evaluate import EvalRecord

__all__ = ["plot_accuracy_vs_rank", "plot_distribution", "require_matplotlib"]


def require_matplotlib() -> None:
    """Raise a one-line ``KhnetError`` naming the fix when matplotlib (the ``plots`` extra) is not installed."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise KhnetError("plots need matplotlib, which is not installed: pip install 'khnet[plots]'")


def _figure():
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(plt, fig, ax, title: str, note: str, path: Path) -> Path:
    """Title, legend and caveat, then write the PNG atomically and close the figure."""
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    if note:  # in a strip of its own below the axes, never over the axis label
        fig.tight_layout(rect=(0, 0.1, 1, 1))
        fig.text(0.01, 0.01, note, fontsize=6, wrap=True, va="bottom")
    else:
        fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)
    return path


def plot_distribution(records: Sequence[EvalRecord], out_dir: str | Path, note: str = "") -> Path:
    """Histogram of supernet accuracies and of the benchmark's for the same archs; returns the PNG path."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ours = [r.accuracy for r in records]
    theirs = [r.benchmark_accuracy for r in records if r.benchmark_accuracy is not None]
    lo, hi = min(ours + theirs), max(ours + theirs)
    bins = [lo + (hi - lo) * i / 40 for i in range(41)] if hi > lo else 10
    ax.hist(ours, bins=bins, alpha=0.6, label=f"supernet (mean {sum(ours) / len(ours):.2f})")
    if theirs:
        ax.hist(
            theirs, bins=bins, alpha=0.6, label=f"NAS-Bench-201, from scratch (mean {sum(theirs) / len(theirs):.2f})"
        )
    ax.set_xlabel("accuracy (%)")
    ax.set_ylabel("archs")
    title = f"Accuracy distribution of {len(records)} subnets"
    return _finish(plt, fig, ax, title, note, Path(out_dir) / "accuracy_distribution.png")


def plot_accuracy_vs_rank(records: Sequence[EvalRecord], out_dir: str | Path, note: str = "") -> Path:
    """Supernet accuracy (dots) and benchmark accuracy (line) against the benchmark's rank; returns the PNG."""
    plt = _figure()
    ranked = sorted((r for r in records if r.benchmark_accuracy is not None), key=lambda r: -r.benchmark_accuracy)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    if ranked:
        ranks = range(1, len(ranked) + 1)
        ax.scatter(ranks, [r.accuracy for r in ranked], s=6, label="supernet (inherited weights)")
        ax.plot(ranks, [r.benchmark_accuracy for r in ranked], color="black", lw=1, label="NAS-Bench-201, from scratch")
        ax.set_xlabel("benchmark rank (1 = best)")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # ranks are whole numbers
    else:
        ax.text(0.5, 0.5, "no benchmark accuracies for this dataset", ha="center", transform=ax.transAxes)
    ax.set_ylabel("accuracy (%)")
    title = f"Accuracy against the benchmark's rank ({len(ranked)} archs)"
    return _finish(plt, fig, ax, title, note, Path(out_dir) / "accuracy_vs_rank.png")
