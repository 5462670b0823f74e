"""Training the translator: batches, optimiser, schedule, dev BLEU, checkpoints, exact resume.

Run directory (`out_dir`):
    config.json              model + training + data config, the tokenizer fingerprint
    tokenizer/               the sentencepiece model(s) (seqlab.translate.tokenizer)
    model.safetensors        the best weights so far (by dev BLEU)
    checkpoint.safetensors   the last state: model and Adam tensors, the torch RNG state, and in
                             its metadata (JSON) the step, epoch, batch position, schedule,
                             early-stopping counters and the python/numpy RNG states
    train_log.jsonl          one JSON record per log interval / evaluation

Every file is written atomically (seqlab.io), the checkpoint as one file, so a run killed at any
moment resumes from a consistent state. `resume=True` continues exactly: the same batches in the
same order, the same dropout masks, the same schedule, hence the same final weights as a run
that was never interrupted.

Schedule ("warmup + plateau halving"): the learning rate rises linearly from 0 to `lr` over
`warmup_steps`, then is multiplied by `lr_decay` whenever dev BLEU has not improved for
`lr_patience` evaluations in a row (never below `min_lr`). Training stops after `patience`
evaluations without a dev-BLEU improvement (early stopping), after `max_steps`, `max_epochs`,
or `time_budget_min` minutes. Dev BLEU is greedy decoding of the first `eval_sentences` dev
pairs. When a run stops between evaluations, a final evaluation updates `model.safetensors` if
it is better, without touching the schedule (so stopping and resuming changes nothing).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqlab.errors import UserError
from seqlab.io import save_safetensors_atomic, write_json_atomic, write_text_atomic
from seqlab.translate.batching import collate, make_batches
from seqlab.translate.model import Seq2Seq, TranslatorConfig
from seqlab.translate.tokenizer import TokenizerPair

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
LOG_FILE = "train_log.jsonl"
FORMAT = "seqlab-translator/1"


@dataclass
class DataConfig:
    corpus: str = "libreoffice-help"   # tatoeba-fra-eng, multi30k, libreoffice-help, or a path
    src_lang: str = "en"
    tgt_lang: str = "fr"
    data_dir: str | None = None
    split_seed: int = 1234
    vocab_size: int = 8000
    shared_vocab: bool = True
    max_len: int = 100                 # drop training pairs with a side longer (subwords)
    src_eos: bool = True               # append EOS to sources (a "nothing here" position to attend)
    skip_bad_lines: bool = False       # count and skip malformed input lines instead of failing


@dataclass
class TrainConfig:
    batch_tokens: int = 4096           # padded tokens per batch (B x max(S, T+1))
    batch_size: int | None = None      # optional cap on sentences per batch
    lr: float = 2e-3
    warmup_steps: int = 200
    lr_decay: float = 0.5
    lr_patience: int = 2
    min_lr: float = 1e-5
    clip_norm: float = 1.0
    max_steps: int | None = None
    max_epochs: int = 100
    time_budget_min: float | None = None
    eval_every: int = 500
    eval_sentences: int = 500
    eval_batch_size: int = 128
    patience: int = 8
    log_every: int = 50
    seed: int = 1234
    threads: int | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# ---- the learning-rate schedule -------------------------------------------------------------


class WarmupPlateau:
    """Linear warmup, then halving on a dev-BLEU plateau; its state is JSON."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.scale = 1.0
        self.best = -math.inf
        self.bad = 0

    def lr(self, step: int) -> float:
        """Learning rate for optimizer step `step` (0-based)."""
        warm = min(1.0, (step + 1) / self.cfg.warmup_steps) if self.cfg.warmup_steps > 0 else 1.0
        return max(self.cfg.lr * self.scale * warm, min(self.cfg.min_lr, self.cfg.lr * warm))

    def observe(self, bleu: float) -> None:
        if bleu > self.best:
            self.best, self.bad = bleu, 0
            return
        self.bad += 1
        if self.bad >= self.cfg.lr_patience:
            self.scale *= self.cfg.lr_decay
            self.bad = 0

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "best": self.best if math.isfinite(self.best) else None,
                "bad": self.bad}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.scale, self.bad = float(d["scale"]), int(d["bad"])
        self.best = -math.inf if d["best"] is None else float(d["best"])


