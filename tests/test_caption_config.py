"""CaptionerConfig: one name per hyperparameter, checked on construction (no model is built)."""

from __future__ import annotations

import pytest

from seqlab.caption.model import CaptionerConfig, CaptionModel
from seqlab.caption.run import FORMAT_V1, upgrade_run_config
from seqlab.errors import UserError


@pytest.mark.parametrize(("field", "value"), [
    ("vocab_size", 0), ("image_size", -8), ("feat_dim", 0), ("embedding_dim", 1.5),
    ("hidden_size", 0), ("attention", "luong"), ("attn_dim", -1), ("num_heads", 0),
    ("dropout", 2.0), ("label_smoothing", 1.0), ("bridge", 1), ("max_len", 0),
    ("attn_reg", -0.5), ("channels", ()), ("eos_id", -2),
])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(UserError, match=rf"^CaptionerConfig\.{field}: expected"):
        CaptionerConfig(**{field: value})


@pytest.mark.parametrize(("kw", "needle"), [
    (dict(image_size=36), r"image_size: must be divisible by 2\*\*3"),
    (dict(attention="dot", hidden_size=64, feat_dim=32), r"'dot' needs hidden_size == feat_dim"),
    (dict(attention="multihead", num_heads=3), r"num_heads: attn_dim=128 must divide"),
])
def test_combinations_are_checked(kw, needle):
    with pytest.raises(UserError, match=needle):
        CaptionerConfig(**kw)


def test_names_reach_the_modules_and_round_trip():
    cfg = CaptionerConfig(vocab_size=40, image_size=32, channels=[8, 16], feat_dim=24,
                          embedding_dim=12, hidden_size=24, attention="scaled_dot")
    assert cfg.channels == (8, 16)           # a JSON list becomes the tuple
    m = CaptionModel(cfg)
    assert m.decoder.embed.embedding_dim == cfg.embedding_dim
    assert m.decoder.cell.hidden_size == cfg.hidden_size
    assert CaptionerConfig.from_dict(cfg.to_dict()) == cfg
    old = {**cfg.to_dict(), "emb_dim": 12, "dec_hidden": 24}
    del old["embedding_dim"], old["hidden_size"]
    up = upgrade_run_config({"format": FORMAT_V1, "model": old})
    assert up["format"] == "seqlab-captioner/2"
    assert CaptionerConfig.from_dict(up["model"]) == cfg
