"""Helpers every benchmark script shares: machine description, timestamps, result files.

The scripts run as `python benchmarks/bench_x.py`, so this directory is on sys.path and they
import it as `_common`.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from seqlab.io import write_json_atomic

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (else what `platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def command_line() -> str:
    """How this script was started ("python benchmarks/bench_x.py --flag ...")."""
    return " ".join([Path(sys.executable).name, *sys.argv])


def git_state() -> dict[str, Any]:
    """The checked-out commit and the number of modified tracked files ("" when no git)."""
    def git(*a: str) -> str:
        try:
            r = subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True)
        except OSError:
            return ""
        return r.stdout.strip() if r.returncode == 0 else ""
    return {"commit": git("rev-parse", "HEAD"),
            "dirty_files": len(git("status", "--porcelain", "--untracked-files=no").splitlines())}


def machine_info(**extra: Any) -> dict[str, Any]:
    """torch version, threads, CPU model and count, python, date, command and git commit,
    plus `extra` fields."""
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu_model(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "date": utc_now(),
            "command": command_line(), "git_commit": git_state()["commit"], **extra}


def repo_relative(value: Any) -> Any:
    """`value` with every path inside the repository written relative to its root, in strings
    (also inside command lines) and Paths, recursively through dicts, lists and tuples; so a
    committed result does not say where one checkout lay."""
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        return value.replace(f"{REPO}{os.sep}", "")
    if isinstance(value, dict):
        return {k: repo_relative(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [repo_relative(v) for v in value]
    return value


def write_results(path: str | Path, record: dict[str, Any]) -> Path:
    """Write a record as JSON atomically (never a half-written file).

    Files under benchmarks/results/ (the committed results) get repository paths relative to
    the repository (`repo_relative`); elsewhere (a script's own state in its work directory,
    read back later) they stay absolute.
    """
    path = Path(path)
    if path.resolve().is_relative_to(RESULTS):
        record = repo_relative(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record)
    return path