# ---- tensors <-> safetensors -------------------------------------------------------------


def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without tied duplicates (safetensors refuses shared storage)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, t in model.state_dict().items():
        if t.data_ptr() in seen and t.numel() > 0:
            continue
        seen.add(t.data_ptr())
        out[name] = t
    return out


def load_model_tensors(model: torch.nn.Module, tensors: dict[str, torch.Tensor],
                       where: str) -> None:
    """Load weights saved by `model_tensors`; a mismatch is a one-line UserError."""
    own = model.state_dict()
    tied = set(own) - set(model_tensors(model))
    missing = sorted(set(own) - set(tensors) - tied)
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise UserError(f"{where}: weights do not match the model config "
                        f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for k, v in tensors.items():
        if own[k].shape != v.shape:
            raise UserError(f"{where}: tensor {k} has shape {tuple(v.shape)}, the model config "
                            f"needs {tuple(own[k].shape)}")
    model.load_state_dict(tensors, strict=False)


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"param_groups": sd["param_groups"], "state": {}}
    for idx, st in sd["state"].items():
        keys = []
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{idx}.{k}"] = v
                keys.append(k)
            else:
                meta["state"].setdefault(str(idx), {})[k] = v
        meta["state"].setdefault(str(idx), {})["_tensors"] = keys
    return tensors, meta


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                    meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for idx, st in meta["state"].items():
        entry = {k: v for k, v in st.items() if k != "_tensors"}
        for k in st["_tensors"]:
            entry[k] = tensors[f"optim.{idx}.{k}"]
        state[int(idx)] = entry
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    np_state = np.random.get_state()
    py_state = random.getstate()
    tensors = {"rng.torch": torch.get_rng_state(),
               "rng.numpy": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))}
    meta = {"numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": [py_state[0], list(py_state[1]), py_state[2]]}
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss,
                         cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """config.json of a run directory; missing or corrupt -> one-line UserError."""
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise UserError(f"{run_dir}: run directory not found")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
        if cfg.get("format") != FORMAT:
            raise ValueError(f"format {cfg.get('format')!r}, expected {FORMAT!r}")
        TranslatorConfig.from_dict(cfg["model"])
    except FileNotFoundError:
        raise UserError(f"{path}: not found (not a translator run directory)") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise UserError(f"{path}: corrupt run config ({err})") from None
    return cfg


