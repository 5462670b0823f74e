"""ONNX export of the translator (LSTM and Transformer) and the onnxruntime backend: the graphs
against PyTorch (encoder outputs, step log-probs, states and attention, the Transformer's KV
cache from empty), identical greedy translations, beam search equal up to ties, per-layer
attention, the CLI, dynamic batch and source length, stale exports and a missing onnxruntime."""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from seqlab.cli import main
from seqlab.errors import UserError
from seqlab.io import save_safetensors_atomic
from seqlab.text.batching import collate_src
from seqlab.training.checkpoint import model_tensors
from seqlab.translate.api import Translator
from seqlab.translate.transformer import (
    Transformer,
    TransformerConfig,
    build_model,
    model_config_from_dict,
)
from test_translate_train import COLORS, NOUNS, NUMS, VERBS, write_corpus

needs_ort = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="the optional extra seqlab[onnx] is not installed")


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("onnx_translate")
    corpus = write_corpus(d / "pairs.tsv")
    out = d / "run"
    r = invoke("translate", "train", "--corpus", str(corpus), "--out", str(out), "--hidden",
               "16", "--emb", "16", "--vocab-size", "300", "--batch-tokens", "600",
               "--max-steps", "40", "--eval-every", "20", "--eval-sentences", "8", "--lr",
               "0.01", "--threads", "1", "--quiet")
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def exported(trained_run) -> Path:
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("the optional extra seqlab[onnx] is not installed")
    r = invoke("translate", "export", str(trained_run))
    assert r.exit_code == 0, r.output
    return trained_run


def sentences(n: int, seed: int = 0, max_words: int = 24) -> list[str]:
    """English sentences of 1..max_words words from the corpus vocabulary (varied lengths, so
    batches are padded)."""
    rng = random.Random(seed)
    words = ["I", "."] + list(COLORS) + list(NOUNS) + list(NUMS) + list(VERBS)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, max_words)))
            for _ in range(n)]


def variant(run: Path, out: Path, seed: int = 0, **model: object) -> Path:
    """A copy of `run` whose model has other settings (`model`) and random weights."""
    out.mkdir(parents=True)
    shutil.copytree(run / "tokenizer", out / "tokenizer")
    cfg = json.loads((run / "config.json").read_text())
    if model.get("arch") == "transformer":   # a Transformer with the run's vocabulary
        keep = ("src_vocab_size", "tgt_vocab_size", "pad_id", "bos_id", "eos_id")
        cfg["model"] = TransformerConfig(**{k: cfg["model"][k] for k in keep},
                                         **{k: v for k, v in model.items() if k != "arch"},
                                         share_embeddings=False).to_dict()
    else:
        cfg["model"].update(model)
    (out / "config.json").write_text(json.dumps(cfg))
    torch.manual_seed(seed)
    m = build_model(model_config_from_dict(cfg["model"]))
    save_safetensors_atomic(model_tensors(m), out / "model.safetensors")
    return out


def batch(tr: Translator, texts: list[str]):
    ids = tr.tok.src.encode(texts)
    return collate_src(ids, list(range(len(texts))), pad_id=tr.model.cfg.pad_id,
                       eos_id=tr.model.cfg.eos_id, src_eos=tr.src_eos)


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 2e-5) -> None:
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


KINDS = [dict(attention="additive"), dict(attention="dot", decoder_hidden_size=32),
         dict(attention="general"), dict(attention="scaled_dot", decoder_hidden_size=32),
         dict(attention="none"),
         dict(attention="multihead", num_heads=2),
         dict(attention="additive", input_feeding=False, bridge=False),
         dict(attention="general", tie_embeddings=True)]


