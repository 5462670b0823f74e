"""Parallel text: reading sentence pairs, filtering overlong ones, and a grouped split.

Two input formats, plain or gzipped (chosen by the `.gz` suffix or the gzip magic bytes):

- a TSV file, one pair a line: `source<TAB>target[<TAB>anything...]`; extra columns are ignored
  (the Tatoeba / manythings.org format, whose third column is an attribution);
- two line-aligned files, line i of one translating line i of the other (the Multi30k format).

Bad input (a TSV line without a tab, an empty side, invalid UTF-8) raises `UserError` naming the
file and the 1-based line; with `skip_bad_lines=True` such lines are counted in
`ParallelText.skipped` instead. Leading/trailing whitespace of each side is stripped; a UTF-8 byte
order mark at the start of a file is ignored.
"""

from __future__ import annotations

import gzip
import os
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from seqlab.errors import UserError

T = TypeVar("T")

# Default length limit for `filter_by_length`: pairs with a side longer than this many tokens
# (subword tokens when a tokenizer is given, whitespace-separated words otherwise) are dropped.
DEFAULT_MAX_TOKENS = 100


@dataclass
class ParallelText:
    """Aligned sentence pairs: `src[i]` translates to `tgt[i]`.

    `skipped` counts input lines dropped as bad (only with skip_bad_lines=True); `source`
    says where the pairs came from (a path, or a description), for messages and logs.
    """

    src: list[str] = field(default_factory=list)
    tgt: list[str] = field(default_factory=list)
    skipped: int = 0
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.src) != len(self.tgt):
            raise ValueError(f"ParallelText: {len(self.src)} source but {len(self.tgt)} "
                             "target sentences")

    def __len__(self) -> int:
        return len(self.src)

    def subset(self, indices: Sequence[int], source: str | None = None) -> ParallelText:
        """The pairs at `indices`, in that order (skipped count not carried over)."""
        return ParallelText([self.src[i] for i in indices], [self.tgt[i] for i in indices],
                            0, self.source if source is None else source)

    def swapped(self) -> ParallelText:
        """The same pairs in the other direction (target becomes source)."""
        return ParallelText(list(self.tgt), list(self.src), self.skipped, self.source)


def _open_bytes(path: Path) -> Iterator[bytes]:
    """Yield the raw lines of a plain or gzipped file (line endings included)."""
    try:
        with open(path, "rb") as probe:
            gz = probe.read(2) == b"\x1f\x8b" or path.suffix == ".gz"
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a text file") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as f:
            yield from f
    except (gzip.BadGzipFile, EOFError, OSError) as err:
        raise UserError(f"{path}: cannot read ({err})") from None


