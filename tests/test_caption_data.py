"""Captioning data: the folder + TSV reader, image conversion, errors, splits, emoji names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from seqlab.caption.data import (
    load_image,
    read_caption_folder,
    read_caption_tsv,
    split_dataset,
    split_indices,
    to_rgb,
)
from seqlab.caption.emoji import emoji_captions
from seqlab.errors import UserError


def _write_mixed(folder: Path) -> dict[str, Image.Image]:
    """Images of different modes and sizes; returns name -> image."""
    imgs: dict[str, Image.Image] = {}
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))          # transparent left half ...
    rgba.paste((255, 0, 0, 255), (20, 0, 40, 40))             # ... opaque red right half
    imgs["rgba.png"] = rgba
    pal = Image.new("P", (16, 16), 0)
    pal.putpalette([0, 0, 255] + [0, 255, 0] * 255)
    pal.paste(1, (0, 0, 8, 16))                               # left: green, right: blue
    imgs["palette.png"] = pal
    pal_t = pal.copy()
    pal_t.info["transparency"] = 1                            # green is transparent
    imgs["palette_transparent.png"] = pal_t
    imgs["gray.png"] = Image.new("L", (100, 50), 128)         # non-square, grayscale
    imgs["gray_alpha.png"] = Image.new("LA", (20, 20), (0, 0))  # fully transparent
    imgs["big.jpg"] = Image.new("RGB", (300, 200), (10, 200, 30))
    imgs["bw.bmp"] = Image.new("1", (24, 24), 1)
    for name, im in imgs.items():
        im.save(folder / name)
    return imgs


def test_mixed_modes_and_sizes_become_rgb(tmp_path: Path) -> None:
    _write_mixed(tmp_path)
    lines = ["# a comment line", "rgba.png\thalf red", "palette.png\tgreen and blue",
             "palette.png\t  two   colours  ", "", "palette_transparent.png\tblue on white",
             "gray.png\tgray", "gray_alpha.png\tnothing", "big.jpg\tgreen", "bw.bmp\twhite"]
    (tmp_path / "captions.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds = read_caption_folder(tmp_path, image_size=16)
    assert [it.path.name for it in ds.items] == ["rgba.png", "palette.png",
                                                "palette_transparent.png", "gray.png",
                                                "gray_alpha.png", "big.jpg", "bw.bmp"]
    assert ds.items[1].captions == ["green and blue", "two colours"]   # several, normalised
    px = ds.load_pixels()
    assert px.shape == (7, 16, 16, 3) and px.dtype == np.uint8
    rgba, pal, pal_t, gray, gray_a, big, bw = px
    assert (rgba[:, :4] == 255).all()                            # transparent -> white
    assert (rgba[:, 12:] == [255, 0, 0]).all()                   # opaque red stays red
    assert (pal[:, :6] == [0, 255, 0]).all() and (pal[:, 10:] == [0, 0, 255]).all()
    assert (pal_t[:, :6] == 255).all() and (pal_t[:, 10:] == [0, 0, 255]).all()
    assert (gray == 128).all()
    assert (gray_a == 255).all()
    assert (np.abs(big.astype(int) - [10, 200, 30]) <= 1).all()
    assert (bw == 255).all()
    idx, caps = ds.pairs()
    assert len(caps) == 8 and idx.count(1) == 2


def test_to_rgb_rejects_non_images() -> None:
    with pytest.raises(ValueError, match="PIL"):
        to_rgb(np.zeros((4, 4, 3)), 8)


@pytest.mark.parametrize("content,needle", [
    (b"this is not a picture", "not an image file"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "image"),   # truncated PNG
])
def test_unreadable_image_names_file_and_line(tmp_path: Path, content: bytes, needle: str) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(content)
    (tmp_path / "captions.tsv").write_text("ok.png\tfine\nbad.png\tbroken\n")
    with pytest.raises(UserError, match=rf"captions.tsv:2: .*bad.png.*{needle}"):
        read_caption_folder(tmp_path)
    with pytest.raises(UserError, match="bad.png"):
        load_image(tmp_path / "bad.png", 8)


@pytest.mark.parametrize("tsv,message", [
    (b"ok.png\tfine\nmissing.png\tgone\n", r"captions.tsv:2: image missing.png not found"),
    (b"ok.png\t   \n", r"captions.tsv:1: empty caption for ok.png"),
    (b"ok.png no tab here\n", r"captions.tsv:1: expected 'filename<TAB>caption'"),
    (b"\tcaption\n", r"captions.tsv:1: empty file name"),
    (b"ok.png\tfine\nok.png\t\xff\xfe\n", r"captions.tsv:2: not valid UTF-8"),
    (b"ok.png\ta\tg1\nok.png\tb\tg2\n", r"captions.tsv:2: ok.png is in group 'g2'"),
    (b"# only a comment\n\n", r"captions.tsv: no captions"),
])
def test_tsv_errors(tmp_path: Path, tsv: bytes, message: str) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    (tmp_path / "captions.tsv").write_bytes(tsv)
    with pytest.raises(UserError, match=message):
        read_caption_folder(tmp_path)


def test_missing_folder_and_tsv(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        read_caption_folder(tmp_path / "nope")
    with pytest.raises(UserError, match="no captions.tsv"):
        read_caption_folder(tmp_path)
    with pytest.raises(UserError, match="caption file not found"):
        read_caption_tsv(tmp_path / "x.tsv")


def test_image_dir_and_tsv_path(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "imgs" / "a.png")
    (tmp_path / "list.tsv").write_text("a.png\tdark\n")
    ds = read_caption_tsv(tmp_path / "list.tsv", image_dir=tmp_path / "imgs", image_size=8)
    assert ds.load_pixels()[0, 0, 0].tolist() == [1, 2, 3]


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=40), seed=st.integers(0, 10**6),
       test_frac=st.floats(0.0, 0.45), dev_frac=st.floats(0.0, 0.45))
def test_grouped_split_never_splits_a_group(sizes: list[int], seed: int, test_frac: float,
                                            dev_frac: float) -> None:
    groups = [f"g{g}" for g, n in enumerate(sizes) for _ in range(n)]
    tr, dv, te = split_indices(groups, test_frac, dev_frac, seed)
    assert sorted(tr + dv + te) == list(range(len(groups)))       # a partition
    side = {}
    for name, part in (("train", tr), ("dev", dv), ("test", te)):
        for i in part:
            assert side.setdefault(groups[i], name) == name        # one side per group
    assert len(te) >= test_frac * len(groups) or not tr and not dv
    assert split_indices(groups, test_frac, dev_frac, seed) == (tr, dv, te)   # deterministic


def test_split_dataset_modes(tmp_path: Path) -> None:
    lines = []
    for i in range(30):
        Image.new("RGB", (4, 4), (i, 0, 0)).save(tmp_path / f"{i}.png")
        lines.append(f"{i}.png\tcolour {i}\tbase{i // 5}")
    (tmp_path / "captions.tsv").write_text("\n".join(lines))
    ds = read_caption_folder(tmp_path, image_size=4)
    g = split_dataset(ds, "grouped", test_frac=0.2, dev_frac=0.2, seed=3)
    sides = [{it.group for it in part.items} for part in (g.train, g.dev, g.test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    r = split_dataset(ds, "random", test_frac=0.2, dev_frac=0.2, seed=3)
    assert len(r.test) == 6 and len(r.dev) == 6 and len(r.train) == 18
    names = [{it.path.name for it in p.items} for p in (r.train, r.dev, r.test)]
    assert sum(map(len, names)) == 30 and len(set().union(*names)) == 30
    assert split_dataset(ds, "random", 0.2, 0.2, seed=4).test.items != r.test.items
    with pytest.raises(UserError, match="split must be one of"):
        split_dataset(ds, "by-colour")


def test_emoji_caption_names() -> None:
    entries = [
        {"name": "GRINNING FACE", "unified": "1F600", "image": "1f600.png",
         "has_img_google": True, "subcategory": "face-smiling"},
        {"name": "France Flag", "unified": "1F1EB-1F1F7", "image": "1f1eb-1f1f7.png",
         "has_img_google": True, "subcategory": "country-flag"},
        {"name": "CHEQUERED FLAG", "unified": "1F3C1", "image": "1f3c1.png",
         "has_img_google": True, "subcategory": "flag"},
        {"name": "WOMAN TECHNOLOGIST", "unified": "1F469-200D-1F4BB", "image": "w.png",
         "has_img_google": True, "skin_variations": {
             "1F3FD": {"image": "w-md.png", "has_img_google": True},
             "1F3FF": {"image": "w-dk.png", "has_img_google": False}}},
        {"name": "KISS: MAN, MAN", "unified": "K", "image": "k.png", "has_img_google": True,
         "skin_variations": {"1F3FB-1F3FF": {"image": "k-1.png", "has_img_google": True},
                             "1F3FC-1F3FC": {"image": "k-2.png", "has_img_google": True}}},
        {"name": "NO GOOGLE IMAGE", "unified": "X", "image": "x.png", "has_img_google": False},
    ]
    got = emoji_captions(entries)
    assert got == [
        ("1f600.png", "grinning face", "1f600"),
        ("1f1eb-1f1f7.png", "flag: france", "1f1eb-1f1f7"),
        ("1f3c1.png", "chequered flag", "1f3c1"),
        ("w.png", "woman technologist", "1f469-200d-1f4bb"),
        ("w-md.png", "woman technologist: medium skin tone", "1f469-200d-1f4bb"),
        ("k.png", "kiss: man, man", "k"),
        ("k-1.png", "kiss: man, man, light skin tone, dark skin tone", "k"),
        ("k-2.png", "kiss: man, man, medium-light skin tone", "k"),
    ]
