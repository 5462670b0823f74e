"""Mixed precision (`TrainConfig.precision="bf16"`, `--precision bf16`): torch.autocast runs the
matrix products in bfloat16 while weights, optimizer state, LSTM cell states and the loss stay
float32; training resumes exactly; recorded gates are unchanged; without autocast a dtype
mismatch is still an error."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from seqlab.device import fused_lstm_supports
from seqlab.errors import UserError
from seqlab.nn.decoder import AttentionDecoder, DecoderConfig
from seqlab.nn.lstm import LSTM
from seqlab.training import TrainConfig
from seqlab.translate.model import Seq2Seq, Seq2SeqConfig
from seqlab.translate.train import train_translator
from test_cli_translate import invoke
from test_translate_train import MODEL, cfgs, write_corpus

pytestmark = pytest.mark.cpu_sensitive   # bfloat16 kernels differ between instruction sets

BF16 = dict(device_type="cpu", dtype=torch.bfloat16)


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 50, (4, 9), generator=g)                       # (B, S)
    lengths = torch.tensor([9, 7, 4, 2])
    mask = torch.arange(9)[None, :] < lengths[:, None]                    # (B, S)
    tgt_in = torch.randint(4, 60, (4, 8), generator=g)                    # (B, T)
    tgt_out = torch.randint(4, 60, (4, 8), generator=g)
    tgt_out[2, 5:] = 0                                                    # padding
    tgt_out[3, 3:] = 0
    return src, lengths, mask, tgt_in, tgt_out


def test_unknown_precision_is_a_one_line_error() -> None:
    with pytest.raises(UserError, match="precision='fp8': expected one of auto, fp32, bf16"):
        TrainConfig(precision="fp8")


@pytest.mark.parametrize("attention", ["none", "additive", "dot", "general", "scaled_dot",
                                       "multihead"])
def test_autocast_loss_and_gradients_follow_float32(attention: str) -> None:
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(src_vocab_size=50, tgt_vocab_size=60, embedding_dim=32,
                        encoder_hidden_size=16, decoder_hidden_size=32, attention=attention,
                        num_heads=2 if attention == "multihead" else 1, dropout=0.0)
    model = Seq2Seq(cfg)
    batch = _batch()
    loss32, n32 = model.loss(*batch)
    loss32.backward()
    g32 = torch.cat([p.grad.flatten() for p in model.parameters()])
    model.zero_grad()
    with torch.autocast(**BF16):
        loss16, n16 = model.loss(*batch)
    loss16.backward()
    g16 = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert n16 == n32 == int((batch[4] != 0).sum())
    assert loss16.dtype == torch.float32                    # the loss is summed in float32
    assert all(p.dtype == p.grad.dtype == torch.float32 for p in model.parameters())
    # bfloat16 keeps ~3 significant digits: close, but not equal (autocast really ran)
    assert float(loss16.detach()) != float(loss32.detach())
    assert float(loss16.detach()) == pytest.approx(float(loss32.detach()), rel=5e-3)
    cos = torch.nn.functional.cosine_similarity(g16, g32, dim=0)
    assert cos > 0.995


def test_decoder_keeps_its_recurrent_state_in_float32_under_autocast() -> None:
    torch.manual_seed(0)
    dec = AttentionDecoder(DecoderConfig(vocab_size=30, embedding_dim=8, hidden_size=16,
                                         memory_dim=12, attention="general", dropout=0.0))
    values = torch.randn(3, 5, 12)
    with torch.autocast(**BF16):
        memory = dec.make_memory(values)
        state = dec.init_state(memory)
        logp, state, w = dec.step(torch.tensor([1, 2, 3]), state, memory)
    assert state.h.dtype == state.c.dtype == torch.float32
    assert logp.shape == (3, 30) and w.shape == (3, 5)


def test_recorded_gates_under_autocast_are_the_float32_ones() -> None:
    torch.manual_seed(0)
    lstm = LSTM(5, 7, batch_first=True, bidirectional=True)
    x = torch.randn(2, 6, 5)
    out32, (h32, c32), gates32 = lstm(x, return_gates=True)
    with torch.autocast(**BF16):
        out, (h, c), gates = lstm(x, return_gates=True)      # recording: full precision
        fused, _ = lstm(x)                                   # not recording: the bf16 kernel
    assert torch.equal(out, out32) and torch.equal(c, c32)
    assert torch.equal(gates.f, gates32.f)
    if fused_lstm_supports(torch.bfloat16):                  # oneDNN's bf16 LSTM kernel
        assert fused.dtype == torch.bfloat16
        assert torch.allclose(fused.float(), out32, atol=2e-2)
    else:                # the kernel cannot run in bf16 here: it runs in float32, as without
        assert torch.equal(fused, lstm(x)[0])


def test_fused_lstm_trains_under_autocast_on_any_cpu() -> None:
    """The fused path under bf16 autocast runs on every CPU (in bfloat16 where oneDNN can,
    else in float32) and its gradients follow the float32 ones."""
    torch.manual_seed(0)
    lstm = LSTM(5, 7, num_layers=2, batch_first=True, bidirectional=True)
    x = torch.randn(3, 6, 5)
    out32, _ = lstm(x)
    out32.square().sum().backward()
    g32 = torch.cat([p.grad.flatten() for p in lstm.parameters()])
    lstm.zero_grad()
    for lengths in (None, torch.tensor([6, 4, 2])):        # the padded and the packed kernel
        with torch.autocast(**BF16):
            out, (h, c) = lstm(x, lengths=lengths)
        assert c.dtype == torch.float32 or fused_lstm_supports(torch.bfloat16)
        if lengths is None:
            assert torch.allclose(out.float(), out32, atol=3e-2)
            out.float().square().sum().backward()
            g = torch.cat([p.grad.flatten() for p in lstm.parameters()])
            assert torch.nn.functional.cosine_similarity(g, g32, dim=0) > 0.995


def test_dtype_mismatch_is_still_an_error_without_autocast() -> None:
    lstm = LSTM(5, 7)
    with pytest.raises(ValueError, match="does not match the weights' dtype"):
        lstm(torch.randn(3, 2, 5, dtype=torch.bfloat16))


def test_bf16_training_resumes_exactly_with_float32_checkpoints(tmp_path, corpus_path) -> None:
    quiet = dict(progress=False, echo=lambda s: None)
    tc, dc = cfgs(corpus_path, precision="bf16")
    a = train_translator(tmp_path / "a", MODEL, tc, dc, **quiet)
    tc6, _ = cfgs(corpus_path, precision="bf16", max_steps=6)
    train_translator(tmp_path / "b", MODEL, tc6, dc, **quiet)
    b = train_translator(tmp_path / "b", resume=True, overrides={"max_steps": 12}, **quiet)
    assert a["steps"] == b["steps"] == 12
    ca = load_file(str(tmp_path / "a" / "checkpoint.safetensors"))
    cb = load_file(str(tmp_path / "b" / "checkpoint.safetensors"))
    for k in ca:
        assert torch.equal(ca[k], cb[k]), k
    assert all(t.dtype != torch.bfloat16 for t in ca.values())
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["train"]["precision"] == "bf16"
    # the same run in float32 ends elsewhere (autocast was on), but not far off
    tc32, _ = cfgs(corpus_path)
    train_translator(tmp_path / "c", MODEL, tc32, dc, **quiet)
    c32 = load_file(str(tmp_path / "c" / "checkpoint.safetensors"))
    w = "model.decoder.out.weight"
    assert not torch.equal(ca[w], c32[w])
    assert torch.allclose(ca[w], c32[w], atol=5e-2)


def test_cli_trains_in_bf16_and_records_it(tmp_path, corpus_path) -> None:
    out = tmp_path / "run"
    r = invoke("translate", "train", "--corpus", str(corpus_path), "--out", str(out),
               "--hidden", "16", "--emb", "16", "--vocab-size", "300", "--batch-tokens", "600",
               "--max-steps", "4", "--eval-every", "4", "--eval-sentences", "4",
               "--threads", "1", "--precision", "bf16", "--quiet")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["train"]["precision"] == "bf16"
    r = invoke("translate", "train", "--out", str(tmp_path / "x"), "--corpus",
               str(corpus_path), "--precision", "fp8")
    assert r.exit_code == 2 and "fp8" in r.output


@pytest.fixture(scope="module")
def corpus_path(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("data") / "pairs.tsv")


def test_captioner_trains_in_bf16(tmp_path) -> None:
    from seqlab.caption.data import CaptionDataConfig, CaptionSplits, read_caption_folder
    from seqlab.caption.train import default_train_config, train_captioner
    from test_caption_e2e import TINY, _make_set

    data = _make_set(tmp_path / "data")
    ds = read_caption_folder(data, image_size=32)
    summary = train_captioner(
        tmp_path / "run", model_cfg=TINY,
        train_cfg=default_train_config(batch_size=9, lr=1e-2, warmup_steps=2, eval_every=10,
                                       log_every=5, max_steps=20, seed=7, threads=1,
                                       precision="bf16"),
        data_cfg=CaptionDataConfig(data=str(data), vocab_size=300, image_size=32),
        splits=CaptionSplits(ds, ds, ds, "random"), progress=False, echo=lambda s: None)
    assert summary["steps"] == 20
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < losses[0]                     # it learns
    ckpt = load_file(str(tmp_path / "run" / "checkpoint.safetensors"))
    assert all(t.dtype != torch.bfloat16 for t in ckpt.values())
