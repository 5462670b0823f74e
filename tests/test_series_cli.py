"""`seqlab series fit/score/embed` on CSV files written here; every bad input gives one line on
stderr, exit code 2 and no output file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from seqlab.cli import main

FIT_FAST = ["--window", "16", "--hidden-size", "16", "--latent-size", "8", "--epochs", "3",
            "--threads", "1"]


def _series_frame(n, seed=0, spike=None):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    a = np.sin(2 * np.pi * t / 20) + 0.05 * rng.standard_normal(n)
    b = np.cos(2 * np.pi * t / 20) + 0.05 * rng.standard_normal(n)
    label = np.zeros(n, dtype=int)
    if spike is not None:
        a[spike] += 3.0
        label[spike] = 1
    return pd.DataFrame({"time": pd.date_range("2024-01-01", periods=n, freq="min").astype(str),
                         "a": a, "b": b, "label": label})


def _run(*args):
    return CliRunner().invoke(main, ["series", *map(str, args)])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("series_cli")
    _series_frame(400).to_csv(d / "train.csv", index=False)
    res = _run("fit", d / "train.csv", "--columns", "a,b", "--out", d / "RUN", *FIT_FAST)
    assert res.exit_code == 0, res.output
    return d


def test_fit_writes_model_and_config(run_dir):
    cfg = json.loads((run_dir / "RUN" / "config.json").read_text())
    assert cfg["columns"] == ["a", "b"] and cfg["window"] == 16
    assert cfg["timestamp_name"] == "time"
    assert (run_dir / "RUN" / "model.safetensors").stat().st_size > 0
    assert "threshold" in cfg and "normal fitting points" in cfg["threshold_source"]


def test_fit_with_aer_regression_and_sigma_max_threshold(run_dir, tmp_path):
    res = _run("fit", run_dir / "train.csv", "--columns", "a,b", "--out", tmp_path / "AER",
               *FIT_FAST, "--regression", "0.5", "--threshold", "sigma_max")
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "AER" / "config.json").read_text())
    assert cfg["params"]["regression"] == 0.5 and cfg["params"]["threshold"] == "sigma_max"
    out = tmp_path / "scores.csv"
    res = _run("score", tmp_path / "AER", run_dir / "train.csv", "-o", out)
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(out)) == 400


def test_score_writes_scores_events_and_plot(run_dir):
    _series_frame(300, seed=1, spike=150).to_csv(run_dir / "new.csv", index=False)
    out, ev, png = run_dir / "scores.csv", run_dir / "events.csv", run_dir / "an.png"
    res = _run("score", run_dir / "RUN", run_dir / "new.csv", "-o", out, "--events", ev,
               "--plot", png, "--label-column", "label")
    assert res.exit_code == 0, res.output
    scores = pd.read_csv(out)
    assert list(scores.columns) == ["time", "a", "b", "score", "is_anomaly"]
    assert len(scores) == 300
    assert scores["is_anomaly"].tolist() == (scores["score"] > json.loads(
        (run_dir / "RUN" / "config.json").read_text())["threshold"]).astype(int).tolist()
    events = pd.read_csv(ev)
    assert list(events.columns) == ["start", "end", "start_index", "end_index", "peak_score"]
    for _, e in events.iterrows():
        assert scores["is_anomaly"][e.start_index] == 1 and e.start == scores["time"][e.start_index]
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_embed_writes_one_row_per_window(run_dir):
    out = run_dir / "emb.csv"
    res = _run("embed", run_dir / "RUN", run_dir / "train.csv", "-o", out, "--stride", "8",
               "--plot", run_dir / "emb.png", "--label-column", "label")
    assert res.exit_code == 0, res.output
    emb = pd.read_csv(out)
    assert list(emb.columns[:4]) == ["start", "end", "start_index", "end_index"]
    assert [c for c in emb.columns if c.startswith("z")] == [f"z{k}" for k in range(8)]
    assert emb["start_index"].tolist() == list(range(0, 400 - 16 + 1, 8))
    assert (run_dir / "emb.png").stat().st_size > 0
    # --embedding pooled: mean and max of the encoder's hidden states, 2 x hidden columns
    res = _run("embed", run_dir / "RUN", run_dir / "train.csv", "-o", out, "--stride", "8",
               "--embedding", "pooled")
    assert res.exit_code == 0, res.output
    pooled = pd.read_csv(out)
    hidden = json.loads((run_dir / "RUN" / "config.json").read_text())["params"]["hidden_size"]
    assert len([c for c in pooled.columns if c.startswith("z")]) == 2 * hidden
    assert len(pooled) == len(emb)


def _assert_clean_failure(res, match, *paths):
    assert res.exit_code == 2, res.output
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], res.output
    assert "Traceback" not in res.output
    for p in paths:
        assert not p.exists(), p
        # no temporary leftovers next to it either
        assert not [q for q in p.parent.glob(f".{p.name}.*")], list(p.parent.iterdir())


BAD_FITS = [
    ("a,b\n" + "1,2\n" * 3 + "3,4,5\n" + "1,2\n" * 40, "line 5: expected 2 fields", None),
    ("a,b\n" + "".join(f"{i},{i % 7}\n" for i in range(20)) + "7,oops\n", "line 22: column 'b':"
     " not a number: 'oops'", None),
    ("a,b\n" + "".join(f"{i},{i % 7}\n" for i in range(40)) + "1,nan\n" + "1,2\n" * 10,
     "line 42: column 'b': NaN/empty value", ["--missing", "error"]),
    ("a,b\n" + "".join(f"{i},{i % 7}\n" for i in range(40)) + "1,inf\n" + "1,2\n" * 10,
     "line 42: column 'b': infinite value", ["--missing", "error"]),
    ("a,b\n" + "".join(f"{i},5\n" for i in range(60)), "column 'b' is constant", None),
    ("a,b\n" + "".join(f"{i},{i % 3}\n" for i in range(10)), "10 points, shorter than the "
     "window (16)", None),
    ("a,b\n1,2\n", "unknown column 'c'; available columns: a, b", ["--columns", "a,c"]),
    ("", "empty file", None),
]


@pytest.mark.parametrize("text, match, extra", BAD_FITS)
def test_fit_bad_input(tmp_path, text, match, extra):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    res = _run("fit", p, "--out", tmp_path / "RUN", *FIT_FAST, *(extra or []))
    _assert_clean_failure(res, match, tmp_path / "RUN")
    assert str(p) in res.output or match.startswith("unknown")


def test_fit_bad_option_combination_is_one_line(run_dir, tmp_path):
    res = _run("fit", run_dir / "train.csv", "--columns", "a,b", "--out", tmp_path / "RUN",
               *FIT_FAST, "--regression", "0.5", "--decoder-input", "teacher")
    _assert_clean_failure(res, "regression: needs decoder_input='latent'", tmp_path / "RUN")


def test_score_with_other_columns_is_a_clear_error(run_dir, tmp_path):
    df = _series_frame(100).rename(columns={"b": "bb"})
    df.to_csv(tmp_path / "other.csv", index=False)
    out = tmp_path / "s.csv"
    res = _run("score", run_dir / "RUN", tmp_path / "other.csv", "-o", out, "--plot",
               tmp_path / "p.png")
    _assert_clean_failure(res, "trained on columns a, b; missing here: b", out,
                          tmp_path / "p.png")


def test_score_shorter_than_window_and_missing_run(run_dir, tmp_path):
    _series_frame(10).to_csv(tmp_path / "short.csv", index=False)
    out = tmp_path / "s.csv"
    res = _run("score", run_dir / "RUN", tmp_path / "short.csv", "-o", out)
    _assert_clean_failure(res, "10 points, shorter than the window (16)", out)
    res = _run("score", tmp_path / "nope", tmp_path / "short.csv", "-o", out)
    _assert_clean_failure(res, "not a saved SeriesAutoencoder", out)


def test_failed_score_keeps_a_previous_output_intact(run_dir, tmp_path):
    out = tmp_path / "s.csv"
    out.write_text("previous\n")
    (tmp_path / "bad.csv").write_text("time,a,b\n1,2\n")
    res = _run("score", run_dir / "RUN", tmp_path / "bad.csv", "-o", out)
    assert res.exit_code == 2 and "line 2: expected 3 fields" in res.output
    assert out.read_text() == "previous\n"


def test_labelled_calibration_only_on_request_and_reported(run_dir, tmp_path):
    _series_frame(300, seed=2, spike=100).to_csv(tmp_path / "lab.csv", index=False)
    out = tmp_path / "s.csv"
    res = _run("score", run_dir / "RUN", tmp_path / "lab.csv", "-o", out, "--calibrate")
    _assert_clean_failure(res, "--calibrate needs --label-column", out)
    res = _run("score", run_dir / "RUN", tmp_path / "lab.csv", "-o", out, "--calibrate",
               "--label-column", "label")
    assert res.exit_code == 0, res.output
    assert "LABELLED calibration" in res.output
    scores = pd.read_csv(out)
    assert scores["is_anomaly"].sum() >= 1
    cfg = json.loads((run_dir / "RUN" / "config.json").read_text())
    assert "LABELLED" not in cfg["threshold_source"]                 # the run is unchanged


def test_fit_season_removes_the_daily_profile_and_scores_by_time_of_day(tmp_path):
    from test_series_season import daily

    daily(3).to_csv(tmp_path / "normal.csv", index=False)
    daily(2, start="2024-06-01 12:00", no_plateau_day=1).to_csv(tmp_path / "new.csv",
                                                                  index=False)
    res = _run("fit", tmp_path / "normal.csv", "--out", tmp_path / "RUN", *FIT_FAST,
               "--season", "auto")
    assert res.exit_code == 0, res.output
    assert "daily profile removed from: load (R^2 0.9" in res.output
    cfg = json.loads((tmp_path / "RUN" / "config.json").read_text())
    assert cfg["season"]["active"] == [True] and len(cfg["season"]["profile"]) == 288
    res = _run("score", tmp_path / "RUN", tmp_path / "new.csv", "-o", tmp_path / "s.csv")
    assert res.exit_code == 0, res.output
    scores = pd.read_csv(tmp_path / "s.csv")
    assert len(scores) == 2 * 288
    # the day without its plateau scores well above the normal hours
    t = pd.to_datetime(scores["time"])
    gone = ((t - t.iloc[0]).dt.days == 1) & (t.dt.hour >= 9) & (t.dt.hour < 17)
    assert scores["score"][gone].mean() > 3 * scores["score"][~gone].mean()


def test_fit_season_daily_without_two_days_is_one_line(run_dir, tmp_path):
    res = _run("fit", run_dir / "train.csv", "--columns", "a,b", "--out", tmp_path / "X",
               *FIT_FAST, "--season", "daily")
    assert res.exit_code == 2
    err = res.stderr.strip()
    assert "train.csv: season='daily': the data covers" in err and "\n" not in err
    assert not (tmp_path / "X").exists()


def test_fit_log_scale_auto_logs_the_bursty_column_only(tmp_path):
    from test_series_transform import bursty

    bursty(600, 1e8).to_csv(tmp_path / "disk.csv", index=False)
    res = _run("fit", tmp_path / "disk.csv", "--out", tmp_path / "RUN", *FIT_FAST,
               "--log-scale", "auto")
    assert res.exit_code == 0, res.output
    assert "log transform on: bytes\n" in res.output
    cfg = json.loads((tmp_path / "RUN" / "config.json").read_text())
    assert cfg["log_scale"]["log"] == [True, False]
    res = _run("score", tmp_path / "RUN", tmp_path / "disk.csv", "-o", tmp_path / "s.csv")
    assert res.exit_code == 0, res.output
    assert np.isfinite(pd.read_csv(tmp_path / "s.csv")["score"]).all()
    res = _run("fit", tmp_path / "disk.csv", "--out", tmp_path / "X", *FIT_FAST,
               "--log-scale", "log")
    assert res.exit_code == 2 and "Invalid value for '--log-scale'" in res.output
    assert not (tmp_path / "X").exists()