def _decode(raw: bytes, path: Path, lineno: int) -> str:
    """Decode one line as UTF-8 (strict), without its line ending; UserError names the line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}:{lineno}: invalid UTF-8 (byte 0x{raw[err.start]:02x} at "
                        f"column {err.start + 1})") from None
    if lineno == 1 and text.startswith("\ufeff"):
        text = text[1:]
    return text.rstrip("\r\n")


def _collect(pt: ParallelText, parse: Callable[[int, T], tuple[str, str]], lines: Iterable[T],
             skip_bad_lines: bool) -> ParallelText:
    """Append `parse(lineno, line)` (1-based) for each line to `pt`; a line whose parse raises
    UserError fails the read, or with `skip_bad_lines` is counted in `pt.skipped`."""
    for lineno, line in enumerate(lines, start=1):
        try:
            src, tgt = parse(lineno, line)
        except UserError:
            if not skip_bad_lines:
                raise
            pt.skipped += 1
            continue
        pt.src.append(src)
        pt.tgt.append(tgt)
    return pt


def read_tsv(path: str | os.PathLike[str], skip_bad_lines: bool = False) -> ParallelText:
    """Read `source<TAB>target` pairs from a TSV file (plain or .gz); extra columns are ignored.

    Raises UserError "FILE:LINE: ..." for a line without a tab, an empty side or invalid UTF-8,
    unless `skip_bad_lines`, which counts them in `.skipped` instead.
    """
    path = Path(path)

    def parse(lineno: int, raw: bytes) -> tuple[str, str]:
        text = _decode(raw, path, lineno)
        cols = text.split("\t")
        if len(cols) < 2:
            what = "empty line" if not text.strip() else "no tab"
            raise UserError(f"{path}:{lineno}: {what}, expected source<TAB>target")
        src, tgt = cols[0].strip(), cols[1].strip()
        if not src or not tgt:
            side = "source (column 1)" if not src else "target (column 2)"
            raise UserError(f"{path}:{lineno}: empty {side}, expected source<TAB>target")
        return src, tgt

    return _collect(ParallelText(source=str(path)), parse, _open_bytes(path), skip_bad_lines)


def read_aligned(src_path: str | os.PathLike[str], tgt_path: str | os.PathLike[str],
                 skip_bad_lines: bool = False) -> ParallelText:
    """Read two line-aligned files (plain or .gz): line i of `src_path` translates line i of
    `tgt_path`.

    A different number of lines is always an error (naming both files and counts). An empty
    line or invalid UTF-8 on either side raises UserError "FILE:LINE: ...", unless
    `skip_bad_lines`, which drops that pair and counts it in `.skipped`.
    """
    src_path, tgt_path = Path(src_path), Path(tgt_path)
    src_raw, tgt_raw = list(_open_bytes(src_path)), list(_open_bytes(tgt_path))
    if len(src_raw) != len(tgt_raw):
        raise UserError(f"{src_path} has {len(src_raw)} lines but {tgt_path} has "
                        f"{len(tgt_raw)}; the two files must be line-aligned")

    def parse(lineno: int, raws: tuple[bytes, bytes]) -> tuple[str, str]:
        src = _decode(raws[0], src_path, lineno).strip()
        tgt = _decode(raws[1], tgt_path, lineno).strip()
        for side, path in ((src, src_path), (tgt, tgt_path)):
            if not side:
                raise UserError(f"{path}:{lineno}: empty line, expected a sentence")
        return src, tgt

    return _collect(ParallelText(source=f"{src_path},{tgt_path}"), parse,
                    zip(src_raw, tgt_raw, strict=True), skip_bad_lines)


class _Encoder(Protocol):
    def encode(self, texts: list[str]) -> list[list[int]]: ...


def filter_by_length(pt: ParallelText, max_tokens: int = DEFAULT_MAX_TOKENS,
                     tokenizer: _Encoder | Callable[[str], int] | None = None,
                     max_chars: int | None = None) -> tuple[ParallelText, int]:
    """Drop pairs with a side longer than `max_tokens` tokens (or `max_chars` characters).

    Tokens are counted with `tokenizer` when given (an object with `encode(list[str]) ->
    list[list[int]]`, e.g. `SubwordTokenizer`, or a function str -> token count), otherwise as
    whitespace-separated words. The default limit is `DEFAULT_MAX_TOKENS` = 100 tokens per side;
    `max_chars` is off by default. Returns (kept pairs, number removed); `skipped` and `source`
    are carried over.
    """
    if max_tokens < 1:
        raise ValueError(f"filter_by_length: max_tokens must be >= 1, got {max_tokens}")
    if tokenizer is None:
        src_len = [len(s.split()) for s in pt.src]
        tgt_len = [len(t.split()) for t in pt.tgt]
    elif hasattr(tokenizer, "encode"):
        src_len = [len(ids) for ids in tokenizer.encode(pt.src)]
        tgt_len = [len(ids) for ids in tokenizer.encode(pt.tgt)]
    else:
        src_len = [tokenizer(s) for s in pt.src]
        tgt_len = [tokenizer(t) for t in pt.tgt]
    keep = [i for i in range(len(pt))
            if src_len[i] <= max_tokens and tgt_len[i] <= max_tokens
            and (max_chars is None or max(len(pt.src[i]), len(pt.tgt[i])) <= max_chars)]
    out = pt.subset(keep)
    out.skipped = pt.skipped
    return out, len(pt) - len(keep)


def _groups(pt: ParallelText, group_by: str) -> list[list[int]]:
    """Pair indices grouped so that no sentence of the grouping side(s) is in two groups."""
    if group_by not in ("src", "tgt", "both"):
        raise ValueError("split_grouped: group_by must be 'src', 'tgt' or 'both', "
                         f"got {group_by!r}")
    n = len(pt)
    if group_by in ("src", "tgt"):
        keys = pt.src if group_by == "src" else pt.tgt
        first: dict[str, int] = {}
        groups: list[list[int]] = []
        for i, k in enumerate(keys):
            g = first.setdefault(k, len(groups))
            if g == len(groups):
                groups.append([])
            groups[g].append(i)
        return groups
    # "both": connected components of the graph linking pairs that share either sentence.
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for keys in (pt.src, pt.tgt):
        seen: dict[str, int] = {}
        for i, k in enumerate(keys):
            j = seen.setdefault(k, i)
            if j != i:
                parent[find(i)] = find(j)
    comp: dict[int, list[int]] = {}
    for i in range(n):
        comp.setdefault(find(i), []).append(i)
    return sorted(comp.values(), key=lambda g: g[0])


def split_grouped(pt: ParallelText, dev_size: int = 2000, test_size: int = 2000,
                  seed: int = 1234, group_by: str = "src"
                  ) -> tuple[ParallelText, ParallelText, ParallelText]:
    """Deterministic train/dev/test split where all pairs sharing a sentence stay together.

    `group_by="src"` groups by source sentence (so no source sentence is in two splits),
    "tgt" by target sentence, "both" by connected components over both sides. Groups are
    shuffled with `random.Random(seed)` and taken in that order into test, then dev, skipping a
    group that would overshoot the requested size (it goes to train), so the sizes are exact
    whenever enough small groups exist. Each split keeps the original pair order. Raises
    UserError when the corpus is too small for the requested sizes.
    """
    if dev_size < 0 or test_size < 0:
        raise ValueError(f"split_grouped: sizes must be >= 0, got dev={dev_size} test={test_size}")
    groups = _groups(pt, group_by)
    if dev_size + test_size >= len(pt):
        raise UserError(f"{pt.source or 'corpus'}: {len(pt)} pairs are too few for a dev split "
                        f"of {dev_size} and a test split of {test_size} plus training data")
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    targets = [test_size, dev_size]
    picked: list[list[int]] = [[], []]
    split = 0
    train: list[int] = []
    for g in order:
        members = groups[g]
        while split < 2 and len(picked[split]) >= targets[split]:
            split += 1
        if split < 2 and len(picked[split]) + len(members) <= targets[split]:
            picked[split].extend(members)
        else:
            train.extend(members)
    test_idx, dev_idx = sorted(picked[0]), sorted(picked[1])
    name = pt.source or "corpus"
    train_pt = pt.subset(sorted(train), f"{name} [train]")
    train_pt.skipped = pt.skipped  # bad input lines are reported once, with the training split
    return (train_pt, pt.subset(dev_idx, f"{name} [dev]"),
            pt.subset(test_idx, f"{name} [test]"))
