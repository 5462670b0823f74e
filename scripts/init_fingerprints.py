"""Fingerprints of the translator's and captioner's weights at initialisation under a seed.

    PYTHONPATH=src python scripts/init_fingerprints.py [tests/data/init_fingerprints.json]

Written once on the code before the text-package / config refactor (commit e96c235) and
checked by tests/test_translate_init_fingerprint.py: initialisation under `torch.manual_seed`
is deterministic across CPUs (torch's CPU generator), so a refactor that keeps "same seed, same
weights" leaves every parameter's float64 sum, absolute sum and first values unchanged. Also
records the label-smoothed loss and gradient norm of one training batch, which the test
compares with a margin (float rounding of the forward/backward differs between CPUs).

The model settings are given in the names of that time (old config fields); the test maps them
onto today's config classes.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import torch

SEED = 1234

# old TranslatorConfig fields
TRANSLATOR_CASES: dict[str, dict[str, Any]] = {
    "translator_additive": dict(src_vocab_size=50, tgt_vocab_size=40, emb_dim=16,
                                enc_hidden=12, dec_hidden=20, attention="additive"),
    "translator_multihead_tied": dict(src_vocab_size=30, tgt_vocab_size=30, emb_dim=24,
                                      enc_hidden=8, enc_layers=2, dec_hidden=24,
                                      attention="multihead", num_heads=4, attn_dim=16,
                                      tie_embeddings=True, bridge=False),
    "translator_dot_nofeed": dict(src_vocab_size=20, tgt_vocab_size=25, emb_dim=8,
                                  enc_hidden=8, dec_hidden=16, attention="dot",
                                  input_feeding=False, label_smoothing=0.0),
}
# old CaptionerConfig fields
CAPTIONER_CASES: dict[str, dict[str, Any]] = {
    "captioner_default": dict(vocab_size=60, image_size=32, channels=(8, 16), feat_dim=24,
                              emb_dim=16, dec_hidden=20),
    "captioner_multihead_bridge": dict(vocab_size=45, image_size=16, channels=(4, 8, 8),
                                       feat_dim=16, emb_dim=8, dec_hidden=16,
                                       attention="multihead", num_heads=2, attn_dim=8,
                                       bridge=True, attn_reg=0.5),
}


def fingerprint(model: torch.nn.Module) -> dict[str, Any]:
    """Per state-dict tensor: shape, float64 sum and absolute sum, first 4 values."""
    out: dict[str, Any] = {}
    for name, t in model.state_dict().items():
        x = t.detach().double().flatten()
        out[name] = {"shape": list(t.shape), "sum": float(x.sum()),
                     "abs_sum": float(x.abs().sum()), "first": x[:4].tolist()}
    return out


def translator_batch(src_vocab: int, tgt_vocab: int) -> dict[str, torch.Tensor]:
    """A fixed batch of 3 sentences (ids >= 4, PAD = 0) from a seeded generator."""
    g = torch.Generator().manual_seed(7)
    lengths = torch.tensor([6, 4, 3])
    src = torch.randint(4, src_vocab, (3, 6), generator=g)
    src_mask = torch.arange(6)[None, :] < lengths[:, None]
    src = src.masked_fill(~src_mask, 0)
    tgt = torch.randint(4, tgt_vocab, (3, 5), generator=g)
    tgt_in = torch.cat([torch.full((3, 1), 2), tgt[:, :-1]], 1)
    tgt_out = tgt.clone()
    tgt_out[2, 3:] = 0
    tgt_in[2, 4:] = 0
    return dict(src=src, src_lengths=lengths, src_mask=src_mask, tgt_in=tgt_in, tgt_out=tgt_out)


def caption_batch(vocab: int, image_size: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    images = torch.rand((3, 3, image_size, image_size), generator=g)
    tgt = torch.randint(4, vocab, (3, 5), generator=g)
    tgt_in = torch.cat([torch.full((3, 1), 2), tgt[:, :-1]], 1)
    tgt_out = tgt.clone()
    tgt_out[1, 2:] = 0
    tgt_in[1, 3:] = 0
    return dict(images=images, tgt_in=tgt_in, tgt_out=tgt_out)


def loss_and_grad(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """One training batch (train mode, dropout on): summed loss, token count, gradient norm."""
    torch.manual_seed(SEED + 1)
    model.train()
    loss, n = model.loss(**batch)
    loss.backward()
    grad = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters()
                          if p.grad is not None))
    return {"loss": loss.item(), "n_tokens": int(n), "grad_norm": float(grad)}


def make_model(name: str, old_cfg: dict[str, Any]) -> torch.nn.Module:
    """The model of case `name`, built under `SEED`, from its settings in the old field names:
    through today's config classes (converted as an old run's config.json is) or, on the code
    before the refactor, through the old ones."""
    translator = name.startswith("translator")
    try:
        if translator:
            from seqlab.translate.model import Seq2Seq as Model
            from seqlab.translate.model import Seq2SeqConfig as Config
            from seqlab.translate.run import FORMAT_V1, upgrade_run_config
        else:
            from seqlab.caption.model import CaptionerConfig as Config
            from seqlab.caption.model import CaptionModel as Model
            from seqlab.caption.run import FORMAT_V1, upgrade_run_config
        cfg = Config.from_dict(upgrade_run_config({"format": FORMAT_V1,
                                                   "model": dict(old_cfg)})["model"])
    except ImportError:   # the code before the refactor (commit e96c235)
        if translator:
            from seqlab.translate.model import Seq2Seq as Model
            from seqlab.translate.model import TranslatorConfig as Config
        else:
            from seqlab.caption.model import CaptionerConfig as Config
            from seqlab.caption.model import CaptionModel as Model
        cfg = Config.from_dict(dict(old_cfg))
    torch.manual_seed(SEED)
    return Model(cfg)


def batch_for(name: str, old_cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    if name.startswith("translator"):
        return translator_batch(old_cfg["src_vocab_size"], old_cfg["tgt_vocab_size"])
    return caption_batch(old_cfg["vocab_size"], old_cfg["image_size"])


def main(path: str) -> None:
    result: dict[str, Any] = {"seed": SEED, "models": {}}
    for name, kw in {**TRANSLATOR_CASES, **CAPTIONER_CASES}.items():
        model = make_model(name, kw)
        cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}
        result["models"][name] = {"config": cfg, "weights": fingerprint(model),
                                  "step": loss_and_grad(model, batch_for(name, kw))}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"{path}: {len(result['models'])} models")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/init_fingerprints.json")
