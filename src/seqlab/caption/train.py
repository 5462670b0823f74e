"""Training the captioner, in the translator's run-directory format, with exact resume.

Run directory (as `seqlab.translate.train`, format tag "seqlab-captioner/1"):
    config.json              model + training + data config, the tokenizer fingerprint, split info
    tokenizer/               the sentencepiece model (`TokenizerPair`, shared: one model)
    model.safetensors        the best weights so far (by dev BLEU, greedy)
    checkpoint.safetensors   last state: model + Adam tensors, RNG states, progress (metadata)
    train_log.jsonl          one JSON record per log interval / evaluation

This is a thin adapter over the translator's training machinery: it imports its learning-rate
schedule (`WarmupPlateau`, warmup then halving on a dev-BLEU plateau), `TrainConfig`, the
checkpoint helpers (model/optimizer/RNG tensors <-> safetensors) and its batching
(`make_batches`: length-bucketed, seeded by (seed, epoch), so a resumed run sees the same data
order). Only the loop body differs: a batch is (images, caption ids) instead of (source ids,
target ids). The loop mirrors the translator's (the same stop rules: max_steps, max_epochs,
time budget, early stopping on dev BLEU; the same checkpoint contents), so one shared,
generic loop can replace both once `seqlab.translate.train` takes the batch/loss/evaluate steps
as arguments.

Tokenizer: the shared `SubwordTokenizer` (sentencepiece unigram with byte fallback) trained on
the training captions with a small vocabulary (default 1000 pieces, 740 of them learnt; the
emoji names have ~1,800 distinct words), so no caption word is ever unknown and frequent words
("skin", "tone", "flag:", "face") are single pieces. The attention pictures merge a word's
pieces back into one word.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from seqlab.caption.data import CaptionDataset, CaptionSplits, read_caption_folder, split_dataset
from seqlab.caption.encoder import images_to_tensor
from seqlab.caption.model import CaptionerConfig, CaptionModel
from seqlab.errors import UserError
from seqlab.io import save_safetensors_atomic, write_json_atomic, write_text_atomic
from seqlab.translate.batching import make_batches
from seqlab.translate.tokenizer import TokenizerPair
from seqlab.translate.train import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    LOG_FILE,
    MODEL_FILE,
    TrainConfig,
    WarmupPlateau,
    _load_optimizer,
    _optimizer_tensors,
    _rng_state,
    _set_rng_state,
    load_model_tensors,
    load_safetensors,
    model_tensors,
    seed_everything,
)

FORMAT = "seqlab-captioner/1"
__all__ = ["CaptionDataConfig", "TrainConfig", "default_train_config", "load_splits",
           "read_caption_run_config", "train_captioner"]


@dataclass
class CaptionDataConfig:
    data: str = "emoji"            # "emoji" (built-in) or a folder with captions.tsv, or a TSV
    split: str = "random"          # random | grouped
    test_frac: float = 0.1
    dev_frac: float = 0.05
    split_seed: int = 1234
    vocab_size: int = 1000
    image_size: int = 64


def default_train_config(**kw: Any) -> TrainConfig:
    """The translator's TrainConfig with captioning defaults: batches of 64 images."""
    base = dict(batch_tokens=None, batch_size=64, lr=3e-3, warmup_steps=100, eval_every=150,
                eval_sentences=400, eval_batch_size=128, patience=10, log_every=25)
    return TrainConfig(**{**base, **kw})


def load_dataset(data_cfg: CaptionDataConfig) -> CaptionDataset:
    if data_cfg.data == "emoji":
        from seqlab.caption.emoji import prepare_emoji

        folder: Path = prepare_emoji()
    else:
        folder = Path(data_cfg.data)
    return read_caption_folder(folder, image_size=data_cfg.image_size)


def load_splits(data_cfg: CaptionDataConfig, dataset: CaptionDataset | None = None
                ) -> CaptionSplits:
    """Read the data and split it as `data_cfg` says (deterministic)."""
    ds = dataset if dataset is not None else load_dataset(data_cfg)
    return split_dataset(ds, data_cfg.split, data_cfg.test_frac, data_cfg.dev_frac,
                         data_cfg.split_seed)


