"""CSV/DataFrame/array input: timestamp detection, column selection, one-line errors that name
the file, the line and the column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqlab.errors import UserError
from seqlab.series.io import as_series, from_array, from_dataframe, read_series_csv


def _csv(tmp_path, text, name="data.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_csv_with_datetime_timestamp_and_column_selection(tmp_path):
    p = _csv(tmp_path, "when,a,b,c\n2024-01-01 00:00,1,2,3\n2024-01-01 00:05,4,5,6\n\n"
                       "2024-01-01 00:10,7,8,9\n")
    d = read_series_csv(p)
    assert d.timestamp_name == "when" and d.columns == ["a", "b", "c"]
    assert d.values.shape == (3, 3)
    assert np.issubdtype(d.timestamps.dtype, np.datetime64)
    assert d.line_numbers.tolist() == [2, 3, 5]                     # blank line 4 skipped
    d2 = read_series_csv(p, columns="c,a")
    assert d2.columns == ["c", "a"]
    np.testing.assert_array_equal(d2.values[:, 0], [3, 6, 9])


def test_numeric_timestamp_column_by_name_and_no_timestamp(tmp_path):
    p = _csv(tmp_path, "timestamp,value\n0,1.5\n1,2.5\n2,0.5\n")
    d = read_series_csv(p)
    assert d.timestamp_name == "timestamp" and d.columns == ["value"]
    d = read_series_csv(p, timestamp=None)
    assert d.timestamps is None and d.columns == ["timestamp", "value"]


def test_missing_cells_are_kept_as_nan(tmp_path):
    p = _csv(tmp_path, "a,b\n1,\n2,nan\n3,inf\n")
    d = read_series_csv(p)
    assert np.isnan(d.values[0, 1]) and np.isnan(d.values[1, 1]) and np.isinf(d.values[2, 1])


@pytest.mark.parametrize("text, match", [
    ("", "empty file"),
    ("a,b\n", "no data rows"),
    ("a,b\n1,2\n3,4,5\n", "line 3: expected 2 fields"),
    ("a,b\n1,2\n3\n", "line 3: expected 2 fields"),
    ("a,b\n1,2\n3,x7\n", "line 3: column 'b': not a number: 'x7'"),
    ("a,a\n1,2\n", "duplicate column name 'a'"),
])
def test_bad_csv_errors_name_file_and_line(tmp_path, text, match):
    p = _csv(tmp_path, text)
    with pytest.raises(UserError, match=match) as err:
        read_series_csv(p)
    assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_unknown_column_lists_the_available_ones(tmp_path):
    p = _csv(tmp_path, "t,a,b\n1,2,3\n")
    with pytest.raises(UserError, match="unknown column 'z'; available columns: t, a, b"):
        read_series_csv(p, columns="a,z")
    with pytest.raises(UserError, match="no such file"):
        read_series_csv(tmp_path / "absent.csv")


def test_dataframe_and_array_inputs():
    df = pd.DataFrame({"t": pd.date_range("2024", periods=4, freq="D"), "x": [1.0, 2, 3, 4],
                       "label": ["1", "b", "a", "b"], "y": [1, 2, 3, 5]})
    d = from_dataframe(df)
    assert d.columns == ["x", "y"] and d.timestamp_name == "t"      # numeric columns only
    with pytest.raises(UserError, match="unknown column 'q'"):
        from_dataframe(df, columns=["q"])
    with pytest.raises(UserError, match="DataFrame row 1: column 'label': not a number"):
        from_dataframe(df, columns=["x", "label"])
    a = from_array(np.arange(6.0))
    assert a.values.shape == (6, 1) and a.columns == ["0"]
    with pytest.raises(ValueError, match="expected a \\(N,\\) or \\(N, C\\) series"):
        from_array(np.zeros((2, 2, 2, 2)))
    assert as_series(pd.Series([1.0, 2.0], name="v")).columns == ["v"]
