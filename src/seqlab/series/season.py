"""The daily profile: what each time of day usually looks like, learned from normal data.

A window of 64 five-minute points (5h20) cannot tell a missing daytime plateau from a night: both
are a flat low stretch. Subtracting each point's usual value at its time of day (the mean of the
training data at that time of day) leaves a residual in which such an anomaly is a large
deviation, while the ordinary daily cycle is close to zero. `SeriesAutoencoder(season=...)`
feeds the model this residual and adds the profile back to its reconstructions.

Times of day come from the series' timestamps (slot = minutes since midnight / sampling step),
so gaps and missing points do not shift the phase. "auto" keeps the profile of a column only
where it predicts: the profile of the first training day must explain at least `min_r2` of the
second day's variance (out of sample: the first day alone builds it); series without a daily
cycle, or without usable timestamps, are left as they are. "auto" is `SeriesAutoencoder`'s
default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from seqlab.errors import UserError

SEASONS = ("daily", "auto")
MIN_R2 = 0.5
DAY_MIN = 1440.0


@dataclass
class DailyProfile:
    """step_minutes: the sampling step; profile: (P, C) the usual value per time-of-day slot
    (P = points per day), zero for inactive columns; active: (C,) which columns use it;
    r2: (C,) the day-2-from-day-1 R^2 of each column (None where not measured)."""

    step_minutes: float
    profile: np.ndarray
    active: list[bool]
    r2: list[float | None]

    @property
    def per_day(self) -> int:
        return len(self.profile)

    @property
    def any_active(self) -> bool:
        return any(self.active)

    def slots(self, timestamps: np.ndarray) -> np.ndarray:
        """(N,) datetime64 -> (N,) time-of-day slot in [0, P)."""
        return _slots(timestamps, self.step_minutes, self.per_day)

    def values(self, timestamps: np.ndarray) -> np.ndarray:
        """(N,) timestamps -> (N, C) the profile at each point (zero for inactive columns)."""
        times = as_datetimes(timestamps)
        assert times is not None                  # only None in, None out
        return self.profile[self.slots(times)]

    @classmethod
    def fit(cls, timestamps: np.ndarray | None, values: np.ndarray, mode: str, source: str,
            min_r2: float = MIN_R2) -> DailyProfile:
        """Learn the profile of (N, C) `values` at `timestamps`.

        mode "daily": use it on every column (an error when it cannot be learned: no
        timestamps, an irregular step, or less than two days of data); "auto": only on the
        columns where it predicts (see the module docstring), and on none when it cannot be
        learned."""
        if mode not in SEASONS:
            raise ValueError(f"season: expected None or one of {SEASONS}, got {mode!r}")
        timestamps = as_datetimes(timestamps)
        C = values.shape[1]
        why = unusable(timestamps)
        step, per_day = 0.0, 0
        if why is None:
            assert timestamps is not None
            step = step_minutes(timestamps)
            per_day = int(round(DAY_MIN / step))
            if per_day < 4 or abs(per_day * step - DAY_MIN) > 1e-6 * DAY_MIN:
                why = f"a sampling step of {step:g} minutes does not divide a day into >= 4 slots"
            elif _days(timestamps) < 2.0:
                why = (f"the data covers {_days(timestamps):.2f} days; the profile needs at "
                       "least two (one to build it, one to check it)")
        if why is not None:
            if mode == "daily":
                raise UserError(f"{source}: season='daily': {why}")
            return cls(step_minutes=max(step, 1.0), profile=np.zeros((max(per_day, 1), C)),
                       active=[False] * C, r2=[None] * C)
        assert timestamps is not None
        slot = _slots(timestamps, step, per_day)
        day = (timestamps - timestamps[0]).astype("timedelta64[s]").astype(np.float64) / 86400.0
        first, second = day < 1.0, (day >= 1.0) & (day < 2.0)
        full = _profile(slot, values, per_day)                               # (P, C)
        check = _profile(slot[first], values[first], per_day)                # (P, C)
        resid = values[second] - check[slot[second]]                         # (n2, C)
        var = np.var(values[second], axis=0)
        r2 = [float(1.0 - np.var(resid[:, j]) / var[j]) if var[j] > 0 else None
              for j in range(C)]
        active = [mode == "daily" or (r is not None and r >= min_r2) for r in r2]
        full[:, ~np.asarray(active)] = 0.0
        return cls(step_minutes=step, profile=full, active=active, r2=r2)

    def to_dict(self) -> dict[str, Any]:
        return {"step_minutes": self.step_minutes, "profile": self.profile.tolist(),
                "active": self.active, "r2": self.r2}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DailyProfile:
        return cls(step_minutes=float(d["step_minutes"]),
                   profile=np.asarray(d["profile"], dtype=np.float64),
                   active=[bool(a) for a in d["active"]], r2=list(d["r2"]))


def as_datetimes(t: np.ndarray | None) -> np.ndarray | None:
    """datetime64 timestamps as they are; time-zone-aware ones (an object array of pandas
    Timestamps) as their local wall-clock times, which is what a time of day means; anything
    else unchanged (and then reported as unusable)."""
    if t is None or np.asarray(t).dtype != object:
        return t
    try:
        ts = pd.to_datetime(pd.Series(t))
    except (ValueError, TypeError):
        return t
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_localize(None)
    return ts.to_numpy() if np.issubdtype(ts.dtype, np.datetime64) else t


def unusable(timestamps: np.ndarray | None) -> str | None:
    """Why these timestamps cannot give times of day, or None when they can."""
    if timestamps is None:
        return "needs timestamps (a timestamp column, or a DataFrame with a DatetimeIndex)"
    if not np.issubdtype(np.asarray(timestamps).dtype, np.datetime64):
        return "needs date-time timestamps, not numbers"
    if np.isnat(timestamps).any():
        return "some timestamps are missing"
    return None


def step_minutes(t: np.ndarray) -> float:
    """The typical sampling step in minutes (median of the positive steps: gaps and repeated
    times, e.g. at daylight-saving changes, do not move it)."""
    steps = np.diff(t).astype("timedelta64[s]").astype(np.float64) / 60.0
    steps = steps[steps > 0]
    return float(np.median(steps)) if len(steps) else 0.0


def _days(t: np.ndarray) -> float:
    return float((t[-1] - t[0]).astype("timedelta64[s]").astype(np.float64)) / 86400.0


def _slots(t: np.ndarray, step: float, per_day: int) -> np.ndarray:
    if unusable(t) is not None:
        raise UserError(f"season: the model removes a daily profile, so the data {unusable(t)}")
    minutes = (t - t.astype("datetime64[D]")).astype("timedelta64[s]").astype(np.float64) / 60.0
    return np.floor(minutes / step + 0.5).astype(np.int64) % per_day


def _profile(slot: np.ndarray, values: np.ndarray, per_day: int) -> np.ndarray:
    """(N,) slots, (N, C) values -> (P, C): the mean per slot, slots without data interpolated
    from their neighbours (circularly), then smoothed over about 15 minutes either side so that
    two or three days of data give a steady profile."""
    counts = np.bincount(slot, minlength=per_day)                            # (P,)
    have = np.flatnonzero(counts > 0)
    k = max(1, per_day // 96)
    kernel = np.ones(2 * k + 1) / (2 * k + 1)
    out = np.empty((per_day, values.shape[1]))
    for j in range(values.shape[1]):
        sums = np.bincount(slot, weights=values[:, j], minlength=per_day)
        prof = np.interp(np.arange(per_day), have, sums[have] / counts[have], period=per_day)
        out[:, j] = np.convolve(np.concatenate([prof[-k:], prof, prof[:k]]), kernel, "valid")
    return out
