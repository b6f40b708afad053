"""Plot legends never cover the data: ``save_figure`` moves any legend that does."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from empirical import results


def _crowded_figure():
    fig = Figure(figsize=(5, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = np.array([0.0, 1.0])  # two vertices: the check must follow the segment, not only its ends
    for i in range(5):
        ax.plot(x, [i / 4, i / 4], label=f"level {i}")
    rng = np.random.default_rng(0)
    ax.plot(rng.random(400), rng.random(400), ".", label="cloud")
    ax.legend(loc="center")
    return fig, ax


def test_a_legend_over_the_data_is_found_and_moved_off_it(tmp_path):
    fig, ax = _crowded_figure()
    assert results.legend_overlaps(fig)  # the check sees a legend in the middle of the data
    results.save_figure(fig, tmp_path / "crowded.png")
    assert results.legend_overlaps(fig) == []
    assert (tmp_path / "crowded.png").stat().st_size > 0
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [f"level {i}" for i in range(5)] + ["cloud"]  # the same entries, moved


def test_a_clear_legend_stays_where_it_is(tmp_path):
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 0.2], label="low line")
    ax.set_ylim(0, 1)
    legend = ax.legend(loc="upper left")
    results.save_figure(fig, tmp_path / "clear.png")
    assert ax.get_legend() is legend


def test_the_verify_plot_keeps_its_legend_off_the_data(tmp_path, monkeypatch):
    """results/verify_superposition.png: many points per lambda, the legend must not cover one."""
    from empirical import verify
    from construction.tasks import DEFAULT_EXAMPLE_LEN, DEFAULT_VOCAB, default_tasks

    seen = []
    original = verify.save_figure

    def spy(fig, path):
        out = original(fig, path)
        seen.append(results.legend_overlaps(fig))
        return out

    monkeypatch.setattr(verify, "save_figure", spy)
    cfg = verify.VerifyConfig(vocab_size=DEFAULT_VOCAB, example_len=DEFAULT_EXAMPLE_LEN, n_examples=6,
                              max_examples=8, prompts_per_lambda=4, beta=30.0, dtype="float32", seed=0)
    result = verify.verify(default_tasks(DEFAULT_VOCAB), cfg, progress=False)
    verify.plot(result, tmp_path / "verify_superposition.png")
    assert seen == [[]]
