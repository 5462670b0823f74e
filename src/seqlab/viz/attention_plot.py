"""Attention heat maps (output tokens x source tokens) and a JSON export of the weights.

    fig = plot_attention(weights, src_tokens, tgt_tokens, out_path="attn.png", title=None)
    export_attention_json(weights, src_tokens, tgt_tokens, "attn.json")
    weights, src_tokens, tgt_tokens = load_attention_json("attn.json")

`weights` is (T, S) for one sentence (rows = output tokens, columns = source tokens, as
returned by `seqlab.nn.attention` for one batch row), or (heads, T, S) for per-head weights,
drawn as a grid of heat maps with one shared colour scale. Figures are built with
matplotlib's object API (no pyplot state), so plotting in a loop leaks no windows/memory.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from seqlab.errors import UserError
from seqlab.io import save_figure_atomic, write_json_atomic

__all__ = ["export_attention_json", "load_attention_json", "plot_attention"]

JSON_FORMAT = "seqlab.attention/1"

# Layout: each heat-map cell gets between these many inches; fonts follow the cell size so
# 5 x 5 and 50 x 50 maps both stay readable.
_CELL_MIN_IN, _CELL_MAX_IN = 0.24, 0.55
_ANNOTATE_MAX_CELLS = 150  # write the weight into each cell up to this many cells


def _as_array(weights: Any) -> np.ndarray:
    """A float64 numpy copy of a tensor/array-like (detached, on the CPU)."""
    if hasattr(weights, "detach"):  # torch.Tensor, without importing torch here
        weights = weights.detach().cpu().double().numpy()
    return np.asarray(weights, dtype=np.float64)


def _check(weights: Any, src_tokens: Sequence[str], tgt_tokens: Sequence[str]) -> np.ndarray:
    """Validate weights (T, S) or (heads, T, S) against the token lists; return float64."""
    w = _as_array(weights)
    for name, toks in (("src_tokens", src_tokens), ("tgt_tokens", tgt_tokens)):
        if isinstance(toks, str) or not all(isinstance(t, str) for t in toks):
            raise ValueError(f"{name}: expected a sequence of str tokens, got {toks!r:.80}")
    S, T = len(src_tokens), len(tgt_tokens)
    if w.ndim not in (2, 3) or w.shape[-2:] != (T, S):
        raise ValueError(
            f"weights: shape {tuple(w.shape)} does not match {T} output tokens x {S} source "
            f"tokens; expected ({T}, {S}) or (heads, {T}, {S})"
        )
    if w.size == 0:
        raise ValueError("weights: empty (no source or no output tokens)")
    if not np.all(np.isfinite(w)):
        raise ValueError("weights: contains NaN or infinite values")
    return w


def _label(tok: str) -> str:
    # the sentencepiece word-start mark stays visible: "▁maison" reads as " maison"-with-mark
    return tok if tok.strip() else repr(tok)


def plot_attention(
    weights: Any,
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
    out_path: str | os.PathLike[str] | None = None,
    title: str | None = None,
    head_titles: Sequence[str] | None = None,
) -> Figure:
    """Draw attention weights as a heat map: output tokens (rows) x source tokens (columns).

    Args:
        weights: (T, S) weights for one sentence, or (heads, T, S) per-head weights (a grid of
            heat maps, one shared colour scale). Tensor or array.
        src_tokens: S source tokens (x axis, labels rotated).
        tgt_tokens: T output tokens (y axis).
        out_path: save the figure here, atomically; the format follows the suffix (.png, .svg,
            .pdf). None = do not save.
        title: figure title.
        head_titles: one title per head (default "head 1", ...).

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: if the weight shape does not match the token counts, or is not finite.
    """
    w = _check(weights, src_tokens, tgt_tokens)
    T, S = w.shape[-2:]
    grid = w if w.ndim == 3 else w[None]
    heads = grid.shape[0]
    if head_titles is not None and len(head_titles) != heads:
        raise ValueError(f"head_titles: expected {heads} titles, got {len(head_titles)}")
    ncols = math.ceil(math.sqrt(heads))
    nrows = math.ceil(heads / ncols)

    # cell size shrinks with the longest side, fonts follow the cell size
    cell = min(_CELL_MAX_IN, max(_CELL_MIN_IN, 7.0 / max(T, S)))
    font = min(11.0, max(6.5, cell * 72 * 0.42))
    longest_src = max(len(t) for t in src_tokens)
    longest_tgt = max(len(t) for t in tgt_tokens)
    # margins for the labels (inches): characters * ~0.6 em
    left = 0.6 + 0.6 * font / 72 * longest_tgt
    bottom = 0.6 + 0.6 * font / 72 * longest_src
    panel_w, panel_h = S * cell + left, T * cell + bottom + 0.4
    fig_w = ncols * panel_w + 1.2  # + colour bar
    fig_h = nrows * panel_h + (0.5 if title else 0.1)
    fig = Figure(figsize=(fig_w, fig_h), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)

    vmax = float(grid.max()) if grid.max() > 0 else 1.0
    annotate = T * S <= _ANNOTATE_MAX_CELLS
    image = None
    for h in range(nrows * ncols):
        ax = axes[h // ncols][h % ncols]
        if h >= heads:
            ax.set_visible(False)
            continue
        image = ax.imshow(grid[h], cmap="viridis", vmin=0.0, vmax=vmax, aspect="equal",
                          interpolation="nearest")
        ax.set_xticks(range(S), [_label(t) for t in src_tokens], rotation=90, fontsize=font)
        ax.set_yticks(range(T), [_label(t) for t in tgt_tokens], fontsize=font)
        ax.tick_params(length=0)
        ax.set_xlabel("source", fontsize=font + 1)
        ax.set_ylabel("output", fontsize=font + 1)
        if heads > 1:
            name = head_titles[h] if head_titles is not None else f"head {h + 1}"
            ax.set_title(name, fontsize=font + 1)
        if annotate:
            for t in range(T):
                for s in range(S):
                    value = grid[h, t, s]
                    ax.text(s, t, f"{value:.2f}".lstrip("0") if value < 1 else "1",
                            ha="center", va="center", fontsize=font * 0.8,
                            color="black" if value > 0.6 * vmax else "white")
    assert image is not None
    bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=min(1.0, 4.0 / fig_h + 0.3))
    bar.set_label("attention weight", fontsize=font + 1)
    bar.ax.tick_params(labelsize=font)
    if title:
        fig.suptitle(title, fontsize=font + 3)
    if out_path is not None:
        save_figure_atomic(fig, out_path, dpi=110)
    return fig


def export_attention_json(
    weights: Any,
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
    path: str | os.PathLike[str],
) -> None:
    """Write weights with their tokens to JSON (atomically).

    Args:
        weights: (T, S) or (heads, T, S).
        src_tokens: S source tokens; tgt_tokens: T output tokens.
        path: output .json file.

    The file holds {"format", "src_tokens", "tgt_tokens", "shape", "weights"}, weights as
    nested lists (rows = output tokens); `load_attention_json` reads it back.
    """
    w = _check(weights, src_tokens, tgt_tokens)
    write_json_atomic(path, {
        "format": JSON_FORMAT,
        "src_tokens": list(src_tokens),
        "tgt_tokens": list(tgt_tokens),
        "shape": list(w.shape),
        "weights": w.tolist(),
    })


def load_attention_json(path: str | os.PathLike[str]) -> tuple[np.ndarray, list[str], list[str]]:
    """Read a file written by `export_attention_json`.

    Returns:
        weights (T, S) or (heads, T, S) float64 array, src_tokens, tgt_tokens.

    Raises:
        UserError: the file is missing, not JSON, or its fields do not fit together.
    """
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise UserError(f"{path}: no such attention file") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not a JSON attention file ({err})") from err
    if not isinstance(obj, dict) or obj.get("format") != JSON_FORMAT:
        raise UserError(f"{path}: field 'format': expected {JSON_FORMAT!r}")
    for field in ("src_tokens", "tgt_tokens", "weights", "shape"):
        if not isinstance(obj.get(field), list):
            raise UserError(f"{path}: field {field!r}: expected a list")
    try:
        weights = np.asarray(obj["weights"], dtype=np.float64)
    except (ValueError, TypeError) as err:
        raise UserError(f"{path}: field 'weights': expected nested lists of numbers") from err
    if list(weights.shape) != obj["shape"]:
        raise UserError(
            f"{path}: field 'weights': shape {list(weights.shape)} differs from field 'shape' "
            f"{obj['shape']}"
        )
    try:
        _check(weights, obj["src_tokens"], obj["tgt_tokens"])
    except ValueError as err:
        raise UserError(f"{path}: {err}") from err
    return weights, list(obj["src_tokens"]), list(obj["tgt_tokens"])