def load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; missing/corrupt -> UserError."""
    from safetensors import safe_open

    if not path.is_file():
        raise UserError(f"{path}: not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise UserError(f"{path}: corrupt safetensors file ({type(err).__name__})") from None
    return tensors, meta


# ---- data -------------------------------------------------------------------------------


@dataclass
class EncodedData:
    src_ids: list[list[int]]
    tgt_ids: list[list[int]]
    dev_src: list[str]
    dev_ref: list[str]
    n_filtered: int
    corpus_info: dict[str, Any]


def _encode_data(data_cfg: DataConfig, tok: TokenizerPair, corpus: Any,
                 eval_sentences: int) -> EncodedData:
    src_ids = tok.src.encode(corpus.train.src)
    tgt_ids = tok.tgt.encode(corpus.train.tgt)
    keep = [i for i in range(len(src_ids))
            if 0 < len(src_ids[i]) <= data_cfg.max_len and 0 < len(tgt_ids[i]) <= data_cfg.max_len]
    info = {"name": corpus.name, "description": getattr(corpus, "description", ""),
            "train_pairs": len(corpus.train), "dev_pairs": len(corpus.dev),
            "test_pairs": len(corpus.test), "train_pairs_used": len(keep),
            "filtered_by_length": len(src_ids) - len(keep)}
    n_dev = min(eval_sentences, len(corpus.dev))
    return EncodedData([src_ids[i] for i in keep], [tgt_ids[i] for i in keep],
                       list(corpus.dev.src[:n_dev]), list(corpus.dev.tgt[:n_dev]),
                       len(src_ids) - len(keep), info)


def load_run_corpus(data_cfg: DataConfig) -> Any:
    from seqlab.translate.corpora import load_corpus

    return load_corpus(data_cfg.corpus, data_cfg.src_lang, data_cfg.tgt_lang,
                       data_dir=data_cfg.data_dir, seed=data_cfg.split_seed,
                       skip_bad_lines=data_cfg.skip_bad_lines)


# ---- the loop ---------------------------------------------------------------------------


@dataclass
class _Progress:
    step: int = 0
    epoch: int = 0
    batch_pos: int = 0            # next batch of this epoch's list
    best_bleu: float | None = None   # best dev BLEU of any evaluation (model.safetensors)
    evals_since_best: int = 0     # periodic evaluations without improvement (early stopping)
    best_periodic: float | None = None
    stopped: str | None = None


def train_translator(out_dir: str | Path, model_cfg: dict[str, Any] | None = None,
                     train_cfg: TrainConfig | None = None, data_cfg: DataConfig | None = None,
                     *, resume: bool = False, overrides: dict[str, Any] | None = None,
                     progress: bool = True, corpus: Any = None,
                     echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (or, with resume=True, continue) a translator in `out_dir`.

    model_cfg: overrides of TranslatorConfig fields (vocab sizes come from the tokenizer).
    overrides (resume only): training fields to change when continuing (max_steps,
    time_budget_min, ...). corpus: an already loaded Corpus (skips `load_corpus`).
    Returns a summary: steps, epochs, best dev BLEU, tokens/s, why it stopped.
    """
    out = Path(out_dir)
    mcfg: TranslatorConfig | None = None
    tok: TokenizerPair | None = None
    if resume:
        cfg = read_run_config(out)
        data_cfg = DataConfig(**{k: v for k, v in cfg["data"].items()
                                 if k in {f.name for f in fields(DataConfig)}})
        train_cfg = TrainConfig.from_dict({**cfg["train"], **(overrides or {})})
        mcfg = TranslatorConfig.from_dict(cfg["model"])
        tok = TokenizerPair.load(out)
        tok.check_fingerprint(cfg["tokenizer"], where=str(out / CONFIG_FILE))
        if not (out / CHECKPOINT_FILE).is_file():
            raise UserError(f"{out / CHECKPOINT_FILE}: not found; nothing to resume")
    else:
        data_cfg = data_cfg or DataConfig()
        train_cfg = train_cfg or TrainConfig()
        _check_model_cfg(model_cfg or {})
        if (out / CHECKPOINT_FILE).exists():
            raise UserError(f"{out}: already holds a training run; use --resume to continue it "
                            "or choose a new --out directory")
    threads_before = torch.get_num_threads()
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    try:
        return _train(out, resume, mcfg, model_cfg, train_cfg, data_cfg, tok, corpus, progress,
                      echo)
    finally:
        torch.set_num_threads(threads_before)


def _check_model_cfg(model_cfg: dict[str, Any]) -> None:
    """Fail on a bad model config before any data is read or tokenizer trained."""
    known = {f.name for f in fields(TranslatorConfig)} - {"src_vocab_size", "tgt_vocab_size"}
    unknown = sorted(set(model_cfg) - known)
    if unknown:
        raise ValueError(f"model config: unknown fields {unknown}")
    Seq2Seq(TranslatorConfig(**{**model_cfg, "src_vocab_size": 8, "tgt_vocab_size": 8}))


