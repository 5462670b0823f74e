"""NAB's score (seqlab.series.nab) on hand-computed cases: the values below are worked out from
the paper's formulas with math.exp, independently of the module's code path."""

import math

import numpy as np
import pytest

from seqlab.series.nab import (
    PROFILES,
    event_onsets,
    probation_length,
    scaled_sigmoid,
    score_corpus,
    score_series,
)

N = 400                      # probation: floor(0.15 * 400) = 60 points
WINDOW = (200, 239)          # width 40


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def det(*points: int, n: int = N) -> np.ndarray:
    d = np.zeros(n, dtype=bool)
    d[list(points)] = True
    return d


def test_scaled_sigmoid_landmarks():
    assert scaled_sigmoid(-1.0) == pytest.approx(2 * sig(5) - 1)       # 0.98661
    assert scaled_sigmoid(-0.5) == pytest.approx(2 * sig(2.5) - 1)
    assert scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert scaled_sigmoid(1.0) == pytest.approx(2 * sig(-5) - 1)
    assert scaled_sigmoid(3.0) == -1.0 and scaled_sigmoid(10.0) == -1.0


def test_probation_length():
    assert probation_length(400) == 60
    assert probation_length(100_000) == 750      # capped at 0.15 * 5000


def test_detection_at_window_start_is_worth_tp_weight():
    r = score_series(det(200), [WINDOW])
    assert r.score == pytest.approx(1.0) and (r.tp, r.fn, r.fp) == (1, 0, 0)


def test_detection_at_window_right_end():
    r = score_series(det(239), [WINDOW])
    # position -(239 - 239 + 1) / 40 = -1/40, divided by the window start's value
    want = (2 * sig(5 / 40) - 1) / (2 * sig(5) - 1)
    assert r.score == pytest.approx(want) and 0 < r.score < 0.07


def test_only_the_earliest_detection_in_a_window_counts():
    both = score_series(det(220, 239), [WINDOW]).score
    assert both == pytest.approx(score_series(det(220), [WINDOW]).score)
    assert both == pytest.approx((2 * sig(5 * 20 / 40) - 1) / (2 * sig(5) - 1))


def test_false_positive_just_after_a_window_costs_little():
    r = score_series(det(200, 240), [WINDOW])
    fp = 0.11 * (2 * sig(-5 * 1 / 39) - 1)       # (240 - 239) / (40 - 1) widths past the end
    assert r.score == pytest.approx(1.0 + fp) and r.fp == 1
    assert -0.11 < fp < -0.005
    far = score_series(det(200, 239 + 3 * 39), [WINDOW])
    assert far.score == pytest.approx(1.0 - 0.11)   # 3 widths past: the full fpWeight


def test_false_positive_before_any_window_and_probation_ignored():
    r = score_series(det(100), [WINDOW])
    assert r.score == pytest.approx(-1.0 - 0.11) and r.fp == 1 and r.fn == 1
    early = score_series(det(10), [WINDOW])         # inside the probation: not scored
    assert early.score == pytest.approx(-1.0) and early.fp == 0


def test_null_and_perfect_normalisation_and_profiles():
    windows = [[(200, 239)], [(100, 119), (300, 339)]]
    null = score_corpus([(np.zeros(N, bool), w) for w in windows])
    perfect = score_corpus([(event_onsets([(a, b) for a, b in w], N), w) for w in windows])
    for name in PROFILES:
        assert null[name]["score"] == pytest.approx(0.0)
        assert perfect[name]["score"] == pytest.approx(100.0)
    assert null["standard"]["raw"] == pytest.approx(-3.0)
    assert null["reward_low_FN_rate"]["raw"] == pytest.approx(-6.0)   # fnWeight 2
    # One window found at its start, the others missed, one far false positive.
    d = [det(200, 30 + 60), np.zeros(N, bool)]
    s = score_corpus(list(zip(d, windows, strict=True)))
    for name, fp_w, fn_w in (("standard", 0.11, 1.0), ("reward_low_FP_rate", 0.22, 1.0),
                             ("reward_low_FN_rate", 0.11, 2.0)):
        raw = 1.0 - fp_w - 2 * fn_w
        assert s[name]["raw"] == pytest.approx(raw)
        assert s[name]["score"] == pytest.approx(100 * (raw + 3 * fn_w) / (3 + 3 * fn_w))


def test_event_onsets_and_bad_windows():
    assert np.flatnonzero(event_onsets([(5, 9), (20, 20)], 30)).tolist() == [5, 20]
    with pytest.raises(ValueError, match="windows"):
        score_series(det(1), [(350, 450)])
