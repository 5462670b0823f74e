"""The training loop shared by every seq2seq task: schedule, clipping, stop rules, evaluation,
checkpoints, exact resume.

A task supplies
    model                    an nn.Module (already built under its seed)
    batches(epoch) -> list   the epoch's batches, a pure function of the epoch (seeded), so a
                             resumed run sees the same data order
    loss(model, batch)       -> (summed loss, number of target tokens)
    evaluate(model) -> float the dev metric, higher is better (None: no dev data, keep the
                             latest weights)
and `train_loop` does the rest in the run directory (see seqlab.training.checkpoint).

Schedule ("warmup + plateau halving", `WarmupPlateau`): the learning rate rises linearly from 0
to `lr` over `warmup_steps`, then is multiplied by `lr_decay` whenever the dev metric has not
improved for `lr_patience` evaluations in a row (never below `min_lr`). Training stops after
`patience` evaluations without a dev improvement (early stopping), after `max_steps`,
`max_epochs`, or `time_budget_min` minutes of wall time in total (a resumed run counts the time
of its earlier sessions, so "train 30 minutes, then resume with 60" equals one 60-minute run
with a look at the 30-minute weights). When a run stops between evaluations, a final
evaluation updates `model.safetensors` if it is better, without touching the schedule (so
stopping and resuming changes nothing).

Device and precision: `device` ("auto": cuda, else mps, else cpu; seqlab.device) is where the
model and each batch go; the checkpoints are always CPU float32 safetensors, so a run trained on
a GPU resumes, evaluates or decodes on a CPU and the reverse. `precision="bf16"` runs each
step's forward pass under `torch.autocast` to bfloat16 (the backward follows it): the matrix
products run in bfloat16, while the weights, Adam's state, the gradients, the LSTM cell states
and the checkpoints stay float32, so a run can be resumed, evaluated or decoded in either
precision. "fp16" (CUDA only) is the same with float16 and a `torch.amp.GradScaler`, whose
state is in the checkpoint. "auto" picks what is fast where the run starts
(`seqlab.device.resolve_precision`) and config.json records the choice. Exact resume holds
within a precision and a device.

Evaluation runs every `eval_every` steps, or with `eval_per_epoch` at the end of every epoch
(epoch-based training, e.g. the series autoencoder: the best epoch's weights are kept); the
checkpoint is written at each evaluation either way.

Every file is written atomically (seqlab.io), the checkpoint as one file, so a run killed at any
moment resumes from a consistent state. `resume=True` continues exactly: the same batches in the
same order, the same dropout masks, the same schedule, hence the same final weights as a run
that was never interrupted.

Several processes (torchrun; `dist`, seqlab.training.distributed): every rank builds the same
epoch batches, takes its shard of each step's batch (`split`) through DistributedDataParallel
and normalises its summed loss by the global token count / world size, so the averaged gradient
is the whole batch's; rank 0 alone evaluates and writes, and broadcasts what the stop rules
need. `batch_tokens` is therefore the global batch, whatever the number of processes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import torch

from seqlab.device import (
    PRECISIONS,
    autocast,
    check_device_spec,
    grad_scaler,
    resolve_precision,
)
from seqlab.errors import UserError
from seqlab.io import save_safetensors_atomic, write_json_atomic, write_text_atomic
from seqlab.training.checkpoint import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    LOG_FILE,
    MODEL_FILE,
    checkpoint_model_tensors,
    load_model_tensors,
    load_optimizer,
    load_safetensors,
    model_tensors,
    optimizer_tensors,
    rng_state,
    save_snapshot,
    set_rng_state,
    snapshot_path,
)
from seqlab.training.distributed import DistContext, rank_seed
from seqlab.validate import check_fields, check_float


@dataclass
class TrainConfig:
    batch_tokens: int | None = 4096    # padded tokens per batch (B x max(S, T+1))
    batch_size: int | None = None      # optional cap on sentences per batch
    lr: float = 2e-3
    warmup_steps: int = 200
    lr_decay: float = 0.5
    lr_patience: int = 2
    min_lr: float = 1e-5
    clip_norm: float = 1.0
    max_steps: int | None = None
    decay_steps: int = 0               # with max_steps: the last N steps anneal lr linearly
    max_epochs: int = 100
    time_budget_min: float | None = None
    cpu_budget_min: float | None = None   # stop after this much CPU time of this process
    eval_every: int = 500
    eval_per_epoch: bool = False       # evaluate at each epoch's end instead of every eval_every
    eval_sentences: int = 500
    eval_batch_size: int = 128
    patience: int = 8
    keep_checkpoints: int = 0          # keep the weights of the last K evaluations (snapshots/)
    snapshot_every: int | None = None  # with keep_checkpoints: a snapshot every N steps instead
    log_every: int = 50
    seed: int = 1234
    threads: int | None = None
    precision: str = "fp32"            # fp32 | bf16 | fp16 (CUDA) | auto: the step's arithmetic
    device: str = "auto"               # auto | cpu | cuda[:N] | mps

    def __post_init__(self) -> None:
        """Settings that cannot work together fail here, as a one-line UserError, before any
        work (also on a resume, whose overrides build a new config)."""
        if self.precision not in ("auto", *PRECISIONS):
            raise UserError(f"precision={self.precision!r}: expected one of auto, "
                            f"{', '.join(PRECISIONS)}")
        check_device_spec(self.device)
        if not isinstance(self.keep_checkpoints, int) or self.keep_checkpoints < 0:
            raise UserError(f"keep_checkpoints={self.keep_checkpoints!r}: expected a count >= 0")
        if self.snapshot_every is not None and not self.keep_checkpoints:
            raise UserError(f"snapshot_every={self.snapshot_every!r}: needs keep_checkpoints "
                            f"(how many snapshots to keep), got 0")
        check_fields(self, {
            "batch_tokens": (int, 1), "batch_size": (int, 1), "lr": (float, 0.0),
            "warmup_steps": (int, 0), "lr_decay": (float, 0.0), "lr_patience": (int, 1),
            "clip_norm": (float, 0.0), "max_steps": (int, 1), "max_epochs": (int, 1),
            "time_budget_min": (float, 0.0), "eval_every": (int, 1),
            "eval_sentences": (int, 0), "eval_batch_size": (int, 1), "patience": (int, 1),
            "snapshot_every": (int, 1),
            "log_every": (int, 1), "seed": (int, 0), "threads": (int, 1)})
        check_float("TrainConfig.min_lr", self.min_lr, 0.0, open_min=False)
        if self.decay_steps < 0 or (self.decay_steps and self.max_steps is None):
            raise UserError(f"decay_steps={self.decay_steps}: expected a count >= 0, "
                            "given together with max_steps (the decay ends there)")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# ---- the learning-rate schedule -------------------------------------------------------------


class WarmupPlateau:
    """Linear warmup, then halving on a dev-metric plateau; its state is JSON.

    With `decay_steps` (and `max_steps`), the last `decay_steps` updates also anneal the rate
    linearly down to `min_lr` (warmup-stable-decay): a short run ends at a low rate, where the
    weights settle, instead of being cut off mid-plateau. Set on a resume, it branches a
    decay off a run trained at a constant rate so far.
    """

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.scale = 1.0
        self.best = -math.inf
        self.bad = 0

    def lr(self, step: int) -> float:
        """Learning rate for optimizer step `step` (0-based)."""
        cfg = self.cfg
        warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
        anneal = 1.0
        if cfg.decay_steps > 0 and cfg.max_steps is not None:
            anneal = min(1.0, max(0.0, (cfg.max_steps - step) / cfg.decay_steps))
        return max(cfg.lr * self.scale * warm * anneal, min(cfg.min_lr, cfg.lr * warm))

    def observe(self, score: float) -> None:
        if score > self.best:
            self.best, self.bad = score, 0
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


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with `n` torch threads (None: unchanged), restoring the count afterwards."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---- the loop ---------------------------------------------------------------------------


def _record_resume_changes(out: Path, train_cfg: TrainConfig, step: int,
                           log_records: list[dict[str, Any]], echo: Callable[[str], None]) -> None:
    """Training fields changed on a resume (a new budget, a decay branch) go into config.json,
    so it always shows the settings in force, and into the log at the step they took effect."""
    path = out / CONFIG_FILE
    if not path.is_file():
        return
    cfg = json.loads(path.read_text(encoding="utf-8"))
    now = asdict(train_cfg)
    before = {**asdict(TrainConfig()), **cfg.get("train", {})}   # fields newer than the run
    changed = {k: v for k, v in now.items() if before.get(k) != v}
    if changed:
        echo(f"training settings changed on resume: {changed}")
        write_json_atomic(path, {**cfg, "train": now})
        log_records.append({"step": step, "resumed_with": changed})


M = TypeVar("M", bound=torch.nn.Module)   # the task's model type, as its loss/evaluate take it


class _LossModule(torch.nn.Module):
    """The task's loss as a module's forward, so DistributedDataParallel can wrap it (DDP
    synchronises the gradients of what runs through its forward)."""

    def __init__(self, model: torch.nn.Module,
                 loss: Callable[[Any, Any], tuple[torch.Tensor, int]]):
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, batch: Any) -> tuple[torch.Tensor, int]:
        return self.loss(self.model, batch)


def _world_size_notice(log_records: list[dict[str, Any]], world_size: int,
                       echo: Callable[[str], None]) -> None:
    """Resuming with another number of processes: say what changes (the run's batches and
    schedule do not: `batch_tokens` is the global batch)."""
    before = next((int(r["world_size"]) for r in reversed(log_records) if "world_size" in r), 1)
    if before != world_size:
        echo(f"resuming with {world_size} process(es), the run so far used {before}: the same "
             "global batches and learning rates; float rounding and dropout masks differ "
             "from an uninterrupted run")


@dataclass
class Progress:
    """Where a run stands; stored in the checkpoint (field names are part of the format)."""

    step: int = 0
    epoch: int = 0
    batch_pos: int = 0                 # next batch of this epoch's list
    best_bleu: float | None = None     # best dev score of any evaluation (model.safetensors)
    evals_since_best: int = 0          # periodic evaluations without improvement
    best_periodic: float | None = None
    stopped: str | None = None
    train_seconds: float = 0.0         # wall time spent in earlier sessions of this run
    cpu_seconds: float = 0.0           # CPU time of the loop (evaluations included), likewise


_INTERRUPTED = threading.Event()


def _stop_on_interrupt(fn: Callable[..., Any]) -> Callable[..., Any]:
    """While `fn` trains, the first Ctrl-C (SIGINT) only sets `_INTERRUPTED`: the loop stops at
    the next batch boundary, saves a checkpoint (so `--resume` continues exactly) and raises
    KeyboardInterrupt. A second Ctrl-C interrupts at once (files are written atomically, so the
    previous ones stay valid). Signal handlers can only be set in the main thread."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return fn(*args, **kwargs)
        _INTERRUPTED.clear()

        def on_sigint(signum: int, frame: Any) -> None:
            _INTERRUPTED.set()
            signal.signal(signal.SIGINT, previous)

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            return fn(*args, **kwargs)
        finally:
            signal.signal(signal.SIGINT, previous)
            _INTERRUPTED.clear()

    return wrapper


