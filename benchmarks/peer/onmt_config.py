"""OpenNMT-py 3.0.4 inputs for the peer benchmark: subword files, vocabulary, config, log parsing.

OpenNMT-py 3.0.4 is the newest 3.x release whose torch requirement admits the pinned torch
(3.1-3.2 need torch<2, 3.3 torch<2.1, 3.4 torch<2.2, 3.5 torch<2.3). It runs in its own
environment (benchmarks/.venv-onmt). Its checkpoints hold an `argparse.Namespace`, which the
pinned torch's `torch.load` (weights_only by default) refuses, so its processes run with
`TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1` (`ONMT_ENV`); they load only checkpoints this benchmark wrote.

Both sides are written as the shared sentencepiece model's pieces separated by spaces (OpenNMT
splits on whitespace; no transforms), so OpenNMT sees the same subwords as seqlab and Joey; its
hypotheses are pieces, detokenised by the caller with the same model. The vocabulary file is
Joey's (the pieces without the specials; OpenNMT adds its own).

Model: 1-layer `brnn` encoder and `rnn` decoder (LSTM), `mlp` (Bahdanau) attention, input
feeding, bridge, embeddings 256, dropout 0.2. OpenNMT's bidirectional encoder splits
`hidden_size` over the two directions and its decoder state must have the encoder's size, so the
256-unit decoder comes with 128 units per encoder direction (seqlab and Joey: 256 per direction,
bridged down to the decoder's 256): the decoder, where most of the compute is, has the same size.
Training mirrors the others: Adam, the `noam` schedule scaled so that it is Joey's (linear warmup
to the peak lr, then 1/sqrt(step)), token batches of about 4,096 padded tokens, clip norm 1.0,
label smoothing 0.1, per-token loss, validation (perplexity) every `valid_steps` steps, where a
checkpoint is also saved: OpenNMT does not save on SIGINT, so its final weights are the last
checkpoint, up to `valid_steps` steps before the end of the budget.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peer.joey_config import yaml_float

ONMT_PIP_STEPS = [["torch==2.13.0"], ["OpenNMT-py==3.0.4"]]
ONMT_ENV = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
ONMT_NOTES = ("3.0.4: the newest OpenNMT-py whose torch requirement (>=1.12.1) admits torch "
              "2.13; 3.1.x-3.2.x require torch<2, 3.3 torch<2.1, 3.4.x torch<2.2, 3.5.x "
              "torch<2.3, whose only Linux wheels on the package index are CUDA builds. Runs "
              "with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1: its checkpoints hold an "
              "argparse.Namespace, which torch's weights-only loading refuses. Encoder 128 "
              "units per direction (its decoder must have the bidirectional encoder's size).")

_STEP_RE = re.compile(r"Step\s+(\d+)(?:/\s*\d+)?;.*?bsz:\s+(\d+)/\s*(\d+)/\s*(\d+);\s+"
                      r"(\d+)/\s*(\d+) tok/s;\s+(\d+) sec;")
_VALID_RE = re.compile(r"Validation perplexity: ([\d.eE+-]+|inf|nan)")
_SAVE_RE = re.compile(r"Saving checkpoint \S+_step_(\d+)\.pt")
_TIME_RE = re.compile(r"Total translation time \(s\): ([\d.]+)")


@dataclass
class OnmtSettings:
    """What OpenNMT-py is told; defaults mirror JoeySettings / seqlab's TrainConfig."""

    emb_dim: int = 256
    hidden_size: int = 256            # decoder; the brnn encoder gets half per direction
    dropout: float = 0.2
    lr: float = 2e-3                  # peak learning rate
    lr_warmup: int = 200
    batch_tokens: int = 4096
    clip_norm: float = 1.0
    label_smoothing: float = 0.1
    valid_steps: int = 250
    report_every: int = 10
    seed: int = 1234

    def noam_factor(self) -> float:
        """`learning_rate` for OpenNMT's noam decay (lr * hidden^-0.5 * min(step^-0.5,
        step * warmup^-1.5)) whose peak, at step = warmup, is `lr`."""
        return self.lr * math.sqrt(self.hidden_size * self.lr_warmup)