@needs_ort
@pytest.mark.parametrize("model", KINDS, ids=lambda m: "-".join(f"{v}" for v in m.values()))
def test_encoder_and_steps_match_pytorch(trained_run, tmp_path, model, one_thread):
    from seqlab.translate.onnx_backend import export_translator

    run = variant(trained_run, tmp_path / "run", **model)
    export_translator(run)
    pt, ox = Translator.load(run), Translator.load(run, backend="onnx")
    dec_pt, dec_ox = pt.model.decoder, ox.model.decoder
    # dynamic axes: one sentence, and 64 of lengths 1..24 words (padded)
    for texts in (sentences(1, seed=3), sentences(64, seed=4)):
        sb = batch(pt, texts)
        assert (~sb.src_mask).any() or len(texts) == 1
        with torch.no_grad():
            mem_pt, st_pt = pt.model.encode(sb.src, sb.src_lengths, sb.src_mask)
            mem_ox, st_ox = ox.model.encode(sb.src, sb.src_lengths, sb.src_mask)
            close(mem_ox.values, mem_pt.values)
            close(mem_ox.cache.keys, mem_pt.cache.keys)
            if mem_pt.cache.values is not None:
                close(mem_ox.cache.values, mem_pt.cache.values)
            close(st_ox.h, st_pt.h)
            close(st_ox.c, st_pt.c)
            # teacher-forced steps from the same state: log-probs, new state, attention
            g = torch.Generator().manual_seed(1)
            state = st_pt
            for _ in range(3):
                tokens = torch.randint(4, pt.model.cfg.tgt_vocab_size, (len(texts),), generator=g)
                lp_pt, new_pt, w_pt = dec_pt.step(tokens, state, mem_pt)
                lp_ox, new_ox, w_ox = dec_ox.step(tokens, state, mem_ox)
                close(lp_ox, lp_pt, 1e-4)
                for a, b in zip(new_ox, new_pt, strict=True):
                    close(a, b)
                close(w_ox, w_pt)
                assert torch.all(w_ox[~sb.src_mask] == 0)   # padding gets no weight
                state = new_pt


@needs_ort
def test_export_writes_graphs_and_a_manifest(exported):
    import onnx

    d = exported / "onnx"
    manifest = json.loads((d / "manifest.json").read_text())
    cfg = json.loads((exported / "config.json").read_text())["model"]
    assert manifest["kind"] == "translator" and manifest["opset"] >= 17
    assert manifest["special_ids"] == {"pad": cfg["pad_id"], "bos": cfg["bos_id"],
                                       "eos": cfg["eos_id"]}
    assert manifest["vocab_size"] == {"src": cfg["src_vocab_size"], "tgt": cfg["tgt_vocab_size"]}
    for part in ("encoder", "step"):
        graph = onnx.load(str(d / manifest["files"][part])).graph
        assert [i.name for i in graph.input] == manifest[part]["inputs"]
        assert [o.name for o in graph.output] == manifest[part]["outputs"]
    assert "weights" in manifest["step"]["outputs"] and "keys" in manifest["encoder"]["outputs"]
    assert manifest["check_max_abs_diff"] < 1e-4
    assert sorted(p.name for p in exported.iterdir() if p.name.startswith(".onnx")) == []


@needs_ort
@pytest.mark.parametrize("batch_size", [1, 64])
def test_greedy_translations_are_identical(exported, batch_size, one_thread):
    pt, ox = Translator.load(exported), Translator.load(exported, backend="onnx", threads=1)
    texts = sentences(80, seed=5) + ["", "I see two red cats ."]
    out_pt = pt.translate(texts, num_beams=1, batch_size=batch_size)
    out_ox = ox.translate(texts, num_beams=1, batch_size=batch_size)
    assert out_ox == out_pt
    assert len(set(out_pt)) > 5   # the model says different things: not a vacuous comparison


@needs_ort
def test_beam_search_is_equal_up_to_ties(exported, one_thread):
    pt, ox = Translator.load(exported), Translator.load(exported, backend="onnx")
    texts = sentences(40, seed=6)
    res_pt = pt.translate(texts, num_beams=4, num_return_sequences=2)
    res_ox = ox.translate(texts, num_beams=4, num_return_sequences=2)
    for a, b in zip(res_pt, res_ox, strict=True):
        assert not isinstance(a, str) and not isinstance(b, str)
        assert abs(a.score - b.score) < 1e-4
        if a.text != b.text:   # only where two hypotheses score the same
            assert abs(a.score - a.nbest[0][1]) < 1e-4 or abs(b.score - b.nbest[0][1]) < 1e-4


@needs_ort
def test_attention_weights_match(exported, one_thread):
    pt, ox = Translator.load(exported), Translator.load(exported, backend="onnx")
    texts = sentences(6, seed=7)
    for num_beams in (1, 3):
        for a, b in zip(pt.translate(texts, num_beams=num_beams, return_attention=True),
                        ox.translate(texts, num_beams=num_beams, return_attention=True),
                        strict=True):
            assert not isinstance(a, str) and not isinstance(b, str)
            assert a.tgt_tokens == b.tgt_tokens and a.src_tokens == b.src_tokens
            np.testing.assert_allclose(b.attention, a.attention, atol=1e-5)


