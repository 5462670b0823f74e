"""`seqlab gates --model RUN`: a trained series autoencoder's encoder gates."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from seqlab.cli import main
from seqlab.series.estimator import SeriesAutoencoder


def _fit_run(tmp_path):
    t = np.arange(400)
    csv = tmp_path / "sine.csv"
    csv.write_text("temp\n" + "\n".join(f"{v:.5f}" for v in np.sin(t / 8.0)) + "\n")
    est = SeriesAutoencoder(window=16, hidden_size=8, latent_size=4, epochs=1, seed=0)
    est.fit(csv)
    run = tmp_path / "run"
    est.save(run)
    return est, run, csv


def test_series_model_gates_picture_and_values(tmp_path):
    est, run, csv = _fit_run(tmp_path)
    out = tmp_path / "g.png"
    res = CliRunner().invoke(main, ["gates", "--model", str(run), "--csv", str(csv),
                                    "--start", "100", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The drawn gates are the encoder's own: h at the last step equals a direct run.
    gates, values = est.encoder_gates(csv, 100)
    assert gates.h.shape == (1, 1, 1, 16, 8)
    np.testing.assert_allclose(values[:, 0], np.sin(np.arange(100, 116) / 8.0), atol=1e-4)


def test_series_model_errors_are_one_line(tmp_path):
    _, run, csv = _fit_run(tmp_path)
    out = tmp_path / "g.png"
    cases = [
        (["--model", str(run), "--text", "abc"], "give --csv FILE"),
        (["--model", str(run), "--csv", str(csv), "--start", "390"], "no full window"),
        (["--model", str(tmp_path / "nope"), "--text", "x"], "not a seqlab run directory"),
    ]
    for args, message in cases:
        res = CliRunner().invoke(main, ["gates", *args, "-o", str(out)])
        assert res.exit_code == 2, res.output
        assert message in res.output
        assert "Traceback" not in res.output
        assert not out.exists()


def test_run_kind_of_other_directories(tmp_path):
    import json

    import pytest

    from seqlab.errors import UserError
    from seqlab.runs import run_kind
    from seqlab.translate.train import FORMAT as TRANSLATE_FORMAT

    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"format": TRANSLATE_FORMAT}))
    assert run_kind(run) == "translator"
    (run / "config.json").write_text(json.dumps({"format": "something/9"}))
    with pytest.raises(UserError, match="'something/9' is not a seqlab run format"):
        run_kind(run)
    (run / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        run_kind(run)
    res = CliRunner().invoke(main, ["gates", "--model", str(run), "--text", "x", "-o",
                                    str(tmp_path / "g.png")])
    assert res.exit_code == 2 and "not valid JSON" in res.output
