"""The daily profile (`seqlab.series.season`) and `SeriesAutoencoder(season=...)`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqlab.errors import UserError
from seqlab.series.estimator import SeriesAutoencoder
from seqlab.series.season import DailyProfile
from test_series_datasets import needs_nab

STEP = 5                       # minutes
PER_DAY = 24 * 60 // STEP      # 288


def daily(days: float, start: str = "2024-03-04 00:00", seed: int = 0,
          no_plateau_day: int | None = None) -> pd.DataFrame:
    """A 5-minute series with a daytime plateau (9:00-17:00 at 10, else 2) plus noise; the day
    `no_plateau_day` (0-based, counted from the start) stays low: NAB's art_daily_nojump."""
    t = pd.date_range(start, periods=int(days * PER_DAY), freq=f"{STEP}min")
    hour = t.hour + t.minute / 60
    y = np.where((hour >= 9) & (hour < 17), 10.0, 2.0)
    if no_plateau_day is not None:
        day = (t - t[0]).days
        y[day == no_plateau_day] = 2.0
    y = y + np.random.default_rng(seed).normal(0, 0.3, len(t))
    return pd.DataFrame({"time": t, "load": y})


def test_profile_learns_the_day_and_checks_it_out_of_sample():
    df = daily(3)
    prof = DailyProfile.fit(df["time"].to_numpy(), df[["load"]].to_numpy(), "auto", "df")
    assert prof.per_day == PER_DAY and prof.step_minutes == STEP and prof.active == [True]
    assert prof.r2[0] > 0.9
    noon, night = prof.values(np.array(["2030-01-01T12:00", "2030-01-01T03:00"],
                                       dtype="datetime64[ns]"))[:, 0]
    assert abs(noon - 10) < 0.5 and abs(night - 2) < 0.5


def test_time_zone_aware_timestamps_use_their_local_time_of_day():
    df = daily(3)
    local = df["time"].dt.tz_localize("Europe/Paris")
    prof = DailyProfile.fit(local.to_numpy(dtype=object), df[["load"]].to_numpy(), "daily", "df")
    assert prof.r2[0] > 0.9
    # 12:00 in Paris is on the plateau, whatever the UTC time
    noon = np.array([pd.Timestamp("2030-01-01 12:00", tz="Europe/Paris")], dtype=object)
    assert abs(prof.values(noon)[0, 0] - 10) < 0.5


def test_auto_leaves_series_without_a_daily_cycle_alone():
    t = pd.date_range("2024-01-01", periods=3 * PER_DAY, freq="5min").to_numpy()
    noise = np.random.default_rng(1).normal(size=(len(t), 1))
    prof = DailyProfile.fit(t, noise, "auto", "df")
    assert prof.active == [False] and prof.r2[0] < 0.5
    assert not prof.values(t).any()
    assert DailyProfile.fit(t, noise, "daily", "df").active == [True]   # forced


@pytest.mark.parametrize("ts, match", [
    (None, "needs timestamps"),
    (np.arange(3 * PER_DAY, dtype=np.float64), "not numbers"),
    (pd.date_range("2024-01-01", periods=PER_DAY, freq="5min").to_numpy(), "covers 1.00 days"),
    (pd.date_range("2024-01-01", periods=3 * PER_DAY, freq="7min").to_numpy(), "7 minutes"),
])
def test_daily_says_why_it_cannot_learn_a_profile_and_auto_skips(ts, match):
    values = np.ones((3 * PER_DAY if ts is None else len(ts), 1))
    with pytest.raises(UserError, match=f"data.csv: season='daily': .*{match}"):
        DailyProfile.fit(ts, values, "daily", "data.csv")
    assert DailyProfile.fit(ts, values, "auto", "data.csv").active == [False]


def _fit(**kw) -> SeriesAutoencoder:
    est = SeriesAutoencoder(window=32, hidden_size=16, latent_size=8, epochs=6, seed=0,
                            num_threads=1, regression=0.5, threshold="sigma_max", **kw)
    return est.fit(daily(3))


def test_the_residual_model_finds_a_missing_daytime_plateau(tmp_path):
    est = _fit(season="auto")
    assert est.season_ is not None and est.season_.active == [True]
    # scored data starting at 06:00 on another date: the phase comes from the timestamps
    test = daily(3, start="2024-05-01 06:00", seed=2, no_plateau_day=1)
    scores = est.score_samples(test)
    t = test["time"]
    anomaly = ((t - t.iloc[0]).dt.days == 1).to_numpy() & (t.dt.hour >= 9).to_numpy() & \
        (t.dt.hour < 17).to_numpy()
    assert scores[anomaly].mean() > 3 * scores[~anomaly].mean()
    events = est.detect_events(test)
    assert events and any(anomaly[a:b + 1].any() for a, b in events)
    # reconstructions are in the data's units: the profile is added back
    recon = est.reconstruct(daily(1, start="2024-05-10", seed=3))
    assert np.abs(recon[:, 0] - daily(1, start="2024-05-10", seed=3)["load"]).mean() < 1.0
    # saved and loaded with its profile: the same scores
    est.save(tmp_path / "m")
    again = SeriesAutoencoder.load(tmp_path / "m")
    np.testing.assert_allclose(again.score_samples(test), scores, rtol=1e-6)


def test_a_season_model_needs_timestamps_to_score():
    est = _fit(season="daily")
    with pytest.raises(UserError, match="array: this model removes a daily profile .*needs "
                                        "timestamps"):
        est.score_samples(daily(1)["load"].to_numpy())


def test_season_is_for_series_only():
    with pytest.raises(ValueError, match="season: expected None or one of"):
        SeriesAutoencoder(season="weekly").fit(daily(3))
    with pytest.raises(ValueError, match="season: needs one long series"):
        SeriesAutoencoder(window=8, season="daily").fit(np.zeros((4, 8, 1)))
    # "auto" (the default) does nothing on samples (tests/test_series_defaults.py)


@needs_nab
def test_real_nab_missing_daily_plateau_is_found_from_the_first_15_percent():
    """NAB art_daily_nojump: one day lacks its usual jump; train on the probationary 15%."""
    from seqlab.series.datasets import load_nab
    from seqlab.series.io import SeriesData
    from seqlab.series.metrics import event_confusion

    (s,) = load_nab(categories=("artificialWithAnomaly",), series=["art_daily_nojump"])
    data = SeriesData(values=s.values[:, None], columns=["value"], timestamps=s.timestamps)
    n = int(0.15 * len(s))
    train = SeriesData(values=data.values[:n], columns=["value"], timestamps=s.timestamps[:n])
    est = SeriesAutoencoder(window=64, epochs=30, seed=0, num_threads=1, regression=0.5,
                            threshold="sigma_max", season="auto").fit(train)
    assert est.season_.active == [True]
    tp, fp, fn = event_confusion(s.window_indices, est.detect_events(data))
    assert (tp, fp, fn) == (1, 0, 0)
