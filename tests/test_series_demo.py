"""The README demo on KDD-TSAD_135 (files shipped in aeon 1.6.0), shortened to 2 epochs."""

from __future__ import annotations

import importlib.util
import json

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("aeon") is None,
                                reason="aeon not installed: pip install --no-deps aeon==1.6.0")


def test_series_demo_runs_and_writes_its_outputs(tmp_path):
    from seqlab.series.demo import run_series_demo

    summary = run_series_demo(tmp_path, epochs=2)
    details = json.loads((tmp_path / "series_kdd_tsad_135.json").read_text())
    assert details["train_points"] == 1200 and details["labelled_anomaly"] == [4187, 4198]
    assert "LABELLED" not in details["threshold_source"]            # threshold without labels
    for e in details["events"]:                                       # only the scored part
        assert 1200 <= e["start"] <= e["end"] < 7501
    assert 0.0 <= summary["point_roc_auc"] <= 1.0
    for key in ("plot", "window_plot"):
        with open(summary[key], "rb") as f:
            assert f.read(4) == b"\x89PNG"
    # every event is named: the labelled anomaly (overlapping the label) or a false alarm
    a0, a1 = details["labelled_anomaly"]
    for e in details["events"]:
        hit = e["start"] <= a1 and a0 <= e["end"]
        assert e["kind"] == ("anomaly" if hit else "false alarm")

    from seqlab.series.demo import describe_series_demo

    text = describe_series_demo(summary)
    n_false = sum(e["kind"] == "false alarm" for e in details["events"])
    assert f"{n_false} of them false alarm(s)" in "\n".join(text)
    assert sum(line.endswith("-> false alarm") for line in text) == n_false
    assert any(line.startswith(summary["plot"]) for line in text)
