"""Atomic file output: nothing is ever half-written.

Every file seqlab writes (checkpoints, CSVs, plots, JSON) goes to a temporary file in the same
directory first and is renamed into place only when complete, so an interrupted run or a failing
step leaves the previous file (or nothing) behind.

A write that fails for a reason the user can fix (a full disk, a file size limit, no permission,
a directory in the way, a parent that is a file) is a one-line `UserError` naming the path; the
temporary file is removed and any previous file is left as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seqlab.errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` if the block succeeds."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix,
                                   dir=path.parent)
    except OSError as err:
        raise UserError(f"{path}: cannot write ({_reason(err)})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file 0600; give the final file the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as err:
        if err.filename not in (None, str(tmp_path), str(path)):
            raise
        raise UserError(f"{path}: cannot write ({_reason(err)}); "
                        "any previous file is unchanged") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _reason(err: OSError) -> str:
    return (err.strerror or str(err)).rstrip(".").lower() if err.strerror else str(err)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_safetensors_atomic(tensors: dict[str, Any], path: str | os.PathLike[str],
                            metadata: dict[str, str] | None = None) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        try:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
                      metadata=metadata)
        except SafetensorError as err:   # its I/O errors (a full disk) come as this type
            raise UserError(f"{path}: cannot write ({err}); any previous file is "
                            "unchanged") from None


def save_figure_atomic(fig: Any, path: str | os.PathLike[str], **kwargs: Any) -> None:
    """Save a matplotlib figure atomically; the format follows the suffix (.png, .svg, .pdf)."""
    from seqlab.validate import FIGURE_SUFFIXES

    path = Path(path)
    if path.suffix and path.suffix.lower() not in FIGURE_SUFFIXES:
        raise UserError(f"{path}: expected a .png, .svg or .pdf file name")
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)
