"""The built-in example: an LSTM learns to remember a value until it is asked for it.

It reads a stream of random values; at the step flagged STORE it must keep that value and
output it when RECALL comes, ignoring the distractors in between, which is what the input,
forget and output gates are for. Small enough (H=4) that each unit's role shows in the picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from seqlab.device import resolve_device, to_device
from seqlab.gates.record import GatesRun, draw_run, one_thread
from seqlab.nn import LSTM


@dataclass
class MemoryTaskConfig:
    steps: int = 20  # sequence length T
    hidden_size: int = 4  # few units, so each one's role is visible
    train_steps: int = 600  # a few seconds on one core; MSE ~1e-3 (the values span [-1, 1])
    batch_size: int = 256
    lr: float = 1e-2
    seed: int = 0
    device: str = "cpu"  # where it trains; the gates are recorded on the CPU


def memory_task_batch(n: int, T: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """n sequences (n, T, 3) of [value, store flag, recall flag]; recall steps (n,); targets (n,).

    The value channel is random in [-1, 1] at every step; the target is the value at the
    STORE step (1..5), due at the RECALL step (at least 4 steps later).
    """
    v = torch.rand(n, T, generator=gen) * 2 - 1
    store = torch.randint(1, 6, (n,), generator=gen)
    recall = store + 4 + (torch.rand(n, generator=gen) * (T - 2 - (store + 4))).long()
    x = torch.zeros(n, T, 3)
    x[..., 0] = v
    rows = torch.arange(n)
    x[rows, store, 1] = 1.0
    x[rows, recall, 2] = 1.0
    return x, recall, v[rows, store]


def train_memory_task(cfg: MemoryTaskConfig) -> tuple[LSTM, nn.Linear, float]:
    """Train LSTM(3, H) + linear read-out on the memory task; returns them and the last loss."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    lstm = LSTM(3, cfg.hidden_size, batch_first=True).to(device)
    head = nn.Linear(cfg.hidden_size, 1).to(device)
    opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=cfg.lr)
    loss = torch.tensor(math.nan)
    with one_thread():
        for _ in range(cfg.train_steps):
            x, recall, target = to_device(memory_task_batch(cfg.batch_size, cfg.steps, gen),
                                          device)
            out, _ = lstm(x)  # (B, T, H)
            pred = head(out[torch.arange(cfg.batch_size, device=device), recall]).squeeze(1)
            loss = ((pred - target) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return lstm.cpu(), head.cpu(), float(loss.detach())


def builtin_memory_run(cfg: MemoryTaskConfig | None = None) -> GatesRun:
    """Train on the memory task and record the gates on one fixed example."""
    cfg = cfg or MemoryTaskConfig()
    lstm, head, loss = train_memory_task(cfg)
    T, store, recall = cfg.steps, 3, 15
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    x = torch.zeros(1, T, 3)
    x[0, :, 0] = torch.rand(T, generator=gen) * 2 - 1
    x[0, store, 1] = 1.0
    x[0, recall, 2] = 1.0
    with torch.no_grad():
        out, _, gates = lstm(x, return_gates=True)
        answer = float(head(out[0, recall]))
    labels = [str(t) for t in range(T)]
    labels[store], labels[recall] = f"{store}\nSTORE", f"{recall}\nRECALL"
    title = (f"LSTM gates on the remember-until-recall task (H={cfg.hidden_size}, trained "
             f"{cfg.train_steps} steps, MSE {loss:.4f}):\nkeep the value "
             f"{float(x[0, store, 0]):+.2f} seen at STORE (step {store}) until RECALL "
             f"(step {recall}); the LSTM outputs {answer:+.2f}")
    inputs = {"value": x[0, :, 0], "store flag": x[0, :, 1], "recall flag": x[0, :, 2]}
    return GatesRun(gates, title, labels, inputs, {store: "STORE", recall: "RECALL"})


def run_builtin_gates_demo(out_dir: Path) -> list[Path]:
    """Write the built-in example's picture(s) into out_dir; return their paths."""
    run = builtin_memory_run()
    return [draw_run(run, Path(out_dir) / "gates_memory_task.png")]