def read_caption_run_config(run_dir: str | Path) -> dict[str, Any]:
    """config.json of a captioner run; missing or corrupt -> one-line UserError."""
    run = Path(run_dir)
    path = run / CONFIG_FILE
    if not run.is_dir():
        raise UserError(f"{run}: run directory not found")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
        if cfg.get("format") != FORMAT:
            raise ValueError(f"format {cfg.get('format')!r}, expected {FORMAT!r}")
        CaptionerConfig.from_dict(cfg["model"])
    except FileNotFoundError:
        raise UserError(f"{path}: not found (not a captioner run directory)") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise UserError(f"{path}: corrupt run config ({err})") from None
    return cfg


def pad_captions(ids: list[list[int]], pad_id: int, bos_id: int, eos_id: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Caption id lists -> tgt_in [BOS]+y and tgt_out y+[EOS], both (B, T), right-padded."""
    T = max(len(r) for r in ids) + 1
    tgt_in = torch.full((len(ids), T), pad_id, dtype=torch.long)
    tgt_out = torch.full((len(ids), T), pad_id, dtype=torch.long)
    for b, r in enumerate(ids):
        tgt_in[b, 0] = bos_id
        tgt_in[b, 1:len(r) + 1] = torch.tensor(r, dtype=torch.long)
        tgt_out[b, :len(r)] = torch.tensor(r, dtype=torch.long)
        tgt_out[b, len(r)] = eos_id
    return tgt_in, tgt_out


@dataclass
class _Progress:
    step: int = 0
    epoch: int = 0
    batch_pos: int = 0
    best_bleu: float | None = None
    evals_since_best: int = 0
    best_periodic: float | None = None
    stopped: str | None = None


def train_captioner(out_dir: str | Path, model_cfg: dict[str, Any] | None = None,
                    train_cfg: TrainConfig | None = None,
                    data_cfg: CaptionDataConfig | None = None, *, resume: bool = False,
                    overrides: dict[str, Any] | None = None, progress: bool = True,
                    splits: CaptionSplits | None = None,
                    echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (or, with resume=True, continue) a captioner in `out_dir`.

    model_cfg: overrides of CaptionerConfig fields (vocab_size comes from the tokenizer).
    overrides (resume only): training fields to change when continuing (max_steps,
    time_budget_min, ...). splits: already loaded data (skips reading `data_cfg.data`).
    Returns a summary: steps, epochs, best dev BLEU, images/s, why it stopped.
    """
    out = Path(out_dir)
    if resume:
        cfg = read_caption_run_config(out)
        data_cfg = CaptionDataConfig(**cfg["data"])
        train_cfg = TrainConfig.from_dict({**cfg["train"], **(overrides or {})})
        mcfg = CaptionerConfig.from_dict(cfg["model"])
        tok = TokenizerPair.load(out)
        tok.check_fingerprint(cfg["tokenizer"], where=str(out / CONFIG_FILE))
        if not (out / CHECKPOINT_FILE).is_file():
            raise UserError(f"{out / CHECKPOINT_FILE}: not found; nothing to resume")
    else:
        data_cfg = data_cfg or CaptionDataConfig()
        train_cfg = train_cfg or default_train_config()
        if (out / CHECKPOINT_FILE).exists():
            raise UserError(f"{out}: already holds a training run; use --resume to continue it "
                            "or choose a new --out directory")
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    seed_everything(train_cfg.seed)
    if splits is None:
        splits = load_splits(data_cfg)
    train_idx, train_caps = splits.train.pairs()
    if not resume:
        echo(f"training the tokenizer ({data_cfg.vocab_size} subwords) on "
             f"{len(train_caps)} captions")
        tok = TokenizerPair.train_pair(train_caps, [], out, vocab_size=data_cfg.vocab_size,
                                       shared=True)
        mcfg = CaptionerConfig(**{**(model_cfg or {}), "vocab_size": tok.tgt.vocab_size,
                                  "image_size": data_cfg.image_size, "pad_id": tok.tgt.pad_id,
                                  "bos_id": tok.tgt.bos_id, "eos_id": tok.tgt.eos_id})
    cap_ids = tok.tgt.encode(train_caps)
    images = images_to_tensor(splits.train.load_pixels())                # (N, 3, S, S)
    n_dev = min(train_cfg.eval_sentences, len(splits.dev))
    dev = splits.dev.subset(range(n_dev))
    dev_images = images_to_tensor(dev.load_pixels()) if n_dev else None
    dev_refs = dev.first_captions()

    torch.manual_seed(train_cfg.seed)
    model = CaptionModel(mcfg)
    opt = torch.optim.Adam(model.parameters(), lr=train_cfg.lr)
    sched = WarmupPlateau(train_cfg)
    prog = _Progress()
    log_records: list[dict[str, Any]] = []
    if resume:
        tensors, meta = load_safetensors(out / CHECKPOINT_FILE)
        try:
            state = json.loads(meta["state"])
            load_model_tensors(model, {k[len("model."):]: v for k, v in tensors.items()
                                       if k.startswith("model.")}, str(out / CHECKPOINT_FILE))
            _load_optimizer(opt, tensors, state["optimizer"])
            sched.load_state_dict(state["schedule"])
            _set_rng_state(tensors, state["rng"])
            prog = _Progress(**state["progress"])
        except (KeyError, ValueError, TypeError) as err:
            raise UserError(f"{out / CHECKPOINT_FILE}: corrupt checkpoint ({err!r})") from None
        log_path = out / LOG_FILE
        if log_path.is_file():
            for line in log_path.read_text(encoding="utf-8").splitlines():
                rec = json.loads(line)
                if rec.get("step", 0) <= prog.step:
                    log_records.append(rec)
        echo(f"resuming {out} at step {prog.step} (epoch {prog.epoch})")
    else:
        write_json_atomic(out / CONFIG_FILE, {
            "format": FORMAT, "model": mcfg.to_dict(), "train": asdict(train_cfg),
            "data": asdict(data_cfg), "tokenizer": tok.fingerprint(),
            "splits": splits.info(), "num_parameters": model.num_parameters()})
        echo(f"{model.num_parameters():,} parameters; {len(splits.train)} training images, "
             f"{len(train_caps)} captions; {mcfg.grid}x{mcfg.grid} regions")

    def write_log() -> None:
        write_text_atomic(out / LOG_FILE, "".join(json.dumps(r) + "\n" for r in log_records))

    def save_checkpoint() -> None:
        opt_t, opt_meta = _optimizer_tensors(opt)
        rng_t, rng_meta = _rng_state()
        tensors = {f"model.{k}": v for k, v in model_tensors(model).items()}
        tensors.update(opt_t)
        tensors.update(rng_t)
        state = {"optimizer": opt_meta, "schedule": sched.state_dict(), "rng": rng_meta,
                 "progress": asdict(prog)}
        save_safetensors_atomic(tensors, out / CHECKPOINT_FILE,
                                metadata={"format": FORMAT, "state": json.dumps(state)})
        write_log()

    def evaluate(periodic: bool) -> float:
        from seqlab.caption.api import caption_tensor
        from seqlab.translate.metrics import score_corpus

        if dev_images is None:       # no dev images: keep the latest weights
            bleu = 0.0
        else:
            hyps = [c.text for c in caption_tensor(model, tok.tgt, dev_images, num_beams=1,
                                                   batch_size=train_cfg.eval_batch_size)]
            bleu = float(score_corpus(hyps, dev_refs, "en")["bleu"])
        if prog.best_bleu is None or bleu > prog.best_bleu or dev_images is None:
            prog.best_bleu = bleu
            save_safetensors_atomic(model_tensors(model), out / MODEL_FILE,
                                    metadata={"format": FORMAT, "step": str(prog.step)})
        if periodic:
            sched.observe(bleu)
            if prog.best_periodic is None or bleu > prog.best_periodic:
                prog.best_periodic, prog.evals_since_best = bleu, 0
            else:
                prog.evals_since_best += 1
        log_records.append({"step": prog.step, "epoch": prog.epoch, "dev_bleu": bleu,
                            "best_dev_bleu": prog.best_bleu, "lr": sched.lr(prog.step)})
        return bleu

    from tqdm.auto import tqdm

    src_lens = [1] * len(cap_ids)                       # one image each: bucket by caption length
    tgt_lens = [len(c) for c in cap_ids]
    t_start = time.perf_counter()
    budget_s = train_cfg.time_budget_min * 60 if train_cfg.time_budget_min else None
    n_images = 0
    win_img, win_tok, win_loss, win_t0 = 0, 0, 0.0, time.perf_counter()
    last_eval_step = prog.step if resume else -1
    bar = tqdm(total=train_cfg.max_steps, initial=prog.step, disable=not progress,
               unit="step", dynamic_ncols=True)
    stop: str | None = None
    while stop is None:
        if prog.epoch >= train_cfg.max_epochs:
            stop = "max_epochs"
            break
        batches = make_batches(src_lens, tgt_lens, max_tokens=train_cfg.batch_tokens,
                               batch_size=train_cfg.batch_size, seed=train_cfg.seed,
                               epoch=prog.epoch)
        while prog.batch_pos < len(batches):
            if train_cfg.max_steps is not None and prog.step >= train_cfg.max_steps:
                stop = "max_steps"
                break
            if budget_s is not None and time.perf_counter() - t_start >= budget_s:
                stop = "time_budget"
                break
            rows = batches[prog.batch_pos]
            imgs = images[torch.tensor([train_idx[i] for i in rows])]         # (B, 3, S, S)
            tgt_in, tgt_out = pad_captions([cap_ids[i] for i in rows], mcfg.pad_id,
                                           mcfg.bos_id, mcfg.eos_id)
            model.train()
            loss_sum, n_tok = model.loss(imgs, tgt_in, tgt_out)
            (loss_sum / n_tok).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.clip_norm)
            lr = sched.lr(prog.step)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.step()
            opt.zero_grad(set_to_none=True)
            prog.step += 1
            prog.batch_pos += 1
            n_images += len(rows)
            win_img += len(rows)
            win_tok += n_tok
            win_loss += float(loss_sum.detach())
            bar.update(1)
            if prog.step % train_cfg.log_every == 0:
                dt = time.perf_counter() - win_t0
                rec = {"step": prog.step, "epoch": prog.epoch, "loss": win_loss / win_tok,
                       "lr": lr, "images_per_s": win_img / dt if dt > 0 else None}
                log_records.append(rec)
                bar.set_postfix(loss=f"{rec['loss']:.3f}", img_s=f"{rec['images_per_s']:.0f}",
                                refresh=False)
                win_img, win_tok, win_loss, win_t0 = 0, 0, 0.0, time.perf_counter()
            if prog.step % train_cfg.eval_every == 0:
                t_eval = time.perf_counter()
                bleu = evaluate(periodic=True)
                last_eval_step = prog.step
                bar.write(f"step {prog.step}: dev BLEU {bleu:.2f} (best {prog.best_bleu:.2f}), "
                          f"lr {sched.lr(prog.step):.2e}")
                if prog.evals_since_best >= train_cfg.patience:
                    stop = "early_stopping"
                save_checkpoint()
                win_t0 += time.perf_counter() - t_eval   # evaluation time is not training time
                if stop:
                    break
        else:
            prog.epoch += 1
            prog.batch_pos = 0
    bar.close()
    elapsed = time.perf_counter() - t_start
    if last_eval_step != prog.step or not (out / MODEL_FILE).exists():
        bleu = evaluate(periodic=False)
        echo(f"step {prog.step}: final dev BLEU {bleu:.2f} (best {prog.best_bleu:.2f})")
    prog.stopped = stop
    save_checkpoint()
    best = prog.best_bleu if prog.best_bleu is not None else float("nan")
    echo(f"stopped ({stop}) after {prog.step} steps; best dev BLEU {best:.2f}")
    return {"steps": prog.step, "epochs": prog.epoch, "stopped": stop,
            "best_dev_bleu": prog.best_bleu, "seconds": elapsed,
            "train_images_per_s": n_images / elapsed if elapsed > 0 else None,
            "run_dir": str(out)}
