"""One-sided smoothed scores, mean + k std and Hundman's dynamic threshold, event pruning: on
hand-made data, then through `SeriesAutoencoder(threshold="sigma" | "dynamic")`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqlab.series import SeriesAutoencoder
from seqlab.series.scoring import (
    GaussianErrorModel,
    dynamic_threshold,
    ewma,
    prune_events,
    relative_error,
    sigma_threshold,
)


def test_ewma_matches_pandas_and_is_causal():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(300)
    y = ewma(x, 10)
    expected = pd.Series(x).ewm(span=10, adjust=False).mean().to_numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-12)
    # causal: changing the future leaves the past alone
    x2 = x.copy()
    x2[200:] += 100.0
    np.testing.assert_array_equal(ewma(x2, 10)[:200], y[:200])
    # along the last axis of a batch; span <= 1 is the identity
    batch = np.stack([x, 2 * x])
    np.testing.assert_allclose(ewma(batch, 10), np.stack([y, 2 * y]))
    np.testing.assert_array_equal(ewma(x, 1), x)
    np.testing.assert_array_equal(ewma(x, 0), x)


def test_ewma_turns_a_lone_spike_into_less_than_a_sustained_rise():
    spike, step = np.zeros(200), np.zeros(200)
    spike[100] = 5.0
    step[100:110] = 1.0                        # a tenth of the height, ten points long
    assert spike.max() > step.max()
    assert ewma(spike, 20).max() < ewma(step, 20).max()


def test_relative_error_is_one_sided_unlike_mahalanobis():
    rng = np.random.default_rng(1)
    normal = np.abs(rng.normal(1.0, 0.2, size=(5000, 2))) * np.array([1.0, 10.0])   # (M, C)
    gauss = GaussianErrorModel.fit(normal)
    small, large = np.array([[0.0, 0.0]]), np.array([[2.0, 20.0]])
    # Mahalanobis: a perfect reconstruction looks as anomalous as a doubled error
    assert gauss.score(small)[0] > 20 and gauss.score(large)[0] > 20
    rel_small = relative_error(small, gauss.mean)[0]
    rel_large = relative_error(large, gauss.mean)[0]
    assert rel_small == pytest.approx(0.0)
    assert rel_large == pytest.approx(2.0, rel=0.05)
    # channels weigh the same whatever their error scale
    assert relative_error(np.array([[2.0, 10.0]]), gauss.mean)[0] == pytest.approx(
        relative_error(np.array([[1.0, 20.0]]), gauss.mean)[0], rel=0.05)
    with pytest.raises(ValueError, match="scale"):
        relative_error(normal, np.ones(3))


def test_sigma_threshold():
    rng = np.random.default_rng(2)
    e = rng.standard_normal(100_000)
    assert sigma_threshold(e) == pytest.approx(e.mean() + 4 * e.std())
    assert np.mean(e > sigma_threshold(e)) < 1e-3
    assert sigma_threshold(e, k=2) < sigma_threshold(e)


def test_dynamic_threshold_separates_an_injected_bump_from_noise():
    rng = np.random.default_rng(3)
    e = np.abs(rng.normal(0.0, 0.1, size=2000))
    e[1000:1030] += 3.0                         # one clear anomalous sequence
    eps, z = dynamic_threshold(e)
    assert 2.5 <= z <= 11.5
    noise = np.delete(e, np.arange(1000, 1030))
    assert noise.max() < eps < e[1000:1030].min()
    # a second, lower bump: the n_seq ** 2 penalty prefers fewer sequences, but no noise
    # point is flagged and the higher bump still is
    e[1500:1520] += 1.5
    noise = np.delete(e, np.r_[1000:1030, 1500:1520])
    eps2, _ = dynamic_threshold(e)
    assert noise.max() < eps2 < e[1000:1030].min()


def test_dynamic_threshold_without_outliers_and_constant_scores():
    # uniform noise: nothing stands out beyond mean + 2.5 std, so the 12 std default
    e = np.random.default_rng(4).uniform(size=1000)
    eps, z = dynamic_threshold(e)
    assert z == 12.0 and eps > e.max()
    # more than `max_sequences` separate excursions are not one anomaly: none qualifies
    f = np.zeros(1000)
    f[::100] = 1.0                              # 10 isolated equal spikes
    eps, z = dynamic_threshold(f, max_sequences=5)
    assert z == 12.0 and eps > f.max()
    assert dynamic_threshold(np.ones(50)) == (1.0, 12.0)
    with pytest.raises(ValueError, match="at least one"):
        dynamic_threshold(np.array([]))


def test_prune_events_keeps_clearly_higher_peaks():
    s = np.full(100, 1.8)                       # the unflagged level
    s[10:13] = [5.0, 10.0, 5.0]                 # a clear peak
    s[40] = 2.0                                 # barely above the next one ...
    s[70] = 1.9                                 # ... and than the unflagged level
    events = [(10, 12), (40, 40), (70, 70)]
    assert prune_events(events, s, 0.13) == [(10, 12)]
    # with a lower unflagged level, the small peaks clear it by more than 13%: all stay
    s2 = np.where(s == 1.8, 1.0, s)
    assert prune_events(events, s2, 0.13) == events
    # input order is kept; min_decrease 0 prunes nothing; no events stay no events
    assert prune_events(events[::-1], s2, 0.13) == events[::-1]
    assert prune_events(events, s, 0.0) == events
    assert prune_events([], s, 0.13) == []


def _sine(n, period=25, noise=0.03, seed=0):
    rng = np.random.default_rng(seed)
    return np.sin(2 * np.pi * np.arange(n) / period) + noise * rng.standard_normal(n)


@pytest.fixture(scope="module")
def spike_case():
    train = _sine(800)
    test = _sine(600, seed=1)
    test[300:303] += 2.5
    est = SeriesAutoencoder(window=25, hidden_size=32, latent_size=8, epochs=12, batch_size=32,
                            lr=3e-3, stride=2, seed=0, num_threads=1, threshold="dynamic")
    return est.fit(train), train, test


@pytest.mark.cpu_sensitive
def test_estimator_dynamic_threshold_finds_the_spike(spike_case, tmp_path):
    est, train, test = spike_case
    assert est.effective_smoothing == 12 and est.effective_prune == pytest.approx(0.13)
    assert "dynamic threshold" in est.threshold_source_
    assert "all 800 normal fitting points" in est.threshold_source_
    s = est.score_samples(test)
    assert abs(int(np.argmax(s)) - 301) <= est.effective_smoothing  # the EWMA delays the peak
    events = est.detect_events(test)
    # one event over the spike; any other lies within a window of the series' ends, where
    # fewer windows cover each point
    inner = [(a, b) for a, b in events if b >= est.window and a < len(test) - est.window]
    assert len(inner) == 1 and inner[0][0] <= 302 and inner[0][1] >= 300
    # the threshold came from normal data: the training series itself is (almost) all normal
    assert est.predict(train).mean() < 0.01
    back = SeriesAutoencoder.load(est.save(tmp_path / "m"))
    np.testing.assert_array_equal(back.score_samples(test), s)
    assert back.threshold_ == est.threshold_ and back.detect_events(test) == events


@pytest.mark.cpu_sensitive
def test_estimator_sigma_threshold_and_options(spike_case):
    est, train, test = spike_case
    sig = SeriesAutoencoder(**dict(est.get_params(), threshold="sigma"))
    sig.model_, sig.scaler_ = est.model_, est.scaler_
    sig.n_features_, sig.columns_, sig.columns_from_names_ = 1, est.columns_, False
    sig.input_kind_ = "series"
    sig.fit_threshold(train)
    normal = sig.score_samples(train)
    assert sig.threshold_ == pytest.approx(normal.mean() + 4 * normal.std())
    assert "mean + 4 std" in sig.threshold_source_
    assert any(a <= 301 <= b for a, b in sig.detect_events(test))
    # smoothing=0 gives the raw one-sided score; it is noisier than the smoothed one
    raw = SeriesAutoencoder(**dict(sig.get_params(), smoothing=0))
    for k in ("model_", "scaler_", "n_features_", "columns_", "columns_from_names_",
              "input_kind_", "error_model_"):
        setattr(raw, k, getattr(sig, k))
    r = raw.score_samples(train)
    assert np.diff(r).std() > np.diff(normal).std()
    with pytest.raises(ValueError, match="smoothing"):
        SeriesAutoencoder(smoothing=-1, window=8).fit(_sine(100))
    with pytest.raises(ValueError, match="prune"):
        SeriesAutoencoder(prune=1.5, window=8).fit(_sine(100))
    with pytest.raises(ValueError, match="threshold: expected one of"):
        SeriesAutoencoder(threshold="max", window=8).fit(_sine(100))
