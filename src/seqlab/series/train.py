"""Training the series autoencoder through the shared loop (`seqlab.training.loop`).

Epoch-based: every epoch visits all training windows in a seeded random order (the orders of
all epochs are drawn in sequence from one generator seeded with `seed`, so epoch e's order does
not depend on how many epochs the run has); the objective (`model.autoencoder_loss`) is
evaluated on the validation windows at the end of every epoch and the best epoch's weights are
kept. Adam at a constant learning rate, gradients clipped to norm 1 (LSTM gradient spikes).
The loop writes its run directory (checkpoint at every epoch end, best weights, log), so a
killed fit resumes exactly: the same batches, the same dropout masks, the same final weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqlab.device import resolve_device
from seqlab.errors import UserError
from seqlab.io import write_json_atomic
from seqlab.series.model import AutoencoderConfig, LSTMAutoencoder, autoencoder_loss
from seqlab.series.reconstruction import INFER_BATCH
from seqlab.series.windows import WindowSet
from seqlab.training import distributed
from seqlab.training.checkpoint import check_run_dir, load_run_weights
from seqlab.training.loop import TrainConfig, torch_threads, train_loop

RUN_FORMAT = "seqlab.series.training/1"
HISTORY_FILE = "history.json"


def eval_loss(model: LSTMAutoencoder, windows: WindowSet, device: torch.device,
              regression: float = 0.0) -> float:
    """The training objective in eval mode (free-running decoder), mean over `windows`."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(windows), INFER_BATCH):
            idx = np.arange(i, min(i + INFER_BATCH, len(windows)))
            xb = torch.from_numpy(windows.batch(idx)).to(device)
            total += float(autoencoder_loss(model, xb, regression)) * len(xb)
            count += len(xb)
    return total / max(count, 1)


def train_autoencoder(config: AutoencoderConfig, train_set: WindowSet, val_set: WindowSet, *,
                      run_dir: Path, epochs: int, batch_size: int, lr: float, regression: float,
                      seed: int, device: str = "cpu", num_threads: int | None = None,
                      resume: bool = False, verbose: bool = False,
                      run_config: dict[str, Any] | None = None,
                      init_state: dict[str, torch.Tensor] | None = None
                      ) -> tuple[LSTMAutoencoder, list[dict[str, float]]]:
    """Train a new `LSTMAutoencoder(config)` (or continue the one in `run_dir`, `resume`).
    init_state: start from these weights instead of a fresh initialisation (`partial_fit`).

    train_set, val_set: windows in model units ((B, T, C) batches; T + 2 with `regression`).
    run_dir: the training run directory (created). run_config: its config.json (new runs).
    Returns (the best epoch's model in eval mode, history: one {"epoch", "train_loss",
    "val_loss"} per epoch).
    """
    world = distributed.from_env().world_size
    if world > 1:   # why: README, "Several processes or machines"
        raise UserError(f"series fit trains in one process (torchrun started {world}): its "
                        "model is small, a fit takes minutes on one CPU and the steps would "
                        "wait on the gradient exchange; run it without torchrun")
    run_dir = Path(run_dir)
    check_run_dir(run_dir, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    orders_rng = np.random.default_rng(seed)
    orders: list[np.ndarray] = []

    def batches(epoch: int) -> list[tuple[int, np.ndarray]]:
        while len(orders) <= epoch:   # every epoch's order from one seeded sequence
            orders.append(orders_rng.permutation(len(train_set)))
        order = orders[epoch]
        return [(epoch, order[i:i + batch_size]) for i in range(0, len(order), batch_size)]

    history: dict[int, dict[str, float]] = {}
    hist_path = run_dir / HISTORY_FILE
    if resume and hist_path.is_file():
        history = {int(h["epoch"]): h for h in json.loads(hist_path.read_text("utf-8"))}
    running = {"epoch": 0, "total": 0.0, "count": 0}   # the current epoch's training loss

    def loss(model: LSTMAutoencoder, batch: tuple[int, np.ndarray]) -> tuple[torch.Tensor, int]:
        epoch, idx = batch
        if epoch != running["epoch"]:
            running.update(epoch=epoch, total=0.0, count=0)
        xb = torch.from_numpy(train_set.batch(idx)).to(dev)
        value = autoencoder_loss(model, xb, regression)     # the batch mean
        running["total"] += float(value.detach()) * len(idx)
        running["count"] += len(idx)
        return value, 1

    def evaluate(model: LSTMAutoencoder) -> float:
        val = eval_loss(model, val_set, dev, regression)
        epoch = int(running["epoch"]) + 1
        train = running["total"] / running["count"] if running["count"] else float("nan")
        history[epoch] = {"epoch": epoch, "train_loss": train, "val_loss": val}
        write_json_atomic(hist_path, [history[e] for e in sorted(history) if e <= epoch])
        return -val                                          # higher is better

    cfg = TrainConfig(batch_tokens=None, batch_size=batch_size, lr=lr, warmup_steps=0,
                      lr_decay=1.0, clip_norm=1.0, max_epochs=epochs, patience=epochs + 1,
                      eval_per_epoch=True, log_every=max(1, -(-len(train_set) // batch_size)),
                      seed=seed, threads=num_threads, device=str(dev), precision="fp32")
    with torch.random.fork_rng(devices=[]), torch_threads(num_threads):
        torch.manual_seed(seed)
        model = LSTMAutoencoder(config).to(dev)
        if init_state is not None:
            model.load_state_dict(init_state)
        train_loop(run_dir, model, cfg, fmt=RUN_FORMAT, batches=batches, loss=loss,
                   evaluate=evaluate, resume=resume, run_config=run_config,
                   count=lambda b: len(b[1]), unit="windows", metric="neg_val_loss",
                   progress=verbose, echo=print if verbose else _quiet)
    load_run_weights(model, run_dir, "best")
    model.eval()
    return model, [history[e] for e in sorted(history) if e <= epochs]


def _quiet(_: str) -> None:
    pass
