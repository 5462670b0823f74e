"""ONNX export of the series autoencoder: onnxruntime scores equal PyTorch's within 1e-4 relative
(plain, AER regression, teacher-forced two-layer), embeddings and reconstructions alike, the
CLI, stale exports and a missing onnxruntime."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from seqlab.cli import main
from seqlab.series.estimator import SeriesAutoencoder
from test_series_cli import FIT_FAST, _series_frame

needs_ort = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="the optional extra seqlab[onnx] is not installed")

VARIANTS = {"plain": ["--regression", "0", "--season", "none", "--log-scale", "none"],
            "aer": ["--regression", "0.5", "--threshold", "sigma_max"],
            "teacher": ["--decoder-input", "teacher", "--num-layers", "2", "--no-reverse"]}


def _run(*args):
    return CliRunner().invoke(main, ["series", *map(str, args)])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx_series")
    _series_frame(400).to_csv(d / "train.csv", index=False)
    # 700 points: more windows than one inference batch (512), so the batch axis varies
    _series_frame(700, seed=1, spike=350).to_csv(d / "test.csv", index=False)
    for name, extra in VARIANTS.items():
        r = _run("fit", d / "train.csv", "--columns", "a,b", "--out", d / name, *FIT_FAST,
                 *extra)
        assert r.exit_code == 0, r.output
    return d


@needs_ort
@pytest.mark.parametrize("name", list(VARIANTS))
def test_scores_embeddings_and_reconstructions_match_pytorch(runs, name, one_thread):
    r = _run("export", runs / name)
    assert r.exit_code == 0, r.output
    manifest = json.loads((runs / name / "onnx" / "manifest.json").read_text())
    assert manifest["kind"] == "series-autoencoder" and manifest["window"] == 16
    assert manifest["outputs"][:2] == ["recon", "latent"]
    pt = SeriesAutoencoder.load(runs / name)
    ox = SeriesAutoencoder.load(runs / name, backend="onnx")
    data = str(runs / "test.csv")
    s_pt, s_ox = pt.score_samples(data), ox.score_samples(data)
    assert s_pt.shape == (700,) and np.ptp(s_pt) > 0
    np.testing.assert_allclose(s_ox, s_pt, rtol=1e-4)
    np.testing.assert_allclose(ox.score_samples(data, level="window"),
                               pt.score_samples(data, level="window"), rtol=1e-4)
    np.testing.assert_allclose(ox.reconstruct(data), pt.reconstruct(data), rtol=1e-4,
                               atol=1e-5)
    assert ox.detect_events(data, scores=s_ox) == pt.detect_events(data, scores=s_pt)
    for kind in ("latent", "states", "pooled"):
        pt.embedding = ox.embedding = kind
        np.testing.assert_allclose(ox.transform(data), pt.transform(data), atol=1e-5)
    # samples (n, T, C) go through the same graph, one window each; batch of 1 too
    x = np.random.default_rng(0).standard_normal((3, 16, 2))
    if name != "aer":
        np.testing.assert_allclose(ox.score_samples(x), pt.score_samples(x), rtol=1e-4)
        np.testing.assert_allclose(ox.score_samples(x[:1]), pt.score_samples(x[:1]),
                                   rtol=1e-4)
    with pytest.raises(ValueError, match=r"expected \(B, 16, 2\) windows"):
        ox.model_(torch.zeros(1, 8, 2))


@needs_ort
def test_cli_score_with_the_onnx_backend(runs, tmp_path):
    assert _run("export", runs / "plain").exit_code == 0
    for backend in ("torch", "onnx"):
        r = _run("score", runs / "plain", runs / "test.csv", "-o", tmp_path / f"{backend}.csv",
                 "--events", tmp_path / f"{backend}-events.csv", "--backend", backend)
        assert r.exit_code == 0, r.output
    a, b = pd.read_csv(tmp_path / "torch.csv"), pd.read_csv(tmp_path / "onnx.csv")
    np.testing.assert_allclose(b["score"], a["score"], rtol=1e-4)
    assert (a["is_anomaly"] == b["is_anomaly"]).all()
    r = _run("embed", runs / "plain", runs / "test.csv", "-o", tmp_path / "emb.csv",
             "--backend", "onnx")
    assert r.exit_code == 0, r.output


@needs_ort
def test_missing_or_stale_exports_are_refused(runs, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs / "plain", run, ignore=shutil.ignore_patterns("onnx"))
    out = tmp_path / "s.csv"
    r = _run("score", run, runs / "test.csv", "-o", out, "--backend", "onnx")
    assert r.exit_code == 2 and f"seqlab series export {run}" in r.output
    assert r.output.count("\n") == 1 and not out.exists()
    assert _run("export", run).exit_code == 0
    est = SeriesAutoencoder.load(run)
    est.model_.readout.bias.data += 1.0
    est.save(run)                                   # new weights: the export is stale
    r = _run("score", run, runs / "test.csv", "-o", out, "--backend", "onnx")
    assert r.exit_code == 2 and "exported from other weights" in r.output
    assert not out.exists()


def test_missing_onnxruntime_is_one_line_and_exit_2(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)   # `import onnxruntime` fails
    for args in (["export", runs / "plain"],
                 ["score", runs / "plain", runs / "test.csv", "-o", tmp_path / "s.csv",
                  "--backend", "onnx"]):
        r = _run(*args)
        assert r.exit_code == 2, r.output
        assert r.output.count("\n") == 1 and "pip install 'seqlab[onnx]'" in r.output
    assert not (tmp_path / "s.csv").exists()
