"""Error model, thresholds from normal data, labelled calibration and event merging."""

from __future__ import annotations

import numpy as np
import pytest

from seqlab.series.scoring import (
    GaussianErrorModel,
    calibrated_threshold,
    event_peaks,
    flags_to_events,
    quantile_threshold,
)


def test_quantile_threshold_on_normal_data():
    rng = np.random.default_rng(0)
    normal = rng.exponential(size=20_000)
    thr = quantile_threshold(normal, 0.99)
    # exponential(1): the 0.99 quantile is ln(100)
    assert thr == pytest.approx(np.log(100), rel=0.05)
    assert np.mean(normal > thr) == pytest.approx(0.01, abs=1e-3)
    with pytest.raises(ValueError, match="threshold_quantile"):
        quantile_threshold(normal, 1.0)


def test_gaussian_error_model_is_mahalanobis():
    rng = np.random.default_rng(1)
    cov = np.array([[2.0, 0.8], [0.8, 1.0]])
    e = rng.multivariate_normal([1.0, 2.0], cov, size=50_000)
    m = GaussianErrorModel.fit(e)
    np.testing.assert_allclose(m.mean, [1.0, 2.0], atol=0.03)
    np.testing.assert_allclose(m.cov, cov, atol=0.05)
    probe = np.array([[1.0, 2.0], [3.0, 2.0]])
    d = probe - m.mean
    expected = np.einsum("ni,ij,nj->n", d, np.linalg.inv(m.cov), d)
    np.testing.assert_allclose(m.score(probe), expected, rtol=1e-4)
    # squared Mahalanobis of Gaussian data follows chi2(2): mean 2
    assert m.score(e).mean() == pytest.approx(2.0, rel=0.03)
    again = GaussianErrorModel.from_dict(m.to_dict())
    np.testing.assert_allclose(again.score(probe), m.score(probe))


def test_gaussian_error_model_survives_a_zero_variance_channel():
    e = np.column_stack([np.linspace(0, 1, 100), np.zeros(100)])
    s = GaussianErrorModel.fit(e).score(e)
    assert np.isfinite(s).all()


def test_events_merge_touching_runs_and_small_gaps():
    f = np.zeros(30, dtype=bool)
    f[[2, 3, 4, 8, 9, 20, 29]] = True
    assert flags_to_events(f) == [(2, 4), (8, 9), (20, 20), (29, 29)]
    # gap between 4 and 8 is 3 unflagged points: merged when min_gap > 3
    assert flags_to_events(f, min_gap=3) == [(2, 4), (8, 9), (20, 20), (29, 29)]
    assert flags_to_events(f, min_gap=4) == [(2, 9), (20, 20), (29, 29)]
    assert flags_to_events(f, min_gap=100) == [(2, 29)]
    assert flags_to_events(np.zeros(5, bool)) == []
    assert flags_to_events(np.ones(5, bool)) == [(0, 4)]
    scores = np.arange(30.0)
    assert event_peaks([(2, 4), (8, 9)], scores) == [4.0, 9.0]


def test_labelled_calibration_picks_the_separating_threshold():
    scores = np.array([0.1, 0.2, 0.3, 5.0, 6.0, 0.4, 0.2])
    labels = np.array([0, 0, 0, 1, 1, 0, 0])
    thr, f1 = calibrated_threshold(scores, labels)
    assert f1 == pytest.approx(1.0)
    assert ((scores > thr) == labels.astype(bool)).all()
    with pytest.raises(ValueError, match="no positive"):
        calibrated_threshold(scores, np.zeros(7))
