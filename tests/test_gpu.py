"""On a CUDA GPU: the gate-level LSTM against cuDNN's, training on the GPU (float32, bf16/fp16
mixed precision with the gradient scaler's state in the checkpoint), and runs moving between
the GPU and the CPU. Every test here is skipped on a machine without CUDA."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seqlab.nn.lstm import LSTM, LSTMGates

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = torch.device("cuda")
# the CPU tolerances of tests/test_lstm.py, relative to the largest value
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


@pytest.fixture(autouse=True)
def full_float32() -> Iterator[None]:
    """TF32 (10-bit mantissa matmuls, torch's default for cuDNN) would hide real differences:
    compare in full float32, as on the CPU."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    if ref.numel() == 0:
        return 0.0
    return (ours - ref).abs().max().item() / max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["plain", "lengths", "packed"])
@pytest.mark.parametrize("gates", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_on_cuda_matches_cudnn(dtype, mode, gates, bidirectional) -> None:
    torch.manual_seed(0)
    I, H, L, B, T = 5, 6, 2, 4, 7
    kw = dict(input_size=I, hidden_size=H, num_layers=L, batch_first=True,
              bidirectional=bidirectional)
    ref = torch.nn.LSTM(**kw).to(CUDA, dtype)               # cuDNN
    ours = LSTM(**kw).to(CUDA, dtype)
    ours.load_state_dict(ref.state_dict())
    D = 2 if bidirectional else 1
    x = torch.randn(B, T, I, dtype=dtype, device=CUDA, requires_grad=True)
    h0 = torch.randn(L * D, B, H, dtype=dtype, device=CUDA, requires_grad=True)
    c0 = torch.randn(L * D, B, H, dtype=dtype, device=CUDA, requires_grad=True)
    lengths = torch.tensor([7, 3, 5, 1])
    if mode == "plain":
        ref_out, (ref_h, ref_c) = ref(x, (h0, c0))
        res = ours(x, (h0, c0), return_gates=gates)
    else:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        ref_out, (ref_h, ref_c) = ref(packed, (h0, c0))
        if mode == "lengths":
            ref_out, _ = pad_packed_sequence(ref_out, batch_first=True, total_length=T)
            res = ours(x, (h0, c0), lengths=lengths, return_gates=gates)
        else:
            res = ours(packed, (h0, c0), return_gates=gates)
    out, (h, c) = res[:2]
    if mode == "packed":
        assert isinstance(out, PackedSequence)
        out, ref_out = out.data, ref_out.data
    assert out.device.type == "cuda"
    for name, a, b in (("output", out, ref_out), ("h_n", h, ref_h), ("c_n", c, ref_c)):
        assert rel_err(a, b) <= TOL[dtype], (name, rel_err(a, b))
    gs = [torch.randn_like(t) for t in (ref_out, ref_h, ref_c)]
    g_ref = torch.autograd.grad((ref_out, ref_h, ref_c), [x, h0, c0, *ref.parameters()], gs,
                                retain_graph=True)
    g_ours = torch.autograd.grad((out, h, c), [x, h0, c0, *ours.parameters()], gs)
    names = ["x", "h0", "c0", *(n for n, _ in ref.named_parameters())]
    for name, a, b in zip(names, g_ours, g_ref, strict=True):
        assert rel_err(a, b) <= TOL[dtype], (name, rel_err(a, b))
    if gates:
        rec = res[2]
        assert isinstance(rec, LSTMGates)
        real = (torch.arange(T)[None, :] < lengths[:, None] if mode != "plain"
                else torch.ones(B, T, dtype=torch.bool))
        f = rec.f.cpu()
        assert f.shape == (L, D, B, T, H) and torch.equal(rec.mask, real)
        assert torch.isnan(f[:, :, ~real]).all() and not torch.isnan(f[:, :, real]).any()


def test_lstm_under_cuda_autocast_runs_and_follows_float32() -> None:
    torch.manual_seed(0)
    lstm = LSTM(5, 7, batch_first=True, bidirectional=True).to(CUDA)
    x = torch.randn(3, 6, 5, device=CUDA)
    out32, _ = lstm(x)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    with torch.autocast("cuda", dtype=dtype):
        out, (_, c) = lstm(x)
        rec, _, gates = lstm(x, return_gates=True)           # recording: full precision
    assert torch.allclose(out.float(), out32, atol=3e-2)
    assert torch.allclose(rec, out32, atol=1e-5) and gates.f.dtype == torch.float32


# ---- training on the GPU ---------------------------------------------------------------------


def _toy_run(out: Path, steps: int, resume: bool = False, **cfg) -> dict:
    """test_training_loop's toy regression, its loss and metric computed on the model's
    device (a loss on the GPU, as the tasks' are: the gradient scaler lives there)."""
    from dataclasses import asdict

    from seqlab.device import model_device
    from seqlab.training import TrainConfig, train_loop
    from seqlab.training.checkpoint import check_run_dir, seed_everything
    from test_training_loop import Toy, _task

    batches, _, _ = _task()
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))  # (N, 3), as _task's
    y = x @ torch.tensor([1.0, -2.0, 0.5])                              # (N,)

    def loss(model, rows):
        dev = model_device(model)
        pred = model(x[rows].to(dev)).float()                          # (B,)
        return ((pred - y[rows].to(dev)) ** 2).sum(), len(rows)

    @torch.no_grad()
    def evaluate(model):
        return -float(sum(loss(model, r)[0].item() for r in batches(0)))

    tc = TrainConfig(**{**dict(lr=1e-2, warmup_steps=3, eval_every=4, log_every=2, seed=3,
                               max_steps=steps, max_epochs=100, patience=100), **cfg})
    seed_everything(tc.seed)
    model = Toy()
    out.mkdir(parents=True, exist_ok=True)
    check_run_dir(out, resume)
    return train_loop(out, model, tc, fmt="seqlab-test/1", batches=batches, loss=loss,
                      evaluate=evaluate, resume=resume,
                      run_config={"format": "seqlab-test/1", "train": asdict(tc)},
                      progress=False, echo=lambda s: None)


