"""SeriesAutoencoder end to end on small generated series: scaling on the training part only,
aggregation, thresholds, reproducibility, save/load, a detected spike, sample sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqlab.errors import UserError
from seqlab.series import SeriesAutoencoder
from seqlab.series.windows import window_starts

SMALL = dict(window=16, hidden_size=16, latent_size=8, epochs=2, batch_size=32, seed=0,
             num_threads=1, threshold="gaussian")


def _sine(n=400, period=20, noise=0.05, seed=0, channels=1):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    cols = [np.sin(2 * np.pi * t / period + k) for k in range(channels)]
    return np.column_stack(cols) + noise * rng.standard_normal((n, channels))


@pytest.fixture(scope="module")
def fitted():
    x = _sine(400, channels=2)
    return SeriesAutoencoder(**SMALL).fit(x), x


def test_api_shapes(fitted):
    est, x = fitted
    n_win = len(window_starts(len(x), est.window, est.stride))
    assert est.transform(x).shape == (n_win, 8)
    assert est.reconstruct(x).shape == x.shape
    s = est.score_samples(x)
    assert s.shape == (400,) and np.isfinite(s).all()
    n_score = len(window_starts(len(x), est.window, est.effective_score_stride))
    assert est.score_samples(x, level="window").shape == (n_score,)
    flags = est.predict(x)
    assert flags.dtype == bool and flags.shape == (400,)
    in_events = np.zeros(400, dtype=bool)
    for a, b in est.detect_events(x):
        in_events[a:b + 1] = True
    assert (flags == in_events).all()
    assert flags[s > est.threshold_].all()              # no pruning in "gaussian" mode


def test_scaler_is_fitted_on_the_training_part_only(fitted):
    est, x = fitted
    split = len(x) - max(round(0.1 * len(x)), est.window)           # validation: the tail
    assert est.validation_ == f"last {len(x) - split} points"
    np.testing.assert_allclose(est.scaler_.mean, x[:split].mean(axis=0))
    np.testing.assert_allclose(est.scaler_.scale, x[:split].std(axis=0))
    assert not np.allclose(est.scaler_.mean, x.mean(axis=0))


@pytest.fixture(scope="module")
def plain():
    """The plain autoencoder (no AER regression): its errors are reconstruction errors only."""
    x = _sine(400, channels=2)
    return SeriesAutoencoder(**SMALL, regression=0.0).fit(x), x


def test_point_scores_are_the_mean_over_overlapping_windows(plain):
    # each window's errors equalised per position, averaged over the windows covering a point,
    # and at the ends (fewer windows) the deviation from the normal level shrunk by
    # sqrt(windows / full coverage): see scoring.PositionProfile
    import torch

    est, x = plain
    est.score_stride = 5
    try:
        z = est.scaler_.transform(x)
        starts = window_starts(len(x), est.window, 5)
        wins = torch.from_numpy(np.stack([z[s:s + est.window] for s in starts]))
        with torch.no_grad():
            recon = est.model_(wins)[0].numpy()
        profile = est.position_profile_
        err = np.abs(wins.numpy() - recon) * profile.weight         # (W, T, C)
        sums, counts = np.zeros_like(z, dtype=np.float64), np.zeros(len(z))
        for k, s in enumerate(starts):
            sums[s:s + est.window] += err[k]
            counts[s:s + est.window] += 1
        full = -(-est.window // 5)
        k = np.sqrt(np.minimum(counts / full, 1.0))[:, None]
        mean = profile.level + k * (sums / counts[:, None] - profile.level)
        assert (counts[est.window:-est.window] >= full - 1).all() and counts[0] == 1
        expected = est.error_model_.score(mean)
        np.testing.assert_allclose(est.score_samples(x), expected, rtol=1e-4, atol=1e-6)
    finally:
        est.score_stride = None


def test_quantile_threshold_from_normal_data(fitted):
    est, x = fitted
    normal = _sine(600, channels=2, seed=5)
    est.fit_threshold(normal, refit_error_model=False)
    s = est.score_samples(normal)
    assert est.threshold_ == pytest.approx(np.quantile(s, est.threshold_quantile))
    assert "fit_threshold" in est.threshold_source_
    assert np.mean(s > est.threshold_) <= 1 - est.threshold_quantile + 1e-9


@pytest.mark.cpu_sensitive
def test_fit_is_reproducible_with_a_seed():
    x = _sine(200)
    a = SeriesAutoencoder(**SMALL).fit(x)
    b = SeriesAutoencoder(**SMALL).fit(x)
    np.testing.assert_array_equal(a.score_samples(x), b.score_samples(x))
    assert a.history_ == b.history_
    c = SeriesAutoencoder(**dict(SMALL, seed=1)).fit(x)
    assert not np.array_equal(a.score_samples(x), c.score_samples(x))


@pytest.mark.parametrize("threshold", ["gaussian", "quantile"])
def test_save_load_round_trip_gives_identical_scores(tmp_path, threshold):
    x = pd.DataFrame({"ts": pd.date_range("2024", periods=200, freq="h"),
                      "a": _sine(200)[:, 0], "b": _sine(200, seed=3)[:, 0] * 3 + 1})
    est = SeriesAutoencoder(**dict(SMALL, threshold=threshold)).fit(x)
    est.save(tmp_path / "run")
    assert {p.name for p in (tmp_path / "run").iterdir()} == {"model.safetensors", "config.json"}
    back = SeriesAutoencoder.load(tmp_path / "run")
    np.testing.assert_array_equal(back.score_samples(x), est.score_samples(x))
    np.testing.assert_array_equal(back.transform(x), est.transform(x))
    assert back.threshold_ == est.threshold_ and back.columns_ == ["a", "b"]
    assert back.get_params()["threshold"] == threshold
    # other column names than the model's: a clear error
    with pytest.raises(UserError, match="trained on columns a, b; missing here: b"):
        back.score_samples(x.rename(columns={"b": "c"}))
    # a DataFrame with the columns in another order is matched by name
    np.testing.assert_array_equal(back.score_samples(x[["b", "a"]]), est.score_samples(x))


@pytest.mark.cpu_sensitive
def test_an_injected_spike_in_a_sine_is_detected():
    train = _sine(800, period=25, noise=0.03)
    test = _sine(600, period=25, noise=0.03, seed=1)
    test[300, 0] += 2.5
    est = SeriesAutoencoder(window=25, hidden_size=32, latent_size=8, epochs=12, batch_size=32,
                            lr=3e-3, stride=2, seed=0, num_threads=1).fit(train)
    s = est.score_samples(test)
    assert abs(int(np.argmax(s)) - 300) <= 2
    events = est.detect_events(test)
    assert any(a <= 300 <= b for a, b in events)
    assert len(events) <= 3                                         # few false alarms
    assert est.predict(test)[300]
    recon = est.reconstruct(test[:, 0])                              # 1-D in, 1-D out
    assert recon.shape == (600,)
    assert np.abs(recon - test[:, 0])[:250].mean() < 0.3             # it did learn the sine


@pytest.mark.cpu_sensitive
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_series_ends_are_not_flagged_when_the_anomaly_is_in_the_middle(seed):
    # The points at the ends of a series are covered by fewer windows, at the window positions
    # the model rebuilds worst; the scores there must stay on the interior's scale.
    rng = np.random.default_rng(100 + seed)
    t = np.arange(1300)
    x = (np.sin(2 * np.pi * (t + 5 * seed) / 25) + 0.03 * rng.standard_normal(1300))[:, None]
    train, test = x[:800], x[800:].copy()               # test starts at another phase
    test[250, 0] += 2.0                                 # the only anomaly
    est = SeriesAutoencoder(window=25, hidden_size=32, latent_size=8, epochs=12, batch_size=32,
                            lr=3e-3, stride=2, seed=seed, num_threads=1).fit(train)
    s = est.score_samples(test)
    T = est.window
    assert max(s[:T].max(), s[-T:].max()) < est.threshold_          # ends: below threshold
    assert s[250:250 + T].max() > 1.5 * est.threshold_              # the spike: well above
    events = est.detect_events(test)
    assert any(a <= 250 <= b for a, b in events)
    assert all(a >= T and b < len(test) - T for a, b in events), events


def test_labelled_calibration_is_reported_as_such(fitted):
    est, x = fitted
    saved = est.threshold_, est.threshold_source_
    try:
        labels = np.zeros(len(x), dtype=bool)
        labels[np.argmax(est.score_samples(x))] = True
        f1 = est.calibrate_threshold(x, labels)
        assert f1 == pytest.approx(1.0)
        assert est.threshold_source_.startswith("LABELLED calibration")
        assert est.predict(x).sum() == 1
    finally:
        est.threshold_, est.threshold_source_ = saved


def test_sample_sets_3d():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 2 * np.pi, 24)
    X = np.stack([np.column_stack([np.sin(t * (1 + k % 2)), np.cos(t)]) for k in range(40)])
    X = X + 0.05 * rng.standard_normal(X.shape)                      # (n, T, C)
    est = SeriesAutoencoder(**dict(SMALL, window=24)).fit(X)
    assert est.validation_ == "held-out samples"
    assert est.transform(X).shape == (40, 8)
    assert est.reconstruct(X).shape == X.shape
    assert est.score_samples(X).shape == (40, 24)
    assert est.score_samples(X, level="window").shape == (40,)
    with pytest.raises(ValueError, match="samples have length 10 but window=24"):
        est.transform(X[:, :10])


def test_missing_values_policy():
    x = _sine(200)
    x[50, 0] = np.nan
    with pytest.raises(UserError, match="array row 50: column '0': NaN/empty"):
        SeriesAutoencoder(**dict(SMALL, missing="error")).fit(x)
    from seqlab.errors import InputWarning

    with pytest.warns(InputWarning, match=r"filled 1 missing .*array row 50"):
        est = SeriesAutoencoder(**SMALL).fit(x)
    with pytest.warns(InputWarning):
        assert np.isfinite(est.score_samples(x)).all()


def test_bad_input_api():
    with pytest.raises(UserError, match="shorter than the window"):
        SeriesAutoencoder(**SMALL).fit(np.sin(np.arange(10.0)))
    with pytest.raises(UserError, match="column '1' is constant"):
        SeriesAutoencoder(**SMALL).fit(np.column_stack([np.sin(np.arange(100.0)),
                                                        np.ones(100)]))
    with pytest.raises(UserError, match="unknown column 'zz'; available columns: a, b"):
        SeriesAutoencoder(**dict(SMALL, columns="a,zz")).fit(
            pd.DataFrame({"a": np.arange(50.0), "b": np.arange(50.0)}))
    with pytest.raises(ValueError, match="threshold"):
        SeriesAutoencoder(threshold="max").fit(_sine(100))
    with pytest.raises(ValueError, match="not fitted"):
        SeriesAutoencoder().score_samples(_sine(100))


def test_encoder_gates_lead_to_the_embedding(fitted):
    import torch

    est, x = fitted
    gates, window = est.encoder_gates(x, start=7)
    assert gates.f.shape == (1, 1, 1, est.window, est.hidden_size)
    np.testing.assert_allclose(window, x[7:7 + est.window], rtol=1e-5, atol=1e-5)
    # the last hidden state, through the latent projection, is transform()'s row for start 7
    with torch.no_grad():
        z = est.model_.to_latent(gates.h[-1, 0, 0, -1]).numpy()
    np.testing.assert_allclose(z, est.transform(x)[7], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="no full window"):
        est.encoder_gates(x, start=len(x) - 3)


@pytest.mark.parametrize("variant", [dict(decoder_input="teacher"),
                                     dict(reverse_target=False, num_layers=2, dropout=0.2)])
def test_model_variants_train_and_score(variant, tmp_path):
    x = _sine(300)
    est = SeriesAutoencoder(**dict(SMALL, epochs=3, **variant)).fit(x)
    losses = [h["train_loss"] for h in est.history_]
    assert losses[-1] < losses[0]                                   # it learns
    s = est.score_samples(x)
    assert s.shape == (300,) and np.isfinite(s).all()
    est.save(tmp_path / "run")
    back = SeriesAutoencoder.load(tmp_path / "run")
    assert back.model_config_ == est.model_config_
    np.testing.assert_array_equal(back.score_samples(x), s)
