"""Faults while training, in real processes: a full disk (a file size limit, RLIMIT_FSIZE) while
saving, Ctrl-C (SIGINT) and kill -9 mid-run, for the translator, the captioner and the series
autoencoder.

- a failing write is one line (exit status 2); the previous checkpoint is unchanged and no
  temporary file is left; a new run that cannot write its first checkpoint leaves no folder;
- Ctrl-C saves a checkpoint and exits (status 130); `--resume` then ends bitwise equal to an
  uninterrupted run (the final checkpoint's weights and Adam state);
- kill -9 (no clean-up at all) then `--resume`: the same.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from bad_input_world import _caption_set
from seqlab.cli import main
from seqlab.training.checkpoint import CHECKPOINT_FILE, load_safetensors
from test_translate_train import write_corpus


def _translate(d: Path, out: Path, steps: int) -> tuple[list[str], Path]:
    corpus = d / "pairs.tsv"
    if not corpus.exists():
        write_corpus(corpus, n=120)
    return (["translate", "train", "--corpus", str(corpus), "--out", str(out), "--hidden", "8",
             "--emb", "8", "--vocab-size", "300", "--batch-tokens", "200", "--max-steps",
             str(steps), "--eval-every", "10", "--eval-sentences", "2", "--dropout", "0.2",
             "--threads", "1", "--quiet"], out)


def _caption(d: Path, out: Path, steps: int) -> tuple[list[str], Path]:
    data = d / "caps"
    if not data.exists():
        _caption_set(data)
    return (["caption", "train", "--data", str(data), "--out", str(out), "--max-steps",
             str(steps), "--eval-every", "10", "--vocab-size", "300", "--image-size", "16",
             "--batch-size", "2", "--hidden-size", "8", "--embedding-dim", "8", "--attn-dim",
             "8", "--threads", "1", "--no-progress"], out)


def _series(d: Path, out: Path, epochs: int) -> tuple[list[str], Path]:
    csv = d / "series.csv"
    if not csv.exists():
        t = np.arange(400)
        pd.DataFrame({"a": np.sin(t / 5) + 0.05 * np.random.default_rng(0).standard_normal(400)}
                     ).to_csv(csv, index=False)
    return (["series", "fit", str(csv), "--out", str(out), "--epochs", str(epochs), "--window",
             "16", "--hidden-size", "8", "--latent-size", "4", "--batch-size", "16", "--dropout",
             "0.2", "--threads", "1"], out / "training")


def _resume_args(new_args: list[str]) -> list[str]:
    """The same command continuing its run: --out and --resume (series: DATA too)."""
    out = new_args[new_args.index("--out") + 1]
    head = new_args[:3] if new_args[0] == "series" else new_args[:2]
    extra = ["--quiet"] if "--quiet" in new_args else (
        ["--no-progress"] if "--no-progress" in new_args else [])
    return [*head, "--out", out, "--resume", *extra]


APPS: dict[str, tuple[Callable[[Path, Path, int], tuple[list[str], Path]], int]] = {
    "translate": (_translate, 120),
    "caption": (_caption, 100),
    "series": (_series, 20),
}


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


def _start(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "seqlab", *args], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert path.exists(), "no checkpoint appeared"


def _checkpoint_tensors(run: Path) -> dict[str, torch.Tensor]:
    """The final weights and Adam state (the global RNG states also depend on what the test
    process ran before)."""
    return {k: v for k, v in load_safetensors(run / CHECKPOINT_FILE)[0].items()
            if k.startswith(("model.", "optim."))}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _invoke_ok(args: list[str]) -> None:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output


def _interrupt_then_resume(tmp_path: Path, app: str, sig: int, name: str) -> Path:
    """Start a run in a real process, send `sig` once its first checkpoint exists, check how
    it ended, then `--resume` it to the end; returns its run directory."""
    make, length = APPS[app]
    args, run = make(tmp_path, tmp_path / name, length)
    proc = _start(args)
    _wait_for(run / CHECKPOINT_FILE, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), err
    if sig == signal.SIGINT:   # one line after the progress output, no traceback
        assert "Traceback" not in err and err.strip().splitlines()[-1] == "interrupted", err
    state = json.loads(load_safetensors(run / CHECKPOINT_FILE)[1]["state"])["progress"]
    done = state["epoch"] if app == "series" else state["step"]
    assert done < length, "the run ended before it was interrupted"
    r = subprocess.run([sys.executable, "-m", "seqlab", *_resume_args(args)], env=_env(),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return run


@pytest.mark.slow
@pytest.mark.parametrize("app", list(APPS))
def test_ctrl_c_and_kill_9_then_resume_are_exact(tmp_path, app):
    """Ctrl-C saves a checkpoint and exits; kill -9 loses only the steps since the last one;
    either way `--resume` ends where an uninterrupted run ends (series' kill -9:
    tests/test_series_resume.py)."""
    make, length = APPS[app]
    whole_args, whole_run = make(tmp_path, tmp_path / "whole", length)
    _invoke_ok(whole_args)
    signals = [signal.SIGINT] + ([signal.SIGKILL] if app != "series" else [])
    for sig in signals:
        run = _interrupt_then_resume(tmp_path, app, sig, f"cut-{sig.name}")
        _same(_checkpoint_tensors(run), _checkpoint_tensors(whole_run))


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)     # a write past the limit -> EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _one_error_line(r: subprocess.CompletedProcess, fragment: str) -> None:
    """Exit status 2 and one "error: ..." line (besides progress-bar redraws), no traceback."""
    assert r.returncode == 2, r.stderr
    # (a progress bar's last redraw may precede the message on its line)
    errors = [line[line.index("error: "):] for line in re.split(r"[\r\n]", r.stderr)
              if "error: " in line]
    assert len(errors) == 1, r.stderr
    assert fragment in errors[0] and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("app", ["translate", "series"])
def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, app):
    make, _ = APPS[app]
    args, run = make(tmp_path, tmp_path / "run", 10 if app == "translate" else 2)
    _invoke_ok(args)
    before = (run / CHECKPOINT_FILE).read_bytes()
    limit = len(before) // 2
    resume = _resume_args(args)
    resume += ["--max-steps", "20"] if app == "translate" else ["--epochs", "4"]
    r = subprocess.run([sys.executable, "-m", "seqlab", *resume], env=_env(),
                       capture_output=True, text=True, timeout=300,
                       preexec_fn=_limit_file_size(limit))
    _one_error_line(r, "cannot write")
    assert (run / CHECKPOINT_FILE).read_bytes() == before
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name]


def test_a_new_run_that_cannot_write_leaves_no_folder(tmp_path):
    args, _ = _series(tmp_path, tmp_path / "new" / "run", 2)
    r = subprocess.run([sys.executable, "-m", "seqlab", *args], env=_env(), capture_output=True,
                       text=True, timeout=300, preexec_fn=_limit_file_size(2000))
    _one_error_line(r, "cannot write")
    assert not (tmp_path / "new").exists()
