"""The .ts reader on files written here, the real UCR sets in aeon, NAB and KDD-TSAD_135."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest

from seqlab.errors import UserError
from seqlab.series.datasets import (
    find_data_dir,
    load_kdd_tsad_135,
    load_nab,
    load_ucr,
    read_ts,
)

HAVE_AEON = importlib.util.find_spec("aeon") is not None
needs_aeon = pytest.mark.skipif(not HAVE_AEON,
                                reason="aeon not installed: pip install --no-deps aeon==1.6.0")


def _nab_root():
    try:
        root = find_data_dir() / "nab"
    except UserError:
        return None
    return root if (root / "labels" / "combined_windows.json").is_file() else None


NAB = _nab_root()
needs_nab = pytest.mark.skipif(NAB is None, reason="NAB data not found under ../shared/data/nab "
                                                   "or $SEQLAB_DATA_DIR/nab")


def _write(tmp_path, text, name="x.ts"):
    path = tmp_path / name
    path.write_text(text)
    return path


UNI = """# a comment
@problemName Tiny
@timeStamps false
@univariate true
@equalLength true
@seriesLength 4
@classLabel true a b
@data
1,2,3,4:a
0.5,-1,2e1,7:b

5,6,7,8:a
"""


def test_read_univariate(tmp_path):
    X, y, header = read_ts(_write(tmp_path, UNI))
    assert header.problem_name == "Tiny" and header.class_values == ["a", "b"]
    assert X.shape == (3, 4, 1) and X.dtype == np.float64
    np.testing.assert_array_equal(X[1, :, 0], [0.5, -1, 20, 7])
    np.testing.assert_array_equal(y, ["a", "b", "a"])


def test_read_multivariate_with_missing_and_unequal_length(tmp_path):
    text = """@problemName Multi
