"""Tests for the attention heat maps and the JSON export."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from seqlab.errors import UserError
from seqlab.nn.attention import build_attention
from seqlab.viz.attention_plot import export_attention_json, load_attention_json, plot_attention

SRC = ["▁the", "▁house", "▁is", "▁big", ".", "</s>"]
TGT = ["▁la", "▁maison", "▁est", "▁grande", ".", "</s>"]


def _real_weights(heads: int = 1) -> torch.Tensor:
    """Weights from the attention module itself, for a batch row with 2 padded positions."""
    torch.manual_seed(0)
    kind = "multihead" if heads > 1 else "additive"
    attn = build_attention(kind, 12, 12, num_heads=heads)
    q, k = torch.randn(1, len(TGT), 12), torch.randn(1, len(SRC) + 2, 12)
    mask = torch.ones(1, len(SRC) + 2, dtype=torch.bool)
    mask[0, len(SRC):] = False
    _, w = attn(q, k, k, mask, return_head_weights=heads > 1)
    assert torch.all(w[..., len(SRC):] == 0)
    return w[0, ..., : len(SRC)]  # drop the padding columns: (T, S) or (heads, T, S)


def _tick_texts(ax, axis: str) -> list[str]:
    ticks = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    return [t.get_text() for t in ticks]


def test_plot_labels_axes_colorbar_and_png(tmp_path):
    out = tmp_path / "sub" / "attn.png"
    fig = plot_attention(_real_weights(), SRC, TGT, out_path=out, title="additive")
    heat, bar = fig.axes[0], fig.axes[1]
    assert _tick_texts(heat, "x") == SRC and _tick_texts(heat, "y") == TGT
    assert heat.get_xlabel() == "source" and heat.get_ylabel() == "output"
    assert all(t.get_rotation() == 90 for t in heat.get_xticklabels())
    assert bar.get_ylabel() == "attention weight"
    image = mpimg.imread(out)  # a real PNG that decodes
    assert image.ndim == 3 and min(image.shape[:2]) > 200
    assert [p.name for p in out.parent.iterdir()] == ["attn.png"]  # no temp file left


def test_plot_heads_grid_and_svg(tmp_path):
    w = _real_weights(heads=3)
    out = tmp_path / "heads.svg"
    fig = plot_attention(w, SRC, TGT, out_path=out)
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in visible] == ["head 1", "head 2", "head 3"]
    text = out.read_text(encoding="utf-8")
    assert text.lstrip().startswith("<?xml") and "<svg" in text


def test_plot_50_tokens_stays_readable():
    S, T = 50, 50
    src = [f"▁maison{i}" for i in range(S)]
    tgt = [f"▁mot{i}" for i in range(T)]
    w = torch.softmax(torch.randn(T, S), -1)
    fig = plot_attention(w, src, tgt)
    ax = fig.axes[0]
    sizes = [t.get_fontsize() for t in ax.get_xticklabels() + ax.get_yticklabels()]
    assert min(sizes) >= 6.5  # readable at the saved dpi
    width, height = fig.get_size_inches()
    assert 10 < width < 30 and 10 < height < 30
    # small maps get larger fonts than big ones
    small = plot_attention(w[:5, :5], src[:5], tgt[:5])
    assert small.axes[0].get_xticklabels()[0].get_fontsize() > sizes[0]


def test_plot_shape_mismatch_names_both():
    with pytest.raises(ValueError, match=r"shape \(6, 6\) does not match 5 output tokens x 6"):
        plot_attention(_real_weights(), SRC, TGT[:5])
    with pytest.raises(ValueError, match="weights"):
        plot_attention(torch.ones(6), SRC, TGT)
    with pytest.raises(ValueError, match="NaN"):
        plot_attention(torch.full((6, 6), float("nan")), SRC, TGT)
    with pytest.raises(ValueError, match="src_tokens"):
        plot_attention(torch.ones(6, 1), "abc", TGT)


def test_failed_save_leaves_nothing(tmp_path):
    from seqlab.errors import UserError

    out = tmp_path / "attn.notaformat"
    with pytest.raises(UserError, match="expected a .png, .svg or .pdf"):
        plot_attention(_real_weights(), SRC, TGT, out_path=out)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("heads", [1, 2])
def test_json_round_trip(tmp_path, heads):
    w = _real_weights(heads)
    path = tmp_path / "attn.json"
    export_attention_json(w, SRC, TGT, path)
    loaded, src, tgt = load_attention_json(path)
    assert src == SRC and tgt == TGT
    assert loaded.shape == tuple(w.shape)
    np.testing.assert_array_equal(loaded.astype(np.float32), w.detach().numpy())  # exact round trip
    obj = json.loads(path.read_text(encoding="utf-8"))
    assert obj["tgt_tokens"][1] == "▁maison" and obj["shape"] == list(w.shape)


def test_json_export_and_load_errors(tmp_path):
    with pytest.raises(ValueError, match="6 output tokens x 5 source tokens"):
        export_attention_json(_real_weights(), SRC[:5], TGT, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match="bad.json: not a JSON attention file"):
        load_attention_json(bad)
    export_attention_json(_real_weights(), SRC, TGT, bad)
    obj = json.loads(bad.read_text(encoding="utf-8"))
    obj["src_tokens"] = obj["src_tokens"][:-1]
    bad.write_text(json.dumps(obj), encoding="utf-8")
    with pytest.raises(UserError, match="bad.json: weights: shape"):
        load_attention_json(bad)
    with pytest.raises(UserError, match="no such attention file"):
        load_attention_json(tmp_path / "missing.json")
