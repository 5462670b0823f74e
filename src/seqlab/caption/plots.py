"""Where the captioner looked: one panel per generated word, the image with the attended
regions overlaid, and a strip of such panels for a whole caption.

    overlay_attention(image, weights)                 -> (S, S, 3) uint8 picture
    plot_attention_strip(image, words, maps, out_path, title=None)

`weights` is one word's (G, G) map over the encoder's regions (as in `Caption.word_attention`).
It is upsampled to the image size (bilinear, so region borders do not look like hard tiles),
scaled by its maximum so the most-attended region is fully lit, and alpha-blended over the
image: unattended parts are dimmed towards black and attended ones tinted with a heat colour,
so a person can see at a glance which part of the image each word came from. The panel title
gives the word and the share of attention on its top region.

Figures use matplotlib's object API (no pyplot state) and are saved atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from seqlab.io import save_figure_atomic

__all__ = ["overlay_attention", "plot_attention_strip", "upsample_map"]


def _printable(text: str) -> str:
    """Titles: control characters (a byte-fallback piece can spell one) shown as U+FFFD."""
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in text)


def upsample_map(weights: np.ndarray, size: int) -> np.ndarray:
    """(G, G) weights -> (size, size) float map in [0, 1] (bilinear, scaled by its max)."""
    w = np.asarray(weights, dtype=np.float32)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"weights: expected a square (G, G) map, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("weights: contains NaN or infinite values")
    up = np.asarray(Image.fromarray(w, mode="F").resize((size, size), Image.Resampling.BILINEAR))
    up = up.clip(min=0)
    top = float(up.max())
    return up / top if top > 0 else up


def overlay_attention(image: np.ndarray, weights: np.ndarray, alpha: float = 0.55,
                      cmap: str = "inferno") -> np.ndarray:
    """Blend a (G, G) attention map over an (S, S, 3) uint8 image -> (S, S, 3) uint8.

    out = image * (0.25 + 0.75 m) * (1 - alpha m) + heat(m) * alpha m, with m the upsampled
    map in [0, 1]: attended regions keep their colours under a warm tint, the rest fades.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] != img.shape[1]:
        raise ValueError(f"image: expected a square (S, S, 3) array, got shape {img.shape}")
    m = upsample_map(weights, img.shape[0])[..., None]                        # (S, S, 1)
    heat = colormaps[cmap](m[..., 0])[..., :3]                                # (S, S, 3)
    base = img.astype(np.float32) / 255.0
    out = base * (0.25 + 0.75 * m) * (1 - alpha * m) + heat * alpha * m
    return (out.clip(0, 1) * 255).round().astype(np.uint8)


def plot_attention_strip(image: np.ndarray, words: Sequence[str], maps: Any,
                         out_path: str | os.PathLike[str] | None = None,
                         title: str | None = None, panel_in: float = 1.6,
                         max_per_row: int = 8) -> Figure:
    """The image, then one overlaid panel per word; saved atomically to `out_path` if given.

    image: (S, S, 3) uint8; words: (W,); maps: (W, G, G) (numpy or tensor). Wraps onto
    further rows after `max_per_row` panels.
    """
    if hasattr(maps, "detach"):
        maps = maps.detach().cpu().numpy()
    maps = np.asarray(maps, dtype=np.float32)
    if isinstance(words, str):
        raise ValueError("words: expected a sequence of str, got one str")
    if maps.ndim != 3 or maps.shape[0] != len(words):
        raise ValueError(f"maps: expected ({len(words)}, G, G) for {len(words)} words, "
                         f"got shape {maps.shape}")
    n = len(words) + 1
    cols = min(n, max_per_row)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(panel_in * cols, panel_in * rows + (0.45 if title else 0.1)),
                 layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    G = maps.shape[1] if maps.size else 0
    axes.flat[0].imshow(image, interpolation="nearest")
    axes.flat[0].set_title("input" + (f" ({G}x{G} regions)" if G else ""), fontsize=8)
    for i, (word, w) in enumerate(zip(words, maps, strict=True)):
        ax = axes.flat[i + 1]
        ax.imshow(overlay_attention(image, w), interpolation="bilinear")
        ax.set_title(f"{_printable(word)}\n(top region {100 * float(w.max()):.0f}%)", fontsize=9)
    if title:
        fig.suptitle(_printable(title), fontsize=10)
    if out_path is not None:
        save_figure_atomic(fig, Path(out_path), dpi=110)
    return fig
