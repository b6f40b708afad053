"""The figures of a constructed-versus-learned report (:class:`empirical.compare.CompareResult`):
behaviour, probes and weights."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from empirical import results as results_lib

#: One colour per quantity (line style per task) in the probe plots.
PROBE_COLORS = {"G": "tab:blue", "E": "tab:orange", "C": "tab:green", "alpha": "tab:red", "Q": "tab:purple",
                "OUT": "black"}


def _figure(size):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=150)
    FigureCanvasAgg(fig)
    return fig


def plot(result, out: str | os.PathLike) -> list[Path]:
    """Three figures (behaviour, mechanism, weights) into directory ``out``; returns their paths."""
    out = Path(out)
    stem = f"compare_{Path(result.learned).name}"
    return [results_lib.save_figure(behaviour_figure(result), out / f"{stem}_behaviour.png"),
            results_lib.save_figure(probes_figure(result), out / f"{stem}_probes.png"),
            results_lib.save_figure(weights_figure(result), out / f"{stem}_weights.png")]


def behaviour_figure(result):
    """The lambda sweep, the calibration curves, the skewed mixtures' KLs and the KLs by length."""
    b = result.behaviour
    fig = _figure((17, 3.8))
    ax1, ax2, ax3, ax4 = (fig.add_subplot(1, 4, i) for i in (1, 2, 3, 4))
    lams = [p.lam for p in b.sweep]
    for key, style, label in (("target", ":", "in-context mixture"), ("p_constructed", "-", "constructed"),
                              ("p_learned", "--", "learned")):
        for i, color in ((0, "tab:blue"), (1, "tab:orange")):
            ax1.plot(lams, [getattr(p, key)[i] for p in b.sweep], style, color=color,
                     alpha=0.6 if key == "target" else 1, label=f"{label}: {b.pair[i]}")
    ax1.set_xlabel(f"lambda (share of {b.pair[0]})")
    ax1.set_ylabel("mean probability of the answer")
    ax1.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    cal = b.calibration
    ax2.plot([0, 1], [0, 1], ":", color="gray", label="proportional")
    for name, curve in cal.curves.items():
        pts = [(x, y) for x, y in zip(cal.proportion, curve) if x is not None and y is not None]
        ax2.plot(*zip(*pts), "o-", markersize=3, label=name)
    ax2.set_xlabel("in-context proportion of the answer")
    ax2.set_ylabel("answer probability")
    ax2.legend(fontsize=7, loc="upper left")
    kls = (("kl_target_constructed", "constructed"), ("kl_target_learned", "learned"),
           ("kl_constructed_learned", "constructed||learned"))
    if b.skewed:
        labels = ["/".join(f"{x:.2f}" for x in s.proportions) for s in b.skewed]
        xpos = np.arange(len(labels))
        for j, (key, name) in enumerate(kls):
            ax3.bar(xpos + 0.27 * (j - 1), [getattr(s, key).mean for s in b.skewed], 0.27, label=name)
        ax3.set_xticks(xpos, labels, rotation=30, fontsize=6)
        ax3.set_ylabel("mean KL (nats)")
        ax3.set_xlabel("three-task mixture")
        ax3.legend(fontsize=7)
    if b.by_length:
        ms = [p.n_examples for p in b.by_length]
        for key, name in kls:
            ax4.errorbar(ms, [getattr(p, key).mean for p in b.by_length], [getattr(p, key).ci95 for p in b.by_length],
                         marker="o", markersize=3, capsize=2, label=name)
        ax4.set_xlabel("examples in the prompt (uniform mixture of all tasks)")
        ax4.set_ylabel("mean KL (nats)")
        ax4.legend(fontsize=7)
    fig.suptitle(f"behaviour: {result.learned} vs the construction", fontsize=9)
    fig.tight_layout()
    return fig


def probes_figure(result):
    """Held-out probe scores of every quantity after every layer, for both models."""
    fig = _figure((12, 4))
    for i, who in enumerate(("constructed", "learned")):
        ax = fig.add_subplot(1, 2, i + 1)
        for name, entry in getattr(result.mechanism, who).probes.items():
            kind, _, k = name.partition("_")
            ax.plot(range(len(entry.layers)), [s.value for s in entry.layers], marker="o", markersize=2,
                    label=name, linewidth=1, color=PROBE_COLORS[kind], linestyle=("-", "--", ":", "-.")[int(k or 0) % 4])
        ax.set_xticks(range(len(entry.layers)))
        ax.set_xlabel("layer (0 = embedding)")
        ax.set_ylabel("held-out probe accuracy / R^2")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(who if who == "constructed" else result.learned, fontsize=8)
        ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=1, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def weights_figure(result):
    """Head similarity with the Hungarian matches, and the residual streams' linear CKA."""
    w = result.weights
    m = w.matching
    fig = _figure((12, 4.5))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    im = ax1.imshow(np.array(m.similarity), vmin=-1, vmax=1, cmap="RdBu_r", aspect="auto")
    fig.colorbar(im, ax=ax1, fraction=0.04)
    ia = {tuple(h): i for i, h in enumerate(m.heads_a)}
    ib = {tuple(h): i for i, h in enumerate(m.heads_b)}
    for p in m.pairs:
        ax1.plot(ib[tuple(p.b)], ia[tuple(p.a)], "k+", markersize=6)
    ax1.set_yticks(range(len(ia)), [f"L{l}h{h}" for l, h in m.heads_a], fontsize=5)
    ax1.set_xticks(range(len(ib)), [f"L{l}h{h}" for l, h in m.heads_b], fontsize=5, rotation=90)
    ax1.set_ylabel("constructed heads")
    ax1.set_xlabel("learned heads (+: Hungarian match)")
    cka = np.array(w.cka)
    im = ax2.imshow(cka, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    fig.colorbar(im, ax=ax2, fraction=0.04)
    ax2.set_xticks(range(cka.shape[1]))
    ax2.set_yticks(range(cka.shape[0]))
    ax2.set_ylabel("constructed layer (0 = embedding)")
    ax2.set_xlabel("learned layer (0 = embedding)")
    ax2.set_title("linear CKA of the residual streams", fontsize=8)
    ax1.set_title("head similarity (QK and OV circuits in the token/position basis)", fontsize=8)
    fig.tight_layout()
    return fig
