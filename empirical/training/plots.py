"""Learning curves and accuracy against example index."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from empirical import results as results_lib
from empirical.training.checkpoints import load_config
from empirical.training.loop import read_metrics


def plot_learning_curves(out: str | os.PathLike, path: str | os.PathLike, title: str = "",
                         snapshots: int = 6) -> Path:
    """Three panels from run ``out``'s metrics: the training loss, the held-out answer accuracy
    (all examples, and the second half of each sequence's examples) against step, and the
    in-context learning curve (accuracy against example index) at ``snapshots`` evaluation
    steps. Curriculum stages are shaded."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cfg = load_config(out)
    train_r, eval_r = read_metrics(out, "train"), read_metrics(out, "eval")
    fig = Figure(figsize=(13.0, 3.6), dpi=150)
    FigureCanvasAgg(fig)
    ax_loss, ax_acc, ax_ex = (fig.add_subplot(1, 3, i) for i in (1, 2, 3))
    ax_loss.plot([r["step"] for r in train_r], [r["loss"] for r in train_r], linewidth=0.8)
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("training loss (answers and newlines)")
    steps = [r["step"] for r in eval_r]
    ax_acc.plot(steps, [r["answer_acc"] for r in eval_r], "o-", markersize=2, label="all examples")
    ax_acc.plot(steps, [r["answer_acc_late"] for r in eval_r], "o-", markersize=2, label="second half")
    chance = 1.0 / (8 if cfg.family == "copy" else cfg.fam.vocab_size if cfg.family == "lookup" else 10)
    ax_acc.axhline(chance, color="gray", linestyle=":", linewidth=1, label="chance")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.set_ylabel("held-out answer accuracy")
    ax_acc.legend(fontsize=7)
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        start = 0
        for until, hs in cfg.curriculum:
            ax.axvspan(start, until, color="tab:orange", alpha=0.08 + 0.04 * (len(hs) < 3))
            start = until
    if eval_r:
        picks = sorted({int(round(i)) for i in np.linspace(0, len(eval_r) - 1, min(snapshots, len(eval_r)))})
        colors = [plt_color(i, len(picks)) for i in range(len(picks))]
        for i, c in zip(picks, colors):
            acc = eval_r[i]["example_acc"]
            ax_ex.plot(np.arange(len(acc)), acc, color=c, linewidth=1, label=f"step {eval_r[i]['step']}")
    ax_ex.set_xlabel("example index in the sequence")
    ax_ex.set_ylabel("answer accuracy")
    ax_ex.set_ylim(0, 1.02)
    ax_ex.grid(alpha=0.3)
    ax_ex.legend(fontsize=6)
    fig.suptitle(title or f"{cfg.preset}/{cfg.family}: training curves", fontsize=9)
    fig.tight_layout()
    return results_lib.save_figure(fig, path)


def plot_eval(result: dict, path: str | os.PathLike) -> Path:
    """Answer accuracy against example index, one line per task (the in-context learning curve)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from empirical.results import save_figure

    fig = Figure(figsize=(5.5, 3.6), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for t in result["tasks"].values():
        acc = np.array(t["example_acc"])
        ax.plot(np.arange(len(acc)), acc, linewidth=1, alpha=0.8, label=t["label"])
    ax.plot(np.arange(len(result["example_acc"])), result["example_acc"], "k-", linewidth=2, label="mean")
    ax.set_xlabel("example index in the sequence")
    ax.set_ylabel("answer accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    ax.set_title(f"{result['run']}: {result['sequences_per_task']} fresh sequences per task", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plt_color(i: int, n: int):
    """The i-th of n colours along viridis (early steps dark, late steps light)."""
    from matplotlib import colormaps

    return colormaps["viridis"](0.1 + 0.8 * i / max(1, n - 1))
