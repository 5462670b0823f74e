"""Series input: CSV files, pandas DataFrames and NumPy arrays -> one validated float array.

A CSV holds one long series: an optional timestamp column and one or more numeric value columns.
Every check reports the file, the line (1-based, header = line 1) and the column, on one line.

Timestamp column (when `timestamp="auto"`): the first column whose non-empty cells are not
numbers but all parse as datetimes, or a column named timestamp/time/date/datetime (any case)
whose values never decrease. Value columns: `columns=` when given, else every other column.

Empty cells, "nan" and "inf" are *missing values*; what happens to them is the estimator's
`missing` policy (`windows.fill_missing`), so here they are kept as NaN/inf and counted.

Timestamps must increase from row to row: a row whose timestamp is not after the previous one's
is an error naming its line, unless `sort=True` (`--sort`), which sorts the rows by timestamp
(stably) and reports how many moved; a repeated timestamp stays an error. A series may hold at
most `seqlab.validate.MAX_SERIES_CELLS` values (rows x columns), checked before parsing.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from seqlab.errors import UserError
from seqlab.validate import MAX_SERIES_CELLS

TIMESTAMP_NAMES = ("timestamp", "time", "date", "datetime")


@dataclass
class SeriesData:
    """One series, ready for the estimator.

    values: (N, C) float64, may still contain NaN/inf (missing values).
    columns: the C value-column names.
    timestamps: (N,) timestamps (datetime64 or numbers) or None.
    source: where it came from ("data.csv", "DataFrame", "array"), used in error messages.
    line_numbers: (N,) file line of each row (CSV only), to name lines in later errors.
    """

    values: np.ndarray
    columns: list[str]
    timestamps: np.ndarray | None = None
    timestamp_name: str | None = None
    source: str = "array"
    line_numbers: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    rows_moved: int = 0          # rows that `sort=True` moved into timestamp order

    def location(self, row: int) -> str:
        """Human-readable place of row `row` (0-based): 'data.csv line 7' or 'array row 5'."""
        if self.line_numbers is not None:
            return f"{self.source} line {int(self.line_numbers[row])}"
        return f"{self.source} row {row}"


def parse_columns(spec: str | Sequence[str] | None) -> list[str] | None:
    """'a,b' or ['a', 'b'] -> ['a', 'b']; None/'' -> None (all numeric columns)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        names = [s.strip() for s in spec.split(",") if s.strip()]
        return names or None
    return [str(s) for s in spec] or None


def _check_utf8(path: Path) -> None:
    """The whole file must be UTF-8: a bad byte is an error naming its line."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line}: not valid UTF-8 (byte 0x{data[err.start]:02x}); "
                        "save the file as UTF-8") from None


def check_series_size(rows: int, columns: int, source: str) -> None:
    """The memory guard: at most MAX_SERIES_CELLS values in one series."""
    if rows * columns > MAX_SERIES_CELLS:
        raise UserError(f"{source}: {rows:,} rows x {columns} columns is more than the "
                        f"{MAX_SERIES_CELLS:,} values one series may hold; split the file or "
                        "select fewer --columns")


def _scan_csv(path: Path) -> tuple[list[str], np.ndarray]:
    """Check the CSV's shape with the csv module: header, no ragged rows. Returns the header and
    the physical line number of every data row (blank lines are skipped, as pandas does)."""
    _check_utf8(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header: list[str] | None = None
        lines: list[int] = []
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if header is None:
                header = [h.strip() for h in row]
                if len(set(header)) != len(header):
                    dup = next(h for h in header if header.count(h) > 1)
                    raise UserError(f"{path}: line {reader.line_num}: duplicate column "
                                    f"name {dup!r}")
                continue
            if len(row) != len(header):
                raise UserError(
                    f"{path}: line {reader.line_num}: expected {len(header)} fields "
                    f"(like the header), found {len(row)}")
            lines.append(reader.line_num)
    if header is None:
        raise UserError(f"{path}: empty file (expected a header line and data rows)")
    if not lines:
        raise UserError(f"{path}: no data rows after the header")
    return header, np.asarray(lines, dtype=np.int64)


def _to_numeric(col: pd.Series, name: str, where) -> np.ndarray:
    """One parsed column -> float64; a cell that is neither a number nor a missing-value token
    (empty, nan, NA, null, ...; pandas' defaults) is an error naming its line."""
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=np.float64)
    num = pd.to_numeric(col, errors="coerce")
    bad = (num.isna() & col.notna()).to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"{where(i)}: column {name!r}: not a number: {str(col.iloc[i])!r}")
    return num.to_numpy(dtype=np.float64)


