"""Property-based fuzzing of the input readers: random bytes and random structure give either a
valid result or a one-line `UserError`, never another exception (a traceback for the user)."""

from __future__ import annotations

import io
import itertools
import string
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from seqlab.caption.data import load_image, read_caption_tsv
from seqlab.errors import UserError
from seqlab.gates.sequence import read_csv_column
from seqlab.series.io import read_series_csv
from seqlab.translate.data import read_aligned, read_tsv

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

# text made of the characters that matter to the formats, plus anything else
FORMAT_CHARS = st.sampled_from(list(",\t\n\r\"' ;#") + ["nan", "inf", "-", "1e308", "\xe9",
                                                       "2024-01-01", "\x00", "\ufeff"])
STRUCTURED = st.lists(st.one_of(FORMAT_CHARS, st.text(string.printable, max_size=4),
                                st.integers(-5, 5).map(str)), max_size=60).map("".join)
BYTES = st.one_of(st.binary(max_size=300), STRUCTURED.map(lambda s: s.encode("utf-8")))


_TMP = tempfile.TemporaryDirectory(prefix="seqlab-fuzz-")   # removed at exit
_COUNT = itertools.count()


def _file(data: bytes, name: str) -> Path:
    d = Path(_TMP.name) / str(next(_COUNT))
    d.mkdir()
    path = d / name
    path.write_bytes(data)
    return path


def _user_error_or_result(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except UserError as err:
        assert "\n" not in str(err), str(err)
        return None


@FUZZ
@given(BYTES)
def test_tsv_reader(data):
    pt = _user_error_or_result(read_tsv, _file(data, "pairs.tsv"))
    if pt is not None:
        assert len(pt.src) == len(pt.tgt)


@FUZZ
@given(BYTES, BYTES)
def test_aligned_text_reader(src, tgt):
    path = _file(src, "a.en")
    (path.parent / "a.fr").write_bytes(tgt)
    pt = _user_error_or_result(read_aligned, path, path.parent / "a.fr")
    if pt is not None:
        assert len(pt.src) == len(pt.tgt)


@FUZZ
@given(BYTES, st.sampled_from(["auto", None]))
def test_series_csv_reader(data, timestamp):
    sd = _user_error_or_result(read_series_csv, _file(data, "s.csv"), timestamp=timestamp)
    if sd is not None:
        assert sd.values.ndim == 2 and sd.values.shape[1] == len(sd.columns) >= 1
        assert sd.values.dtype == np.float64


@FUZZ
@given(st.lists(st.lists(st.one_of(st.floats(allow_nan=True), st.integers(-3, 3),
                                   st.sampled_from(["", "x", "2024-01-01 00:00:00", "nan"])),
                         min_size=2, max_size=2), min_size=1, max_size=20))
def test_series_csv_reader_random_cells(rows):
    text = "time,a\n" + "".join(f"{r[0]},{r[1]}\n" for r in rows)
    sd = _user_error_or_result(read_series_csv, _file(text.encode(), "s.csv"))
    if sd is not None:
        assert len(sd.values) == len(rows)


@FUZZ
@given(BYTES)
def test_gates_csv_reader(data):
    _user_error_or_result(read_csv_column, _file(data, "g.csv"), "a")


@FUZZ
@given(BYTES)
def test_caption_tsv_reader(data):
    ds = _user_error_or_result(read_caption_tsv, _file(data, "captions.tsv"), image_size=8)
    if ds is not None:
        assert len(ds.items) >= 1


def _png(w: int, h: int, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h)).save(buf, format="PNG")
    return buf.getvalue()


@FUZZ
@given(st.one_of(st.binary(max_size=400),
                 st.tuples(st.integers(1, 40), st.integers(1, 40),
                           st.sampled_from(["RGB", "RGBA", "L", "P", "1", "I;16", "LA"]),
                           st.integers(0, 400), st.binary(max_size=16))
                 .map(lambda t: (_png(t[0], t[1], t[2])[: t[3]] + t[4]) if t[3] else
                      _png(t[0], t[1], t[2]))))
def test_image_reader(data):
    arr = _user_error_or_result(load_image, _file(data, "img.png"), 16)
    if arr is not None:
        assert arr.shape == (16, 16, 3) and arr.dtype == np.uint8
