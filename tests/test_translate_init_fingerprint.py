"""Same seed, same weights: the translator's and captioner's initialisation under a seed, and
the loss and gradient of one training batch, match what the code gave before the text-package
and config-names refactor (tests/data/init_fingerprints.json, written by
scripts/init_fingerprints.py on commit e96c235).

Initial weights come from torch's CPU generator and are the same on every CPU, so they are
compared tightly (float64 sums may add in another order: 1e-9 relative). The loss and gradient
norm go through float32 kernels whose rounding differs between CPUs: compared with a margin.
The cases are given in the old config names and converted as an old run's config.json is, so
this also checks the converter.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import init_fingerprints as fp  # noqa: E402

STORED = json.loads((ROOT / "tests" / "data" / "init_fingerprints.json").read_text())


@pytest.mark.parametrize("name", sorted(STORED["models"]))
def test_initialisation_and_first_step_are_unchanged(name: str) -> None:
    stored = STORED["models"][name]
    model = fp.make_model(name, stored["config"])
    weights = fp.fingerprint(model)
    assert list(weights) == list(stored["weights"])          # same tensors, same names/order
    for key, want in stored["weights"].items():
        got = weights[key]
        assert got["shape"] == want["shape"], key
        assert got["first"] == want["first"], key
        assert got["sum"] == pytest.approx(want["sum"], rel=1e-9, abs=1e-9), key
        assert got["abs_sum"] == pytest.approx(want["abs_sum"], rel=1e-9), key
    step = fp.loss_and_grad(model, fp.batch_for(name, stored["config"]))
    assert step["n_tokens"] == stored["step"]["n_tokens"]
    assert step["loss"] == pytest.approx(stored["step"]["loss"], rel=1e-4)
    assert step["grad_norm"] == pytest.approx(stored["step"]["grad_norm"], rel=1e-3)
