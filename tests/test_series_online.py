"""Streaming: OnlineScorer against the batch detector, partial_fit, and `seqlab series watch`
through a real subprocess (stdin, a growing file, bad rows mid-stream)."""

import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from seqlab.series.estimator import SeriesAutoencoder
from seqlab.series.online import OnlineScorer

N = 1600
BUMP = slice(1000, 1025)


def _series(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.sin(2 * np.pi * np.arange(N) / 40) + 0.05 * rng.standard_normal(N)
    x[BUMP] += 2.5
    return x


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    x = _series()
    est = SeriesAutoencoder(window=16, hidden_size=12, latent_size=6, epochs=3, prune=0.0,
                            num_threads=1).fit(pd.DataFrame({"value": x[:600]}))
    run = tmp_path_factory.mktemp("watch") / "run"
    est.save(run)
    return est, x, run


def _closes(events):
    return [(e.start, e.end) for e in events if e.kind == "close"]


@pytest.mark.parametrize("chunk", [1, 37, N])
def test_online_events_equal_batch_events(fitted, chunk):
    est, x, _ = fitted
    scores = est.score_samples(x)
    batch = est.detect_events(x, scores=scores)          # prune=0: what streams
    scorer = OnlineScorer(est)
    events = []
    for i in range(0, N, chunk):
        events += scorer.update(x[i:i + chunk])
    events += scorer.close()
    got = _closes(events)
    # Same windows, same arithmetic up to float32 batch-size rounding in the model: event
    # boundaries can only move where a score is within rounding of the threshold.
    if got != batch:
        near = np.abs(scores - est.threshold_) < 1e-4 * max(1.0, abs(est.threshold_))
        moved = {p for a, b in zip(got, batch, strict=False) for p in (*a, *b)} - \
            {p for ev in set(got) & set(batch) for p in ev}
        assert len(got) == len(batch) and all(near[max(p - 1, 0):p + 2].any() for p in moved)
    assert any(a <= BUMP.start + 16 and b >= BUMP.start for a, b in got)
    opens = [e.start for e in events if e.kind == "open"]
    assert opens == [a for a, _ in got]                  # every event opened, then closed
    assert scorer.n_seen == N


def test_online_refuses_bad_points_and_samples(fitted):
    est, x, _ = fitted
    scorer = OnlineScorer(est)
    scorer.update(x[:10])
    with pytest.raises(ValueError, match="point 12 is not a finite number"):
        scorer.update(np.array([0.1, 0.2, np.nan]))
    with pytest.raises(ValueError, match="shape"):
        scorer.update(np.zeros((3, 2)))


def test_partial_fit_deterministic_and_learns_new_level(fitted):
    est, x, _ = fitted
    shifted = x[:600] + 1.5                               # a level the model never saw
    a = SeriesAutoencoder(**est.get_params()).fit(x[:600])
    before = a.score_samples(shifted).mean() / a.threshold_
    b = SeriesAutoencoder(**est.get_params()).fit(x[:600])
    a.partial_fit(shifted, epochs=3)
    b.partial_fit(shifted, epochs=3)
    for (k, va), vb in zip(a.model_.state_dict().items(), b.model_.state_dict().values(),
                           strict=True):
        assert np.array_equal(va.numpy(), vb.numpy()), k   # same seed, same state: same weights
    after = a.score_samples(shifted).mean() / a.threshold_
    assert after < 0.7 * before
    assert "partial_fit" in a.threshold_source_
    fresh = SeriesAutoencoder(window=16, hidden_size=8, latent_size=4, epochs=1)
    assert fresh.partial_fit(x[:300]) is fresh and hasattr(fresh, "model_")  # unfitted: fit


def test_walk_forward_refit_runs_and_is_deterministic(fitted):
    est, x, _ = fitted
    runs = []
    for _ in range(2):
        e = SeriesAutoencoder(**est.get_params()).fit(x[:600])
        scorer = OnlineScorer(e, refit_every=400, refit_span=300, refit_epochs=1)
        events = scorer.update(x) + scorer.close()
        runs.append((scorer.refits, _closes(events), e.threshold_))
    assert runs[0][0] >= 2
    assert runs[0] == runs[1]


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


WATCH = [sys.executable, "-c", "from seqlab.cli import main; main()", "series", "watch"]


def _stream_csv(x: np.ndarray, bad_line: int | None = None) -> str:
    rows = ["timestamp,value"]
    t0 = pd.Timestamp("2024-01-01")
    for i, v in enumerate(x):
        value = "oops" if bad_line is not None and i + 2 == bad_line else f"{v:.6f}"
        rows.append(f"{t0 + pd.Timedelta(minutes=5 * i)},{value}")
    return "\n".join(rows) + "\n"


@pytest.mark.slow   # a real process: python and torch start-up
def test_watch_stdin_subprocess_with_bad_row(fitted, tmp_path):
    est, x, run = fitted
    out = tmp_path / "events.csv"
    proc = subprocess.run([*WATCH, str(run), "-", "--events-out", str(out)],
                          input=_stream_csv(x, bad_line=500), capture_output=True, text=True,
                          env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "stdin line 500: column 'value': 'oops' is not a finite number; skipped" \
        in proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{N - 1} points scored, 1 bad row(s) skipped" in proc.stderr
    ev = pd.read_csv(out)
    assert list(ev["event"][:2]) == ["open", "close"]
    assert "OPEN" in proc.stdout and "CLOSE" in proc.stdout
    # the bump (points shift by one after the skipped row)
    assert ((ev["start_index"] <= BUMP.start + 16) & (ev["start_index"] >= BUMP.start - 16)).any()


@pytest.mark.slow   # a real process that waits out its idle timeout
def test_watch_follows_a_growing_file(fitted, tmp_path):
    est, x, run = fitted
    feed, out = tmp_path / "feed.csv", tmp_path / "events.csv"
    text = _stream_csv(x).splitlines(keepends=True)
    feed.write_text("".join(text[:800]))                  # before the anomaly
    proc = subprocess.Popen([*WATCH, str(run), str(feed), "--follow", "--idle-timeout", "4",
                             "--events-out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    time.sleep(1.0)
    with open(feed, "a") as f:                            # the rest arrives later, in pieces
        for i in range(800, len(text), 200):
            f.write("".join(text[i:i + 200]))
            f.flush()
            time.sleep(0.3)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert f"{N} points scored" in stderr
    ev = pd.read_csv(out)
    assert (ev["event"] == "open").sum() == (ev["event"] == "close").sum() >= 1
    assert ((ev["start_index"] - BUMP.start).abs() <= 16).any()


def test_watch_header_without_model_columns_is_a_user_error(fitted):
    from click.testing import CliRunner

    from seqlab.cli import main

    _, _, run = fitted
    res = CliRunner().invoke(main, ["series", "watch", str(run), "-"],
                             input="timestamp,other\n1,2\n")
    assert res.exit_code == 2
    assert "stdin line 1: the model was trained on columns value" in res.output
    assert "Traceback" not in res.output
