"""Captioning data in a form users can bring: a folder of images plus a TSV of captions.

    my_set/
      captions.tsv          filename<TAB>caption[<TAB>group]   (UTF-8, one caption a line)
      images/ or anywhere   the files named in column 1, relative to the TSV's folder

- Several lines may name the same file: an image may have several captions.
- The optional third column `group` ties images together for the grouped split (e.g. the
  skin-tone variants of one emoji); without it each image is its own group. An image's
  later lines may leave the group out, but may not name a different one.
- Blank lines and lines starting with `#` are skipped.

Images of any size and mode are converted to RGB at a fixed square size: transparent images
(RGBA, LA, palette with transparency) are composited on white first, grayscale and palette
images are expanded to RGB, then the image is resized (Lanczos) to `size x size`. Unreadable or
non-image files, files missing on disk, empty captions and malformed lines raise a one-line
`UserError` naming the file (and line).

Splits (`split_dataset`) are made per image, never per caption, so one image's captions never
end up on both sides: "random" shuffles images; "grouped" shuffles groups, so every group lies
wholly in one split.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from seqlab.caption.emoji import prepare_emoji
from seqlab.errors import UserError
from seqlab.validate import MAX_IMAGE_PIXELS, MIN_VOCAB_SIZE, check_fields, check_float

TSV_NAME = "captions.tsv"
SPLITS = ("random", "grouped")


@dataclass
class ImageItem:
    """One image and its captions. path: the file; group: what the grouped split keeps together."""

    path: Path
    captions: list[str]
    group: str


@dataclass
class CaptionDataset:
    """Images with their captions; `pixels` (N, size, size, 3) uint8, loaded on request."""

    items: list[ImageItem]
    source: str = ""
    image_size: int = 64
    pixels: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.items)

    def load_pixels(self) -> np.ndarray:
        """Read every image (converted, resized) into (N, size, size, 3) uint8; cached."""
        if self.pixels is None:
            out = np.empty((len(self.items), self.image_size, self.image_size, 3), np.uint8)
            for i, it in enumerate(self.items):
                out[i] = load_image(it.path, self.image_size)
            self.pixels = out
        return self.pixels

    def subset(self, indices: Sequence[int]) -> CaptionDataset:
        pix = self.pixels[list(indices)] if self.pixels is not None else None
        return CaptionDataset([self.items[i] for i in indices], self.source, self.image_size, pix)

    def pairs(self) -> tuple[list[int], list[str]]:
        """Flatten to (image index, caption) pairs: one training example per caption."""
        idx, caps = [], []
        for i, it in enumerate(self.items):
            for c in it.captions:
                idx.append(i)
                caps.append(c)
        return idx, caps

    def first_captions(self) -> list[str]:
        return [it.captions[0] for it in self.items]


# ---- images -------------------------------------------------------------------------------


def to_rgb(img: Any, size: int, where: str = "image") -> np.ndarray:
    """A PIL image of any mode -> (size, size, 3) uint8 RGB; transparency composited on white."""
    if not isinstance(img, Image.Image):
        raise ValueError(f"{where}: expected a PIL.Image.Image, got {type(img).__name__}")
    check_image_size(img.size, where)
    if img.mode == "P":  # palette: its transparency (if any) becomes an alpha channel
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
    elif img.mode != "RGB":          # L, 1, I, F, CMYK, YCbCr, ...
        if img.mode in ("I", "I;16", "F"):   # high-bit grayscale: scale to 0..255 first
            arr = np.asarray(img, dtype=np.float64)
            hi = arr.max() if arr.size and arr.max() > 0 else 1.0
            img = Image.fromarray((arr / hi * 255).clip(0, 255).astype(np.uint8), "L")
        img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8).copy()


def check_image_size(size: tuple[int, int], where: str) -> None:
    """What one image may cost: at most `MAX_IMAGE_PIXELS` (width x height) before decoding."""
    w, h = size
    if w * h > MAX_IMAGE_PIXELS:
        raise UserError(f"{where}: {w}x{h} = {w * h:,} pixels, more than the "
                        f"{MAX_IMAGE_PIXELS:,} pixels allowed for one image")


def load_image(path: str | os.PathLike[str], size: int) -> np.ndarray:
    """Read an image file -> (size, size, 3) uint8 RGB. Bad files -> UserError naming them."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: image file not found")
    try:
        with Image.open(path) as img:     # reads the header only
            check_image_size(img.size, str(path))
            img.load()
            return to_rgb(img, size, where=str(path))
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file (Pillow cannot identify it)") from None
    except Image.DecompressionBombError:
        raise UserError(f"{path}: declares more than {MAX_IMAGE_PIXELS:,} pixels "
                        "(limit for one image)") from None
    except (OSError, SyntaxError, ValueError) as err:  # truncated/corrupt data
        raise UserError(f"{path}: unreadable image ({err})") from None


