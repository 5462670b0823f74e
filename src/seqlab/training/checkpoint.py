"""Run-directory state: weights, Adam and RNG states <-> safetensors, config.json, resume checks.

A run directory holds
    config.json              what the task needs to rebuild the model (with a "format" tag)
    model.safetensors        the best weights so far (by the dev metric)
    checkpoint.safetensors   the last state: model tensors ("model.*"), Adam tensors
                             ("optim.*"), RNG tensors ("rng.*"); the rest (optimizer param
                             groups, schedule, progress, python/numpy RNG) as JSON metadata
    train_log.jsonl          one JSON record per log interval / evaluation
    snapshots/step-N.safetensors   with keep_checkpoints=K: the weights at the last K
                             evaluations (for checkpoint averaging, `average_snapshots`)

No pickle: every tensor goes to safetensors, everything else to JSON.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from seqlab.errors import UserError

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
LOG_FILE = "train_log.jsonl"
SNAPSHOT_DIR = "snapshots"


# ---- model weights ------------------------------------------------------------------------


def _untied(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without tied duplicates (safetensors refuses shared storage)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, t in model.state_dict().items():
        if t.data_ptr() in seen and t.numel() > 0:
            continue
        seen.add(t.data_ptr())
        out[name] = t
    return out


def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without tied duplicates, on the CPU: a run trained on a GPU loads
    anywhere."""
    return {name: t.detach().cpu() for name, t in _untied(model).items()}


def load_model_tensors(model: torch.nn.Module, tensors: dict[str, torch.Tensor],
                       where: str) -> None:
    """Load weights saved by `model_tensors`; a mismatch is a one-line UserError."""
    own = model.state_dict()
    tied = set(own) - set(_untied(model))
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


def checkpoint_model_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's tensors out of a checkpoint's ("model.<name>" -> "<name>")."""
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}


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


def load_run_weights(model: torch.nn.Module, run: Path, checkpoint: str = "best") -> None:
    """Load a run's "best" (model.safetensors) or "last" (checkpoint.safetensors) weights."""
    if checkpoint == "best":
        path = run / MODEL_FILE
        tensors, _ = load_safetensors(path)
    elif checkpoint == "last":
        path = run / CHECKPOINT_FILE
        tensors = checkpoint_model_tensors(load_safetensors(path)[0])
    else:
        raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    load_model_tensors(model, tensors, str(path))