@_stop_on_interrupt
def train_loop(out: Path, model: M, train_cfg: TrainConfig, *, fmt: str,
               batches: Callable[[int], list[Any]],
               loss: Callable[[M, Any], tuple[torch.Tensor, int]],
               evaluate: Callable[[M], float | None], resume: bool,
               run_config: dict[str, Any] | None = None,
               count: Callable[[Any], int] | None = None, unit: str = "tokens",
               metric: str = "bleu", progress: bool = True,
               echo: Callable[[str], None] = print,
               split: Callable[[Any, int], list[Any]] | None = None,
               dist: DistContext | None = None) -> dict[str, Any]:
    """Train `model` in run directory `out` (new, or continued from its checkpoint).

    fmt: the run format tag written into the safetensors metadata.
    batches(epoch): that epoch's batches (any objects `loss` takes), deterministic per epoch.
    loss(model, batch): (summed token loss, number of tokens); the step minimises their ratio.
    evaluate(model): dev score, higher is better, or None when there is no dev data (then the
        latest weights are kept as "best" and the score logged as 0).
    run_config: config.json contents, written when the run is new (not on resume).
    count(batch): units of throughput per batch (default: the loss's token count); `unit`
        names them in the log ("<unit>_per_s") and the summary ("train_<unit>_per_s").
    metric: names the dev score in the log ("dev_<metric>", "best_dev_<metric>").
    split(batch, world_size): the batch cut into world_size shards (lists; `shard_rows`),
        needed to train in several processes.
    dist: this process's place among several (seqlab.training.distributed.session); each
        step's batch is split, rank r trains on shard r under DistributedDataParallel with the
        loss normalised by the global token count, rank 0 alone evaluates and writes files.
    Returns a summary: steps, epochs, stopped, best_dev_<metric>, seconds, cpu_seconds,
    throughput, run_dir.
    """
    label = metric.upper()
    dist = dist or DistContext()
    if dist.enabled and split is None:
        raise UserError(f"this task trains in one process only (WORLD_SIZE={dist.world_size})")
    main = dist.is_main
    echo = dist.echo(echo)
    progress = progress and main
    device = dist.device(train_cfg.device)
    precision = resolve_precision(train_cfg.precision, device)
    if precision != train_cfg.precision:          # "auto": config.json keeps the choice
        echo(f"precision auto: {precision} on {device}")
        train_cfg = replace(train_cfg, precision=precision)
        if run_config is not None and "train" in run_config:
            run_config = {**run_config, "train": asdict(train_cfg)}
    model.to(device)
    scaler = grad_scaler(device, precision)
    opt = torch.optim.Adam(model.parameters(), lr=train_cfg.lr)
    sched = WarmupPlateau(train_cfg)
    prog = Progress()
    log_records: list[dict[str, Any]] = []
    if resume:
        tensors, meta = load_safetensors(out / CHECKPOINT_FILE)
        try:
            state = json.loads(meta["state"])
            load_model_tensors(model, checkpoint_model_tensors(tensors),
                               str(out / CHECKPOINT_FILE))
            load_optimizer(opt, tensors, state["optimizer"])
            sched.load_state_dict(state["schedule"])
            set_rng_state(tensors, state["rng"])
            prog = Progress(**state["progress"])
            if scaler is not None and "scaler" in state:
                scaler.load_state_dict(state["scaler"])
            if not main:    # this rank's own dropout stream, or a new one if it had none
                own = {k.replace(f"rng.rank{dist.rank}.", "rng."): v for k, v in
                       tensors.items() if k.startswith(f"rng.rank{dist.rank}.")}
                if "rng.torch" in own:
                    set_rng_state({**tensors, **own}, state["rng"])
                else:
                    torch.manual_seed(rank_seed(train_cfg.seed, dist.rank, prog.step))
        except (KeyError, ValueError, TypeError) as err:
            raise UserError(f"{out / CHECKPOINT_FILE}: corrupt checkpoint ({err!r})") from None
        log_path = out / LOG_FILE
        if log_path.is_file():
            for line in log_path.read_text(encoding="utf-8").splitlines():
                rec = json.loads(line)
                if rec.get("step", 0) <= prog.step:
                    log_records.append(rec)
        echo(f"resuming {out} at step {prog.step} (epoch {prog.epoch})")
        _world_size_notice(log_records, dist.world_size, echo)
        if main:
            _record_resume_changes(out, train_cfg, prog.step, log_records, echo)
    else:
        if not main:        # each rank draws its own dropout masks
            torch.manual_seed(rank_seed(train_cfg.seed, dist.rank, 0))
        if run_config is not None and main:
            write_json_atomic(out / CONFIG_FILE, {**run_config, "world_size": dist.world_size})
    session_rec: dict[str, Any] = {"step": prog.step, "device": str(device),
                                   "precision": precision}
    if dist.enabled or any("world_size" in r for r in log_records):
        session_rec["world_size"] = dist.world_size
    log_records.append(session_rec)
    step_loss: Callable[[Any], tuple[torch.Tensor, int]] = lambda b: loss(model, b)  # noqa: E731
    if dist.enabled:
        step_loss = torch.nn.parallel.DistributedDataParallel(
            _LossModule(model, loss), device_ids=[device.index] if device.type == "cuda" else None)

    def write_log() -> None:
        if main:
            write_text_atomic(out / LOG_FILE, "".join(json.dumps(r) + "\n" for r in log_records))

    def save_checkpoint() -> None:
        opt_t, opt_meta = optimizer_tensors(opt)
        rng_t, rng_meta = rng_state()
        for key in sorted(rng_t):     # the other ranks' dropout streams (a collective)
            if key in ("rng.torch", "rng.cuda"):
                for r, t in enumerate(dist.all_gather(rng_t[key])[1:], start=1):
                    rng_t[key.replace("rng.", f"rng.rank{r}.")] = t
        if not main:
            return
        tensors = {f"model.{k}": v for k, v in model_tensors(model).items()}
        tensors.update(opt_t)
        tensors.update(rng_t)
        done = asdict(prog)
        done["train_seconds"] = prog.train_seconds + (time.perf_counter() - t_start)
        done["cpu_seconds"] = prog.cpu_seconds + (time.process_time() - cpu_t0)
        state = {"optimizer": opt_meta, "schedule": sched.state_dict(), "rng": rng_meta,
                 "progress": done}
        if scaler is not None:
            state["scaler"] = scaler.state_dict()
        save_safetensors_atomic(tensors, out / CHECKPOINT_FILE,
                                metadata={"format": fmt, "state": json.dumps(state)})
        write_log()

    def snapshot() -> None:
        if train_cfg.keep_checkpoints and main:
            save_snapshot(out, model, prog.step, train_cfg.keep_checkpoints, fmt)

    def run_eval(periodic: bool) -> float:
        got = dist.broadcast(evaluate(model) if main else None)   # the others wait for rank 0
        score = 0.0 if got is None else float(got)
        if prog.best_bleu is None or score > prog.best_bleu or got is None:
            prog.best_bleu = score
            if main:
                save_safetensors_atomic(model_tensors(model), out / MODEL_FILE,
                                        metadata={"format": fmt, "step": str(prog.step)})
        if periodic:
            sched.observe(score)
            if prog.best_periodic is None or score > prog.best_periodic:
                prog.best_periodic, prog.evals_since_best = score, 0
            else:
                prog.evals_since_best += 1
        log_records.append({"step": prog.step, "epoch": prog.epoch, f"dev_{metric}": score,
                            f"best_dev_{metric}": prog.best_bleu, "lr": sched.lr(prog.step)})
        return score

    win_t0: float                    # bound below; periodic_eval only runs after that

    def periodic_eval() -> str | None:
        """Evaluate, step the schedule, checkpoint; returns "early_stopping" or None."""
        nonlocal win_t0
        t_eval = time.perf_counter()
        score = run_eval(periodic=True)
        msg = (f"step {prog.step}: dev {label} {score:.2f} "
               f"(best {prog.best_bleu:.2f}), lr {sched.lr(prog.step):.2e}")
        if progress and train_cfg.eval_per_epoch:
            bar.set_postfix_str(msg.split(": ", 1)[1], refresh=False)  # per epoch: no line each
        elif progress:
            bar.write(msg)
        else:
            echo(msg)
        stop = "early_stopping" if prog.evals_since_best >= train_cfg.patience else None
        if train_cfg.snapshot_every is None:
            snapshot()
        save_checkpoint()
        win_t0 += time.perf_counter() - t_eval   # evaluation time is not training time
        return stop

    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    budget_s = train_cfg.time_budget_min * 60 if train_cfg.time_budget_min else None
    # CPU time (all threads of this process, evaluation included), so runs sharing a machine
    # get equal work; each session counts its own (a resumed run gets the budget again)
    cpu_budget_s = train_cfg.cpu_budget_min * 60 if train_cfg.cpu_budget_min else None
    cpu_t0 = time.process_time()
    total_units = 0
    win_units, win_tokens, win_loss, win_t0 = 0, 0, 0.0, time.perf_counter()
    last_eval_step = prog.step if resume else -1
    bar = tqdm(total=train_cfg.max_steps, initial=prog.step, disable=not progress,
               unit="step", dynamic_ncols=True)
    stop: str | None = None
    while stop is None:
        if prog.epoch >= train_cfg.max_epochs:
            stop = "max_epochs"
            break
        epoch_batches = batches(prog.epoch)
        if bar.total is None and budget_s is None and epoch_batches:
            # epoch-bounded: about max_epochs x this epoch's batches, so the bar has an ETA
            bar.total = train_cfg.max_epochs * len(epoch_batches)
            bar.refresh()
        while prog.batch_pos < len(epoch_batches):
            if train_cfg.max_steps is not None and prog.step >= train_cfg.max_steps:
                stop = "max_steps"
                break
            if budget_s is not None and dist.agree(   # rank 0's clock decides
                    prog.train_seconds + time.perf_counter() - t_start >= budget_s):
                stop = "time_budget"
                break
            if cpu_budget_s is not None and dist.agree(
                    time.process_time() - cpu_t0 >= cpu_budget_s):
                stop = "cpu_budget"
                break
            if _INTERRUPTED.is_set():
                stop = "interrupted"
                break
            batch = epoch_batches[prog.batch_pos]
            model.train()
            if dist.enabled:
                assert split is not None
                shards = split(batch, dist.world_size)
                mine = shards[dist.rank]
                with autocast(device, precision):   # an empty shard: shard 0 with weight 0,
                    loss_sum, n_tok = step_loss(mine or shards[0])   # DDP needs every rank
                if not mine:
                    loss_sum, n_tok = loss_sum * 0.0, 0
                sums = dist.all_reduce_sum([n_tok, float(loss_sum.detach())])
                n_tok, loss_total = round(sums[0]), sums[1]
                # DDP averages the ranks' gradients: each rank's share of the global per-token
                # loss, times world_size, makes the average the whole batch's gradient
                objective = loss_sum / (n_tok / dist.world_size)
            else:
                with autocast(device, precision):
                    loss_sum, n_tok = step_loss(batch)
                loss_total = float(loss_sum.detach())
                objective = loss_sum / n_tok
            lr = sched.lr(prog.step)
            for g in opt.param_groups:
                g["lr"] = lr
            if scaler is None:
                objective.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.clip_norm)
                opt.step()
            else:   # fp16: scaled loss; clip the true gradients; skip steps that overflowed
                scaler.scale(objective).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.clip_norm)
                scaler.step(opt)
                scaler.update()
            opt.zero_grad(set_to_none=True)
            prog.step += 1
            prog.batch_pos += 1
            n_units = n_tok if count is None else count(batch)
            total_units += n_units
            win_units += n_units
            win_tokens += n_tok
            win_loss += loss_total
            bar.update(1)
            if budget_s is not None and bar.total is None and prog.step % 10 == 0:
                left = budget_s - prog.train_seconds - (time.perf_counter() - t_start)
                bar.set_description(f"{max(0.0, left) / 60:.1f} min left", refresh=False)
            if prog.step % train_cfg.log_every == 0:
                dt = time.perf_counter() - win_t0
                rec = {"step": prog.step, "epoch": prog.epoch, "loss": win_loss / win_tokens,
                       "lr": lr, f"{unit}_per_s": win_units / dt if dt > 0 else None}
                log_records.append(rec)
                bar.set_postfix(loss=f"{rec['loss']:.3f}", per_s=f"{rec[f'{unit}_per_s']:.0f}",
                                refresh=False)
                write_log()   # small; lines past the last checkpoint are dropped on resume
                win_units, win_tokens, win_loss, win_t0 = 0, 0, 0.0, time.perf_counter()
            if train_cfg.snapshot_every and prog.step % train_cfg.snapshot_every == 0:
                snapshot()
            if not train_cfg.eval_per_epoch and prog.step % train_cfg.eval_every == 0:
                stop = periodic_eval()
                last_eval_step = prog.step
                if stop:
                    break
        else:
            prog.epoch += 1
            prog.batch_pos = 0
            if train_cfg.eval_per_epoch:
                stop = periodic_eval()
                last_eval_step = prog.step
    bar.close()
    elapsed = time.perf_counter() - t_start
    if stop == "interrupted":   # no final evaluation: stop quickly, resumable exactly
        prog.stopped = stop
        save_checkpoint()
        echo(f"interrupted at step {prog.step}: checkpoint saved in {out}; continue with "
             "--resume")
        raise KeyboardInterrupt
    if dist.agree(last_eval_step != prog.step or not (out / MODEL_FILE).exists()):
        score = run_eval(periodic=False)
        echo(f"step {prog.step}: final dev {label} {score:.2f} (best {prog.best_bleu:.2f})")
    if not snapshot_path(out, prog.step).is_file():
        snapshot()               # the final weights are the last snapshot to average
    prog.stopped = stop
    save_checkpoint()
    best = prog.best_bleu if prog.best_bleu is not None else float("nan")
    echo(f"stopped ({stop}) after {prog.step} steps; best dev {label} {best:.2f}")
    return {"steps": prog.step, "epochs": prog.epoch, "stopped": stop, "rank": dist.rank,
            "world_size": dist.world_size,
            f"best_dev_{metric}": prog.best_bleu, "seconds": elapsed,
            "total_train_seconds": prog.train_seconds + elapsed,
            # this call's CPU time from the first step (final evaluation included): what
            # `cpu_budget_min` counts, without data and tokenizer preparation
            "cpu_seconds": time.process_time() - cpu_t0,
            "total_cpu_seconds": prog.cpu_seconds + time.process_time() - cpu_t0,
            f"train_{unit}_per_s": total_units / elapsed if elapsed > 0 else None,
            "run_dir": str(out)}
