"""Models saved before the refactor still load and score as they did; scikit-learn's
estimator conventions (clone, get/set_params, check_is_fitted)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from seqlab.series import SeriesAutoencoder

# Written by commit e96c235 (before the split and the edge-score fix): a 2-channel sine model
# and the scores that code gave for the same series.
OLD = Path(__file__).parent / "data" / "series_model_e96c235"


def _old_series() -> np.ndarray:
    t = np.arange(300)
    return np.column_stack([np.sin(2 * np.pi * t / 20), np.cos(2 * np.pi * t / 30)])


def test_a_model_saved_by_the_old_code_loads_and_scores_as_before():
    est = SeriesAutoencoder.load(OLD)
    # no per-position profile nor score level: the old plain mean over windows and EWMA start
    assert est.position_profile_ is None and est.score_level_ is None
    expected = pd.read_csv(OLD / "scores_e96c235.csv")["score"].to_numpy()
    np.testing.assert_allclose(est.score_samples(_old_series()), expected, rtol=1e-4, atol=1e-6)
    assert est.transform(_old_series()).shape == (300 - 12 + 1, 3)


def test_an_old_model_saved_again_keeps_its_behaviour(tmp_path):
    est = SeriesAutoencoder.load(OLD)
    est.save(tmp_path / "again")
    back = SeriesAutoencoder.load(tmp_path / "again")
    np.testing.assert_array_equal(back.score_samples(_old_series()),
                                  est.score_samples(_old_series()))


def test_sklearn_conventions():
    est = SeriesAutoencoder(window=12, hidden_size=6, latent_size=3, epochs=1, seed=3)
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    with pytest.raises(NotFittedError, match="not fitted"):
        est.score_samples(_old_series())
    fitted = SeriesAutoencoder.load(OLD)
    fresh = clone(fitted)                     # parameters only, nothing learned
    assert fresh.get_params() == fitted.get_params()
    assert not hasattr(fresh, "model_") and not hasattr(fresh, "threshold_")
    # learned attributes end in "_"; derived settings do not
    assert fitted.effective_score_stride == 1 and fitted.effective_smoothing == 4
    fitted.set_params(threshold="gaussian", smoothing=None)
    assert fitted.effective_smoothing == 0 and fitted.effective_prune == 0.0
    with pytest.raises(ValueError, match="Invalid parameter"):
        est.set_params(windw=3)