def write_pieces(path: Path, pieces: Sequence[Sequence[str]]) -> None:
    """One sentence a line, its subword pieces separated by single spaces."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(" ".join(p) + "\n" for p in pieces), encoding="utf-8")


def onmt_config(*, model_dir: Path, train_prefix: Path, valid_prefix: Path, vocab_file: Path,
                settings: OnmtSettings, train_pairs: int, train_steps: int = 10**7
                ) -> dict[str, Any]:
    """The OpenNMT-py 3.0.4 training options (a dict; `to_yaml_block` writes it).

    `{prefix}.src` / `{prefix}.tgt` are piece files (`write_pieces`). Training runs until it is
    stopped (train_steps is a large number). OpenNMT batches from a bucket of `bucket_size`
    examples sorted by length (default 262,144, filled by cycling the corpus); the bucket is
    capped at one epoch (`train_pairs`) so that a small corpus is not read many times over
    before the first batch.
    """
    s = settings
    return {
        "save_data": str(model_dir),
        "src_vocab": str(vocab_file), "tgt_vocab": str(vocab_file), "share_vocab": True,
        "data": {"corpus_1": {"path_src": f"{train_prefix}.src",
                              "path_tgt": f"{train_prefix}.tgt"},
                 "valid": {"path_src": f"{valid_prefix}.src", "path_tgt": f"{valid_prefix}.tgt"}},
        "save_model": str(model_dir / "model"), "overwrite": True,
        "encoder_type": "brnn", "decoder_type": "rnn", "rnn_type": "LSTM",
        "enc_layers": 1, "dec_layers": 1, "hidden_size": s.hidden_size,
        "word_vec_size": s.emb_dim, "global_attention": "mlp", "input_feed": 1,
        "bridge": True, "dropout": [s.dropout], "attention_dropout": [0.0],
        "optim": "adam", "adam_beta1": 0.9, "adam_beta2": 0.999,
        "learning_rate": s.noam_factor(), "decay_method": "noam",
        "warmup_steps": s.lr_warmup, "max_grad_norm": s.clip_norm,
        "label_smoothing": s.label_smoothing, "normalization": "tokens",
        "batch_type": "tokens", "batch_size": s.batch_tokens, "valid_batch_size": 64,
        "valid_steps": s.valid_steps, "save_checkpoint_steps": s.valid_steps,
        "keep_checkpoint": -1, "train_steps": train_steps, "report_every": s.report_every,
        "bucket_size": min(262144, train_pairs), "seed": s.seed, "num_workers": 0,
    }


def to_yaml_block(cfg: dict[str, Any], indent: int = 0) -> str:
    """Block-style YAML of plain values, lists and nested dicts (OpenNMT reads `data` as a
    nested mapping and the rest as flat options)."""
    pad = " " * indent
    lines = []
    for key, value in cfg.items():
        if isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            lines.append(to_yaml_block(value, indent + 2))
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [{', '.join(_scalar(v) for v in value)}]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "\n".join(lines)


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return yaml_float(v)
    if isinstance(v, int):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_train_log(text: str) -> dict[str, Any]:
    """Steps, real target tokens and seconds from OpenNMT's training log.

    Each report line covers the `report_every` steps since the previous one, with the mean
    source/target tokens per batch (rounded) and the seconds since training began; real target
    tokens are summed as mean x steps per window. Returns the last reported step and its
    seconds, the token sum, the (step, target tokens/s) windows, the validation perplexity per
    saved step and the saved steps.
    """
    windows, real, prev_step, last = [], 0, 0, (0, 0.0)
    for m in _STEP_RE.finditer(text):
        step, tgt_per_batch, tgt_rate, sec = int(m[1]), int(m[3]), int(m[6]), float(m[7])
        real += tgt_per_batch * (step - prev_step)
        windows.append({"step": step, "tokens_per_s": tgt_rate})
        prev_step, last = step, (step, sec)
    saved = [int(m[1]) for m in _SAVE_RE.finditer(text)]
    ppl = [float(m[1]) for m in _VALID_RE.finditer(text)]
    # validation runs at each multiple of valid_steps, just before that step's checkpoint
    valid = dict(zip(saved, ppl, strict=False))
    return {"steps": last[0], "seconds": last[1], "real_target_tokens": real,
            "windows": windows, "valid_ppl": valid, "saved_steps": saved}


def translation_seconds(log: str) -> float | None:
    """OpenNMT's own timing of a translate call (`-report_time`), model loading excluded."""
    m = _TIME_RE.search(log)
    return float(m[1]) if m else None