# ---- optimizer and RNG state ----------------------------------------------------------------


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor],
                                                           dict[str, Any]]:
    """The optimizer state as ("optim.<param>.<key>" tensors, JSON-able rest)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"param_groups": sd["param_groups"], "state": {}}
    for idx, st in sd["state"].items():
        keys = []
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{idx}.{k}"] = v.detach().cpu()
                keys.append(k)
            else:
                meta["state"].setdefault(str(idx), {})[k] = v
        meta["state"].setdefault(str(idx), {})["_tensors"] = keys
    return tensors, meta


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                   meta: dict[str, Any]) -> None:
    """Inverse of `optimizer_tensors` (torch moves the state to the parameters' device)."""
    state: dict[int, dict[str, Any]] = {}
    for idx, st in meta["state"].items():
        entry = {k: v for k, v in st.items() if k != "_tensors"}
        for k in st["_tensors"]:
            entry[k] = tensors[f"optim.{idx}.{k}"]
        state[int(idx)] = entry
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The torch, numpy and python RNG states as ("rng.*" tensors, JSON-able rest)."""
    np_state = cast(tuple[Any, ...], np.random.get_state())   # the legacy tuple form
    py_state = random.getstate()
    tensors = {"rng.torch": torch.get_rng_state(),
               "rng.numpy": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))}
    if torch.cuda.is_available() and torch.cuda.is_initialized():   # dropout masks on the GPU
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    meta = {"numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": [py_state[0], list(py_state[1]), py_state[2]]}
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of `rng_state`."""
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss,
                         cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---- run directories ----------------------------------------------------------------------


def read_run_config(run_dir: str | Path, fmt: str, check: Callable[[dict[str, Any]], Any],
                    what: str, upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None
                    ) -> dict[str, Any]:
    """config.json of a run directory with format tag `fmt`; `check(cfg)` validates the rest
    (raising ValueError/KeyError/TypeError). Missing or corrupt -> one-line UserError; `what`
    names the kind of run ("translator") in the message. `upgrade(cfg)` first turns an older
    layout into format `fmt` (runs written before a format change still load)."""
    run = Path(run_dir)
    path = run / CONFIG_FILE
    if not run.is_dir():
        raise UserError(f"{run_dir}: run directory not found")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
        if upgrade is not None:
            cfg = upgrade(cfg)
        if cfg.get("format") != fmt:
            raise ValueError(f"format {cfg.get('format')!r}, expected {fmt!r}")
        check(cfg)
    except FileNotFoundError:
        raise UserError(f"{path}: not found (not a {what} run directory)") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise UserError(f"{path}: corrupt run config ({err})") from None
    return cfg


@contextlib.contextmanager
def new_run_cleanup(out: Path, resume: bool) -> Iterator[None]:
    """A new run that fails (bad data found late, a full disk, Ctrl-C) before its first
    checkpoint leaves nothing behind: what it created in `out` (or `out` itself) is removed.
    A resumed run, or one that has written a checkpoint, keeps its files."""
    if resume:
        yield
        return
    before = set(out.iterdir()) if out.is_dir() else None
    top = out                      # the outermost folder this run will create
    while not top.parent.exists() and top.parent != top.parent.parent:
        top = top.parent
    try:
        yield
    except BaseException:
        if not (out / CHECKPOINT_FILE).exists() and out.is_dir():
            made = set(out.iterdir()) - before if before is not None else {top}
            for p in made:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
        raise


def check_run_dir(out: Path, resume: bool) -> None:
    """A resumed run needs its checkpoint; a new run must not overwrite one."""
    if resume:
        if not (out / CHECKPOINT_FILE).is_file():
            raise UserError(f"{out / CHECKPOINT_FILE}: not found; nothing to resume")
    elif (out / CHECKPOINT_FILE).exists():
        raise UserError(f"{out}: already holds a training run; use --resume to continue it "
                        "or choose a new --out directory")



def checkpoint_progress(out: Path) -> dict[str, Any] | None:
    """Where the run in `out` stands (its checkpoint's progress record: step, epoch, stopped,
    train_seconds, ...), read from the metadata alone; None when there is no checkpoint."""
    from safetensors import safe_open

    path = out / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        return dict(json.loads(meta["state"])["progress"])
    except (KeyError, ValueError, TypeError, OSError) as err:
        raise UserError(f"{path}: corrupt checkpoint ({err!r})") from None


# ---- snapshots and checkpoint averaging ---------------------------------------------------


def snapshot_paths(run_dir: str | Path) -> list[Path]:
    """The run's weight snapshots, oldest first (by step)."""
    d = Path(run_dir) / SNAPSHOT_DIR
    if not d.is_dir():
        return []
    found = []
    for p in d.glob("step-*.safetensors"):
        step = p.name[len("step-"):-len(".safetensors")]
        if step.isdigit():
            found.append((int(step), p))
    return [p for _, p in sorted(found)]


def snapshot_path(run_dir: Path, step: int) -> Path:
    """Where the weights at `step` are kept: snapshots/step-N.safetensors."""
    return run_dir / SNAPSHOT_DIR / f"step-{step:08d}.safetensors"


def save_snapshot(run_dir: Path, model: torch.nn.Module, step: int, keep: int, fmt: str) -> None:
    """Write the weights at `step` to snapshots/step-N.safetensors; keep only the last `keep`."""
    from seqlab.io import save_safetensors_atomic

    path = snapshot_path(run_dir, step)
    path.parent.mkdir(exist_ok=True)
    save_safetensors_atomic(model_tensors(model), path,
                            metadata={"format": fmt, "step": str(step)})
    for old in snapshot_paths(run_dir)[:-keep]:
        old.unlink()


def average_snapshots(paths: list[Path]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the weights in `paths` (same names and shapes), summed in
    float64 and returned in each tensor's own dtype; integer tensors come from the last."""
    if not paths:
        raise UserError("no weights to average")
    total: dict[str, torch.Tensor] = {}
    last: dict[str, torch.Tensor] = {}
    for i, path in enumerate(paths):
        tensors, _ = load_safetensors(path)
        if i and set(tensors) != set(last):
            raise UserError(f"{path}: tensor names differ from {paths[0]}")
        for name, t in tensors.items():
            if t.is_floating_point():
                if name in total and total[name].shape != t.shape:
                    raise UserError(f"{path}: {name} has shape {tuple(t.shape)}, expected "
                                    f"{tuple(total[name].shape)}")
                total[name] = total.get(name, 0) + t.double()
        last = tensors
    return {name: (total[name] / len(paths)).to(t.dtype) if name in total else t
            for name, t in last.items()}
