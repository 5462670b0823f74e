"""Pictures of the series autoencoder: anomalies over a series, a window and its
reconstruction, and a 2-D projection of the embeddings coloured by class.

Each function returns a matplotlib Figure; save it with `seqlab.io.save_figure_atomic`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

from seqlab.series.scoring import flags_to_events

EVENT_COLOR = "tab:red"
LABEL_COLOR = "tab:green"
MAX_LINE_POINTS = 20_000  # longer lines are drawn as a min/max envelope (same picture, less RAM)


def _envelope(x: np.ndarray, y: np.ndarray, max_points: int = MAX_LINE_POINTS
              ) -> tuple[np.ndarray, np.ndarray]:
    """Decimate a long line to ~max_points, keeping each bucket's min and max so spikes stay
    visible. x, y: (N,). Returns (M,), (M,)."""
    n = len(y)
    if n <= max_points:
        return x, y
    k = -(-2 * n // max_points)                       # points per bucket
    m = n // k * k
    yb = y[:m].reshape(-1, k)
    xs = np.repeat(x[:m:k], 2)
    ys = np.column_stack([yb.min(axis=1), yb.max(axis=1)]).ravel()
    return np.concatenate([xs, x[m:]]), np.concatenate([ys, y[m:]])


def _shade(ax, intervals: Sequence[tuple[int, int]], x: np.ndarray, color: str, alpha: float,
           label: str | None, hatch: str | None = None) -> None:
    for k, (s, e) in enumerate(intervals):
        # inclusive interval [s, e]: shade up to the next point so single points stay visible
        right = x[e + 1] if e + 1 < len(x) else x[e]
        ax.axvspan(x[s], right, color=color, alpha=alpha, lw=0, hatch=hatch,
                   label=label if k == 0 else None)


def plot_anomalies(values: np.ndarray, scores: np.ndarray, threshold: float,
                   events: Sequence[tuple[int, int]], columns: Sequence[str] | None = None,
                   timestamps: np.ndarray | None = None, labels: np.ndarray | None = None,
                   title: str = "", train_end: int | None = None,
                   zoom: tuple[int, int] | None = None) -> Figure:
    """The series (top) and its anomaly score (bottom), detected events shaded red, labelled
    anomalies (when given) shaded green.

    values: (N,) or (N, C); scores: (N,); events: inclusive (start, end) index intervals;
    timestamps: (N,) x-axis values (default: indices); labels: (N,) bool ground truth;
    train_end: draw a line where the training part ends.
    zoom: (start, end) indices of a stretch to repeat, enlarged, in a third panel.
    """
    values = values[:, None] if values.ndim == 1 else values
    N, C = values.shape
    x = np.arange(N) if timestamps is None else np.asarray(timestamps)
    fig = Figure(figsize=(12, 8.0 if zoom else 5.5))
    if zoom:
        grid = fig.add_gridspec(3, 1, height_ratios=[2, 1, 2])
        ax = fig.add_subplot(grid[0])
        ax_s = fig.add_subplot(grid[1], sharex=ax)
        ax_z = fig.add_subplot(grid[2])
    else:
        ax, ax_s = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    names = list(columns) if columns is not None else [str(j) for j in range(C)]
    for j in range(C):
        ax.plot(*_envelope(x, values[:, j]), lw=0.8, label=names[j])
    label_events = flags_to_events(np.asarray(labels, dtype=bool)) if labels is not None else []
    for a in (ax, ax_s):
        _shade(a, events, x, EVENT_COLOR, 0.30, "detected event" if a is ax else None)
        _shade(a, label_events, x, LABEL_COLOR, 0.35, "labelled anomaly" if a is ax else None,
               hatch="//")
        if train_end is not None:
            a.axvline(x[train_end], color="k", ls=":", lw=1,
                      label="end of training data" if a is ax else None)
    ax.legend(loc="upper right", fontsize=8, ncol=min(4, C + 3))
    ax.set_ylabel("value")
    ax.set_title(title or f"{len(events)} detected event(s)")
    ax_s.plot(*_envelope(x, scores), lw=0.8, color="tab:purple", label="anomaly score")
    ax_s.axhline(threshold, color=EVENT_COLOR, ls="--", lw=1, label=f"threshold {threshold:.3g}")
    if np.all(scores > 0) and scores.max() / max(np.median(scores), 1e-12) > 100:
        ax_s.set_yscale("log")  # a single huge peak would flatten everything else
        ax_s.set_ylim(bottom=float(np.quantile(scores, 0.05)))
    ax_s.set_ylabel("score")
    ax_s.set_xlabel("time" if timestamps is not None else "index")
    ax_s.legend(loc="upper right", fontsize=8)
    if zoom:
        z0, z1 = max(0, zoom[0]), min(N - 1, zoom[1])
        for j in range(C):
            ax_z.plot(*_envelope(x[z0:z1 + 1], values[z0:z1 + 1, j]), lw=1.0)
        inside = [(max(s, z0) - z0, min(e, z1) - z0) for s, e in events if s <= z1 and e >= z0]
        lab_in = [(max(s, z0) - z0, min(e, z1) - z0) for s, e in label_events
                  if s <= z1 and e >= z0]
        _shade(ax_z, inside, x[z0:z1 + 1], EVENT_COLOR, 0.30, None)
        _shade(ax_z, lab_in, x[z0:z1 + 1], LABEL_COLOR, 0.35, None, hatch="//")
        ax_z.set_title(f"zoom: {z0}..{z1}", fontsize=9)
        ax_z.set_ylabel("value")
    fig.tight_layout()
    return fig


def plot_reconstruction(window: np.ndarray, recon: np.ndarray,
                        columns: Sequence[str] | None = None, start: int = 0,
                        title: str = "") -> Figure:
    """One window and its reconstruction, one panel per channel.

    window, recon: (T,) or (T, C) in original units; start: index of the window's first point.
    """
    window = window[:, None] if window.ndim == 1 else window
    recon = recon[:, None] if recon.ndim == 1 else recon
    T, C = window.shape
    t = np.arange(start, start + T)
    fig = Figure(figsize=(8, 2.2 * C + 0.8))
    axes = fig.subplots(C, 1, sharex=True, squeeze=False)
    names = list(columns) if columns is not None else [str(j) for j in range(C)]
    for j, a in enumerate(axes[:, 0]):
        a.plot(t, window[:, j], lw=1.2, label="input")
        a.plot(t, recon[:, j], lw=1.2, ls="--", label="reconstruction")
        a.set_ylabel(names[j])
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[0, 0].set_title(title or f"window {start}..{start + T - 1} and its reconstruction")
    axes[-1, 0].set_xlabel("index")
    fig.tight_layout()
    return fig


def plot_embeddings(Z: np.ndarray, labels: np.ndarray | None = None, title: str = "") -> Figure:
    """2-D PCA projection (scikit-learn) of embeddings, coloured by class when labels are given.

    Z: (n, latent_size); labels: (n,) class of each row.
    """
    from sklearn.decomposition import PCA

    if len(Z) < 2:
        raise ValueError(f"Z: need at least 2 embeddings to project, got {len(Z)}")
    k = min(2, Z.shape[1])
    pca = PCA(n_components=k).fit(Z)
    P = pca.transform(Z)
    if k == 1:
        P = np.column_stack([P[:, 0], np.zeros(len(P))])
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    if labels is None:
        ax.scatter(P[:, 0], P[:, 1], s=8, alpha=0.7)
    else:
        labels = np.asarray(labels)
        for c in np.unique(labels):
            m = labels == c
            ax.scatter(P[m, 0], P[m, 1], s=10, alpha=0.7, label=f"class {c}")
        ax.legend(fontsize=8, loc="best")
    ev = pca.explained_variance_ratio_
    ax.set_xlabel(f"PC1 ({ev[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({ev[1]:.0%} of variance)" if k == 2 else "")
    ax.set_title(title or f"{len(Z)} embeddings, PCA")
    fig.tight_layout()
    return fig
