"""`seqlab translate train/run/eval` end to end on a tiny corpus, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqlab.cli import main
from test_translate_train import write_corpus

PNG = b"\x89PNG\r\n\x1a\n"


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("cli")
    corpus = write_corpus(d / "pairs.tsv")
    out = d / "run"
    r = invoke("translate", "train", "--corpus", str(corpus), "--out", str(out), "--hidden",
               "16", "--emb", "16", "--vocab-size", "300", "--batch-tokens", "600",
               "--max-steps", "20", "--eval-every", "10", "--eval-sentences", "8",
               "--threads", "1", "--quiet")
    assert r.exit_code == 0, r.output
    assert "run directory" in r.output
    return out, corpus


def test_train_run_eval_and_attention_plot(trained_run, tmp_path):
    out, corpus = trained_run
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["decoder_hidden_size"] == 16
    assert cfg["data"]["corpus"] == str(corpus.resolve())
    plot = tmp_path / "att.png"
    r = invoke("translate", "run", str(out), "I see two red cats .", "--num-beams", "2",
               "--attention-plot", str(plot))
    assert r.exit_code == 0, r.output
    assert len(r.stdout.splitlines()) == 1
    assert plot.read_bytes()[:8] == PNG
    # several sentences from stdin, an empty line stays empty, one plot per non-empty sentence
    r = invoke("translate", "run", str(out), "-i", "-", "--attention-plot", str(plot),
               input="I see one dog .\n\nI have two cars .\n")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and lines[1] == ""
    assert (tmp_path / "att-1.png").is_file() and (tmp_path / "att-2.png").is_file()
    # from a file, with n-best
    f = tmp_path / "in.txt"
    f.write_text("I want three blue books .\n", encoding="utf-8")
    r = invoke("translate", "run", str(out), "-i", str(f), "--num-beams", "3", "--n-best", "2")
    assert r.exit_code == 0, r.output
    assert len(r.stdout.strip().split("\t")) == 4
    r = invoke("translate", "eval", str(out), "--split", "test", "--num-beams", "2")
    assert r.exit_code == 0, r.output
    assert "BLEU" in r.stdout and "chrF" in r.stdout and "nrefs:1" in r.stdout
    assert "lowercased-tokenised" in r.stdout
    r = invoke("translate", "eval", str(out), "--json", "--limit", "5", "--num-beams", "1")
    assert json.loads(r.stdout)["n_sentences"] == 5


def test_resume_continues_from_the_cli(trained_run, tmp_path):
    import shutil

    out, _ = trained_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    r = invoke("translate", "train", "--out", str(copy), "--resume", "--max-steps", "24",
               "--quiet")
    assert r.exit_code == 0, r.output
    assert "resuming" in r.output and "24 steps" in r.output
    # a decay branch off the run: recorded in config.json, the rate ends near its floor
    r = invoke("translate", "train", "--out", str(copy), "--resume", "--max-steps", "30",
               "--decay-steps", "6", "--quiet")
    assert r.exit_code == 0, r.output
    cfg = json.loads((copy / "config.json").read_text())
    assert cfg["train"]["decay_steps"] == 6 and cfg["train"]["max_steps"] == 30
    log = [json.loads(x) for x in (copy / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 30 and log[-1]["lr"] < 2e-3 / 5


@pytest.mark.parametrize("args", [
    ["translate", "run", "{missing}", "I am cold."],
    ["translate", "eval", "{missing}"],
    ["translate", "train", "--out", "{missing}", "--resume"],
    ["translate", "train", "--out", "{tmp}/new", "--corpus", "{tmp}/nofile.tsv"],
    ["translate", "run", "{run}"],
    ["translate", "run", "{run}", "-i", "{tmp}/nofile.txt"],
    ["translate", "train", "--out", "{run}", "--corpus", "{corpus}"],
    ["translate", "train", "--out", "{tmp}/new", "--corpus", "{corpus}", "--decay-steps", "5"],
])
def test_errors_are_one_line_exit_2(args, trained_run, tmp_path):
    out, corpus = trained_run
    args = [a.format(missing=tmp_path / "missing", tmp=tmp_path, run=out, corpus=corpus)
            for a in args]
    r = invoke(*args)
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in r.output


def test_bad_input_file_line_is_named(trained_run, tmp_path):
    out, _ = trained_run
    bad = tmp_path / "bad.tsv"
    bad.write_text("hello\tbonjour\nno tab here\n", encoding="utf-8")
    r = invoke("translate", "train", "--out", str(tmp_path / "r"), "--corpus", str(bad))
    assert r.exit_code == 2
    assert "bad.tsv" in r.stderr and ":2" in r.stderr


def test_readme_demo_function(tmp_path):
    """run_translate_demo (what `seqlab demo` calls), on a tiny corpus and a few steps: a step
    budget, then a second call reuses the run, a larger budget continues it, fresh restarts."""
    import torch

    from seqlab.translate.demo import run_translate_demo

    corpus = write_corpus(tmp_path / "pairs.tsv", n=120)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    said: list[str] = []
    kw = dict(corpus=str(corpus), sentences=["I see two red cats .", "I have one dog ."],
              progress=False, model_size=16, vocab_size=300, threads=1, echo=said.append)
    try:
        res = run_translate_demo(tmp_path / "demo", steps=6, **kw)
        assert res.trained == "trained" and res.steps == 6
        assert len(res.translations) == 2
        for t in res.translations:
            if t.translation:
                assert t.plot is not None and t.plot.name.startswith("sentence-")
                assert t.plot.read_bytes()[:8] == PNG
            else:
                assert t.plot is None
        weights = (res.run_dir / "model.safetensors").read_bytes()
        again = run_translate_demo(tmp_path / "demo", steps=6, **kw)
        assert again.trained == "reused" and again.steps == 6
        assert (res.run_dir / "model.safetensors").read_bytes() == weights
        assert any(m.startswith("reusing") for m in said)
        more = run_translate_demo(tmp_path / "demo", steps=9, **kw)
        assert more.trained == "continued" and more.steps == 9
        fresh = run_translate_demo(tmp_path / "demo", steps=3, fresh=True, **kw)
        assert fresh.trained == "trained" and fresh.steps == 3
    finally:
        torch.set_num_threads(threads)


def test_model_flags_are_the_config_fields(trained_run, tmp_path):
    """--embedding-dim/--encoder-hidden-size/--decoder-hidden-size give what the old
    --emb/--hidden gave (those stay as hidden spellings); bad values fail before training."""
    out, corpus = trained_run
    help_text = invoke("translate", "train", "--help").output
    for flag in ("--embedding-dim", "--encoder-hidden-size", "--decoder-hidden-size",
                 "--num-encoder-layers", "--attn-dim"):
        assert flag in help_text
    assert "--hidden " not in help_text and "--emb " not in help_text
    new = tmp_path / "new"
    r = invoke("translate", "train", "--corpus", str(corpus), "--out", str(new),
               "--encoder-hidden-size", "16", "--decoder-hidden-size", "16",
               "--embedding-dim", "16", "--vocab-size", "300", "--batch-tokens", "600",
               "--max-steps", "1", "--eval-every", "10", "--eval-sentences", "8",
               "--threads", "1", "--quiet")
    assert r.exit_code == 0, r.output
    old_cfg = json.loads((out / "config.json").read_text())
    new_cfg = json.loads((new / "config.json").read_text())
    assert new_cfg["model"] == old_cfg["model"]
    for args, needle in (
        (["--decoder-hidden-size", "0"], "'--decoder-hidden-size': 0 is not in the range"),
        (["--hidden", "16", "--decoder-hidden-size", "8"], "--hidden is the old spelling"),
        (["--attention", "dot", "--encoder-hidden-size", "8", "--decoder-hidden-size", "32"],
         "'dot' needs decoder_hidden_size == 2 * encoder_hidden_size"),
    ):
        r = invoke("translate", "train", "--corpus", str(corpus), "--out",
                   str(tmp_path / "bad"), *args)
        assert r.exit_code == 2, r.output
        assert needle in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
