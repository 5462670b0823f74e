"""The sigma_max threshold: max(mean + 4 std, highest normal score)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqlab.series.estimator import SeriesAutoencoder
from seqlab.series.scoring import sigma_max_threshold, sigma_threshold


def test_light_tails_keep_mean_plus_4_std_heavy_tails_take_the_maximum():
    rng = np.random.default_rng(0)
    light = rng.standard_normal(500)              # max ~ mean + 3 std
    assert sigma_max_threshold(light) == sigma_threshold(light) > light.max()
    recurring = light.copy()
    recurring[::100] = 40.0                       # a normal pattern, 1% of the points
    assert sigma_threshold(recurring) < 40.0      # mean + 4 std cuts through it
    assert sigma_max_threshold(recurring) == 40.0


@pytest.mark.cpu_sensitive
def test_estimator_sigma_max_never_flags_its_normal_data():
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    t = np.arange(900)
    x = np.sin(2 * np.pi * t / 30) + 0.05 * rng.standard_normal(len(t))
    x[75:450:150] += 4.0                          # a spike every 150 points: normal
    est = SeriesAutoencoder(window=16, hidden_size=8, latent_size=4, epochs=3, seed=0,
                            threshold="sigma", num_threads=1).fit(x[:450])
    normal = est.score_samples(x[:450])
    sigma = est.threshold_
    assert sigma == pytest.approx(normal.mean() + 4 * normal.std())
    est.set_params(threshold="sigma_max").fit_threshold(x[:450])
    assert est.threshold_ == pytest.approx(max(sigma, normal.max()))
    assert not est.predict(x[:450]).any()
    assert "highest score" in est.threshold_source_
