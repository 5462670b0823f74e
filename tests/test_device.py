"""seqlab.device: the device resolver, the capability checks behind `--precision auto`, and
`--device` on every command that runs a model. These run on any machine: they ask torch what it
has instead of assuming it (tests/test_gpu.py holds the ones that need a GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from seqlab.cli import main
from seqlab.device import (
    autocast,
    capabilities,
    check_precision,
    cpu_native_bf16,
    fused_lstm_supports,
    grad_scaler,
    idle_threads,
    resolve_device,
    resolve_precision,
    to_device,
)
from seqlab.errors import UserError
from seqlab.training import TrainConfig

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def test_auto_is_cuda_then_mps_then_cpu() -> None:
    dev = resolve_device("auto")
    assert resolve_device(None) == dev
    if torch.cuda.is_available():
        assert dev.type == "cuda"
    elif torch.backends.mps.is_available():
        assert dev.type == "mps"
    else:
        assert dev == torch.device("cpu")
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")


@NO_CUDA
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_an_absent_gpu_is_a_one_line_error(spec: str) -> None:
    with pytest.raises(UserError, match=rf"device='{spec}': no CUDA GPU available .*--device cpu"):
        resolve_device(spec)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="needs a machine without MPS")
def test_an_absent_mps_is_a_one_line_error() -> None:
    with pytest.raises(UserError, match="device='mps': MPS .* not available"):
        resolve_device("mps")


@pytest.mark.parametrize("spec", ["gpu", "tpu", "cuda:x", "meta", ""])
def test_a_device_name_that_is_not_one_is_a_one_line_error(spec: str) -> None:
    with pytest.raises(UserError, match="expected auto, cpu, cuda, cuda:N or mps"):
        resolve_device(spec)
    with pytest.raises(UserError, match="expected auto, cpu, cuda, cuda:N or mps"):
        TrainConfig(device=spec)


@pytest.mark.cpu_sensitive
def test_capabilities_agree_with_each_other() -> None:
    caps = capabilities()
    assert caps["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert caps["fused_lstm_bf16"] == fused_lstm_supports(torch.bfloat16)
    # native bfloat16 arithmetic implies oneDNN may use bfloat16, and then its LSTM runs in it
    if cpu_native_bf16():
        assert caps["mkldnn_bf16"] and caps["fused_lstm_bf16"]
    json.dumps(caps)                                   # recorded in benchmark JSON as is


@pytest.mark.cpu_sensitive
def test_the_lstm_kernel_probe_answers_the_same_inside_no_grad_and_inference_mode() -> None:
    want = fused_lstm_supports(torch.bfloat16)
    fused_lstm_supports.cache_clear()
    with torch.inference_mode():
        assert fused_lstm_supports(torch.bfloat16) == want
    fused_lstm_supports.cache_clear()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert fused_lstm_supports(torch.bfloat16) == want


@pytest.mark.cpu_sensitive
def test_auto_precision_picks_bf16_on_a_cpu_only_where_it_is_native() -> None:
    got = resolve_precision("auto", "cpu")
    assert got == ("bf16" if cpu_native_bf16() else "fp32")
    if torch.cuda.is_available():
        assert resolve_precision("auto", "cuda") == (
            "bf16" if torch.cuda.is_bf16_supported() else "fp16")


def test_precisions_a_device_cannot_run_are_one_line_errors() -> None:
    with pytest.raises(UserError, match="precision='fp16' needs a CUDA device"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(UserError, match="precision='fp4': expected one of auto, fp32, bf16, fp16"):
        check_precision("fp4", "cpu")
    for p in ("fp32", "bf16"):                         # bf16 runs on every CPU (maybe slowly)
        assert resolve_precision(p, "cpu") == p
    assert TrainConfig(precision="auto").precision == "auto"


def test_autocast_and_scaler_follow_the_precision() -> None:
    with autocast("cpu", "bf16"):
        assert torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast("cpu", "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    assert grad_scaler("cpu", "bf16") is None and grad_scaler("cpu", "fp32") is None


def test_to_device_moves_tensors_inside_containers_and_keeps_the_rest() -> None:
    x, y = torch.ones(2), torch.zeros(3, dtype=torch.long)
    got = to_device({"a": (x, [y, 3]), "b": "text"}, "cpu")
    assert torch.equal(got["a"][0], x) and torch.equal(got["a"][1][0], y)
    assert isinstance(got["a"], tuple) and got["a"][1][1] == 3 and got["b"] == "text"


@pytest.mark.cpu_sensitive
def test_auto_precision_is_resolved_and_recorded_by_the_loop(tmp_path: Path) -> None:
    from test_training_loop import _run

    _run(tmp_path / "r", 4, precision="auto", device="cpu")
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    want = resolve_precision("auto", "cpu")
    assert cfg["train"]["precision"] == want and cfg["train"]["device"] == "cpu"
    log = [json.loads(x) for x in (tmp_path / "r" / "train_log.jsonl").read_text().splitlines()]
    assert {"step": 0, "device": "cpu", "precision": want} in log
    # a resume keeps the recorded choice (exact resume holds within a precision)
    s = _run(tmp_path / "r", 8, resume=True, precision=want, device="cpu")
    assert s["steps"] == 8
    log = [json.loads(x) for x in (tmp_path / "r" / "train_log.jsonl").read_text().splitlines()]
    assert [r["resumed_with"] for r in log if "resumed_with" in r] == [{"max_steps": 8}]


def test_checkpoints_are_cpu_float32_and_load_onto_the_named_device(tmp_path: Path) -> None:
    from seqlab.translate.api import Translator
    from seqlab.translate.train import train_translator
    from test_translate_train import MODEL, cfgs, write_corpus

    corpus = write_corpus(tmp_path / "pairs.tsv")
    tc, dc = cfgs(corpus, max_steps=4, eval_every=4, device="cpu")
    train_translator(tmp_path / "run", MODEL, tc, dc, progress=False, echo=lambda s: None)
    from safetensors.torch import load_file

    for name in ("model.safetensors", "checkpoint.safetensors"):
        tensors = load_file(str(tmp_path / "run" / name))
        assert all(t.device.type == "cpu" for t in tensors.values())
        assert all(t.dtype in (torch.float32, torch.int64, torch.uint8)
                   for t in tensors.values())
    tr = Translator.load(tmp_path / "run", device="cpu")
    assert {p.device.type for p in tr.model.parameters()} == {"cpu"}
    auto = Translator.load(tmp_path / "run")            # "auto": wherever this machine allows
    assert {p.device.type for p in auto.model.parameters()} == {resolve_device("auto").type}
    assert len(tr.translate(["two red cats", "one dog"], num_beams=2)) == 2


# ---- --device on every command that runs a model ----------------------------------------------


def _commands(tmp: Path) -> dict[str, list[str]]:
    run, csv, img = str(tmp / "run"), str(tmp / "x.csv"), str(tmp / "a.png")
    return {
        "translate train": ["translate", "train", "--out", str(tmp / "t")],
        "translate run": ["translate", "run", run, "hello"],
        "translate eval": ["translate", "eval", run],
        "caption train": ["caption", "train", "--out", str(tmp / "c")],
        "caption run": ["caption", "run", run, img],
        "caption eval": ["caption", "eval", run],
        "series fit": ["series", "fit", csv, "--out", str(tmp / "s")],
        "series score": ["series", "score", run, csv, "-o", str(tmp / "o.csv")],
        "series embed": ["series", "embed", run, csv, "-o", str(tmp / "e.csv")],
        "gates": ["gates"],
        "demo": ["demo", "--out", str(tmp / "d")],
    }


@pytest.mark.parametrize("command", list(_commands(Path("."))))
def test_every_model_command_takes_device_and_checks_it_first(command: str,
                                                              tmp_path: Path) -> None:
    args = _commands(tmp_path)[command]
    n = len(command.split())                           # "gates" / "translate train"
    r = CliRunner().invoke(main, [*args[:n], "--device", "tpu", *args[n:]])
    assert r.exit_code == 2, r.output
    assert "device='tpu': expected auto, cpu, cuda, cuda:N or mps" in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "t").exists() and not (tmp_path / "d").exists()   # no work done


@NO_CUDA
def test_asking_for_an_absent_gpu_fails_before_any_work(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["translate", "train", "--device", "cuda", "--out",
                                  str(tmp_path / "t")])
    assert r.exit_code == 2 and "no CUDA GPU available" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "t").exists()


@pytest.mark.cpu_sensitive
def test_device_cpu_end_to_end(tmp_path: Path) -> None:
    from test_translate_train import write_corpus

    corpus = write_corpus(tmp_path / "pairs.tsv")
    out = tmp_path / "run"
    r = CliRunner().invoke(main, [
        "translate", "train", "--corpus", str(corpus), "--out", str(out), "--hidden", "16",
        "--emb", "16", "--vocab-size", "300", "--batch-tokens", "600", "--max-steps", "4",
        "--eval-every", "4", "--eval-sentences", "4", "--threads", "1", "--device", "cpu",
        "--precision", "auto", "--quiet"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["device"] == "cpu"
    assert cfg["train"]["precision"] == resolve_precision("auto", "cpu")
    r = CliRunner().invoke(main, ["translate", "run", str(out), "two red cats", "--device", "cpu",
                                  "--num-beams", "2"])
    assert r.exit_code == 0, r.output
    assert len(r.output.strip().splitlines()) == 1


def test_idle_threads_leaves_the_busy_cores_to_the_other_processes() -> None:
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert cores
    default = torch.get_num_threads()
    assert idle_threads(0.0) == min(default, cores)          # an idle machine: torch's default
    assert idle_threads(cores + 3.0) == 1                    # overloaded: one thread, not zero
    if min(default, cores) >= 2:
        assert idle_threads(1.0) == min(default, cores - 1)  # one core busy elsewhere
    assert 1 <= idle_threads() <= default                    # the real load average