@needs_ort
def test_cli_run_and_eval_with_the_onnx_backend(exported):
    text = "I see two red cats .\n\nI have one blue book .\n"
    r_pt = invoke("translate", "run", str(exported), "-i", "-", "--num-beams", "3", input=text)
    r_ox = invoke("translate", "run", str(exported), "-i", "-", "--num-beams", "3",
                  "--backend", "onnx", input=text)
    assert r_pt.exit_code == 0 and r_ox.exit_code == 0, r_ox.output
    assert r_ox.stdout == r_pt.stdout and r_ox.stdout.count("\n") == 3
    r = invoke("translate", "eval", str(exported), "--split", "test", "--num-beams", "1",
               "--backend", "onnx", "--json")
    assert r.exit_code == 0, r.output
    r_pt = invoke("translate", "eval", str(exported), "--split", "test", "--num-beams", "1",
                  "--json")
    assert json.loads(r.stdout)["bleu"] == json.loads(r_pt.stdout)["bleu"]


@needs_ort
def test_missing_or_stale_exports_are_refused(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("onnx"))
    r = invoke("translate", "run", str(run), "I see one dog .", "--backend", "onnx")
    assert r.exit_code == 2 and f"seqlab translate export {run}" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert invoke("translate", "export", str(run)).exit_code == 0
    assert Translator.load(run, backend="onnx").translate("I see one dog .")
    with pytest.raises(UserError, match="not 'checkpoint.safetensors'.*--checkpoint last"):
        Translator.load(run, checkpoint="last", backend="onnx")
    # new weights after the export: the graphs are stale
    tensors = model_tensors(Translator.load(run).model)
    tensors["decoder.out.bias"] = tensors["decoder.out.bias"] + 1.0
    save_safetensors_atomic(tensors, run / "model.safetensors")
    r = invoke("translate", "run", str(run), "I see one dog .", "--backend", "onnx")
    assert r.exit_code == 2 and "exported from other weights" in r.output
    assert len(r.output.strip().splitlines()) == 1
    with pytest.raises(UserError, match="backend: expected one of torch, onnx"):
        Translator.load(run, backend="tensorrt")


def test_missing_onnxruntime_is_one_line_and_exit_2(trained_run, monkeypatch):
    for name in ("onnxruntime", "onnx"):
        with monkeypatch.context() as m:
            m.setitem(sys.modules, name, None)   # `import onnxruntime` -> ImportError
            for args in (["translate", "export", str(trained_run)],
                         ["translate", "run", str(trained_run), "I see one dog .", "--backend",
                          "onnx"]):
                r = invoke(*args)
                assert r.exit_code == 2, r.output
                assert r.output.count("\n") == 1 and "pip install 'seqlab[onnx]'" in r.output
                assert f"{name} is missing" in r.output


TRANSFORMER = dict(arch="transformer", d_model=16, num_heads=2, num_encoder_layers=2,
                   num_decoder_layers=2, dim_feedforward=32, dropout=0.0)


@pytest.fixture(scope="module")
def transformer_export(trained_run, tmp_path_factory) -> Path:
    """A 2 + 2 layer Transformer (random weights, the run's tokenizer), exported."""
    from seqlab.translate.onnx_backend import export_translator

    run = variant(trained_run, tmp_path_factory.mktemp("tx") / "run", seed=3, **TRANSFORMER)
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("the optional extra seqlab[onnx] is not installed")
    export_translator(run)
    return run


