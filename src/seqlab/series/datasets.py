"""Real labelled series for the autoencoder: NAB, UCR/UEA `.ts` sets, the UCR anomaly series 135.

Nothing here is downloaded or copied into the project. The loaders read:

- the Numenta Anomaly Benchmark from a data folder (`<data_dir>/nab/data/<category>/<series>.csv`
  and `<data_dir>/nab/labels/combined_windows.json`), where `data_dir` is the argument, the
  environment variable `SEQLAB_DATA_DIR`, or `../shared/data` next to the working directory or
  the repository;
- UCR/UEA classification sets and the UCR anomaly series KDD-TSAD_135 from the files shipped in
  the PyPI package `aeon==1.6.0`, located with `importlib.util.find_spec` (aeon is never imported:
  it is installed with `--no-deps` for its data only).

The `.ts` reader (`read_ts`) is written here: the format is a small header of `@key value` lines,
then one instance per line, dimensions separated by `:`, values by `,`, the class label last.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from seqlab.errors import UserError

NAB_CATEGORIES = ("artificialWithAnomaly", "realAWSCloudwatch", "realKnownCause")
_NAB_HINT = ("the NAB data (github.com/numenta/NAB: data/ and labels/combined_windows.json) "
             "is expected under <data_dir>/nab; pass data_dir= or set SEQLAB_DATA_DIR")
_AEON_HINT = "install its data files with `pip install --no-deps aeon==1.6.0`"


# ---------------------------------------------------------------------------------------------
# Where the data lives
# ---------------------------------------------------------------------------------------------

def _repo_root() -> Path:
    # src/seqlab/series/datasets.py -> the repository is three folders up from `series/`.
    return Path(__file__).resolve().parents[3]


def find_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The shared data folder: `data_dir`, else $SEQLAB_DATA_DIR, else `../shared/data`.

    `../shared/data` is tried relative to the working directory, then to the repository root.
    Raises UserError when the folder given (or every candidate) does not exist.
    """
    if data_dir is not None:
        path = Path(data_dir)
        if not path.is_dir():
            raise UserError(f"data directory {path} does not exist")
        return path
    env = os.environ.get("SEQLAB_DATA_DIR")
    if env:
        path = Path(env)
        if not path.is_dir():
            raise UserError(f"SEQLAB_DATA_DIR={env} is not a directory")
        return path
    candidates = [Path.cwd().parent / "shared" / "data", _repo_root().parent / "shared" / "data"]
    for path in candidates:
        if path.is_dir():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise UserError(f"no data directory found (tried {tried}); {_NAB_HINT}")


