"""Decode with a trained Joey NMT 2.3.0 checkpoint and time it (runs in Joey's Python).

    JOEY_PYTHON joey_decode.py --config CFG --ckpt CKPT --threads N --out OUT.json \
        --job dev:1 --job test:5

Each `--job SPLIT:BEAM` decodes the config's dev or test file with Joey's own `predict` (its
batching, search and sentencepiece detokenisation; batch 64 sentences) and records the
detokenised hypotheses and the wall time of that call (tokenisation + search + detokenisation,
as seqlab's `Translator.translate` is timed). Model and data loading are not timed. The output
also holds the checkpoint's training statistics (steps, total target tokens) and the parameter
count. Scoring is left to the caller (seqlab's `score_corpus`, the same scorer for both systems).

`--replay-steps N` (with the training config) rebuilds Joey's training iterator as its
TrainManager does (`make_iter` with the config's seed, `set_seed(seed + epoch)` per epoch) and
counts, over the first N batches, the padded target positions (B x (max target length + 1), EOS
included) and the real ones (`Batch.ntokens`), and the real ones of batch N + 1: a checkpoint's
`total_tokens` equals one of the two real counts when the replay follows the training (Joey
counts a batch's tokens before its optimizer step, so a run stopped between the two counted
one batch more).
This file must not import seqlab: it runs in Joey's separate environment.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--job", action="append", default=[], help="SPLIT:BEAM, e.g. test:5")
    ap.add_argument("--stats-only", action="store_true", help="only checkpoint statistics")
    ap.add_argument("--replay-steps", type=int, default=None,
                    help="count the padded and real target positions of the first N batches")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from joeynmt.config import load_config, parse_global_args
    from joeynmt.helpers import load_checkpoint
    from joeynmt.prediction import predict, prepare

    logging.disable(logging.INFO)   # Joey logs every config entry; keep the output short
    ckpt_path = Path(args.ckpt).resolve()
    ckpt = load_checkpoint(ckpt_path, map_location=torch.device("cpu"))
    stats = ckpt.get("stats_state", {})
    result: dict = {"ckpt": str(ckpt_path), "threads": torch.get_num_threads(),
                    "torch": torch.__version__,
                    "steps": int(stats.get("steps", 0)),
                    "total_tokens": int(stats.get("total_tokens", 0)),
                    "best_ckpt_iter": int(stats.get("best_ckpt_iter", 0)),
                    "best_ckpt_score": float(stats.get("best_ckpt_score", float("nan"))),
                    "jobs": []}
    del ckpt
    if args.replay_steps is not None:
        result["replay"] = replay_batches(load_config(Path(args.config)), args.replay_steps)
    elif not args.stats_only:
        cfg = load_config(Path(args.config))
        cfg["testing"].update({"load_model": str(ckpt_path), "batch_size": args.batch_size,
                               "batch_type": "sentence", "eval_metrics": [], "n_best": 1})
        base = parse_global_args(cfg, rank=0, mode="test")
        model, _, dev_data, test_data = prepare(base, rank=0, mode="test")
        result["num_parameters"] = sum(p.numel() for p in model.parameters())
        for job in args.job:
            split, beam = job.split(":")
            data = {"dev": dev_data, "test": test_data}[split]
            data.reset_indices(random_subset=-1)
            test_args = base.test._replace(beam_size=int(beam))
            t0 = time.perf_counter()
            _, _, hyps, _, _, _ = predict(model=model, data=data, device=base.device, n_gpu=0,
                                         rank=0, compute_loss=False, num_workers=0,
                                         normalization=base.train.normalization,
                                         args=test_args, autocast=base.autocast)
            seconds = time.perf_counter() - t0
            result["jobs"].append({"split": split, "beam": int(beam), "seconds": seconds,
                                   "n_sentences": len(hyps), "hyps": hyps})
    write_json(result, args.out)


def replay_batches(cfg: dict, steps: int) -> dict:
    """Padded and real target positions of Joey's first `steps` training batches (see above)."""
    from joeynmt.config import parse_global_args
    from joeynmt.data import load_data

    base = parse_global_args(cfg, rank=0, mode="test")   # fills in Joey's defaults
    seed = base.seed                                      # TrainManager.seed
    _, trg_vocab, train_data, _, _ = load_data(cfg=base.data, datasets=["train"])
    it = train_data.make_iter(batch_size=base.train.batch_size,
                              batch_type=base.train.batch_type, seed=seed,
                              shuffle=base.train.shuffle, num_workers=0,
                              pad_index=trg_vocab.pad_index, eos_index=trg_vocab.eos_index)
    padded = real = batches = 0
    real_next = None
    epoch = 1                      # TrainManager's first epoch number
    while real_next is None:
        train_data.seed = seed + epoch
        it.batch_sampler.set_seed(seed + epoch)
        for batch in it:
            if batches == steps:
                real_next = real + int(batch.ntokens)
                break
            padded += batch.trg.numel()                     # (B, T + 1): targets + EOS
            real += int(batch.ntokens)
            batches += 1
        epoch += 1
    return {"steps": steps, "padded_target_positions": padded, "real_target_tokens": real,
            "real_target_tokens_one_more_batch": real_next, "epochs_touched": epoch - 1}


def write_json(result: dict, out: str) -> None:
    tmp = Path(out + ".tmp")
    tmp.write_text(json.dumps(result), encoding="utf-8")
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
