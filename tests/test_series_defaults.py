"""The defaults (issue 17): season, regression and log_scale "auto", the configuration the
leave-one-category-out study on NAB picked. Each "auto" resolves per input at fit time and does
nothing where it cannot apply; models saved before "auto" existed load and score as before."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from seqlab.cli import main
from seqlab.series.estimator import AUTO_REGRESSION, PLAIN_PARAMS, SeriesAutoencoder
from seqlab.series.online import OnlineScorer

TINY = {"window": 12, "hidden_size": 6, "latent_size": 3, "epochs": 1, "seed": 0,
        "num_threads": 1}


def _series(n: int = 300) -> np.ndarray:
    """(n, 2) a symmetric two-channel signal (no timestamps, not skewed)."""
    t = np.arange(n)
    rng = np.random.default_rng(0)
    return np.column_stack([np.sin(2 * np.pi * t / 20), np.cos(2 * np.pi * t / 30)]) \
        + 0.05 * rng.standard_normal((n, 2))


def test_the_defaults_are_the_held_out_winners():
    params = SeriesAutoencoder().get_params()
    assert (params["season"], params["regression"], params["log_scale"], params["threshold"]) \
        == ("auto", "auto", "auto", "sigma")


def test_regression_auto_is_aer_on_a_long_series_and_fit_keeps_the_param():
    est = SeriesAutoencoder(**TINY).fit(_series())
    assert est.regression == "auto"                      # fit does not touch the parameters
    assert est.regression_ == AUTO_REGRESSION == 0.5
    assert est.model_config_.regression
    x = _series()
    assert est.point_errors(est.scale(x)).shape == (len(x), 4)    # C reconstruction + C AER
    assert OnlineScorer(est).regression


def test_regression_auto_is_off_for_samples_and_other_decoder_inputs():
    rng = np.random.default_rng(1)
    samples = rng.standard_normal((20, 12, 1))           # (n, T, C), as UCR classification
    est = SeriesAutoencoder(**TINY, embedding="pooled").fit(samples)
    assert est.regression_ == 0.0 and not est.model_config_.regression
    assert est.season_ is None                           # season "auto": nothing on samples
    assert est.log_scale_ is not None and not est.log_scale_.any   # not skewed non-negative
    assert est.transform(samples).shape == (20, 2 * 6)
    assert est.score_samples(samples).shape == (20, 12)
    teacher = SeriesAutoencoder(**TINY, decoder_input="teacher").fit(_series())
    assert teacher.regression_ == 0.0 and not teacher.model_config_.regression


def test_explicit_settings_keep_their_errors():
    with pytest.raises(ValueError, match="regression: needs one long series"):
        SeriesAutoencoder(**TINY, regression=0.5).fit(np.zeros((4, 12, 1)))
    with pytest.raises(ValueError, match="season: needs one long series"):
        SeriesAutoencoder(**TINY, season="daily").fit(np.zeros((4, 12, 1)))
    with pytest.raises(ValueError, match="regression: needs decoder_input='latent'"):
        SeriesAutoencoder(regression=0.5, decoder_input="teacher").check_params()
    for bad in ("some", "0.5", 1.0, -0.1):
        with pytest.raises(ValueError, match=r"regression: expected 'auto' or a ratio "
                                             r"0 <= r < 1, got"):
            SeriesAutoencoder(regression=bad).check_params()


def test_season_and_log_scale_auto_do_nothing_without_timestamps_or_skew():
    x = _series()
    auto = SeriesAutoencoder(**TINY, regression=0.0).fit(x)
    plain = SeriesAutoencoder(**TINY, **PLAIN_PARAMS).fit(x)
    assert auto.season_ is not None and not auto.season_.any_active
    assert auto.log_scale_ is not None and not auto.log_scale_.any
    assert plain.season_ is None and plain.log_scale_ is None
    # the same model: same weights, same scores
    np.testing.assert_array_equal(auto.score_samples(x), plain.score_samples(x))
    np.testing.assert_array_equal(auto.reconstruct(x), plain.reconstruct(x))


def test_fitted_regression_round_trips_and_old_numeric_models_load(tmp_path):
    x = _series()
    est = SeriesAutoencoder(**TINY).fit(x)
    back = SeriesAutoencoder.load(est.save(tmp_path / "auto"))
    assert back.regression == "auto" and back.regression_ == est.regression_ == 0.5
    np.testing.assert_array_equal(back.score_samples(x), est.score_samples(x))

    # a model saved before "auto": params hold the ratio, no fitted "regression" entry (and,
    # older still, no regression / season / log_scale params at all: the plain autoencoder)
    plain = SeriesAutoencoder(**TINY, **PLAIN_PARAMS).fit(x)
    expected = plain.score_samples(x)
    for name, drop in (("numeric", ()), ("older", tuple(PLAIN_PARAMS))):
        d = plain.save(tmp_path / name)
        config = json.loads((d / "config.json").read_text())
        del config["regression"]
        for key in drop:
            del config["params"][key]
        (d / "config.json").write_text(json.dumps(config))
        old = SeriesAutoencoder.load(d)
        assert old.regression_ == 0.0
        assert {k: old.get_params()[k] for k in PLAIN_PARAMS} == PLAIN_PARAMS
        np.testing.assert_array_equal(old.score_samples(x), expected)


def _csv(path, n: int = 300) -> str:
    frame = pd.DataFrame(_series(n), columns=["a", "b"])
    frame.insert(0, "timestamp", pd.date_range("2024-01-01", periods=n, freq="5min"))
    frame.to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize("flag, ratio", [([], 0.5), (["--regression", "auto"], 0.5),
                                         (["--regression", "0"], 0.0)])
def test_cli_regression(tmp_path, flag, ratio):
    out = tmp_path / "run"
    args = ["series", "fit", _csv(tmp_path / "d.csv"), "--out", str(out), "--window", "12",
            "--hidden-size", "6", "--latent-size", "3", "--epochs", "1", "--threads", "1",
            *flag]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert ("AER: regression ratio 0.5" in res.output) == bool(ratio)
    est = SeriesAutoencoder.load(out)
    assert est.regression_ == ratio
    assert est.model_config_.regression == bool(ratio)


def test_cli_none_gives_the_plain_autoencoder(tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(main, [
        "series", "fit", _csv(tmp_path / "d.csv"), "--out", str(out), "--window", "12",
        "--hidden-size", "6", "--latent-size", "3", "--epochs", "1", "--threads", "1",
        "--regression", "0", "--season", "none", "--log-scale", "none"])
    assert res.exit_code == 0, res.output
    est = SeriesAutoencoder.load(out)
    assert {k: est.get_params()[k] for k in PLAIN_PARAMS} == PLAIN_PARAMS
    assert est.season_ is None and est.log_scale_ is None and est.regression_ == 0.0
