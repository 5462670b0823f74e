"""The log-like value transform (`seqlab.series.transform`), `SeriesAutoencoder(log_scale=)`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from seqlab.series.estimator import SeriesAutoencoder
from seqlab.series.transform import ValueTransform
from test_series_datasets import needs_nab


def bursty(n: int, height: float, seed: int = 0) -> pd.DataFrame:
    """Disk-write-like bytes: mostly zero, some small writes, bursts (8 points, ~`height`)
    every 60 points; and a steady sine column that must stay linear under log_scale='auto'."""
    rng = np.random.default_rng(seed)
    x = np.where(rng.random(n) < 0.1, np.abs(rng.normal(0, 0.002 * height, n)), 0.0)
    for s in range(30, n - 8, 60):   # same phase against the sine column in every sample
        x[s:s + 8] = height * rng.uniform(0.95, 1.05, 8)
    t = np.arange(n)
    return pd.DataFrame({"bytes": x, "load": 50 + 5 * np.sin(2 * np.pi * t / 30)})


def test_auto_picks_the_heavy_tailed_non_negative_columns():
    df = bursty(2000, 1e8)
    vt = ValueTransform.fit(df.to_numpy(), "auto")
    assert vt.log.tolist() == [True, False]
    assert vt.scale[1] == 1.0 and 0 < vt.scale[0] < 1e8
    # a skewed column with negative values stays linear under auto, not under log
    neg = np.column_stack([df["bytes"] - 1e6])
    assert ValueTransform.fit(neg, "auto").log.tolist() == [False]
    assert ValueTransform.fit(neg, "all").log.tolist() == [True]
    with pytest.raises(ValueError, match="log_scale: expected None or one of auto, all"):
        ValueTransform.fit(neg, "sqrt")


def test_round_trip_is_exact_and_defined_below_zero_and_unit_free():
    x = bursty(500, 3e6).to_numpy()
    vt = ValueTransform.fit(x, "all")
    probe = np.array([[-5e6, -1.0], [0.0, 0.0], [1e9, 1e3]])
    y = vt.apply(probe)
    assert np.isfinite(y).all() and y[0, 0] < 0 < y[2, 0]
    np.testing.assert_allclose(vt.inverse(vt.apply(x)), x, rtol=1e-10, atol=1e-6)
    np.testing.assert_allclose(vt.inverse(y), probe, rtol=1e-10, atol=1e-6)
    # log-like: doubling a burst adds ~log 2, whatever its size
    assert abs((vt.apply(2 * x[x[:, 0] > 1e6])[:, 0] - vt.apply(x[x[:, 0] > 1e6])[:, 0]).mean()
               - np.log(2)) < 0.01
    # bytes or megabytes: the same transformed values
    mb = ValueTransform.fit(x / 1e6, "all")
    np.testing.assert_allclose(mb.apply(x / 1e6), vt.apply(x), rtol=1e-12)
    again = ValueTransform.from_dict(json.loads(json.dumps(vt.to_dict())))
    np.testing.assert_array_equal(again.apply(probe), y)


def _fit(log_scale):
    # the log scale alone on the plain autoencoder (no AER regression, no daily profile)
    return SeriesAutoencoder(window=32, hidden_size=16, latent_size=8, epochs=8, seed=0,
                             num_threads=1, threshold="sigma_max", regression=0.0, season=None,
                             log_scale=log_scale).fit(bursty(1500, 1e8))


def test_taller_bursts_of_the_usual_shape_are_not_flagged_on_the_log_scale(tmp_path):
    """Trained on bursts of ~1e8, scored on the same pattern with bursts of ~2.5e8: in raw
    units each taller burst is a huge error; on the log scale it is a modest one."""
    taller = bursty(1500, 2.5e8, seed=1)
    raw, logged = _fit(None), _fit("auto")
    assert logged.log_scale_.log.tolist() == [True, False]
    flagged_raw = raw.predict(taller).mean()
    flagged_log = logged.predict(taller).mean()
    assert flagged_raw > 0.05 and flagged_log < flagged_raw / 4
    # a burst where the data is normally quiet for much longer is still found
    odd = bursty(1500, 1e8, seed=2)
    odd.loc[700:760, "bytes"] = 1e8
    scores = logged.score_samples(odd)
    assert scores[700:761].max() > logged.threshold_
    # reconstructions come back in bytes (averaged on the log scale, so bursts come back low,
    # but orders of magnitude above the quiet stretches), the sine column around its level of 50
    recon = logged.reconstruct(odd)
    quiet = odd["bytes"].to_numpy() < 1e6
    assert recon[~quiet, 0].mean() > 10 * np.median(np.abs(recon[quiet, 0]))
    assert abs(recon[:, 1].mean() - 50) < 2.0
    # saved and loaded with its transform: the same scores
    logged.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["log_scale"]["log"] == [True, False] and cfg["params"]["log_scale"] == "auto"
    again = SeriesAutoencoder.load(tmp_path / "m")
    np.testing.assert_allclose(again.score_samples(odd), scores, rtol=1e-6)


def test_transform_applies_to_sample_arrays_too():
    rng = np.random.default_rng(0)
    samples = np.abs(rng.standard_t(2, size=(64, 16, 1))) * 1e5
    est = SeriesAutoencoder(window=16, hidden_size=8, latent_size=4, epochs=2, seed=0,
                            num_threads=1, log_scale="all").fit(samples)
    assert est.log_scale_.log.tolist() == [True]
    recon = est.reconstruct(samples)
    assert recon.shape == samples.shape and np.isfinite(recon).all()


def test_bad_transform_value_is_a_clear_error():
    with pytest.raises(ValueError, match="log_scale: expected None or one of auto, all, "
                                         "got 'log'"):
        SeriesAutoencoder(log_scale="log").fit(bursty(300, 1.0))


@needs_nab
def test_real_nab_disk_writes_taller_bursts_are_not_false_alarms_on_the_log_scale():
    """NAB ec2_disk_write_bytes_1ef3de: the first 15% holds one burst of writes; later bursts
    are taller. In bytes they are five false alarms, on the log scale none; the labelled
    anomaly is still found. Trained on the first 15% only, with the settings of
    benchmarks/bench_series_nab.py."""
    from seqlab.series.datasets import load_nab
    from seqlab.series.io import SeriesData
    from seqlab.series.metrics import event_confusion

    (s,) = load_nab(categories=("realAWSCloudwatch",), series=["ec2_disk_write_bytes_1ef3de"])
    data = SeriesData(values=s.values[:, None], columns=["value"], timestamps=s.timestamps)
    n = int(0.15 * len(s))
    train = SeriesData(values=data.values[:n], columns=["value"], timestamps=s.timestamps[:n])
    found = {}
    for log_scale in (None, "auto"):
        est = SeriesAutoencoder(window=64, epochs=30, seed=0, num_threads=1, regression=0.5,
                                val_fraction=0.2, threshold="sigma_max", season="auto",
                                log_scale=log_scale).fit(train)
        found[log_scale] = event_confusion(s.window_indices, est.detect_events(data))
    assert found["auto"] == (1, 0, 0)
    assert found[None][1] >= 3
