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
    scorer = RecordingScorer(est)
    events = []
    for i in range(0, N, chunk):
        events += scorer.update(x[i:i + chunk])
    events += scorer.close()
    streamed = np.array([scorer.scores[p] for p in range(N)])
    np.testing.assert_allclose(streamed, scores, rtol=1e-4, atol=1e-4 * np.abs(scores).max())
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


@pytest.fixture(scope="module")
def fitted_aer():
    """An AER regression model with scoring windows every 4 points (not every point), so the
    stride-1 regression windows and the scoring windows differ."""
    x = _series()
    est = SeriesAutoencoder(window=16, hidden_size=12, latent_size=6, epochs=2, prune=0.0,
                            regression=0.5, score_stride=4, num_threads=1
                            ).fit(pd.DataFrame({"value": x[:600]}))
    return est, x


class RecordingScorer(OnlineScorer):
    """The real scorer, keeping each point's score as it is finalised."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scores: dict[int, float] = {}

    def _events(self, pts, scores):
        for p, sc in zip(pts.tolist(), scores.tolist(), strict=True):
            assert p not in self.scores                  # every point scored once
            self.scores[p] = sc
        return super()._events(pts, scores)


def _feed(scorer, x, chunks):
    events, i = [], 0
    for n in chunks:
        events += scorer.update(x[i:i + n])
        i += n
    assert i == len(x)
    return events + scorer.close()


def _uneven(n: int, seed: int = 1) -> list[int]:
    rng = np.random.default_rng(seed)
    sizes = []
    while sum(sizes) < n:
        sizes.append(int(rng.choice([1, 2, 3, 7, 19, 40, 250])))
    sizes[-1] -= sum(sizes) - n
    return [c for c in sizes if c]


@pytest.mark.parametrize(("chunking", "batch_windows"),
                         [("whole", 1), ("point", 1), ("uneven", 1), ("point", 3),
                          ("uneven", 5)])
def test_online_regression_model_equals_batch(fitted_aer, chunking, batch_windows):
    est, x = fitted_aer
    n = len(x)
    chunks = {"whole": [n], "point": [1] * n, "uneven": _uneven(n)}[chunking]
    scores = est.score_samples(x)
    batch = est.detect_events(x, scores=scores)          # prune=0: what streams
    scorer = RecordingScorer(est, batch_windows=batch_windows)
    events = _feed(scorer, x, chunks)
    got = np.array([scorer.scores[p] for p in range(n)])
    # the batch's per-point scores, (recon, regression) channels in its order, up to the
    # float32 rounding of different model batch sizes
    np.testing.assert_allclose(got, scores, rtol=1e-4, atol=1e-4 * np.abs(scores).max())
    closes = _closes(events)
    if closes != batch:     # only where a score is within rounding of the threshold
        near = np.abs(scores - est.threshold_) < 1e-3 * max(1.0, abs(est.threshold_))
        moved = {p for a, b in zip(closes, batch, strict=False) for p in (*a, *b)} - \
            {p for ev in set(closes) & set(batch) for p in ev}
        assert len(closes) == len(batch) and all(near[max(p - 1, 0):p + 2].any()
                                                 for p in moved)
    assert any(a <= BUMP.start + 16 and b >= BUMP.start for a, b in closes)
    assert [e.start for e in events if e.kind == "open"] == [a for a, _ in closes]


@pytest.mark.parametrize("batch_windows", [1, 2])
def test_online_regression_latency_bound(fitted_aer, batch_windows):
    """Fed point by point, a point is scored at most window + batch_windows * stride - 1
    points after it arrives (its backward window [p+1, p+window] must have run)."""
    est, x = fitted_aer
    scorer = OnlineScorer(est, batch_windows=batch_windows)
    bound = est.window + batch_windows * est.effective_score_stride - 1
    lags = []
    for v in x[:400]:
        scorer.update([v])
        lags.append(scorer.n_seen - scorer.n_final)
    assert max(lags) == bound                            # reached, never exceeded
    # never early: the last scored point's backward window (the window points after it) ran
    assert min(lags[100:]) == est.window


@pytest.fixture(scope="module")
def fitted_aer_2ch():
    rng = np.random.default_rng(3)
    t = np.arange(400)
    x = np.stack([np.sin(t / 5), np.cos(t / 9)], axis=1) + 0.05 * rng.standard_normal((400, 2))
    est = SeriesAutoencoder(window=8, hidden_size=8, latent_size=4, epochs=2, prune=0.0,
                            regression=0.5, num_threads=1).fit(x)
    return est, x


@pytest.mark.parametrize("n", [8, 9, 12, 15, 16, 17, 18, 40])
def test_online_regression_short_streams_equal_batch(fitted_aer_2ch, n):
    """Streams around 2 window + 1 points: the points no regression window reaches take their
    nearest neighbour's error, as the batch's (window 8, two channels)."""
    est, x = fitted_aer_2ch
    xs = x[200:200 + n].copy()
    xs[n // 2] += 2.0
    scores = est.score_samples(xs)
    for chunks in ([n], [1] * n):
        scorer = RecordingScorer(est)
        _feed(scorer, xs, chunks)
        got = np.array([scorer.scores[p] for p in range(n)])
        np.testing.assert_allclose(got, scores, rtol=1e-4, atol=1e-4 * np.abs(scores).max())


def test_walk_forward_refit_with_regression_model(fitted_aer):
    est, x = fitted_aer
    runs = []
    for _ in range(2):
        e = SeriesAutoencoder(**est.get_params()).fit(x[:600])
        scorer = RecordingScorer(e, refit_every=400, refit_span=120, refit_epochs=1)
        events = scorer.update(x) + scorer.close()
        assert sorted(scorer.scores) == list(range(len(x)))
        runs.append((scorer.refits, _closes(events), e.threshold_))
    assert runs[0][0] >= 3
    assert runs[0] == runs[1]


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


def test_watch_streams_a_regression_model(fitted_aer, tmp_path):
    from click.testing import CliRunner

    from seqlab.cli import main

    est, x = fitted_aer
    run, out = est.save(tmp_path / "aer"), tmp_path / "events.csv"
    res = CliRunner().invoke(main, ["series", "watch", str(run), "-", "--events-out", str(out)],
                             input=_stream_csv(x))
    assert res.exit_code == 0, res.output
    ev = pd.read_csv(out)
    closes = ev[ev["event"] == "close"]
    assert (ev["event"] == "open").sum() == len(closes) >= 1
    assert ((closes["start_index"] <= BUMP.start + 16) & (closes["end_index"] >= BUMP.start)).any()