def _parse_timestamps(col: pd.Series, name: str, where) -> np.ndarray:
    """The timestamp column -> datetime64 or float64 values; the first cell that is neither
    (or an empty one) is an error naming its line."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        num = col.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(num)
        if bad.any():
            i = int(np.argmax(bad))
            raise UserError(f"{where(i)}: timestamp column {name!r}: empty or not finite")
        return num
    parsed = _looks_like_timestamps(col)
    if parsed is not None and not pd.isna(parsed).any():
        return parsed
    if pd.to_numeric(col, errors="coerce").notna().mean() > 0.5:
        return _to_numeric(col, name, where)       # numbers, with a bad cell named
    dates = pd.to_datetime(col, errors="coerce", format="mixed")
    bad = dates.isna().to_numpy()
    i = int(np.argmax(bad))
    raise UserError(f"{where(i)}: timestamp column {name!r}: not a date/time: "
                    f"{'' if pd.isna(col.iloc[i]) else str(col.iloc[i])!r}")


def _check_order(ts: np.ndarray, name: str, where, sort: bool) -> np.ndarray | None:
    """Timestamps must increase. Returns the stable sorting permutation when `sort` (None when
    already in order); else an unordered row is an error naming its line."""
    step = np.diff(ts)
    zero = step.dtype.type(0)
    if (step > zero).all():
        return None
    if sort:
        order = np.argsort(ts, kind="stable")
        ts = ts[order]
        step = np.diff(ts)
        if (step > zero).all():
            return order
        i = int(np.argmax(~(step > zero))) + 1
        raise UserError(f"{where(int(order[i]))}: timestamp {ts[i]} appears more than once in "
                        f"column {name!r}; each row needs its own time")
    i = int(np.argmax(~(step > zero))) + 1
    what = "repeats" if step[i - 1] == zero else "is earlier than"
    raise UserError(f"{where(i)}: timestamp {ts[i]} {what} the previous row's ({ts[i - 1]}); "
                    f"timestamps in column {name!r} must increase (--sort sorts the rows)")


def _looks_like_timestamps(col: pd.Series) -> np.ndarray | None:
    """Datetime values if every non-empty cell of a non-numeric column parses as one."""
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return None
    cells = col.dropna()
    head = cells.iloc[:100]
    if head.empty or pd.to_numeric(head, errors="coerce").notna().all():
        return None
    try:
        pd.to_datetime(head, format="mixed")
    except (ValueError, TypeError, OverflowError):
        return None  # cheap rejection before parsing a long column
    for fmt in (None, "mixed"):  # None: one format inferred from the first cell (fast)
        try:
            return pd.to_datetime(col, format=fmt).to_numpy()
        except (ValueError, TypeError, OverflowError):
            continue
    return None


def _select(frame_cols: list[str], columns: list[str] | None, ts_name: str | None,
            source: str) -> list[str]:
    if columns is None:
        return [c for c in frame_cols if c != ts_name]
    missing = [c for c in columns if c not in frame_cols]
    if missing:
        raise UserError(f"{source}: unknown column {missing[0]!r}; available columns: "
                        f"{', '.join(c for c in frame_cols)}")
    if ts_name is not None and ts_name in columns:
        raise UserError(f"{source}: column {ts_name!r} is the timestamp column, not a value")
    return list(columns)


def read_series_csv(path: str | os.PathLike[str], columns: str | Sequence[str] | None = None,
                    timestamp: str | None = "auto",
                    extra_columns: Sequence[str] = (), sort: bool = False) -> SeriesData:
    """Read one series from a CSV file.

    path: CSV with a header line.
    columns: value columns ('a,b' or a list); None = every column except the timestamp.
    timestamp: a column name, "auto" (detect) or None (no timestamp column).
    extra_columns: columns to return as-is in `.extra` (e.g. a label column), parsed as numbers.
    sort: sort the rows by timestamp (else rows out of order are an error).
    Returns SeriesData with values (N, C).
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a CSV file")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file (expected a header line and data rows)")
    header, lines = _scan_csv(path)
    check_series_size(len(lines), len(header), str(path))
    # pandas' C parser gives numeric columns directly; a column with a bad cell comes back as
    # strings, and only that column is examined cell by cell to name the line.
    raw = pd.read_csv(path, skip_blank_lines=True, skipinitialspace=True, low_memory=False)
    raw.columns = [str(c).strip() for c in raw.columns]
    if len(raw) != len(lines):  # pandas and csv disagree only on exotic quoting
        raise UserError(f"{path}: could not parse the rows consistently; check quoting")

    def where(i: int) -> str:
        return f"{path}: line {int(lines[i])}"

    want = parse_columns(columns)
    ts_name: str | None = None
    ts_values: np.ndarray | None = None
    if timestamp not in (None, "auto"):
        if timestamp not in header:
            raise UserError(f"{path}: unknown timestamp column {timestamp!r}; available "
                            f"columns: {', '.join(header)}")
        ts_name = timestamp
    elif timestamp == "auto":
        for name in header:
            if want is not None and name in want:
                continue
            parsed = _looks_like_timestamps(raw[name])
            if parsed is not None:
                ts_name, ts_values = name, parsed
                break
            if name.lower() in TIMESTAMP_NAMES:
                col = raw[name]
                num = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
                if np.isfinite(num).all() and (np.diff(num) >= 0).all():
                    ts_name, ts_values = name, num
                    break
                if not pd.api.types.is_numeric_dtype(col) and pd.to_datetime(
                        col.dropna().iloc[:100], errors="coerce", format="mixed").notna().any():
                    # named like a timestamp and holding dates: a bad cell is named below
                    ts_name = name
                    break
    if ts_name is not None and ts_values is None:
        ts_values = _parse_timestamps(raw[ts_name], ts_name, where)

    extra_names = [c for c in extra_columns if c]
    for c in extra_names:
        if c not in header:
            raise UserError(f"{path}: unknown column {c!r}; available columns: {', '.join(header)}")
    value_cols = _select(header, want, ts_name, str(path))
    if want is None:
        value_cols = [c for c in value_cols if c not in extra_names]
    if not value_cols:
        raise UserError(f"{path}: no value columns (only the timestamp column {ts_name!r})")
    values = np.stack([_to_numeric(raw[c], c, where) for c in value_cols], axis=1)
    extra = {c: _to_numeric(raw[c], c, where) for c in extra_names}
    moved = 0
    if ts_values is not None and ts_name is not None:
        order = _check_order(ts_values, ts_name, where, sort)
        if order is not None:
            moved = int((order != np.arange(len(order))).sum())
            ts_values, values, lines = ts_values[order], values[order], lines[order]
            extra = {c: v[order] for c, v in extra.items()}
    return SeriesData(values=values, columns=value_cols, timestamps=ts_values,
                      timestamp_name=ts_name, source=str(path), line_numbers=lines, extra=extra,
                      rows_moved=moved)


