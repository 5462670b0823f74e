"""Several processes: the sharding rule, torchrun's variables, and a real 2-process gloo run
whose weights equal a 1-process run on the same global batches."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import seqlab
from seqlab.cli import main
from seqlab.errors import UserError
from seqlab.training.distributed import DistContext, from_env, shard_rows
from seqlab.training.loop import TrainConfig, train_loop
from seqlab.translate.model import Seq2Seq, Seq2SeqConfig
from seqlab.translate.train import train_translator
from test_translate_train import write_corpus

# ---- the sharding function -------------------------------------------------------------


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_shard_rows_assigns_every_row_once_balanced(world_size):
    for n in range(0, 8):
        for costs in itertools.product([1, 3, 7], repeat=n):
            rows = [10 + i for i in range(n)]
            shards = shard_rows(rows, costs, world_size)
            assert len(shards) == world_size
            assert [r for s in shards for r in s] == rows          # once each, in order
            if n >= world_size:
                assert all(shards)                                 # every rank has work
            else:
                assert [len(s) for s in shards] == [1] * n + [0] * (world_size - n)
            if n:
                cost = {r: c for r, c in zip(rows, costs, strict=True)}
                loads = [sum(cost[r] for r in s) for s in shards]
                assert max(loads) <= sum(costs) / world_size + max(costs)


def test_shard_rows_equal_costs_give_equal_counts():
    for n in range(4, 40):
        sizes = [len(s) for s in shard_rows(list(range(n)), [1] * n, 4)]
        assert max(sizes) - min(sizes) <= 1, (n, sizes)


def test_shard_rows_bad_arguments():
    with pytest.raises(ValueError):
        shard_rows([1, 2], [1], 2)
    with pytest.raises(ValueError):
        shard_rows([1, 2], [1, 1], 0)


# ---- torchrun's variables ---------------------------------------------------------------


def test_from_env():
    assert from_env({}) == DistContext()
    ctx = from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h",
                    "MASTER_PORT": "29500"})
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.enabled, ctx.is_main) == \
        (1, 2, 1, True, False)
    assert not from_env({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}).enabled


@pytest.mark.parametrize("env, words", [
    ({"RANK": "0"}, "not WORLD_SIZE, LOCAL_RANK"),
    ({"RANK": "x", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "RANK='x'"),
    ({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "RANK < WORLD_SIZE"),
    ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "MASTER_ADDR, MASTER_PORT"),
])
def test_from_env_misconfiguration_is_one_line(env, words):
    with pytest.raises(UserError) as e:
        from_env(env)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_a_task_without_split_refuses_several_processes(tmp_path):
    model = torch.nn.Linear(2, 1)
    with pytest.raises(UserError, match="one process"):
        train_loop(tmp_path, model, TrainConfig(device="cpu"), fmt="x", batches=lambda e: [],
                   loss=lambda m, b: (m(b).sum(), 1), evaluate=lambda m: None, resume=False,
                   dist=DistContext(0, 2, 0), progress=False, echo=lambda s: None)


def test_series_fit_refuses_torchrun(monkeypatch):
    from seqlab.series.train import train_autoencoder
    for k, v in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h",
                 "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(UserError, match="one process"):
        train_autoencoder(None, None, None, run_dir=Path("unused"), epochs=1,   # type: ignore
                          batch_size=1, lr=1e-3, regression=0.0, seed=0)


# ---- two real processes -----------------------------------------------------------------

ARGS = ["--vocab-size", "300", "--embedding-dim", "16", "--encoder-hidden-size", "16",
        "--decoder-hidden-size", "16", "--dropout", "0", "--batch-tokens", "600", "--lr", "1e-2",
        "--max-steps", "4", "--eval-every", "3", "--eval-sentences", "8", "--seed", "7",
        "--threads", "1", "--device", "cpu", "--quiet"]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(run / "checkpoint.safetensors")).items()
            if k.startswith(("model.", "optim."))}


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert set(a) == set(b)
    for k in a:
        # float32 sums in another order: equal to rounding, far below one update's size
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6, msg=k)


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node 2 -m seqlab ARGS` with this checkout's seqlab."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(seqlab.__file__).parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "seqlab", *args], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_two_gloo_processes_train_a_transformer_as_one(tmp_path):
    corpus = write_corpus(tmp_path / "pairs.tsv")
    args = ["--arch", "transformer", "--d-model", "16", "--num-heads", "2",
            "--num-encoder-layers", "1", "--num-decoder-layers", "1", "--dim-feedforward", "32",
            "--vocab-size", "300", "--dropout", "0", "--batch-tokens", "600", "--lr", "1e-2",
            "--max-steps", "4", "--eval-every", "3", "--eval-sentences", "8", "--seed", "7",
            "--threads", "1", "--device", "cpu", "--quiet"]
    two, one = tmp_path / "two", tmp_path / "one"
    _torchrun("translate", "train", "--corpus", str(corpus), "--out", str(two), *args)
    r = CliRunner().invoke(main, ["translate", "train", "--corpus", str(corpus), "--out",
                                  str(one), *args])
    assert r.exit_code == 0, r.output
    a, b = _weights(two), _weights(one)
    # the key projection's bias gets no gradient (softmax ignores a shift shared by a query's
    # scores; test_translate_transformer checks this in float64), so Adam turns rounding noise
    # into updates that differ between the two summation orders: compared without that slice
    for k in [k for k in a if k.endswith("in_proj_bias")]:
        d = a[k].numel() // 3
        a[k], b[k] = torch.cat([a[k][:d], a[k][2 * d:]]), torch.cat([b[k][:d], b[k][2 * d:]])
    _assert_close(a, b)


def _continue(run: Path, steps: int, echo=lambda s: None) -> None:
    s = train_translator(run, resume=True, overrides={"max_steps": steps}, progress=False,
                         echo=echo)
    assert s["steps"] == steps


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process(tmp_path):
    corpus = write_corpus(tmp_path / "pairs.tsv")
    two, one = tmp_path / "two", tmp_path / "one"
    proc = _torchrun("translate", "train", "--corpus", str(corpus), "--out", str(two), *ARGS)
    assert proc.stdout.count("tokenizer: ") == 1        # rank 0 alone speaks
    assert proc.stdout.count("run directory") == 1
    r = CliRunner().invoke(main, ["translate", "train", "--corpus", str(corpus), "--out",
                                  str(one), *ARGS])
    assert r.exit_code == 0, r.output

    cfg2 = json.loads((two / "config.json").read_text())
    cfg1 = json.loads((one / "config.json").read_text())
    assert cfg2["tokenizer"] == cfg1["tokenizer"]
    assert (cfg2["world_size"], cfg1["world_size"]) == (2, 1)
    log2 = [json.loads(x) for x in (two / "train_log.jsonl").read_text().splitlines()]
    assert log2[0]["world_size"] == 2 and [r["step"] for r in log2 if "dev_bleu" in r] == [3, 4]
    ckpt2 = load_file(str(two / "checkpoint.safetensors"))
    assert "rng.rank1.torch" in ckpt2                       # rank 1's dropout stream, for resume
    _assert_close(_weights(two), _weights(one))
    torch.manual_seed(7)                                     # the initial weights: training
    init = Seq2Seq(Seq2SeqConfig.from_dict(cfg1["model"])).state_dict()  # moved them far more
    moved = max(float((v - ckpt2["model." + k]).abs().max()) for k, v in init.items()
                if "model." + k in ckpt2)                    # than the tolerance
    assert moved > 1e-4

    r = CliRunner().invoke(main, ["translate", "run", str(two), "I see two red cats .",
                                  "--num-beams", "2", "--device", "cpu"])
    assert r.exit_code == 0 and r.output.strip(), r.output

    # resumed by 2 processes again, then by 1 (a notice): both continue like the 1-process run
    proc = _torchrun("translate", "train", "--out", str(two), "--resume", "--max-steps", "6",
                     "--quiet")
    assert "resuming" in proc.stdout and "the run so far used" not in proc.stdout
    _continue(one, 6)
    _assert_close(_weights(two), _weights(one))
    said: list[str] = []
    _continue(two, 8, said.append)
    _continue(one, 8)
    assert any("the run so far used 2" in s for s in said)
    _assert_close(_weights(two), _weights(one))
    log2 = [json.loads(x) for x in (two / "train_log.jsonl").read_text().splitlines()]
    assert [r["world_size"] for r in log2 if "world_size" in r] == [2, 2, 1]