@pytest.mark.parametrize("precision", ["fp32", "auto", "fp16"])
def test_training_on_cuda_learns_and_saves_cpu_checkpoints(tmp_path: Path, precision) -> None:
    s = _toy_run(tmp_path / "r", 12, device="cuda", precision=precision)
    assert s["steps"] == 12
    log = [json.loads(x) for x in (tmp_path / "r" / "train_log.jsonl").read_text().splitlines()]
    evals = [r["dev_bleu"] for r in log if "dev_bleu" in r]      # minus the summed error
    assert len(evals) == 3 and evals[-1] > evals[0]
    want = {"fp32": "fp32", "fp16": "fp16",
            "auto": "bf16" if torch.cuda.is_bf16_supported() else "fp16"}[precision]
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["precision"] == want
    ckpt = load_file(str(tmp_path / "r" / "checkpoint.safetensors"))
    assert all(t.device.type == "cpu" and t.dtype != torch.float16 for t in ckpt.values())
    with safe_open(str(tmp_path / "r" / "checkpoint.safetensors"), "pt") as f:
        state = json.loads(f.metadata()["state"])
    assert ("scaler" in state) == (want == "fp16")
    if want == "fp16":
        assert state["scaler"]["scale"] > 0


def test_fp16_resume_continues_with_the_scaler_state(tmp_path: Path) -> None:
    def state(run: str) -> dict:
        with safe_open(str(tmp_path / run / "checkpoint.safetensors"), "pt") as f:
            return json.loads(f.metadata()["state"])

    _toy_run(tmp_path / "a", 12, device="cuda", precision="fp16")
    _toy_run(tmp_path / "b", 6, device="cuda", precision="fp16")
    s = _toy_run(tmp_path / "b", 12, resume=True, device="cuda", precision="fp16")
    assert s["steps"] == 12
    assert state("b")["scaler"] == state("a")["scaler"]
    a = load_file(str(tmp_path / "a" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoint.safetensors"))
    for k in a:                      # the CUDA RNG (dropout) is in the checkpoint too
        if k.startswith("model."):
            assert torch.allclose(a[k], b[k], atol=1e-4), k


def test_a_run_moves_between_gpu_and_cpu(tmp_path: Path) -> None:
    from seqlab.translate.api import Translator
    from seqlab.translate.train import train_translator
    from test_translate_train import MODEL, cfgs, write_corpus

    corpus = write_corpus(tmp_path / "pairs.tsv")
    quiet = dict(progress=False, echo=lambda s: None)
    tc, dc = cfgs(corpus, max_steps=8, eval_every=4, device="cuda")
    train_translator(tmp_path / "gpu", MODEL, tc, dc, **quiet)
    on_cpu = Translator.load(tmp_path / "gpu", device="cpu")
    on_gpu = Translator.load(tmp_path / "gpu", device="cuda")
    assert {p.device.type for p in on_cpu.model.parameters()} == {"cpu"}
    for (name, a), b in zip(on_cpu.model.state_dict().items(),
                            on_gpu.model.state_dict().values(), strict=True):
        assert torch.equal(a, b.cpu()), name
    sentences = ["two red cats", "one small dog", "three big birds", "a red dog"]
    for beams in (1, 3):
        a, b = on_cpu.translate(sentences, num_beams=beams), on_gpu.translate(sentences,
                                                                              num_beams=beams)
        assert sum(x == y for x, y in zip(a, b, strict=True)) >= 3   # rounding may flip one
    # ... and a CPU run resumes on the GPU
    tc, dc = cfgs(corpus, max_steps=4, eval_every=4, device="cpu")
    train_translator(tmp_path / "cpu", MODEL, tc, dc, **quiet)
    s = train_translator(tmp_path / "cpu", resume=True,
                         overrides={"max_steps": 8, "device": "cuda"}, **quiet)
    assert s["steps"] == 8
    log = (tmp_path / "cpu" / "train_log.jsonl").read_text()
    assert '"device": "cuda"' in log and '"resumed_with"' in log
