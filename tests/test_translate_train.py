"""Training runs on a tiny corpus: exact resume, run-directory round trip, the API's errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from seqlab.errors import UserError
from seqlab.translate.api import Translation, Translator
from seqlab.translate.train import DataConfig, TrainConfig, train_translator

COLORS = {"red": "rouge", "blue": "bleu", "green": "vert", "black": "noir", "white": "blanc"}
NOUNS = {"cat": "chat", "dog": "chien", "car": "camion", "book": "livre", "horse": "cheval"}
NUMS = {"one": "un", "two": "deux", "three": "trois", "four": "quatre"}
VERBS = {"see": "vois", "want": "veux", "have": "ai"}


def write_corpus(path: Path, n: int = 200, seed: int = 0) -> Path:
    """English<TAB>French pairs of a tiny grammar (e.g. "two red cats" -> "deux chats rouges")."""
    rng = random.Random(seed)
    lines = set()
    while len(lines) < n:
        c, o, k = rng.choice(list(COLORS)), rng.choice(list(NOUNS)), rng.choice(list(NUMS))
        v = rng.choice(list(VERBS))
        en = f"I {v} {k} {c} {o}s ." if k != "one" else f"I {v} one {c} {o} ."
        fr_noun = NOUNS[o] + ("s" if k != "one" else "")
        fr_adj = COLORS[c] + ("s" if k != "one" else "")
        subj = "J'" if v == "have" else "Je "
        lines.add(f"{en}\t{subj}{VERBS[v]} {NUMS[k]} {fr_noun} {fr_adj} .")
    path.write_text("\n".join(sorted(lines)) + "\n", encoding="utf-8")
    return path


MODEL = {"embedding_dim": 16, "encoder_hidden_size": 16, "decoder_hidden_size": 16,
         "attention": "additive", "dropout": 0.3}


def cfgs(corpus: Path, **train):
    t = dict(batch_tokens=600, lr=5e-3, warmup_steps=3, eval_every=4, eval_sentences=8,
             log_every=2, seed=7, threads=1, max_steps=12)
    t.update(train)
    return TrainConfig(**t), DataConfig(corpus=str(corpus), vocab_size=300)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("data") / "pairs.tsv")


@pytest.fixture(scope="module")
def run_a(tmp_path_factory, corpus) -> Path:
    """An uninterrupted 12-step run (crosses an epoch boundary)."""
    out = tmp_path_factory.mktemp("runs") / "a"
    tc, dc = cfgs(corpus)
    summary = train_translator(out, MODEL, tc, dc, progress=False, echo=lambda s: None)
    assert summary["steps"] == 12 and summary["epochs"] >= 1
    return out


def test_resume_gives_exactly_the_uninterrupted_result(tmp_path, corpus, run_a):
    out = tmp_path / "b"
    tc, dc = cfgs(corpus, max_steps=6)
    first = train_translator(out, MODEL, tc, dc, progress=False, echo=lambda s: None)
    assert first["steps"] == 6 and first["stopped"] == "max_steps"
    second = train_translator(out, resume=True, overrides={"max_steps": 12}, progress=False,
                              echo=lambda s: None)
    assert second["steps"] == 12
    a = load_file(str(run_a / "checkpoint.safetensors"))
    b = load_file(str(out / "checkpoint.safetensors"))
    assert set(a) == set(b)
    assert any(k.startswith("optim.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the log of the resumed run holds the same training records
    la = [json.loads(x) for x in (run_a / "train_log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in la if "loss" in r] == [r["loss"] for r in lb if "loss" in r]


def test_run_directory_and_log(run_a):
    cfg = json.loads((run_a / "config.json").read_text())
    assert {"model", "train", "data", "tokenizer", "corpus"} <= set(cfg)
    assert cfg["tokenizer"]["src_sha256"]
    assert (run_a / "model.safetensors").is_file()
    assert not list(run_a.glob(".*.tmp*")), "temporary files left behind"
    log = [json.loads(x) for x in (run_a / "train_log.jsonl").read_text().splitlines()]
    train_recs = [r for r in log if "loss" in r]
    eval_recs = [r for r in log if "dev_bleu" in r]
    assert [r["step"] for r in train_recs] == list(range(2, 13, 2))
    assert all(r["tokens_per_s"] > 0 and r["lr"] > 0 for r in train_recs)
    assert [r["step"] for r in eval_recs] == [4, 8, 12]
    assert train_recs[-1]["loss"] < train_recs[0]["loss"]


def test_translator_round_trip(run_a):
    tr = Translator.load(run_a, checkpoint="last")
    ckpt = load_file(str(run_a / "checkpoint.safetensors"))
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v, ckpt["model." + k]), k
    texts = tr.translate(["I see two red cats .", "", "I see one dog ."], num_beams=3)
    assert isinstance(texts[0], str) and texts[1] == ""
    again = Translator.load(run_a, checkpoint="last").translate(
        ["I see two red cats .", "", "I see one dog ."], num_beams=3)
    assert again == texts
    res = tr.translate(["I see two red cats .", "  "], num_beams=2, return_attention=True)
    r = res[0]
    assert isinstance(r, Translation)
    assert r.attention.shape == (len(r.tgt_tokens), len(r.src_tokens))
    assert r.src_tokens[-1] == "</s>"
    assert res[1].text == ""
    # beam 1 through the API equals greedy decoding
    g = tr.translate(["I see four blue horses ."], num_beams=1)
    assert g == tr.translate(["I see four blue horses ."], num_beams=1, batch_size=1)
    scores = tr.evaluate(tr_split(run_a), num_beams=1)
    assert 0 <= scores["bleu"] <= 100 and "bleu_signature" in scores


def tr_split(run_dir: Path):
    from seqlab.translate.corpora import load_corpus

    cfg = json.loads((run_dir / "config.json").read_text())
    return load_corpus(cfg["data"]["corpus"], "en", "fr").test


def test_load_errors_are_one_line_user_errors(tmp_path, run_a):
    with pytest.raises(UserError, match="not found"):
        Translator.load(tmp_path / "nope")
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(UserError, match="config.json"):
        Translator.load(bad)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt"):
        Translator.load(bad)
    # a copy of the run whose tokenizer no longer matches the config
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_a, copy)
    cfg = json.loads((copy / "config.json").read_text())
    cfg["tokenizer"]["src_sha256"] = "0" * 64
    (copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="tokenizer") as err:
        Translator.load(copy)
    assert "\n" not in str(err.value)
    # corrupt weights
    shutil.rmtree(copy)
    shutil.copytree(run_a, copy)
    (copy / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(UserError, match="model.safetensors"):
        Translator.load(copy)


def test_refuses_to_overwrite_a_run_and_resume_needs_one(tmp_path, corpus, run_a):
    tc, dc = cfgs(corpus)
    with pytest.raises(UserError, match="--resume"):
        train_translator(run_a, MODEL, tc, dc, progress=False, echo=lambda s: None)
    with pytest.raises(UserError, match="not found"):
        train_translator(tmp_path / "none", resume=True, progress=False, echo=lambda s: None)


# the field names of run format "seqlab-translator/1" (before the torch names), as written
OLD_MODEL_NAMES = {"embedding_dim": "emb_dim", "encoder_hidden_size": "enc_hidden",
                   "num_encoder_layers": "enc_layers", "decoder_hidden_size": "dec_hidden"}


def _write_old_layout(run: Path) -> None:
    cfg = json.loads((run / "config.json").read_text())
    cfg["format"] = "seqlab-translator/1"
    cfg["model"] = {OLD_MODEL_NAMES.get(k, k): v for k, v in cfg["model"].items()}
    (run / "config.json").write_text(json.dumps(cfg, indent=2))


def test_old_run_directories_load_and_resume(tmp_path, run_a):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(run_a, old)
    _write_old_layout(old)
    written = (old / "config.json").read_text()
    assert '"enc_hidden": 16' in written and "embedding_dim" not in written
    sentences = ["I see two red cats .", "I want one book ."]
    new_tr, old_tr = Translator.load(run_a), Translator.load(old)
    assert old_tr.model.cfg == new_tr.model.cfg
    assert old_tr.config["format"] == "seqlab-translator/2"
    assert old_tr.translate(sentences, num_beams=2) == new_tr.translate(sentences, num_beams=2)
    summary = train_translator(old, resume=True, overrides={"max_steps": 14}, progress=False,
                               echo=lambda s: None)
    assert summary["steps"] == 14
    cfg = json.loads((old / "config.json").read_text())    # max_steps recorded, nothing else
    assert cfg["model"] == json.loads(written)["model"] and cfg["format"] == "seqlab-translator/1"
    assert Translator.load(old, checkpoint="last").model.cfg == new_tr.model.cfg
    # a bad value in an old config.json: one line naming the file and the field
    cfg["model"]["dec_hidden"] = 0
    (old / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match=r"config\.json: corrupt .*decoder_hidden_size"):
        Translator.load(old)


def test_model_config_is_checked_before_any_data_is_read(tmp_path):
    with pytest.raises(UserError, match="Seq2SeqConfig.num_heads"):
        train_translator(tmp_path / "run", {"attention": "additive", "num_heads": 2},
                         corpus=None, data_cfg=DataConfig(corpus=str(tmp_path / "missing.tsv")),
                         progress=False, echo=lambda s: None)
    with pytest.raises(UserError, match=r"Seq2SeqConfig: unknown fields \['enc_hidden'\]"):
        train_translator(tmp_path / "run", {"enc_hidden": 8}, progress=False,
                         echo=lambda s: None)
    assert not (tmp_path / "run").exists()
