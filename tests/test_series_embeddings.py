"""SeriesAutoencoder embeddings (`embedding=`): what each kind is made of, its shape for series
and sample sets, persistence, bad values, and pooled features that classify held-out samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from seqlab.series import SeriesAutoencoder

SMALL = dict(window=16, hidden_size=12, latent_size=5, num_layers=2, epochs=2, batch_size=32,
             seed=0, num_threads=1, threshold="quantile")


def _two_class(n: int, T: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, T, 1) noisy bumps at a random place; class 1 has a small dip just before its bump,
    so the class lives in a few early-or-late steps, as in GunPoint."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    t = np.arange(T)
    X = np.empty((n, T, 1))
    for i in range(n):
        c = rng.uniform(12, T - 8)
        s = np.exp(-0.5 * ((t - c) / 3.0) ** 2)
        if y[i]:
            s = s - 0.6 * np.exp(-0.5 * ((t - c + 7) / 1.5) ** 2)
        X[i, :, 0] = s + 0.05 * rng.standard_normal(T)
    return X, y


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    x = np.sin(np.arange(300) / 4)[:, None] + 0.05 * rng.standard_normal((300, 2))  # (N, 2)
    return SeriesAutoencoder(**SMALL).fit(x), x


def test_embedding_kinds_are_the_encoder_states(fitted):
    est, x = fitted
    n_win = len(est.window_starts(len(x)))
    H, L = est.hidden_size, est.num_layers
    z = est.transform(x)
    assert z.shape == (n_win, est.latent_size)          # the default is unchanged: the latent
    first = torch.from_numpy(est.scaler_.transform(x[:est.window]))[None]    # (1, T, C)
    with torch.no_grad():
        out, (h, c) = est.model_.encoder(first)          # (1, T, H), (L, 1, H)
        np.testing.assert_allclose(z[0], est.model_.encode(first)[0].numpy(), atol=1e-6)
    try:
        est.set_params(embedding="states")
        s = est.transform(x)
        assert s.shape == (n_win, 2 * L * H)
        np.testing.assert_allclose(s[0], torch.cat([h, c]).flatten().numpy(), atol=1e-6)
        est.set_params(embedding="pooled")
        p = est.transform(x)
        assert p.shape == (n_win, 2 * H)
        np.testing.assert_allclose(p[0, :H], out[0].mean(0).numpy(), atol=1e-6)
        np.testing.assert_allclose(p[0, H:], out[0].max(0).values.numpy(), atol=1e-6)
        assert not np.allclose(p[0], p[-1])               # windows differ, so do their features
    finally:
        est.set_params(embedding="latent")


def test_embedding_saved_and_loaded(fitted, tmp_path):
    est, x = fitted
    est.set_params(embedding="pooled")
    try:
        est.save(tmp_path / "run")
        back = SeriesAutoencoder.load(tmp_path / "run")
        assert back.embedding == "pooled"
        np.testing.assert_array_equal(back.transform(x), est.transform(x))
    finally:
        est.set_params(embedding="latent")


def test_bad_embedding_is_a_one_line_error(fitted):
    est, x = fitted
    with pytest.raises(ValueError, match="embedding: expected one of"):
        SeriesAutoencoder(**dict(SMALL, embedding="mean")).fit(x)
    est.set_params(embedding="last")
    try:
        with pytest.raises(ValueError, match="embedding: expected one of"):
            est.transform(x)
    finally:
        est.set_params(embedding="latent")


@pytest.mark.cpu_sensitive
def test_pooled_embeddings_classify_held_out_samples():
    X, y = _two_class(160, seed=0)
    X_tr, y_tr, X_te, y_te = X[:80], y[:80], X[80:], y[80:]
    est = SeriesAutoencoder(window=40, hidden_size=16, latent_size=8, epochs=30, batch_size=16,
                            lr=3e-3, seed=0, num_threads=1, embedding="pooled").fit(X_tr)
    Z_tr, Z_te = est.transform(X_tr), est.transform(X_te)        # labels never seen by fit
    assert Z_tr.shape == (80, 32) and Z_te.shape == (80, 32)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(Z_tr, y_tr)
    assert clf.score(Z_te, y_te) >= 0.85                   # chance is ~0.5