def _train(out: Path, resume: bool, mcfg: TranslatorConfig | None,
           model_cfg: dict[str, Any] | None, train_cfg: TrainConfig, data_cfg: DataConfig,
           tok: TokenizerPair | None, corpus: Any, progress: bool,
           echo: Callable[[str], None]) -> dict[str, Any]:
    seed_everything(train_cfg.seed)
    if corpus is None:
        corpus = load_run_corpus(data_cfg)
    if not resume:
        echo(f"training the tokenizer ({data_cfg.vocab_size} subwords) on "
             f"{len(corpus.train)} pairs")
        tok = TokenizerPair.train_pair(corpus.train.src, corpus.train.tgt, out,
                                       vocab_size=data_cfg.vocab_size,
                                       shared=data_cfg.shared_vocab)
        mcfg = TranslatorConfig(**{**(model_cfg or {}), "src_vocab_size": tok.src.vocab_size,
                                   "tgt_vocab_size": tok.tgt.vocab_size,
                                   "pad_id": tok.src.pad_id, "bos_id": tok.tgt.bos_id,
                                   "eos_id": tok.tgt.eos_id})
    assert tok is not None and mcfg is not None
    data = _encode_data(data_cfg, tok, corpus, train_cfg.eval_sentences)
    if not data.src_ids:
        raise UserError(f"{data_cfg.corpus}: no training pairs left after the length filter "
                        f"(max_len={data_cfg.max_len})")
    src_lens = [len(s) + int(data_cfg.src_eos) for s in data.src_ids]
    tgt_lens = [len(t) for t in data.tgt_ids]

    torch.manual_seed(train_cfg.seed)
    model = Seq2Seq(mcfg)
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
            "data": asdict(data_cfg), "tokenizer": tok.fingerprint(), "corpus": data.corpus_info,
            "num_parameters": model.num_parameters()})
        echo(f"{model.num_parameters():,} parameters; {len(data.src_ids)} training pairs "
             f"({data.n_filtered} longer than {data_cfg.max_len} subwords dropped)")

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
        from seqlab.translate.api import translate_texts
        from seqlab.translate.metrics import score_corpus

        hyps = translate_texts(model, tok, data.dev_src, num_beams=1,
                               batch_size=train_cfg.eval_batch_size, src_eos=data_cfg.src_eos)
        bleu = float(score_corpus(hyps, data.dev_ref, data_cfg.tgt_lang)["bleu"])
        if prog.best_bleu is None or bleu > prog.best_bleu:
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

    t_start = time.perf_counter()
    budget_s = train_cfg.time_budget_min * 60 if train_cfg.time_budget_min else None
    total_tokens = 0
    win_tokens, win_loss, win_t0 = 0, 0.0, time.perf_counter()
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
            batch = collate(data.src_ids, data.tgt_ids, batches[prog.batch_pos],
                            pad_id=mcfg.pad_id, bos_id=mcfg.bos_id, eos_id=mcfg.eos_id,
                            src_eos=data_cfg.src_eos)
            model.train()
            loss_sum, n_tok = model.loss(batch.src, batch.src_lengths, batch.src_mask,
                                         batch.tgt_in, batch.tgt_out)
            (loss_sum / n_tok).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.clip_norm)
            lr = sched.lr(prog.step)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.step()
            opt.zero_grad(set_to_none=True)
            prog.step += 1
            prog.batch_pos += 1
            total_tokens += n_tok
            win_tokens += n_tok
            win_loss += float(loss_sum.detach())
            bar.update(1)
            if prog.step % train_cfg.log_every == 0:
                dt = time.perf_counter() - win_t0
                rec = {"step": prog.step, "epoch": prog.epoch, "loss": win_loss / win_tokens,
                       "lr": lr, "tokens_per_s": win_tokens / dt if dt > 0 else None}
                log_records.append(rec)
                bar.set_postfix(loss=f"{rec['loss']:.3f}", tok_s=f"{rec['tokens_per_s']:.0f}",
                                refresh=False)
                write_log()   # small; lines past the last checkpoint are dropped on resume
                win_tokens, win_loss, win_t0 = 0, 0.0, time.perf_counter()
            if prog.step % train_cfg.eval_every == 0:
                t_eval = time.perf_counter()
                bleu = evaluate(periodic=True)
                last_eval_step = prog.step
                msg = (f"step {prog.step}: dev BLEU {bleu:.2f} (best {prog.best_bleu:.2f}), "
                       f"lr {sched.lr(prog.step):.2e}")
                if progress:
                    bar.write(msg)
                else:
                    echo(msg)
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
    if last_eval_step != prog.step:
        bleu = evaluate(periodic=False)
        echo(f"step {prog.step}: final dev BLEU {bleu:.2f} (best {prog.best_bleu:.2f})")
    prog.stopped = stop
    save_checkpoint()
    summary = {"steps": prog.step, "epochs": prog.epoch, "stopped": stop,
               "best_dev_bleu": prog.best_bleu, "seconds": elapsed,
               "train_tokens_per_s": total_tokens / elapsed if elapsed > 0 else None,
               "run_dir": str(out)}
    echo(f"stopped ({stop}) after {prog.step} steps; best dev BLEU {prog.best_bleu:.2f}")
    return summary
