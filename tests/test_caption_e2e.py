"""End to end on a handful of generated images: train, caption, resume, CLI, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageDraw

from seqlab.caption.api import Caption, Captioner
from seqlab.caption.data import CaptionDataConfig, CaptionSplits, read_caption_folder
from seqlab.caption.train import default_train_config, train_captioner
from seqlab.cli import main
from seqlab.errors import UserError

TINY = dict(channels=(8, 16), feat_dim=32, embedding_dim=32, hidden_size=32, dropout=0.0,
            label_smoothing=0.0)
COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 170, 60),
           "yellow": (230, 200, 20)}


def _make_set(folder: Path) -> Path:
    """8 images: a coloured square or disc on the left or right, in different modes/sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (colour, rgb) in enumerate(COLOURS.items()):
        for j, (shape, side) in enumerate((("square", "left"), ("disc", "right"))):
            size = 32 if (i + j) % 2 else 48
            im = Image.new("RGBA", (size, size), (0, 0, 0, 0))
            d = ImageDraw.Draw(im)
            x0 = 2 if side == "left" else size // 2 + 2
            box = (x0, size // 4, x0 + size // 2 - 4, size // 4 + size // 2 - 4)
            (d.rectangle if shape == "square" else d.ellipse)(box, fill=rgb + (255,))
            name = f"{colour}_{shape}.png"
            (im if i % 2 else im.convert("RGB")).save(folder / name)
            lines.append(f"{name}\t{colour} {shape} on the {side}\t{colour}")
    lines.append("red_square.png\ta red square")      # a second caption for one image
    (folder / "captions.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny ops on a shared 2-core machine: one thread avoids OpenMP barrier stalls
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _train(run: Path, data: Path, steps: int, resume: bool = False) -> dict:
    ds = read_caption_folder(data, image_size=32)
    splits = CaptionSplits(ds, ds, ds, "random")      # overfit: caption the training images
    return train_captioner(
        run, model_cfg=TINY,
        train_cfg=default_train_config(batch_size=9, lr=1e-2, warmup_steps=5, eval_every=50,
                                       lr_patience=100, log_every=10, max_steps=steps,
                                       max_epochs=1000, seed=7, threads=1),
        data_cfg=CaptionDataConfig(data=str(data), vocab_size=300, image_size=32),
        resume=resume, overrides={"max_steps": steps} if resume else None, progress=False,
        splits=splits, echo=lambda s: None)


def test_train_caption_resume(tmp_path: Path) -> None:
    data = _make_set(tmp_path / "data")
    run = tmp_path / "run"
    summary = _train(run, data, 150)
    assert summary["steps"] == 150
    for name in ("config.json", "model.safetensors", "checkpoint.safetensors",
                 "train_log.jsonl", "tokenizer/shared.model", "tokenizer/tokenizer.json"):
        assert (run / name).is_file(), name
    cap = Captioner.load(run)
    ds = read_caption_folder(data, image_size=32)
    paths = [it.path for it in ds.items]
    out = cap.caption(paths, num_beams=3)
    refs = [it.captions for it in ds.items]
    hits = sum(o in r for o, r in zip(out, refs, strict=True))
    # chance is ~1 in 8 exact captions; a tiny run that learned gets most of them (the exact
    # count moves with float rounding, so the bar is set well above chance, not at a count)
    assert hits >= 4, list(zip(out, refs, strict=True))
    scores = cap.evaluate(ds, num_beams=3)
    assert scores["exact_match"] == pytest.approx(100 * hits / 8)
    assert scores["bleu"] > 50 and scores["n_images"] == 8
    # PIL images and arrays work too, with attention over the 8x8 regions per word
    pil = Image.open(paths[1])
    res = cap.caption([pil, np.asarray(Image.open(paths[0]).convert("RGB"))],
                      return_attention=True)
    for c in res:
        assert isinstance(c, Caption) and c.word_attention is not None
        assert c.word_attention.shape == (len(c.words), 8, 8)
        assert c.attention is not None and c.attention.shape == (len(c.tokens), 8, 8)
        assert np.allclose(c.attention.sum((1, 2)), 1, atol=1e-4)
        assert c.text.split() == c.words
        assert c.image is not None and c.image.shape == (32, 32, 3)

    # exact resume: 30 steps, then 30 more, equals 60 straight
    run2, run3 = tmp_path / "run2", tmp_path / "run3"
    _train(run2, data, 30)
    with pytest.raises(UserError, match="already holds a training run"):
        _train(run2, data, 30)
    _train(run2, data, 60, resume=True)
    _train(run3, data, 60)
    a = Captioner.load(run3, checkpoint="last").model.state_dict()
    b = Captioner.load(run2, checkpoint="last").model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_cli_train_run_eval_and_errors(tmp_path: Path) -> None:
    data = _make_set(tmp_path / "data")
    run = tmp_path / "run"
    runner = CliRunner()
    r = runner.invoke(main, ["caption", "train", "--data", str(data), "--out", str(run),
                             "--max-steps", "6", "--eval-every", "3", "--vocab-size", "300",
                             "--image-size", "32", "--batch-size", "4", "--quiet",
                             "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert "test (1 images, beam 5): BLEU" in r.output
    # a decay branch on resume, recorded in config.json
    r = runner.invoke(main, ["caption", "train", "--out", str(run), "--resume", "--max-steps",
                             "9", "--decay-steps", "3", "--no-progress"])
    assert r.exit_code == 0, r.output
    train_cfg = json.loads((run / "config.json").read_text())["train"]
    assert (train_cfg["max_steps"], train_cfg["decay_steps"]) == (9, 3)
    img = data / "blue_disc.png"
    plot = tmp_path / "plots" / "strip.png"
    r = runner.invoke(main, ["caption", "run", str(run), str(img), "--attention-plot",
                             str(plot), "--beams", "2"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith(str(img)) and plot.stat().st_size > 1000
    r = runner.invoke(main, ["caption", "eval", str(run), "--split-name", "dev"])
    assert r.exit_code == 0 and "exact match" in r.output, r.output
    # errors: one line, exit code 2, the file named
    (tmp_path / "notes.png").write_text("not an image")
    for args, needle in (
        (["caption", "run", str(run), str(tmp_path / "notes.png")], "notes.png: not an image"),
        (["caption", "run", str(run), str(tmp_path / "gone.png")], "gone.png: image file not"),
        (["caption", "run", str(tmp_path / "norun"), str(img)], "run directory not found"),
        (["caption", "run", str(data), str(img)], "not a captioner run directory"),
        (["caption", "train", "--data", str(tmp_path / "nodata"), "--out",
          str(tmp_path / "r3")], "caption data not found"),
    ):
        r = runner.invoke(main, args)
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.output and len(r.output.strip().splitlines()) == 1, r.output
    (run / "model.safetensors").write_bytes(b"garbage")
    r = runner.invoke(main, ["caption", "run", str(run), str(img)])
    assert r.exit_code == 2 and "corrupt safetensors" in r.output


def test_old_run_directories_load_and_resume(tmp_path: Path) -> None:
    """A run whose config.json has the layout before the torch names ("seqlab-captioner/1":
    emb_dim, dec_hidden) loads, captions as before and resumes; its model part stays as it was."""
    data = _make_set(tmp_path / "data")
    run, old = tmp_path / "run", tmp_path / "old"
    _train(run, data, 4)
    import shutil

    shutil.copytree(run, old)
    cfg = json.loads((old / "config.json").read_text())
    model = cfg["model"]
    cfg["format"] = "seqlab-captioner/1"
    cfg["model"] = {{"embedding_dim": "emb_dim", "hidden_size": "dec_hidden"}.get(k, k): v
                    for k, v in model.items()}
    written = json.dumps(cfg)
    (old / "config.json").write_text(written)
    paths = [data / "blue_disc.png", data / "red_square.png"]
    a, b = Captioner.load(run), Captioner.load(old)
    assert a.model.cfg == b.model.cfg
    assert a.caption(paths, num_beams=2) == b.caption(paths, num_beams=2)
    assert _train(old, data, 6, resume=True)["steps"] == 6
    after = json.loads((old / "config.json").read_text())   # max_steps recorded, nothing else
    assert after["model"] == cfg["model"] and after["format"] == cfg["format"]
    assert Captioner.load(old, checkpoint="last").model.cfg == a.model.cfg


def test_cli_model_flags(tmp_path: Path) -> None:
    runner = CliRunner()
    help_text = runner.invoke(main, ["caption", "train", "--help"]).output
    for flag in ("--embedding-dim", "--hidden-size", "--attn-dim", "--num-heads"):
        assert flag in help_text
    r = runner.invoke(main, ["caption", "train", "--data", str(tmp_path / "none"), "--out",
                             str(tmp_path / "run"), "--hidden-size", "0"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert "'--hidden-size': 0 is not in the range" in r.output
    assert not (tmp_path / "run").exists()