def from_dataframe(df: pd.DataFrame, columns: str | Sequence[str] | None = None) -> SeriesData:
    """A DataFrame -> SeriesData: `columns` or every numeric column; a datetime column (or a
    DatetimeIndex) becomes the timestamps."""
    if len(df) == 0:
        raise UserError("DataFrame: empty (no rows)")
    check_series_size(len(df), len(df.columns), "DataFrame")
    df = df.copy()
    df.columns = [str(c) for c in df.columns]
    ts_name = next((c for c in df.columns if pd.api.types.is_datetime64_any_dtype(df[c])), None)
    timestamps = None
    if ts_name is not None:
        timestamps = df[ts_name].to_numpy()
    elif isinstance(df.index, pd.DatetimeIndex):
        timestamps = df.index.to_numpy()
    want = parse_columns(columns)
    if want is None:
        cols = [c for c in df.columns
                if c != ts_name and pd.api.types.is_numeric_dtype(df[c])
                and not pd.api.types.is_bool_dtype(df[c])]
        if not cols:
            raise UserError("DataFrame: no numeric columns; available columns: "
                            + ", ".join(df.columns))
    else:
        cols = _select(list(df.columns), want, ts_name, "DataFrame")
    values = np.empty((len(df), len(cols)), dtype=np.float64)
    for j, c in enumerate(cols):
        col = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(col) & df[c].notna().to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise UserError(f"DataFrame row {i}: column {c!r}: not a number: {df[c].iloc[i]!r}")
        values[:, j] = col
    return SeriesData(values=values, columns=cols, timestamps=timestamps, timestamp_name=ts_name,
                      source="DataFrame")


def from_array(x: np.ndarray) -> SeriesData:
    """(N,) or (N, C) numeric array -> SeriesData with columns '0', '1', ..."""
    arr = np.asarray(x)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"X: expected a (N,) or (N, C) series, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"X: expected a numeric array, got dtype {arr.dtype}")
    if arr.shape[0] == 0:
        raise UserError("array: empty series (no rows)")
    check_series_size(arr.shape[0], arr.shape[1], "array")
    return SeriesData(values=arr.astype(np.float64), columns=[str(j) for j in range(arr.shape[1])],
                      source="array")


def as_series(X, columns: str | Sequence[str] | None = None) -> SeriesData:
    """Any accepted series input (SeriesData, DataFrame, Series, array, CSV path) -> SeriesData."""
    if isinstance(X, SeriesData):
        return X
    if isinstance(X, (str, os.PathLike)):
        return read_series_csv(X, columns=columns)
    if isinstance(X, pd.Series):
        return from_dataframe(X.to_frame(name=str(X.name) if X.name is not None else "0"), columns)
    if isinstance(X, pd.DataFrame):
        return from_dataframe(X, columns)
    return from_array(X)