# ---- the TSV ------------------------------------------------------------------------------


def read_caption_tsv(tsv: str | os.PathLike[str], image_dir: str | os.PathLike[str] | None = None,
                     image_size: int = 64, check_images: bool = True) -> CaptionDataset:
    """Read `filename<TAB>caption[<TAB>group]` lines; images relative to `image_dir`
    (default: the TSV's folder). Returns one ImageItem per distinct file, in first-seen order.

    check_images: open every image now, so a bad file fails here with its name and TSV line.
    """
    tsv = Path(tsv)
    base = Path(image_dir) if image_dir is not None else tsv.parent
    try:
        raw = tsv.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{tsv}: caption file not found") from None
    except OSError as err:
        raise UserError(f"{tsv}: cannot read ({err.strerror})") from None
    by_name: dict[str, ImageItem] = {}
    for lineno, bline in enumerate(raw.split(b"\n"), 1):
        try:
            line = bline.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            raise UserError(f"{tsv}:{lineno}: not valid UTF-8") from None
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) < 2:
            raise UserError(f"{tsv}:{lineno}: expected 'filename<TAB>caption', found no tab")
        name, caption = cols[0].strip(), " ".join(cols[1].split())
        if not name:
            raise UserError(f"{tsv}:{lineno}: empty file name")
        if not caption:
            raise UserError(f"{tsv}:{lineno}: empty caption for {name}")
        group = cols[2].strip() if len(cols) > 2 and cols[2].strip() else None
        item = by_name.get(name)
        if item is None:
            path = base / name
            if not path.is_file():
                raise UserError(f"{tsv}:{lineno}: image {name} not found "
                                f"(looked for {path})")
            item = by_name[name] = ImageItem(path, [], group or name)
            if check_images:
                try:
                    load_image(path, 8)
                except UserError as err:
                    raise UserError(f"{tsv}:{lineno}: {err}") from None
        elif group is not None and item.group != group:
            raise UserError(f"{tsv}:{lineno}: {name} is in group {group!r} here but in "
                            f"{item.group!r} on an earlier line")
        item.captions.append(caption)
    if not by_name:
        raise UserError(f"{tsv}: no captions (expected lines 'filename<TAB>caption')")
    return CaptionDataset(list(by_name.values()), str(tsv), image_size)


def read_caption_folder(folder: str | os.PathLike[str], image_size: int = 64,
                        check_images: bool = True) -> CaptionDataset:
    """A folder holding `captions.tsv` (or a path to the TSV itself)."""
    p = Path(folder)
    if p.is_file():
        return read_caption_tsv(p, image_size=image_size, check_images=check_images)
    if not p.is_dir():
        raise UserError(f"{p}: caption data not found (expected a folder with {TSV_NAME} "
                        "or a .tsv file)")
    tsv = p / TSV_NAME
    if not tsv.is_file():
        raise UserError(f"{p}: no {TSV_NAME} in this folder (lines 'filename<TAB>caption')")
    return read_caption_tsv(tsv, image_size=image_size, check_images=check_images)


# ---- splits --------------------------------------------------------------------------------


