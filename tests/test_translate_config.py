"""Seq2SeqConfig: one name per hyperparameter, checked on construction (no model is built)."""

from __future__ import annotations

import dataclasses

import pytest

from seqlab.errors import UserError
from seqlab.translate.model import Seq2Seq, Seq2SeqConfig
from seqlab.translate.run import FORMAT_V1, upgrade_run_config


@pytest.mark.parametrize(("field", "value"), [
    ("src_vocab_size", 0), ("tgt_vocab_size", -3), ("embedding_dim", 2.5),
    ("encoder_hidden_size", 0), ("num_encoder_layers", 0), ("decoder_hidden_size", True),
    ("attention", "bahdanau"), ("attn_dim", 0), ("num_heads", 0), ("dropout", 1.0),
    ("label_smoothing", -0.1), ("input_feeding", "yes"), ("pad_id", -1),
])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(UserError, match=rf"^Seq2SeqConfig\.{field}: expected"):
        Seq2SeqConfig(**{field: value})


@pytest.mark.parametrize(("kw", "needle"), [
    (dict(attention="additive", num_heads=2), r"num_heads: expected 1"),
    (dict(attention="multihead", num_heads=3, decoder_hidden_size=16),
     r"num_heads: decoder_hidden_size=16 must divide"),
    (dict(attention="multihead", num_heads=3, attn_dim=8), r"num_heads: attn_dim=8 must divide"),
    (dict(attention="dot", encoder_hidden_size=8, decoder_hidden_size=32),
     r"attention: 'dot' needs decoder_hidden_size == 2 \* encoder_hidden_size \(16\)"),
    (dict(tie_embeddings=True, embedding_dim=8, decoder_hidden_size=16),
     r"tie_embeddings: needs embedding_dim == decoder_hidden_size"),
])
def test_combinations_are_checked(kw, needle):
    with pytest.raises(UserError, match=needle):
        Seq2SeqConfig(**kw)


def test_every_accepted_config_builds_its_model():
    """What the config accepts, the modules accept (the checks are not stricter than needed)."""
    for kw in (dict(attention="dot", encoder_hidden_size=8, decoder_hidden_size=16),
               dict(attention="multihead", num_heads=4, attn_dim=8),
               dict(attention="none", bridge=False, input_feeding=False),
               dict(tie_embeddings=True, embedding_dim=16, decoder_hidden_size=16)):
        cfg = Seq2SeqConfig(**{"embedding_dim": 8, "encoder_hidden_size": 8,
                               "decoder_hidden_size": 16, "src_vocab_size": 11,
                               "tgt_vocab_size": 13, **kw})
        m = Seq2Seq(cfg)
        assert m.encoder.hidden_size == cfg.encoder_hidden_size
        assert m.encoder.num_layers == cfg.num_encoder_layers
        assert m.decoder.cell.hidden_size == cfg.decoder_hidden_size
        assert m.src_embed.embedding_dim == cfg.embedding_dim


def test_round_trip_and_old_layout():
    cfg = Seq2SeqConfig(src_vocab_size=30, embedding_dim=24, encoder_hidden_size=12,
                        num_encoder_layers=2, decoder_hidden_size=24, attention="general")
    assert Seq2SeqConfig.from_dict(cfg.to_dict()) == cfg
    old = {"src_vocab_size": 30, "tgt_vocab_size": 8000, "emb_dim": 24, "enc_hidden": 12,
           "enc_layers": 2, "dec_hidden": 24, "attention": "general"}
    up = upgrade_run_config({"format": FORMAT_V1, "model": old, "data": {"x": 1}})
    assert up["format"] == "seqlab-translator/2" and up["data"] == {"x": 1}
    assert Seq2SeqConfig.from_dict(up["model"]) == cfg
    with pytest.raises(UserError, match=r"unknown fields \['dec_hidden', 'emb_dim'"):
        Seq2SeqConfig.from_dict(old)          # the old names only through the converter
    assert {f.name for f in dataclasses.fields(Seq2SeqConfig)}.isdisjoint(
        {"emb_dim", "enc_hidden", "enc_layers", "dec_hidden"})
