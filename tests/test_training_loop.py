"""seqlab.training: the generic loop on a toy regression task (exact resume, stop rules,
schedule, the run-directory files)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from seqlab.errors import UserError
from seqlab.training import TrainConfig, WarmupPlateau, train_loop
from seqlab.training.checkpoint import check_run_dir, load_run_weights, seed_everything

FMT = "seqlab-test/1"


class Toy(torch.nn.Module):
    """y = w2 . dropout(relu(W1 x)); dropout makes the result depend on the torch RNG."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(),
                                       torch.nn.Dropout(0.3), torch.nn.Linear(8, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # (B, 3) -> (B,)
        return self.net(x).squeeze(-1)


def _task(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(40, 3, generator=g)                   # (N, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5])                # (N,)

    def batches(epoch: int) -> list[torch.Tensor]:
        perm = torch.randperm(40, generator=torch.Generator().manual_seed(100 + epoch))
        return list(perm.split(8))                       # 5 batches of 8 rows

    def loss(model: Toy, rows: torch.Tensor) -> tuple[torch.Tensor, int]:
        return ((model(x[rows]) - y[rows]) ** 2).sum(), len(rows)

    def evaluate(model: Toy) -> float:
        model.eval()
        with torch.no_grad():
            return -float(((model(x) - y) ** 2).mean())

    return batches, loss, evaluate


def _run(out: Path, steps: int, resume: bool = False, evaluate=None, **cfg) -> dict:
    batches, loss, ev = _task()
    tc = TrainConfig(**{**dict(lr=1e-2, warmup_steps=3, eval_every=4, log_every=2, seed=3,
                               max_steps=steps, max_epochs=100, patience=100), **cfg})
    seed_everything(tc.seed)
    model = Toy()
    if not resume:
        out.mkdir(parents=True, exist_ok=True)
    check_run_dir(out, resume)
    return train_loop(out, model, tc, fmt=FMT, batches=batches, loss=loss,
                      evaluate=evaluate or ev, resume=resume,
                      run_config={"format": FMT, "train": asdict(tc)},
                      progress=False, echo=lambda s: None)


def test_resume_is_exact_and_writes_the_run_files(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", 13)                         # crosses two epoch boundaries
    assert a["steps"] == 13 and a["epochs"] == 2 and a["stopped"] == "max_steps"
    assert a["train_tokens_per_s"] > 0
    _run(tmp_path / "b", 6)
    with pytest.raises(UserError, match="already holds a training run"):
        check_run_dir(tmp_path / "b", resume=False)
    b = _run(tmp_path / "b", 13, resume=True)
    assert b["steps"] == 13
    ca = load_file(str(tmp_path / "a" / "checkpoint.safetensors"))
    cb = load_file(str(tmp_path / "b" / "checkpoint.safetensors"))
    assert set(ca) == set(cb) and any(k.startswith("optim.") for k in ca)
    for k in ca:
        assert torch.equal(ca[k], cb[k]), k
    for name in ("config.json", "model.safetensors", "train_log.jsonl"):
        assert (tmp_path / "a" / name).is_file()
    recs = [json.loads(x) for x in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    evals = [r for r in recs if "dev_bleu" in r]
    assert [r["step"] for r in evals] == [4, 8, 12, 13]   # periodic, then the final one
    best = max(r["dev_bleu"] for r in evals)
    assert evals[-1]["best_dev_bleu"] == best == a["best_dev_bleu"]
    # model.safetensors holds the weights of the best evaluation
    m = Toy()
    load_run_weights(m, tmp_path / "a", "best")
    _, _, ev = _task()
    assert ev(m) == pytest.approx(best)


def test_early_stopping_and_plateau_halving(tmp_path: Path) -> None:
    s = _run(tmp_path / "r", 100, evaluate=lambda m: 1.0, eval_every=2, patience=3,
             lr_patience=2)
    # the first evaluation sets the best; three more without improvement stop the run
    assert s["stopped"] == "early_stopping" and s["steps"] == 8
    recs = [json.loads(x) for x in (tmp_path / "r" / "train_log.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in recs if "dev_bleu" in r]
    assert lrs[0] == pytest.approx(1e-2) and lrs[2] == pytest.approx(5e-3)


def test_no_dev_data_keeps_the_latest_weights(tmp_path: Path) -> None:
    s = _run(tmp_path / "r", 5, evaluate=lambda m: None, eval_every=2)
    assert s["best_dev_bleu"] == 0.0
    best, last = Toy(), Toy()
    load_run_weights(best, tmp_path / "r", "best")
    load_run_weights(last, tmp_path / "r", "last")
    for k, v in best.state_dict().items():
        assert torch.equal(v, last.state_dict()[k]), k


def test_warmup_plateau_schedule() -> None:
    sched = WarmupPlateau(TrainConfig(lr=1.0, warmup_steps=4, lr_decay=0.5, lr_patience=2,
                                      min_lr=0.2))
    assert [sched.lr(s) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    for score in (1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5):
        sched.observe(score)
    assert sched.scale == 0.125 and sched.lr(10) == 0.2       # floored at min_lr
    restored = WarmupPlateau(sched.cfg)
    restored.load_state_dict(json.loads(json.dumps(sched.state_dict())))
    assert restored.lr(10) == sched.lr(10) and restored.bad == sched.bad


def test_decay_steps_anneal_to_min_lr_at_max_steps() -> None:
    sched = WarmupPlateau(TrainConfig(lr=1.0, warmup_steps=0, max_steps=10, decay_steps=4,
                                      min_lr=0.01))
    assert [sched.lr(s) for s in (0, 5, 6, 7, 8, 9)] == [1.0, 1.0, 1.0, 0.75, 0.5, 0.25]
    assert sched.lr(10) == 0.01 and sched.lr(12) == 0.01
    sched.scale = 0.5                                         # a plateau halving still applies
    assert sched.lr(8) == 0.25


def test_decay_steps_need_max_steps(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="decay_steps=5"):
        _run(tmp_path / "r", None, decay_steps=5)


def test_a_resume_can_branch_a_decay_and_records_it(tmp_path: Path) -> None:
    _run(tmp_path / "r", 4)
    s = _run(tmp_path / "r", 8, resume=True, decay_steps=4)
    assert s["steps"] == 8
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["decay_steps"] == 4
    log = [json.loads(x) for x in (tmp_path / "r" / "train_log.jsonl").read_text().splitlines()]
    changes = [r for r in log if "resumed_with" in r]
    assert changes == [{"step": 4, "resumed_with": {"max_steps": 8, "decay_steps": 4}}]
    lrs = [r["lr"] for r in log if "loss" in r and r["step"] > 4]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 1e-2


def test_time_budget_counts_the_earlier_sessions_of_a_run(tmp_path: Path) -> None:
    from safetensors import safe_open

    def spent() -> float:
        with safe_open(str(tmp_path / "r" / "checkpoint.safetensors"), "pt") as f:
            return json.loads(f.metadata()["state"])["progress"]["train_seconds"]

    _run(tmp_path / "r", 4, evaluate=lambda m: time.sleep(0.05) or 1.0)
    first = spent()
    assert first >= 0.05
    # a budget already used up by the first session: the resumed run trains no further
    s = _run(tmp_path / "r", None, resume=True, time_budget_min=first / 2 / 60)
    assert s["stopped"] == "time_budget" and s["steps"] == 4
    assert s["total_train_seconds"] >= first and spent() >= first


def test_the_checkpoint_counts_cpu_time_across_sessions(tmp_path: Path) -> None:
    from seqlab.training.checkpoint import checkpoint_progress

    def busy(_: object) -> float:   # an evaluation that takes CPU time, not just wall time
        t0 = time.process_time()
        while time.process_time() - t0 < 0.05:
            pass
        return 1.0

    first = _run(tmp_path / "r", 2, evaluate=busy)
    cpu1 = checkpoint_progress(tmp_path / "r")["cpu_seconds"]
    assert cpu1 >= 0.05 and first["cpu_seconds"] >= 0.05
    second = _run(tmp_path / "r", 4, resume=True, evaluate=busy)
    cpu2 = checkpoint_progress(tmp_path / "r")["cpu_seconds"]
    assert cpu2 >= cpu1 + 0.05
    assert cpu2 <= second["total_cpu_seconds"] < cpu2 + 1.0   # + the final checkpoint save


def test_snapshots_every_n_steps_end_with_the_final_weights(tmp_path: Path) -> None:
    from seqlab.training.checkpoint import snapshot_paths

    def steps(run: Path) -> list[int]:
        return [int(p.stem.split("-")[1]) for p in snapshot_paths(run)]

    # at each evaluation (every 4 steps) by default, and the final weights at the end
    _run(tmp_path / "eval", 10, keep_checkpoints=5)
    assert steps(tmp_path / "eval") == [4, 8, 10]
    # every 2 steps instead; the last 3 kept; step 9's weights are the run's final ones
    _run(tmp_path / "n", 9, keep_checkpoints=3, snapshot_every=2)
    assert steps(tmp_path / "n") == [6, 8, 9]
    final = load_file(str(tmp_path / "n" / "checkpoint.safetensors"))
    snap = load_file(str(snapshot_paths(tmp_path / "n")[-1]))
    assert set(snap) and all(torch.equal(snap[k], final[f"model.{k}"]) for k in snap)
    # a snapshot holds the weights at its step: those of the same run stopped there
    _run(tmp_path / "six", 6)
    six = load_file(str(tmp_path / "six" / "checkpoint.safetensors"))
    snap6 = load_file(str(snapshot_paths(tmp_path / "n")[0]))
    assert all(torch.equal(snap6[k], six[f"model.{k}"]) for k in snap6)
    with pytest.raises(UserError, match="snapshot_every"):
        TrainConfig(keep_checkpoints=2, snapshot_every=0)
    with pytest.raises(UserError, match="needs keep_checkpoints"):
        TrainConfig(snapshot_every=10)