@dataclass
class CaptionSplits:
    train: CaptionDataset
    dev: CaptionDataset
    test: CaptionDataset
    mode: str

    def info(self) -> dict[str, Any]:
        return {"split": self.mode, "train_images": len(self.train),
                "dev_images": len(self.dev), "test_images": len(self.test),
                "train_captions": len(self.train.pairs()[1])}


def split_indices(groups: Sequence[str], test_frac: float, dev_frac: float, seed: int
                  ) -> tuple[list[int], list[int], list[int]]:
    """Shuffle the distinct groups with `seed`, cut test, dev, train by their share of images.

    groups: (N,) one group name per image. Every group lies wholly in one split. Returns
    sorted image indices (train, dev, test).
    """
    if not (0 <= test_frac < 1 and 0 <= dev_frac < 1 and test_frac + dev_frac < 1):
        raise ValueError(f"split fractions must be in [0, 1) with a sum < 1, got test={test_frac}"
                         f" dev={dev_frac}")
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    names = sorted(members)
    order = np.random.RandomState(seed % 2**32).permutation(len(names))
    n = len(groups)
    test: list[int] = []
    dev: list[int] = []
    train: list[int] = []
    for k in order:
        m = members[names[k]]
        if len(test) < test_frac * n:
            test += m
        elif len(dev) < dev_frac * n:
            dev += m
        else:
            train += m
    return sorted(train), sorted(dev), sorted(test)


def split_dataset(ds: CaptionDataset, mode: str = "random", test_frac: float = 0.1,
                  dev_frac: float = 0.05, seed: int = 1234) -> CaptionSplits:
    """Random (per image) or grouped (per `group`) train/dev/test split; deterministic."""
    if mode not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, got {mode!r}")
    groups = [str(i) for i in range(len(ds))] if mode == "random" else [
        it.group for it in ds.items]
    tr, dv, te = split_indices(groups, test_frac, dev_frac, seed)
    if not tr:
        raise UserError(f"{ds.source}: {len(ds)} images are too few to split "
                        f"(test {test_frac}, dev {dev_frac}); nothing left for training")
    return CaptionSplits(ds.subset(tr), ds.subset(dv), ds.subset(te), mode)


@dataclass
class CaptionDataConfig:
    """Where a captioner's data comes from and how it is split and tokenised."""

    data: str = "emoji"            # "emoji" (built-in) or a folder with captions.tsv, or a TSV
    split: str = "random"          # random | grouped
    test_frac: float = 0.1
    dev_frac: float = 0.05
    split_seed: int = 1234
    vocab_size: int = 1000
    image_size: int = 64

    def __post_init__(self) -> None:
        check_fields(self, {"vocab_size": (int, MIN_VOCAB_SIZE), "image_size": (int, 8),
                            "split_seed": (int, 0)})
        check_float("CaptionDataConfig.test_frac", self.test_frac, 0.0, open_min=False,
                    maximum=1.0, open_max=True)
        check_float("CaptionDataConfig.dev_frac", self.dev_frac, 0.0, open_min=False,
                    maximum=1.0, open_max=True)
        if self.image_size % 8:
            raise UserError(f"CaptionDataConfig.image_size={self.image_size}: expected a "
                            "positive multiple of 8")


def load_dataset(data_cfg: CaptionDataConfig) -> CaptionDataset:
    """The images and captions `data_cfg.data` names (the emoji set is fetched once)."""
    if data_cfg.data == "emoji":
        folder: Path = prepare_emoji()
    else:
        folder = Path(data_cfg.data)
    return read_caption_folder(folder, image_size=data_cfg.image_size)


def load_splits(data_cfg: CaptionDataConfig, dataset: CaptionDataset | None = None
                ) -> CaptionSplits:
    """Read the data and split it as `data_cfg` says (deterministic)."""
    ds = dataset if dataset is not None else load_dataset(data_cfg)
    return split_dataset(ds, data_cfg.split, data_cfg.test_frac, data_cfg.dev_frac,
                         data_cfg.split_seed)
