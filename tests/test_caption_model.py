"""Captioner model: encoder/decoder shapes, masking of PAD in the loss, search, pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seqlab.caption.api import exact_match, merge_pieces
from seqlab.caption.encoder import ConvEncoder, EncoderConfig, images_to_tensor
from seqlab.caption.model import CaptionerConfig, CaptionModel
from seqlab.caption.plots import overlay_attention, plot_attention_strip, upsample_map
from seqlab.caption.train import pad_captions

SMALL = dict(channels=(8, 16), feat_dim=32, embedding_dim=16, hidden_size=32, dropout=0.0)


@pytest.mark.parametrize("size,channels,grid", [(64, (16, 32, 64), 8), (32, (8, 16), 8),
                                                (128, (8, 8, 8, 8), 8), (48, (8, 8, 8, 8), 3)])
def test_encoder_region_grid(size: int, channels: tuple[int, ...], grid: int) -> None:
    torch.manual_seed(0)
    enc = ConvEncoder(EncoderConfig(size, channels, feat_dim=20)).eval()
    x = torch.rand(3, 3, size, size)
    out = enc(x)
    assert enc.cfg.grid == grid and out.shape == (3, grid * grid, 20)
    # region r*G + c sees the image around row r, column c: changing only the top-left corner
    # changes the top-left region more than the bottom-right one
    y = x.clone()
    y[:, :, : size // grid, : size // grid] = 1 - y[:, :, : size // grid, : size // grid]
    diff = (enc(y) - out).abs().sum(-1)                                     # (B, G*G)
    if grid >= 8:   # far apart regions (on a 3x3 grid every region sees the whole image)
        assert (diff[:, 0] > diff[:, -1]).all()
    with pytest.raises(ValueError, match=r"images must be \(B, 3, "):
        enc(torch.rand(2, 3, size + 8, size))
    with pytest.raises(ValueError, match="divisible"):
        ConvEncoder(EncoderConfig(60, (8, 8, 8)))


def test_images_to_tensor() -> None:
    px = np.zeros((2, 4, 4, 3), np.uint8)
    px[0, 1, 2] = [255, 0, 51]
    t = images_to_tensor(px)
    assert t.shape == (2, 3, 4, 4) and t[0, :, 1, 2].tolist() == pytest.approx([1.0, 0.0, 0.2])
    with pytest.raises(ValueError, match="pixels"):
        images_to_tensor(np.zeros((4, 4, 3), np.uint8))


@pytest.mark.parametrize("attention", ["additive", "dot", "general", "multihead", "none"])
def test_model_shapes_and_attention(attention: str) -> None:
    torch.manual_seed(0)
    cfg = CaptionerConfig(vocab_size=30, image_size=32, attention=attention,
                          num_heads=2 if attention == "multihead" else 1, **SMALL)
    model = CaptionModel(cfg).eval()
    images = torch.rand(4, 3, 32, 32)
    tgt_in, tgt_out = pad_captions([[5, 6, 7], [8], [9, 10], [11, 12, 13, 14]], 0, 2, 3)
    assert tgt_in.shape == tgt_out.shape == (4, 5)
    assert tgt_in[1].tolist() == [2, 8, 0, 0, 0] and tgt_out[1].tolist() == [8, 3, 0, 0, 0]
    logits, weights = model(images, tgt_in, return_attention=True)
    assert logits.shape == (4, 5, 30)
    assert weights is not None and weights.shape[-2:] == (5, 64)
    assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[:-1]), atol=1e-5)
    res = model.generate(images, num_beams=3, max_new_tokens=6, return_attention=True)
    for hyps in res.hypotheses:
        h = hyps[0]
        assert len(h.tokens) <= 6 and h.attention is not None
        assert h.attention.shape == (len(h.tokens), 64)


def test_loss_ignores_padding_and_penalty() -> None:
    torch.manual_seed(0)
    model = CaptionModel(CaptionerConfig(vocab_size=30, image_size=32, **SMALL)).eval()
    images = torch.rand(2, 3, 32, 32)
    tgt_in, tgt_out = pad_captions([[5, 6, 7, 8], [9]], 0, 2, 3)
    loss, n = model.loss(images, tgt_in, tgt_out)
    assert n == 5 + 2
    # what sits in tgt_in after a caption's end cannot change the loss (masked, causal)
    tgt_in2 = tgt_in.clone()
    tgt_in2[1, 2:] = 17
    loss2, _ = model.loss(images, tgt_in2, tgt_out)
    assert torch.allclose(loss, loss2)
    # the doubly stochastic penalty adds a positive term
    model.cfg.attn_reg = 1.0
    loss3, _ = model.loss(images, tgt_in, tgt_out)
    assert loss3 > loss


def test_beam_one_equals_greedy() -> None:
    torch.manual_seed(1)
    model = CaptionModel(CaptionerConfig(vocab_size=25, image_size=32, **SMALL)).eval()
    images = torch.rand(5, 3, 32, 32)
    g = model.generate(images, num_beams=1, max_new_tokens=7)
    b = model.generate(images, num_beams=1, num_return_sequences=1, max_new_tokens=7,
                       length_penalty=0.0)
    from seqlab.decoding.search import beam_search

    memory, state = model.encode(images)
    b2 = beam_search(model.decoder, memory, state, bos_id=2, eos_id=3, max_len=7, num_beams=1,
                     length_penalty=0.0)
    assert [h.tokens for h in g.best()] == [h.tokens for h in b.best()] == \
        [h.tokens for h in b2.best()]


def test_merge_pieces_into_words() -> None:
    pieces = ["\u2581woman", "\u2581tech", "no", "logist:", "\u2581", "medium"]
    att = np.arange(6, dtype=np.float32)[:, None, None] * np.ones((6, 2, 2), np.float32)
    words, maps = merge_pieces(pieces, att)
    assert words == ["woman", "technologist:", "medium"]
    assert maps is not None and maps[:, 0, 0].tolist() == [0.0, 2.0, 4.5]


def test_merge_pieces_decodes_byte_pieces() -> None:
    from seqlab.text.tokenizer import SubwordTokenizer

    tok = SubwordTokenizer.train(["red square on the left", "blue disc"] * 5, None, 300)
    [ids] = tok.encode(["red \u2603 square"])             # the snowman is spelled in bytes
    pieces = tok.ids_to_pieces(ids)
    assert any(p.startswith("<0x") for p in pieces)
    att = np.ones((len(ids), 2, 2), np.float32) / 4
    words, maps = merge_pieces(pieces, att, tok, ids)
    assert words == ["red", "\u2603", "square"] and maps is not None and maps.shape == (3, 2, 2)


def test_exact_match() -> None:
    assert exact_match(["a b", "c", "d"], [["a  b"], ["x", "c"], ["e"]]) == pytest.approx(200 / 3)
    with pytest.raises(ValueError):
        exact_match(["a"], [])


def test_overlay_lights_the_attended_region(tmp_path: Path) -> None:
    image = np.full((64, 64, 3), 200, np.uint8)
    w = np.zeros((8, 8), np.float32)
    w[6, 1] = 1.0                                # row 6, column 1: lower left
    up = upsample_map(w, 64)
    assert up.shape == (64, 64) and up.max() == pytest.approx(1.0)
    assert np.unravel_index(up.argmax(), up.shape)[0] // 8 == 6
    out = overlay_attention(image, w)
    lum = out.astype(float).sum(-1)
    assert lum[52, 12] > 2 * lum[10, 50]         # attended region bright, far corner dimmed
    fig = plot_attention_strip(image, ["a", "flag"], np.stack([w, w.T]), tmp_path / "s.png",
                               title="a flag")
    assert (tmp_path / "s.png").stat().st_size > 1000 and len(fig.axes) == 3
    assert not list(tmp_path.glob(".*tmp*"))     # atomic: no temp file left behind
    with pytest.raises(ValueError, match="maps"):
        plot_attention_strip(image, ["a"], np.stack([w, w]))
    with pytest.raises(ValueError, match="square"):
        upsample_map(np.zeros((2, 3)), 8)
