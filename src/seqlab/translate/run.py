"""The translator's run directory: the config.json format, reading it (older layouts upgraded on
the way in) and loading the trained model.

Run directory (format tag "seqlab-translator/2"):
    config.json              {"format", "model": Seq2SeqConfig, "train": TrainConfig,
                              "data": DataConfig, "tokenizer": fingerprint, "corpus", ...}
    tokenizer/               the sentencepiece model(s) (seqlab.text.tokenizer)
    model.safetensors        the best weights so far (by dev BLEU)
    checkpoint.safetensors   the last state (seqlab.training.checkpoint)
    train_log.jsonl          one JSON record per log interval / evaluation
    snapshots/               with --keep-checkpoints K: the weights of the last K evaluations
                             (`average_run`, `load_averaged`: checkpoint averaging)

config.json's "model" has `arch: "transformer"` for a Transformer (`TransformerConfig`); runs
without it are LSTM translators (`Seq2SeqConfig`).

Format "seqlab-translator/1" (before the config names followed torch's) had the same layout
with model fields emb_dim, enc_hidden, enc_layers, dec_hidden; `upgrade_run_config` renames
them, so such runs load, translate and resume unchanged (their config.json is not rewritten).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from seqlab.errors import UserError
from seqlab.io import save_safetensors_atomic, write_json_atomic
from seqlab.text.run import RunFormat
from seqlab.text.tokenizer import TokenizerPair
from seqlab.training.checkpoint import (
    CONFIG_FILE,
    MODEL_FILE,
    SNAPSHOT_DIR,
    average_snapshots,
    load_model_tensors,
    snapshot_paths,
)
from seqlab.translate.transformer import build_model, model_config_from_dict

FORMAT_V1 = "seqlab-translator/1"
MODEL_RENAMES_V1 = {"emb_dim": "embedding_dim", "enc_hidden": "encoder_hidden_size",
                    "enc_layers": "num_encoder_layers", "dec_hidden": "decoder_hidden_size"}


class TranslatorConfig:
    """config.json's "model" of either architecture (see `model_config_from_dict`)."""

    from_dict = staticmethod(model_config_from_dict)


RUN_FORMAT = RunFormat("seqlab-translator/2", "translator", build_model, TranslatorConfig,
                       ("src_vocab_size", "tgt_vocab_size"),
                       {FORMAT_V1: MODEL_RENAMES_V1})
FORMAT = RUN_FORMAT.tag
upgrade_run_config = RUN_FORMAT.upgrade
read_run_config = RUN_FORMAT.read
load_run = RUN_FORMAT.load


def averaged_weights(run_dir: str | Path, last: int) -> dict[str, torch.Tensor]:
    """The mean of the run's last `last` weight snapshots (`--keep-checkpoints`)."""
    paths = snapshot_paths(run_dir)
    if last < 1:
        raise UserError(f"--last: expected a count >= 1, got {last}")
    if len(paths) < last:
        raise UserError(f"{Path(run_dir) / SNAPSHOT_DIR}: {len(paths)} weight snapshots, "
                        f"{last} asked for (train with --keep-checkpoints {last} or more)")
    return average_snapshots(paths[-last:])


def load_averaged(run_dir: str | Path, last: int) -> tuple[Any, TokenizerPair, dict[str, Any]]:
    """`load_run` with the mean of the last `last` snapshots as weights."""
    model, tok, cfg = load_run(run_dir)
    load_model_tensors(model, averaged_weights(run_dir, last), str(Path(run_dir) / SNAPSHOT_DIR))
    return model, tok, cfg


def average_run(run_dir: str | Path, last: int, out_dir: str | Path) -> Path:
    """A new run directory `out_dir` whose model.safetensors is the mean of `run_dir`'s last
    `last` snapshots (config and tokenizer copied; it translates and evaluates, it does not
    resume)."""
    run, out = Path(run_dir), Path(out_dir)
    cfg = read_run_config(run)
    weights = averaged_weights(run, last)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: exists and is not empty; choose a new output directory")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(run / "tokenizer", out / "tokenizer")
    steps = [p.stem for p in snapshot_paths(run)[-last:]]
    write_json_atomic(out / CONFIG_FILE, {**cfg, "averaged_from": {"run": str(run.resolve()),
                                                                   "snapshots": steps}})
    save_safetensors_atomic(weights, out / MODEL_FILE,
                            metadata={"format": FORMAT, "averaged": ",".join(steps)})
    return out