def aeon_data_dir() -> Path:
    """`aeon/datasets/data` inside the installed aeon package, found without importing aeon."""
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the Python package aeon is not installed; {_AEON_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    if not path.is_dir():
        raise UserError(f"aeon is installed but has no data folder at {path}; {_AEON_HINT}")
    return path


# ---------------------------------------------------------------------------------------------
# NAB
# ---------------------------------------------------------------------------------------------

@dataclass
class NabSeries:
    """One NAB series with its labelled anomaly windows.

    name:         "<category>/<file stem>", e.g. "realKnownCause/nyc_taxi"
    category:     the NAB category folder
    timestamps:   (N,) datetime64[ns]
    values:       (N,) float64
    windows:      labelled anomaly windows as (start, end) timestamps, both ends inclusive
    label_points: (N,) bool, True for the points inside any labelled window
    """

    name: str
    category: str
    timestamps: np.ndarray
    values: np.ndarray
    windows: list[tuple[np.datetime64, np.datetime64]]
    label_points: np.ndarray
    window_indices: list[tuple[int, int]] = field(default_factory=list)
    """The same windows as inclusive (start, end) positions into `values`."""

    def __len__(self) -> int:
        return len(self.values)


def _window_indices(timestamps: np.ndarray, windows: Sequence[tuple[np.datetime64, np.datetime64]]
                    ) -> list[tuple[int, int]]:
    """Inclusive index intervals from the first to the last point inside each window.

    NAB timestamps are naive local times kept in file order: a few series repeat an hour or step
    back one at a daylight-saving change, so this masks instead of binary-searching.
    """
    out = []
    for start, end in windows:
        inside = np.flatnonzero((timestamps >= start) & (timestamps <= end))
        if inside.size:  # a window between two samples holds no point: nothing to detect
            out.append((int(inside[0]), int(inside[-1])))
    return out


def read_nab_csv(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a NAB series file (columns timestamp,value) -> (timestamps (N,), values (N,)).

    Rows stay in file order, which is the series order (timestamps may repeat or step back at a
    daylight-saving change in a few series, and have gaps; resampling is the caller's choice).
    """
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UserError(f"{path}: cannot read NAB csv: {err}") from None
    if list(df.columns) != ["timestamp", "value"]:
        raise UserError(f"{path}: expected the columns timestamp,value, got {list(df.columns)}")
    try:
        ts = pd.to_datetime(df["timestamp"], format="ISO8601").to_numpy(dtype="datetime64[ns]")
    except (ValueError, TypeError) as err:
        raise UserError(f"{path}: column timestamp: {err}") from None
    values = pd.to_numeric(df["value"], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise UserError(f"{path}:{bad[0] + 2}: column value is not a finite number")
    return ts, values


def load_nab(data_dir: str | os.PathLike[str] | None = None,
             categories: Iterable[str] = NAB_CATEGORIES,
             series: Iterable[str] | None = None) -> list[NabSeries]:
    """Load the NAB series of the given categories with their labelled windows.

    data_dir:   the folder holding `nab/` (see `find_data_dir`)
    categories: NAB category folders, e.g. ("realKnownCause",)
    series:     optional subset: file stems ("nyc_taxi") or full names ("realKnownCause/nyc_taxi")
    Returns the series sorted by name within each category, categories in the order given.
    """
    root = find_data_dir(data_dir) / "nab"
    labels_path = root / "labels" / "combined_windows.json"
    if not labels_path.is_file():
        raise UserError(f"{labels_path} not found; {_NAB_HINT}")
    try:
        all_windows = json.loads(labels_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{labels_path}:{err.lineno}: invalid JSON: {err.msg}") from None
    wanted = None if series is None else set(series)
    out: list[NabSeries] = []
    for category in categories:
        folder = root / "data" / category
        if not folder.is_dir():
            raise UserError(f"NAB category folder {folder} not found; {_NAB_HINT}")
        for path in sorted(folder.glob("*.csv")):
            name = f"{category}/{path.stem}"
            if wanted is not None and path.stem not in wanted and name not in wanted:
                continue
            key = f"{category}/{path.name}"
            if key not in all_windows:
                raise UserError(f"{labels_path}: no entry for {key}")
            timestamps, values = read_nab_csv(path)
            windows = [(np.datetime64(pd.Timestamp(a).as_unit("ns")),
                        np.datetime64(pd.Timestamp(b).as_unit("ns")))
                       for a, b in all_windows[key]]
            idx = _window_indices(timestamps, windows)
            label_points = np.zeros(len(values), dtype=bool)
            for lo, hi in idx:
                label_points[lo:hi + 1] = True
            out.append(NabSeries(name=name, category=category, timestamps=timestamps,
                                 values=values, windows=windows, label_points=label_points,
                                 window_indices=idx))
    if wanted is not None:
        found = {s.name for s in out} | {s.name.split("/", 1)[1] for s in out}
        missing = sorted(wanted - found)
        if missing:
            raise UserError(f"NAB series not found in categories {list(categories)}: {missing}")
    return out


# ---------------------------------------------------------------------------------------------
# UCR/UEA .ts files
# ---------------------------------------------------------------------------------------------

@dataclass
class TsHeader:
    """The `@key value` lines of a .ts file (keys lower-cased)."""

    problem_name: str | None = None
    timestamps: bool = False
    univariate: bool | None = None
    dimensions: int | None = None
    equal_length: bool | None = None
    series_length: int | None = None
    class_label: bool = False
    class_values: list[str] = field(default_factory=list)
    target_label: bool = False


_TS_TUPLE = re.compile(r"\(([^(),]*),([^(),]*)\)")


def _parse_bool(path: Path, lineno: int, key: str, text: str) -> bool:
    word = text.strip().lower()
    if word not in ("true", "false"):
        raise UserError(f"{path}:{lineno}: @{key} expects true or false, got {text.strip()!r}")
    return word == "true"


def _parse_values(path: Path, lineno: int, dim: int, text: str, stamped: bool) -> np.ndarray:
    """One dimension of one instance: '1.0,2,?' or '(t0,1.0),(t1,?)' -> (T,) float64."""
    text = text.strip()
    if stamped:
        cells = [v for _, v in _TS_TUPLE.findall(text)]
        if not cells and text:
            raise UserError(f"{path}:{lineno}: dimension {dim}: expected (timestamp,value) tuples")
    else:
        cells = text.split(",") if text else []
    out = np.empty(len(cells), dtype=np.float64)
    for i, cell in enumerate(cells):
        cell = cell.strip()
        if cell in ("?", "", "NaN", "nan"):
            out[i] = math.nan  # '?' is the format's missing value
            continue
        try:
            out[i] = float(cell)
        except ValueError:
            raise UserError(f"{path}:{lineno}: dimension {dim}, value {i + 1}: "
                            f"{cell!r} is not a number") from None
    return out


def read_ts(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray | None, TsHeader]:
    """Read a UCR/UEA `.ts` file.

    Returns X (n, T, C) float64, y (n,) (str class labels, float regression targets, or None
    when the file has no labels) and the parsed header. Missing values ('?') are NaN; series of
    unequal length are padded at the end with NaN to the longest one.
    Raises UserError naming the file and line for anything malformed.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read .ts file: {err}") from None
    header = TsHeader()
    in_data = False
    rows: list[list[np.ndarray]] = []
    labels: list[str] = []
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise UserError(f"{path}:{lineno}: expected an @key line before @data")
            key, _, rest = line[1:].partition(" ")
            key = key.lower()
            if key == "problemname":
                header.problem_name = rest.strip()
            elif key == "timestamps":
                header.timestamps = _parse_bool(path, lineno, key, rest)
            elif key == "univariate":
                header.univariate = _parse_bool(path, lineno, key, rest)
            elif key == "dimensions":
                header.dimensions = _parse_int(path, lineno, key, rest)
            elif key == "equallength":
                header.equal_length = _parse_bool(path, lineno, key, rest)
            elif key == "serieslength":
                header.series_length = _parse_int(path, lineno, key, rest)
            elif key == "classlabel":
                flag, _, values = rest.strip().partition(" ")
                header.class_label = _parse_bool(path, lineno, key, flag)
                header.class_values = values.split()
                if header.class_label and not header.class_values:
                    raise UserError(f"{path}:{lineno}: @classLabel true lists no class values")
            elif key == "targetlabel":
                header.target_label = _parse_bool(path, lineno, key, rest)
            elif key == "data":
                in_data = True
            # other keys (@missing, @timeStamps variants, ...) carry nothing we need
            continue
        parts = line.split(":")
        if header.class_label or header.target_label:
            if len(parts) < 2:
                raise UserError(f"{path}:{lineno}: expected dimensions followed by ':label'")
            label = parts.pop().strip()
            if header.class_label and label not in header.class_values:
                raise UserError(f"{path}:{lineno}: class label {label!r} is not one of "
                                f"{header.class_values} declared in @classLabel")
            labels.append(label)
        dims = [_parse_values(path, lineno, d, p, header.timestamps) for d, p in enumerate(parts)]
        expected_c = header.dimensions or (1 if header.univariate else None)
        if expected_c is None and rows:
            expected_c = len(rows[0])
        if expected_c is not None and len(dims) != expected_c:
            raise UserError(f"{path}:{lineno}: expected {expected_c} dimension(s), "
                            f"got {len(dims)}")
        if header.equal_length:
            want = header.series_length or len(rows[0][0] if rows else dims[0])
            if any(len(d) != want for d in dims):
                got = sorted({len(d) for d in dims})
                raise UserError(f"{path}:{lineno}: @equalLength true but this instance has "
                                f"length(s) {got}, expected {want}")
        if any(len(d) == 0 for d in dims):
            raise UserError(f"{path}:{lineno}: an instance dimension has no values")
        rows.append(dims)
    if not in_data:
        raise UserError(f"{path}: no @data line")
    if not rows:
        raise UserError(f"{path}: no instances after @data")
    n, c = len(rows), len(rows[0])
    t = max(len(d) for dims in rows for d in dims)
    X = np.full((n, t, c), np.nan, dtype=np.float64)  # (n, T, C)
    for i, dims in enumerate(rows):
        for j, d in enumerate(dims):
            X[i, :len(d), j] = d
    y: np.ndarray | None
    if header.class_label:
        y = np.asarray(labels, dtype=str)
    elif header.target_label:
        try:
            y = np.asarray(labels, dtype=np.float64)
        except ValueError:
            raise UserError(f"{path}: @targetLabel true but a target is not a number") from None
    else:
        y = None
    return X, y, header


def _parse_int(path: Path, lineno: int, key: str, text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise UserError(f"{path}:{lineno}: @{key} expects an integer, "
                        f"got {text.strip()!r}") from None
    if value <= 0:
        raise UserError(f"{path}:{lineno}: @{key} must be positive, got {value}")
    return value


def ucr_path(name: str, split: str = "TRAIN") -> Path:
    """Path of `<Name>_<SPLIT>.ts` in aeon's data folder (aeon not imported)."""
    split = split.upper()
    if split not in ("TRAIN", "TEST"):
        raise ValueError(f"split must be 'TRAIN' or 'TEST', got {split!r}")
    root = aeon_data_dir()
    path = root / name / f"{name}_{split}.ts"
    if not path.is_file():
        have = sorted(p.parent.name for p in root.glob(f"*/*_{split}.ts"))
        raise UserError(f"no UCR/UEA set {name!r} with a {split} split in {root}; "
                        f"available: {', '.join(sorted(set(have)))}")
    return path


def load_ucr(name: str, split: str = "TRAIN") -> tuple[np.ndarray, np.ndarray]:
    """A UCR/UEA classification set shipped with aeon 1.6.0 on its official split.

    name:  e.g. "GunPoint", "ItalyPowerDemand", "ArrowHead", "OSULeaf", "BasicMotions"
    split: "TRAIN" or "TEST"
    Returns X (n, T, C) float64 and y (n,) str class labels.
    """
    path = ucr_path(name, split)
    X, y, _ = read_ts(path)
    if y is None:
        raise UserError(f"{path}: the file has no class labels (@classLabel false)")
    return X, y


# ---------------------------------------------------------------------------------------------
# UCR anomaly archive: KDD-TSAD 135 (InternalBleeding16)
# ---------------------------------------------------------------------------------------------

@dataclass
class AnomalySeries:
    """A univariate series with a normal training prefix and one labelled anomaly.

    values:    (N,) float64, the whole series
    labels:    (N,) bool, True on the anomaly
    train_end: the first `train_end` points are anomaly-free training data
    anomaly:   (start, end) inclusive indices of the labelled anomaly
    """

    name: str
    values: np.ndarray
    labels: np.ndarray
    train_end: int
    anomaly: tuple[int, int]


def load_kdd_tsad_135() -> AnomalySeries:
    """The UCR anomaly archive series 135 (InternalBleeding16, heart rate), as shipped in aeon.

    The archive encodes the split and the anomaly in the file name
    (`135_UCR_Anomaly_InternalBleeding16_1200_4187_4199`: training data is [0, 1200), the anomaly
    starts at 4187). aeon ships it as two TimeEval CSVs (timestamp,value,is_anomaly): `_TEST` is
    the whole series with its labels, `_TRAIN` the normal prefix; both are read here and checked
    to agree, so the split and the interval come from the data, not from constants.
    """
    folder = aeon_data_dir() / "KDD-TSAD_135"
    stem = "135_UCR_Anomaly_InternalBleeding16"
    frames = {}
    for split in ("TRAIN", "TEST"):
        path = folder / f"{stem}_{split}.csv"
        if not path.is_file():
            raise UserError(f"{path} not found; {_AEON_HINT}")
        df = pd.read_csv(path)
        if list(df.columns) != ["timestamp", "value", "is_anomaly"]:
            raise UserError(f"{path}: expected columns timestamp,value,is_anomaly, "
                            f"got {list(df.columns)}")
        frames[split] = df
    train, test = frames["TRAIN"], frames["TEST"]
    values = test["value"].to_numpy(dtype=np.float64)
    labels = test["is_anomaly"].to_numpy() != 0
    train_end = len(train)
    if not np.array_equal(train["value"].to_numpy(dtype=np.float64), values[:train_end]):
        raise UserError(f"{folder}: the TRAIN file is not a prefix of the TEST file")
    if labels[:train_end].any() or not labels.any():
        raise UserError(f"{folder}: expected labels only after the training prefix")
    where = np.flatnonzero(labels)
    if where[-1] - where[0] + 1 != where.size:
        raise UserError(f"{folder}: the labelled anomaly is not one contiguous interval")
    return AnomalySeries(name=f"KDD-TSAD/{stem}", values=values, labels=labels,
                         train_end=train_end, anomaly=(int(where[0]), int(where[-1])))
