"""The series autoencoder trains through the shared loop: a fit interrupted (stopped early, or
killed) and resumed ends with the same weights as an uninterrupted one (bitwise, same process
and machine); `seqlab series fit --resume`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from seqlab.cli import main
from seqlab.series import SeriesAutoencoder
from seqlab.training.checkpoint import CHECKPOINT_FILE, load_safetensors

SMALL = dict(window=16, hidden_size=16, latent_size=8, batch_size=32, seed=0, num_threads=1,
             dropout=0.2, num_layers=2)   # dropout: the resumed RNG state matters too


def _sine(n=300, seed=0):
    rng = np.random.default_rng(seed)
    return np.sin(2 * np.pi * np.arange(n) / 20) + 0.05 * rng.standard_normal(n)


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_stopped_fit_resumed_equals_an_uninterrupted_one(tmp_path):
    x = _sine()
    whole = SeriesAutoencoder(**SMALL, epochs=4).fit(x)
    part = SeriesAutoencoder(**SMALL, epochs=2).fit(x, run_dir=tmp_path / "run")
    assert len(part.history_) == 2
    resumed = SeriesAutoencoder(**SMALL, epochs=4).fit(x, run_dir=tmp_path / "run", resume=True)
    _same_weights(resumed.model_.state_dict(), whole.model_.state_dict())
    assert resumed.history_ == whole.history_
    np.testing.assert_array_equal(resumed.score_samples(x), whole.score_samples(x))
    assert part.history_ == whole.history_[:2]                      # same first epochs


def test_a_new_fit_refuses_a_run_directory_that_holds_one(tmp_path):
    from seqlab.errors import UserError

    x = _sine(200)
    SeriesAutoencoder(**SMALL, epochs=1).fit(x, run_dir=tmp_path / "run")
    with pytest.raises(UserError, match="already holds a training run"):
        SeriesAutoencoder(**SMALL, epochs=1).fit(x, run_dir=tmp_path / "run")
    with pytest.raises(UserError, match="nothing to resume"):
        SeriesAutoencoder(**SMALL, epochs=1).fit(x, run_dir=tmp_path / "other", resume=True)


FIT = ["--window", "16", "--hidden-size", "16", "--latent-size", "8", "--threads", "1",
       "--dropout", "0.2", "--num-layers", "2", "--columns", "a"]


def test_cli_fit_killed_then_resumed_equals_an_uninterrupted_fit(tmp_path):
    csv = tmp_path / "train.csv"
    pd.DataFrame({"a": _sine(600)}).to_csv(csv, index=False)
    epochs = 40
    res = CliRunner().invoke(main, ["series", "fit", str(csv), "--out", str(tmp_path / "WHOLE"),
                                    "--epochs", str(epochs), *FIT])
    assert res.exit_code == 0, res.output
    # a real process, killed (SIGKILL, no clean-up) once its first checkpoint exists
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", "from seqlab.cli import main; main()",
                             "series", "fit", str(csv), "--out", str(tmp_path / "KILLED"),
                             "--epochs", str(epochs), *FIT], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "KILLED" / "training" / CHECKPOINT_FILE
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    import json

    done = json.loads(load_safetensors(ckpt)[1]["state"])["progress"]["epoch"]
    assert 1 <= done < epochs                                       # killed mid-fit
    assert not (tmp_path / "KILLED" / "config.json").exists()       # no model saved yet
    res = CliRunner().invoke(main, ["series", "fit", str(csv), "--out",
                                    str(tmp_path / "KILLED"), "--resume"])
    assert res.exit_code == 0, res.output
    assert "resuming" in res.output
    _same_weights(load_file(str(tmp_path / "KILLED" / "model.safetensors")),
                  load_file(str(tmp_path / "WHOLE" / "model.safetensors")))


def test_cli_resume_without_a_run_is_one_line(tmp_path):
    csv = tmp_path / "train.csv"
    pd.DataFrame({"a": _sine(200)}).to_csv(csv, index=False)
    res = CliRunner().invoke(main, ["series", "fit", str(csv), "--out", str(tmp_path / "R"),
                                    "--resume"])
    assert res.exit_code == 2
    assert "nothing to resume" in res.output and "Traceback" not in res.output
