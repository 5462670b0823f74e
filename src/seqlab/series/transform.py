"""A log-like value transform for heavy-tailed columns (bytes, counts, request rates).

Operational metrics are often non-negative with rare bursts orders of magnitude above the usual
level: in raw units a burst twice as tall as any seen in training is a huge reconstruction error,
and the ordinary variation near zero is invisible. On a log scale both are judged relative to
the level. The transform is

    y = asinh(x / s),   x = s * sinh(y)

with s a low level of the column, the 10th percentile of its non-zero training magnitudes:
y ~ x / s near zero and y ~ log(2 x / s) for x >> s, so it behaves as log(x) on nearly all the
non-zero values (the usual log(x + c) with a small c), stays defined (and
invertible) for zero and for negative values met at scoring time, and is scale-free (a column in
bytes and the same column in megabytes give the same y up to a constant).

Modes (`SeriesAutoencoder(log_scale=...)`, `seqlab series fit --log-scale`):
- None (`--log-scale none`): no transform;
- "all": every column;
- "auto" (the default): the columns whose training values are all >= 0 and right-skewed
  (sample skewness > `AUTO_SKEW`, a heavy right tail; a symmetric or bounded metric such as
  a temperature or a steady CPU percentage stays linear).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import skew

LOG_SCALES = ("auto", "all")
LEVEL_QUANTILE = 0.1  # s: this quantile of the non-zero |x|, where the curve turns logarithmic
AUTO_SKEW = 2.0  # sample skewness above which a non-negative column counts as heavy-tailed


@dataclass
class ValueTransform:
    """Per-column asinh(x / s) transform, fitted on training data and saved with the model.

    log: (C,) bool, which columns are transformed; scale: (C,) float64, s for each column
    (1.0 where not transformed).
    """

    log: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, mode: str) -> ValueTransform:
        """x: (N, C) finite training values; mode: "auto" or "all" (see the module docstring)."""
        if mode not in LOG_SCALES:
            raise ValueError(f"log_scale: expected None or one of {', '.join(LOG_SCALES)}, "
                             f"got {mode!r}")
        C = x.shape[1]
        log = np.zeros(C, dtype=bool)
        scale = np.ones(C, dtype=np.float64)
        for j in range(C):
            col = x[:, j].astype(np.float64)
            if mode == "auto" and not (col.min() >= 0 and col.std() > 0
                                       and skew(col) > AUTO_SKEW):
                continue
            pos = np.abs(col[col != 0])
            log[j] = True
            scale[j] = float(np.quantile(pos, LEVEL_QUANTILE)) if len(pos) else 1.0
        return cls(log=log, scale=scale)

    @property
    def any(self) -> bool:
        return bool(self.log.any())

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(..., C) original units -> (..., C) transformed, float64."""
        x = np.asarray(x, dtype=np.float64)
        if not self.any:
            return x
        return np.where(self.log, np.arcsinh(x / self.scale), x)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        """(..., C) transformed -> (..., C) original units, float64."""
        y = np.asarray(y, dtype=np.float64)
        if not self.any:
            return y
        return np.where(self.log, np.sinh(y) * self.scale, y)

    def to_dict(self) -> dict:
        return {"log": self.log.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> ValueTransform:
        return cls(log=np.asarray(d["log"], dtype=bool),
                   scale=np.asarray(d["scale"], dtype=np.float64))
