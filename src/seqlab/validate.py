"""Checks of values where they enter the Python APIs: one-line `UserError`s naming the argument.

The CLI checks the same ranges with click types (`seqlab.cli.options`); these functions are for
callers of the library (Translator.translate, Captioner.caption, the training configs, ...), so
a bad value fails at once, before any model runs or any file is written.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from seqlab.errors import UserError

# What one input may cost (documented in docs/bad-input.md).
MAX_SOURCE_TOKENS = 512          # subwords of one sentence to translate (longer: truncated)
MAX_SOURCE_CHARS = 20 * MAX_SOURCE_TOKENS   # characters tokenised per sentence (rest dropped)
MAX_NEW_TOKENS = 1024            # output tokens of one translation or caption
MAX_IMAGE_PIXELS = 40_000_000    # pixels of one input image (width x height), before decoding
MAX_SERIES_CELLS = 200_000_000   # points x columns of one series (float64: 1.6 GB)

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
MIN_VOCAB_SIZE = 300             # sentencepiece with byte fallback: 4 specials + 256 bytes + 40


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) or (
        hasattr(value, "__index__") and not isinstance(value, (bool, float)))


def check_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """`value` as an int in [minimum, maximum]; anything else -> UserError naming `name`."""
    if not _is_int(value):
        raise UserError(f"{name}={value!r}: expected a whole number >= {minimum}")
    v = int(value)
    if v < minimum or (maximum is not None and v > maximum):
        rng = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise UserError(f"{name}={v}: expected a whole number {rng}")
    return v


def check_optional_int(name: str, value: Any, minimum: int = 1) -> int | None:
    return None if value is None else check_int(name, value, minimum)


def check_float(name: str, value: Any, minimum: float = 0.0, *, open_min: bool = True,
                maximum: float | None = None, open_max: bool = False) -> float:
    """`value` as a finite float above `minimum` (strictly when `open_min`) and up to
    `maximum`; NaN, inf, strings, ... -> UserError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(
            value, "__float__"):
        raise UserError(f"{name}={value!r}: expected a number")
    v = float(value)
    low_ok = v > minimum if open_min else v >= minimum
    high_ok = maximum is None or (v < maximum if open_max else v <= maximum)
    if not math.isfinite(v) or not low_ok or not high_ok:
        lo = f"{'>' if open_min else '>='} {minimum:g}"
        hi = "" if maximum is None else f" and {'<' if open_max else '<='} {maximum:g}"
        raise UserError(f"{name}={value!r}: expected a finite number {lo}{hi}")
    return v


def check_optional_float(name: str, value: Any, minimum: float = 0.0, *,
                         open_min: bool = True) -> float | None:
    return None if value is None else check_float(name, value, minimum, open_min=open_min)


def check_fields(obj: Any, rules: dict[str, tuple[type, float | None]]) -> None:
    """Check a config dataclass' fields: `rules` maps a field name to (int or float, minimum);
    an int rule needs a whole number >= minimum, a float rule a finite number > minimum
    (None values are allowed: "unset"). The message names the class and the field."""
    cls = type(obj).__name__
    for name, (kind, minimum) in rules.items():
        value = getattr(obj, name)
        if value is None:
            continue
        where = f"{cls}.{name}"
        if kind is int:
            check_int(where, value, int(minimum or 0))
        else:
            check_float(where, value, float(minimum or 0.0))


def check_decoding(num_beams: Any, max_new_tokens: Any, length_penalty: Any, batch_size: Any,
                   num_return_sequences: Any) -> None:
    """The search settings of `Translator.translate` / `Captioner.caption` (and their CLIs)."""
    beams = check_int("num_beams", num_beams)
    if max_new_tokens is not None:
        check_int("max_new_tokens", max_new_tokens, 1, MAX_NEW_TOKENS)
    check_float("length_penalty", length_penalty, 0.0, open_min=False)
    check_int("batch_size", batch_size)
    check_int("num_return_sequences", num_return_sequences, 1, beams)


# ---- paths ---------------------------------------------------------------------------------


def output_file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why `path` cannot be written as a file (None: it can), without writing anything: an
    existing directory, a parent that is a regular file, or a folder we may not write in."""
    p = Path(path)
    if p.is_dir():
        return "is a directory, expected a file path"
    parent = p.parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        return f"cannot create it: {parent} is a file, not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot write in {parent} (permission denied)"
    return None


def check_output_file(path: str | os.PathLike[str]) -> Path:
    problem = output_file_problem(path)
    if problem is not None:
        raise UserError(f"{path}: {problem}")
    return Path(path)


def output_dir_problem(path: str | os.PathLike[str]) -> str | None:
    """Like `output_file_problem`, for a directory to create (or reuse)."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            return "exists and is not a directory"
        if not os.access(p, os.W_OK | os.X_OK):
            return "cannot write in it (permission denied)"
        return None
    problem = output_file_problem(p)
    return None if problem == "is a directory, expected a file path" else problem


def check_output_dir(path: str | os.PathLike[str]) -> Path:
    problem = output_dir_problem(path)
    if problem is not None:
        raise UserError(f"{path}: {problem}")
    return Path(path)


def replaced_note(path: str | os.PathLike[str]) -> str:
    """'wrote PATH' or 'replaced PATH' (an existing file): call before writing. The rule for
    every command: an output file that exists is replaced, atomically, and the command says so."""
    return f"{'replaced' if Path(path).exists() else 'wrote'} {path}"