@timestamps false
@univariate false
@dimensions 2
@equalLength false
@classLabel true 1 2
@data
1,2,3:4,?,6:1
7,8:9,10:2
"""
    X, y, _ = read_ts(_write(tmp_path, text))
    assert X.shape == (2, 3, 2)
    np.testing.assert_array_equal(X[0, :, 0], [1, 2, 3])
    assert X[0, 0, 1] == 4 and np.isnan(X[0, 1, 1]) and X[0, 2, 1] == 6
    # The shorter instance is padded at the end with NaN.
    np.testing.assert_array_equal(X[1, :2], [[7, 9], [8, 10]])
    assert np.isnan(X[1, 2]).all()
    np.testing.assert_array_equal(y, ["1", "2"])


def test_read_timestamped_and_unlabelled(tmp_path):
    text = "@problemName S\n@timeStamps true\n@univariate true\n@classLabel false\n@data\n" \
           "(0,1.5),(1,?),(2,3)\n(0,4),(1,5),(2,6)\n"
    X, y, _ = read_ts(_write(tmp_path, text))
    assert y is None and X.shape == (2, 3, 1)
    assert X[0, 0, 0] == 1.5 and np.isnan(X[0, 1, 0]) and X[1, 2, 0] == 6


@pytest.mark.parametrize("bad_line, match", [
    ("1,2,x,4:a", r"x\.ts:11: dimension 0, value 3: 'x' is not a number"),
    ("1,2,3:a", r"x\.ts:11: @equalLength true .*expected 4"),
    ("1,2,3,4:c", r"x\.ts:11: class label 'c'"),
    ("1,2,3,4", r"x\.ts:11: expected dimensions followed by ':label'"),
    ("1,2,3,4:5,6,7,8:a", r"x\.ts:11: expected 1 dimension\(s\), got 2"),
])
def test_malformed_line_names_file_and_line(tmp_path, bad_line, match):
    text = UNI.replace("0.5,-1,2e1,7:b", "0.5,-1,2e1,7:b\n" + bad_line)
    with pytest.raises(UserError, match=match):
        read_ts(_write(tmp_path, text))


def test_malformed_header_and_empty(tmp_path):
    with pytest.raises(UserError, match=r"x\.ts:2: @univariate expects true or false"):
        read_ts(_write(tmp_path, "@problemName A\n@univariate maybe\n@data\n1,2\n"))
    with pytest.raises(UserError, match="no @data line"):
        read_ts(_write(tmp_path, "@problemName A\n"))
    with pytest.raises(UserError, match="no instances"):
        read_ts(_write(tmp_path, "@problemName A\n@data\n"))
    with pytest.raises(UserError, match="cannot read"):
        read_ts(tmp_path / "missing.ts")


@needs_aeon
@pytest.mark.parametrize("name, split, shape, classes", [
    ("GunPoint", "TRAIN", (50, 150, 1), {"1", "2"}),
    ("GunPoint", "TEST", (150, 150, 1), {"1", "2"}),
    ("ItalyPowerDemand", "TRAIN", (67, 24, 1), {"1", "2"}),
    ("ItalyPowerDemand", "TEST", (1029, 24, 1), {"1", "2"}),
    ("BasicMotions", "TRAIN", (40, 100, 6), {"Standing", "Running", "Walking", "Badminton"}),
])
def test_real_ucr_shapes(name, split, shape, classes):
    X, y = load_ucr(name, split)
    assert X.shape == shape and y.shape == (shape[0],)
    assert set(y) == classes and np.isfinite(X).all()


@needs_aeon
def test_unknown_ucr_name_lists_available():
    with pytest.raises(UserError, match="GunPoint"):
        load_ucr("NoSuchSet")


@needs_aeon
def test_kdd_tsad_135_split_and_anomaly():
    s = load_kdd_tsad_135()
    assert s.values.shape == s.labels.shape == (7501,)
    assert s.train_end == 1200  # the archive's file name encodes 1200 as the end of training
    start, end = s.anomaly
    assert 4187 == start <= end < 4199  # ... and 4187 as the anomaly's first point
    assert s.labels.sum() == end - start + 1 and not s.labels[:s.train_end].any()


@needs_nab
def test_nab_windows_align_with_timestamps():
    series = load_nab(categories=("realKnownCause",))
    names = {s.name for s in series}
    assert "realKnownCause/nyc_taxi" in names and len(series) == 7
    labels = json.loads((NAB / "labels" / "combined_windows.json").read_text())
    for s in series:
        raw = labels[f"{s.category}/{s.name.split('/')[1]}.csv"]
        assert len(s.windows) == len(raw) == len(s.window_indices)
        assert s.timestamps.shape == s.values.shape == s.label_points.shape
        for (lo, hi), (a, b) in zip(s.window_indices, raw, strict=True):
            a, b = pd.Timestamp(a), pd.Timestamp(b)
            # First/last labelled points lie inside the window, their outer neighbours outside.
            assert a <= pd.Timestamp(s.timestamps[lo]) and pd.Timestamp(s.timestamps[hi]) <= b
            assert lo == 0 or pd.Timestamp(s.timestamps[lo - 1]) < a
            assert hi == len(s) - 1 or pd.Timestamp(s.timestamps[hi + 1]) > b
        assert s.label_points.sum() == sum(hi - lo + 1 for lo, hi in s.window_indices)


@needs_nab
def test_nab_matches_csv_and_subset():
    (s,) = load_nab(categories=("realKnownCause",), series=["nyc_taxi"])
    df = pd.read_csv(NAB / "data" / "realKnownCause" / "nyc_taxi.csv")
    np.testing.assert_array_equal(s.values, df["value"].to_numpy(dtype=float))
    assert len(s) == len(df) and s.timestamps[0] == np.datetime64(df["timestamp"][0])
    with pytest.raises(UserError, match="not_a_series"):
        load_nab(categories=("realKnownCause",), series=["not_a_series"])


def test_missing_data_dir_is_a_user_error(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="does not exist"):
        load_nab(data_dir=tmp_path / "absent")
    with pytest.raises(UserError, match="combined_windows.json not found"):
        load_nab(data_dir=tmp_path)
    monkeypatch.setenv("SEQLAB_DATA_DIR", str(tmp_path / "nope"))
    with pytest.raises(UserError, match="SEQLAB_DATA_DIR"):
        find_data_dir()


def test_nab_loader_on_a_small_copy(tmp_path):
    # A two-row-gap series written here: windows map to the points inside them.
    folder = tmp_path / "nab" / "data" / "realKnownCause"
    folder.mkdir(parents=True)
    ts = pd.date_range("2020-01-01", periods=20, freq="5min")
    pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%d %H:%M:%S"),
                  "value": np.arange(20.0)}).to_csv(folder / "s.csv", index=False)
    (tmp_path / "nab" / "labels").mkdir()
    windows = {"realKnownCause/s.csv": [["2020-01-01 00:12:00.000000",
                                         "2020-01-01 00:25:00.000000"]]}
    (tmp_path / "nab" / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    (s,) = load_nab(data_dir=tmp_path, categories=("realKnownCause",))
    assert s.window_indices == [(3, 5)]  # 00:15, 00:20, 00:25
    np.testing.assert_array_equal(np.flatnonzero(s.label_points), [3, 4, 5])
