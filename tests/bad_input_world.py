"""A small world of good and bad inputs for the bad-input tests: tiny trained runs (translator,
captioner, series autoencoder), good data files, and files that are wrong in one way each.

Built once per test session (`make_world`); the tests check that no bad input changes any of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner
from PIL import Image, ImageDraw

from seqlab.cli import main

SERIES_FIT = ["--window", "16", "--hidden-size", "8", "--latent-size", "4", "--epochs", "2",
              "--threads", "1"]


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _series_frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    t = np.arange(n)
    return pd.DataFrame({
        "time": pd.date_range("2024-01-01", periods=n, freq="min").astype(str),
        "a": np.sin(2 * np.pi * t / 20) + 0.05 * rng.standard_normal(n),
        "b": np.cos(2 * np.pi * t / 20) + 0.05 * rng.standard_normal(n),
        "label": (t % 97 == 0).astype(int)})


def _caption_set(folder: Path) -> Path:
    folder.mkdir(parents=True)
    lines = []
    for colour, rgb in (("red", (220, 30, 30)), ("blue", (30, 60, 220))):
        for shape in ("square", "disc"):
            im = Image.new("RGB", (32, 32), (255, 255, 255))
            d = ImageDraw.Draw(im)
            (d.rectangle if shape == "square" else d.ellipse)((4, 8, 20, 24), fill=rgb)
            im.save(folder / f"{colour}_{shape}.png")
            lines.append(f"{colour}_{shape}.png\ta {colour} {shape}")
    (folder / "captions.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _ok(args: list[str]) -> None:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, (args, r.output)


def _corrupt_copy(run: Path, dest: Path, name: str, how: str) -> Path:
    shutil.copytree(run, dest)
    f = dest / name
    data = f.read_bytes()
    if how == "truncate":
        f.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        f.write_bytes(b"{ not json")
    return dest


def make_world(root: Path) -> dict[str, str]:
    """Create everything under `root`; returns the placeholders used in the test tables."""
    from test_translate_train import write_corpus

    good, bad, runs = root / "good", root / "bad", root / "runs"
    for d in (good, bad, runs):
        d.mkdir(parents=True)
    w: dict[str, str] = {}
    # ---- good inputs and tiny runs
    corpus = write_corpus(good / "pairs.tsv", n=120)
    _series_frame(300).to_csv(good / "series.csv", index=False)
    caps = _caption_set(good / "captions")
    (good / "in.txt").write_text("I see two red cats .\n", encoding="utf-8")
    _ok(["translate", "train", "--corpus", str(corpus), "--out", str(runs / "tr"), "--hidden",
         "8", "--emb", "8", "--vocab-size", "300", "--batch-tokens", "400", "--max-steps", "4",
         "--eval-every", "4", "--eval-sentences", "4", "--threads", "1", "--quiet"])
    _ok(["caption", "train", "--data", str(caps), "--out", str(runs / "cap"), "--max-steps", "2",
         "--eval-every", "2", "--vocab-size", "300", "--image-size", "16", "--batch-size", "4",
         "--hidden-size", "8", "--embedding-dim", "8", "--attn-dim", "8", "--threads", "1",
         "--no-progress"])
    _ok(["series", "fit", str(good / "series.csv"), "--columns", "a,b", "--out",
         str(runs / "ser"), *SERIES_FIT])
    w.update(corpus=str(corpus), csv=str(good / "series.csv"), caps=str(caps),
             img=str(caps / "red_square.png"), txt=str(good / "in.txt"),
             tr=str(runs / "tr"), cap=str(runs / "cap"), ser=str(runs / "ser"))
    # ---- broken runs: truncated weights, unreadable / wrongly typed config
    w["tr_trunc"] = str(_corrupt_copy(runs / "tr", bad / "tr_trunc", "model.safetensors",
                                      "truncate"))
    w["tr_badjson"] = str(_corrupt_copy(runs / "tr", bad / "tr_badjson", "config.json",
                                        "garbage"))
    typed = Path(shutil.copytree(runs / "tr", bad / "tr_badtype"))
    cfg = json.loads((typed / "config.json").read_text())
    cfg["model"]["embedding_dim"] = "sixteen"
    (typed / "config.json").write_text(json.dumps(cfg))
    w["tr_badtype"] = str(typed)
    w["cap_trunc"] = str(_corrupt_copy(runs / "cap", bad / "cap_trunc", "model.safetensors",
                                       "truncate"))
    w["ser_trunc"] = str(_corrupt_copy(runs / "ser", bad / "ser_trunc", "model.safetensors",
                                       "truncate"))
    w["ser_badjson"] = str(_corrupt_copy(runs / "ser", bad / "ser_badjson", "config.json",
                                         "garbage"))
    # ---- things in the way
    (bad / "dir").mkdir()
    (bad / "dir.png").mkdir()
    (bad / "dir.csv").mkdir()
    (bad / "file").write_text("a regular file\n")
    w.update(dir=str(bad / "dir"), dirpng=str(bad / "dir.png"), dircsv=str(bad / "dir.csv"),
             file=str(bad / "file"), missing=str(bad / "missing"), new=str(root / "new"))
    # ---- bad text / TSV files
    (bad / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    (bad / "latin1.tsv").write_bytes("hello\tbonjour\ncaf\xe9\tcaf\xe9\n".encode("latin-1"))
    (bad / "notab.tsv").write_text("hello\tbonjour\nno tab here\n")
    (bad / "empty.tsv").write_text("")
    w.update(latin1_txt=str(bad / "latin1.txt"), latin1_tsv=str(bad / "latin1.tsv"),
             notab_tsv=str(bad / "notab.tsv"), empty_tsv=str(bad / "empty.tsv"))
    # ---- bad CSV files (each wrong in one way)
    ok = _series_frame(60)
    csvs = {
        "latin1_csv": None,
        "empty_csv": "",
        "header_csv": "time,a,b\n",
        "ragged_csv": "a,b\n1,2\n3\n4,5\n",
        "text_csv": "a,b\n1,2\n3,x\n4,5\n",
        "unsorted_csv": None, "dupts_csv": None, "badts_csv": None, "huge_csv": None,
        "inf_csv": None, "const_csv": "a\n" + "1\n" * 40,
    }
    for key, text in csvs.items():
        path = bad / f"{key[:-4]}.csv"
        if key == "latin1_csv":
            path.write_bytes(b"time,a,b\n2024-01-01 00:00:00,1,2\n2024-01-01 00:01:00,3,\xe9\n")
        elif key == "unsorted_csv":
            df = ok.copy()
            df.loc[[20, 21], "time"] = df.loc[[21, 20], "time"].to_numpy()
            df.to_csv(path, index=False)
        elif key == "dupts_csv":
            df = ok.copy()
            df.loc[30, "time"] = df.loc[29, "time"]
            df.to_csv(path, index=False)
        elif key == "badts_csv":
            df = ok.copy()
            df["time"] = df["time"].astype(object)
            df.loc[40, "time"] = "not a time"
            df.to_csv(path, index=False)
        elif key == "huge_csv":
            df = ok.copy()
            df.loc[10:, "a"] = 1e308
            df.loc[:9, "a"] = -1e308
            df.to_csv(path, index=False)
        elif key == "inf_csv":
            df = ok.copy()
            df["a"] = np.inf
            df.to_csv(path, index=False)
        else:
            path.write_text(text or "")
        w[key] = str(path)
    # ---- bad images
    (bad / "bomb.png").write_bytes(png_declaring(30_000, 30_000))
    (bad / "big.png").write_bytes(png_declaring(9_000, 9_000))
    (bad / "notimage.png").write_bytes(b"this is not a picture")
    img_bytes = Path(w["img"]).read_bytes()
    (bad / "trunc.png").write_bytes(img_bytes[: len(img_bytes) // 2])
    w.update(bomb=str(bad / "bomb.png"), bigimg=str(bad / "big.png"),
             notimage=str(bad / "notimage.png"), truncimg=str(bad / "trunc.png"))
    for name, image in (("bomb_caps", "bomb.png"), ("missingimg_caps", None),
                        ("notimage_caps", "notimage.png")):
        folder = bad / name
        folder.mkdir()
        if image is not None:
            shutil.copy(bad / image, folder / image)
        (folder / "captions.tsv").write_text(f"{image or 'nothere.png'}\ta caption\n",
                                             encoding="utf-8")
        w[name] = str(folder)
    latin_caps = bad / "latin1_caps"
    latin_caps.mkdir()
    shutil.copy(w["img"], latin_caps / "a.png")
    (latin_caps / "captions.tsv").write_bytes("a.png\tun caf\xe9\n".encode("latin-1"))
    w["latin1_caps"] = str(latin_caps)
    # ---- weights that are not what they claim
    (bad / "trunc.safetensors").write_bytes(
        (Path(w["ser"]) / "model.safetensors").read_bytes()[:100])
    w["trunc_st"] = str(bad / "trunc.safetensors")
    return w


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` -> a hash of its content (files), "dir" or "link"."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = "link"
            else:
                with open(p, "rb") as fh:
                    out[rel] = hashlib.sha1(fh.read()).hexdigest()
    return out