@needs_ort
def test_transformer_graphs_match_pytorch_from_an_empty_kv_cache(transformer_export, one_thread):
    run = transformer_export
    manifest = json.loads((run / "onnx" / "manifest.json").read_text())
    assert manifest["arch"] == "transformer" and manifest["check_max_abs_diff"] < 1e-4
    pt, ox = Translator.load(run), Translator.load(run, backend="onnx")
    assert isinstance(pt.model, Transformer)
    L = pt.model.cfg.num_decoder_layers
    for texts in (sentences(1, seed=3), sentences(64, seed=4)):
        sb = batch(pt, texts)
        with torch.no_grad():
            mem_pt, st_pt = pt.model.encode(sb.src, sb.src_lengths, sb.src_mask)
            mem_ox, st_ox = ox.model.encode(sb.src, sb.src_lengths, sb.src_mask)
            for i in range(L):   # every layer's cross-attention K, V
                close(mem_ox.keys[:, i], mem_pt.caches[i].keys)
                close(mem_ox.values[:, i], mem_pt.caches[i].values)
            assert st_ox.keys.shape[3] == 0   # the first step sees an empty KV cache
            g = torch.Generator().manual_seed(1)
            tokens = torch.full((len(texts),), pt.model.cfg.bos_id)
            for t in range(4):
                lp_pt, st_pt, w_pt = pt.model.decoder.step(tokens, st_pt, mem_pt)
                lp_ox, st_ox, w_ox = ox.model.decoder.step(tokens, st_ox, mem_ox)
                close(lp_ox, lp_pt, 1e-4)
                close(w_ox, w_pt)
                assert torch.equal(st_ox.position, st_pt.position)
                for i in range(L):   # the KV cache grows by one position per step
                    assert st_ox.keys.shape[3] == t + 1
                    close(st_ox.keys[:, i], st_pt.keys[i])
                    close(st_ox.values[:, i], st_pt.values[i])
                assert torch.all(w_ox[~sb.src_mask] == 0)
                tokens = torch.randint(4, pt.model.cfg.tgt_vocab_size, (len(texts),),
                                       generator=g)


@needs_ort
def test_transformer_translations_and_attention_are_pytorch_s(transformer_export, one_thread):
    run = transformer_export
    pt, ox = Translator.load(run), Translator.load(run, backend="onnx", threads=1)
    texts = sentences(40, seed=8) + ["", "I see two red cats ."]
    for batch_size in (1, 64):
        out_pt = pt.translate(texts, num_beams=1, batch_size=batch_size, max_new_tokens=12)
        assert ox.translate(texts, num_beams=1, batch_size=batch_size,
                            max_new_tokens=12) == out_pt
    assert len(set(out_pt)) > 5
    res_pt = pt.translate(texts[:12], num_beams=3, return_attention=True, max_new_tokens=12)
    res_ox = ox.translate(texts[:12], num_beams=3, return_attention=True, max_new_tokens=12)
    for a, b in zip(res_pt, res_ox, strict=True):
        assert not isinstance(a, str) and not isinstance(b, str)
        assert abs(a.score - b.score) < 1e-4 and a.text == b.text
        np.testing.assert_allclose(b.attention, a.attention, atol=1e-5)
        # every layer and head, as the per-layer pictures draw them: (L, h, T, S)
        assert a.layer_attention.shape == (2, 2, *a.attention.shape)
        np.testing.assert_allclose(b.layer_attention, a.layer_attention, atol=1e-5)


@needs_ort
def test_transformer_cli_export_run_and_plot_with_the_onnx_backend(transformer_export,
                                                                  tmp_path):
    run = tmp_path / "run"
    shutil.copytree(transformer_export, run, ignore=shutil.ignore_patterns("onnx"))
    r = invoke("translate", "export", str(run))
    assert r.exit_code == 0, r.output
    text = "I see two red cats .\nI have one blue book .\n"
    args = ("translate", "run", str(run), "-i", "-", "--num-beams", "2", "--max-new-tokens", "8")
    r_pt, r_ox = invoke(*args, input=text), invoke(*args, "--backend", "onnx", input=text)
    assert r_pt.exit_code == 0 and r_ox.exit_code == 0, r_ox.output
    assert r_ox.stdout == r_pt.stdout and r_ox.stdout.count("\n") == 2
    plot = tmp_path / "att.png"
    r = invoke("translate", "run", str(run), "I see two red cats .", "--backend", "onnx",
               "--attention-plot", str(plot), "--max-new-tokens", "6")
    assert r.exit_code == 0, r.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "att-layer1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a model configuration changed after the export: refused in one line
    (run / "config.json").write_text((run / "config.json").read_text().replace(
        '"num_heads": 2', '"num_heads": 4'))
    r = invoke("translate", "run", str(run), "I see .", "--backend", "onnx")
    assert r.exit_code == 2 and "another model configuration" in r.output
