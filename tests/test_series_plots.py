"""The series pictures: what is drawn (events, labels, classes), and that long lines keep
their spikes when decimated."""

from __future__ import annotations

import numpy as np

from seqlab.io import save_figure_atomic
from seqlab.series.plots import (
    _envelope,
    plot_anomalies,
    plot_embeddings,
    plot_reconstruction,
)


def test_envelope_keeps_the_extremes_of_a_long_line():
    x = np.arange(1_000_000)
    y = np.zeros(1_000_000)
    y[123_457] = 9.0
    y[800_001] = -4.0
    xs, ys = _envelope(x, y, max_points=2_000)
    assert len(xs) == len(ys) <= 2_100
    assert ys.max() == 9.0 and ys.min() == -4.0
    assert np.all(np.diff(xs) >= 0)
    short = np.arange(10.0)
    assert _envelope(short, short)[1] is short


def test_plot_anomalies_shades_events_and_labels(tmp_path):
    n = 300
    values = np.column_stack([np.sin(np.arange(n) / 5), np.cos(np.arange(n) / 5)])
    scores = np.abs(np.sin(np.arange(n) / 7))
    labels = np.zeros(n, bool)
    labels[100:110] = True
    fig = plot_anomalies(values, scores, 0.9, [(50, 60), (200, 200)], ["a", "b"],
                         labels=labels, train_end=30, zoom=(90, 120))
    top, score_ax, zoom_ax = fig.axes
    assert [line.get_label() for line in top.get_lines()][:2] == ["a", "b"]
    legend = [t.get_text() for t in top.get_legend().get_texts()]
    assert "detected event" in legend and "labelled anomaly" in legend
    assert len(top.patches) == 3                                    # 2 events + 1 label
    assert any(line.get_ydata()[0] == 0.9 for line in score_ax.get_lines())   # threshold
    save_figure_atomic(fig, tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_reconstruction_and_embedding_plots():
    fig = plot_reconstruction(np.zeros((16, 3)), np.ones((16, 3)), ["x", "y", "z"], start=40)
    assert len(fig.axes) == 3
    assert fig.axes[0].get_lines()[0].get_xdata()[0] == 40
    rng = np.random.default_rng(0)
    Z = np.concatenate([rng.normal(0, 1, (30, 5)), rng.normal(5, 1, (20, 5))])
    fig = plot_embeddings(Z, np.array([0] * 30 + [1] * 20))
    (ax,) = fig.axes
    assert [len(c.get_offsets()) for c in ax.collections] == [30, 20]   # one colour per class
