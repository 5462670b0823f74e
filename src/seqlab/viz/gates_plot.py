"""Pictures of an LSTM's gates over time.

    plot_gates(gates, "gates.png", layer=0, direction=0, batch_index=0,
               step_labels=list("hello"), units=[0, 3], title="...", inputs=None)

`gates` is an `LSTMGates` record (`lstm(x, return_gates=True)[2]` or from `record_gates`). One
sequence (layer, direction, batch row; padding cut off) is drawn as:

  * optional input panel: the sequence the LSTM read (`inputs`, lines over time);
  * four heat maps, units (rows) x time steps (columns): forget gate f, input gate i,
    cell update C~ and output gate o; gates use a sequential colormap on [0, 1], the cell
    update a diverging one on [-1, 1], each with its colour bar;
  * line plots of the cell state C_t and hidden state h_t of the chosen `units`.

Figures use matplotlib's object API (no pyplot state) and are written with
`save_figure_atomic` (PNG, SVG or PDF by suffix), so a failure leaves no partial file.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from seqlab.io import save_figure_atomic
from seqlab.nn.lstm import LSTMGates

__all__ = ["plot_gates", "default_units"]

# (field, panel title, colormap, value range)
_HEATMAPS = (
    ("f", "forget gate $f_t$   (1 = keep the old memory $C_{t-1}$, 0 = erase it)", "viridis",
     (0.0, 1.0)),
    ("i", "input gate $i_t$   (1 = write the cell update into memory)", "viridis", (0.0, 1.0)),
    ("g", "cell update $\\tilde{C}_t$   (new content proposed for memory)", "RdBu_r",
     (-1.0, 1.0)),
    ("o", "output gate $o_t$   (1 = show the memory as output $h_t$)", "viridis", (0.0, 1.0)),
)
_MAX_TICK_LABELS = 80  # beyond this many steps, label every n-th step only


def _np(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().cpu().double().numpy()
    return np.asarray(t, dtype=np.float64)


def default_units(c: np.ndarray, k: int = 4) -> list[int]:
    """The k units whose cell state C varies most over time (c: (T, H)); sorted by index."""
    spread = np.nanmax(c, axis=0) - np.nanmin(c, axis=0)
    order = np.argsort(-spread, kind="stable")[: min(k, c.shape[1])]
    return sorted(int(u) for u in order)


def _show_label(s: str) -> str:
    return {" ": "␣", "\n": "⏎", "\t": "⇥"}.get(s, s)


def plot_gates(gates: LSTMGates, out_path: str | os.PathLike[str] | None = None,
               layer: int = 0, direction: int = 0, batch_index: int = 0,
               step_labels: Sequence[str] | None = None, units: Sequence[int] | None = None,
               title: str = "LSTM gates over time",
               inputs: Mapping[str, Any] | None = None, marks: Mapping[int, str] | None = None,
               dpi: int = 110) -> Figure:
    """Draw one sequence's gates; save to `out_path` (atomically) when given; return the Figure.

    gates: LSTMGates with (L, D, B, T, H) fields. step_labels: one label per real step of that
    sequence (e.g. its characters), drawn as x tick labels. units: units for the C/h line
    plots (default: the 4 whose cell state varies most). inputs: optional {name: (T,) values}
    drawn in a top panel (what the LSTM read). marks: optional {step: name} drawn as dashed
    vertical lines through every panel. Raises ValueError for out-of-range choices.
    """
    seq = {k: _np(v) for k, v in gates.select(layer, direction, batch_index).items()}  # (T, H)
    T, H = seq["f"].shape
    if step_labels is not None and len(step_labels) != T:
        raise ValueError(f"step_labels: expected {T} labels (one per step), got "
                         f"{len(step_labels)}")
    if units is None:
        units = default_units(seq["c"])
    units = list(units)
    bad = [u for u in units if not 0 <= u < H]
    if bad or not units:
        raise ValueError(f"units: expected unit indices in [0, {H}), got {units}")
    input_series = {name: _np(v).reshape(-1) for name, v in (inputs or {}).items()}
    for name, v in input_series.items():
        if v.shape[0] != T:
            raise ValueError(f"inputs[{name!r}]: expected {T} values (one per step), got "
                             f"{v.shape[0]}")

    n_panels = (1 if input_series else 0) + len(_HEATMAPS) + 2
    heat_h = float(np.clip(0.16 * H + 0.6, 1.3, 3.2))
    heights = ([1.2] if input_series else []) + [heat_h] * len(_HEATMAPS) + [1.5, 1.5]
    width = float(np.clip(0.16 * T + 3.5, 9.0, 22.0))
    fig = Figure(figsize=(width, sum(heights) + 1.2 + 0.35 * (n_panels - 1)),
                 layout="constrained")
    axes = fig.subplots(n_panels, 1, sharex=True, height_ratios=heights)
    steps = np.arange(T)
    k = 0
    if input_series:
        ax = axes[0]
        for name, v in input_series.items():
            ax.plot(steps, v, marker="o", markersize=3, linewidth=1.2, label=name)
        ax.set_title("input $x_t$ (what the LSTM reads)", loc="left", fontsize=10)
        ax.legend(loc="best", fontsize=8, ncol=len(input_series), framealpha=0.8)
        ax.grid(alpha=0.3)
        k = 1
    for field, name, cmap, (vmin, vmax) in _HEATMAPS:
        ax = axes[k]
        k += 1
        image = ax.imshow(seq[field].T, aspect="auto", interpolation="nearest", cmap=cmap,
                          vmin=vmin, vmax=vmax, origin="lower",
                          extent=(-0.5, T - 0.5, -0.5, H - 0.5))
        ax.set_title(name, loc="left", fontsize=10)
        ax.set_ylabel("unit")
        if H <= 16:
            ax.set_yticks(range(H))
        ax.tick_params(axis="y", labelsize=7)
        bar = fig.colorbar(image, ax=ax, pad=0.01, aspect=10)
        bar.ax.tick_params(labelsize=7)
    colors = [f"C{j % 10}" for j in range(len(units))]
    for field, name in (("c", "cell state $C_t$ (the memory)"),
                        ("h", "hidden state $h_t = o_t \\cdot \\tanh(C_t)$ (the output)")):
        ax = axes[k]
        k += 1
        for u, color in zip(units, colors, strict=True):
            ax.plot(steps, seq[field][:, u], color=color, linewidth=1.5, label=f"unit {u}")
        ax.axhline(0.0, color="0.6", linewidth=0.6)
        ax.set_title(name + " for selected units", loc="left", fontsize=10)
        ax.legend(loc="best", fontsize=8, ncol=len(units), framealpha=0.8)
        ax.grid(alpha=0.3)
    for step in (marks or {}):
        if not 0 <= step < T:
            raise ValueError(f"marks: step {step} out of range [0, {T})")
        for ax in axes:
            ax.axvline(step, color="black", linestyle="--", linewidth=0.8, alpha=0.6)
    bottom = axes[-1]
    bottom.set_xlabel("time step")
    bottom.set_xlim(-0.5, T - 0.5)
    every = max(1, int(np.ceil(T / _MAX_TICK_LABELS)))
    ticks = steps[::every]
    if step_labels is not None:
        labels = [_show_label(str(step_labels[t])) for t in ticks]
        for ax in axes:  # characters under every panel, so each heat map reads on its own
            ax.set_xticks(ticks, labels)
            ax.tick_params(axis="x", labelbottom=True, labelsize=8 if T <= 60 else 6, length=0)
    else:
        for ax in axes:
            ax.tick_params(axis="x", labelbottom=ax is bottom, labelsize=8)
    chars = int(width * 10.5)  # ~characters per line at 12 pt
    fig.suptitle("\n".join(textwrap.fill(line, chars) for line in title.splitlines()),
                 fontsize=12)
    if out_path is not None:
        save_figure_atomic(fig, Path(out_path), dpi=dpi)
    return fig
