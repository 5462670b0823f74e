"""AER-style regression (Wong et al. 2022): the autoencoder also predicts the points just before
and after each window; the regression errors join the reconstruction errors in the score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqlab.series.estimator import SeriesAutoencoder
from seqlab.series.model import AutoencoderConfig, LSTMAutoencoder, autoencoder_loss
from seqlab.series.reconstruction import WindowRunner


def _model(**kw) -> LSTMAutoencoder:
    torch.manual_seed(0)
    return LSTMAutoencoder(AutoencoderConfig(n_features=2, hidden_size=8, latent_size=4,
                                             regression=True, **kw))


@pytest.mark.parametrize("reverse_target", [True, False])
def test_forward_regression_parts(reverse_target):
    m = _model(reverse_target=reverse_target).eval()
    x = torch.randn(3, 9, 2)                                        # (B, T, C)
    with torch.no_grad():
        prev, recon, nxt, z = m.forward_regression(x)
        assert prev.shape == (3, 2) and nxt.shape == (3, 2) and recon.shape == (3, 9, 2)
        # the decoder runs T + 2 steps; its ends are the predictions, in the original order
        raw = m.decode(z, 11)
        raw = raw.flip(1) if reverse_target else raw
        torch.testing.assert_close(prev, raw[:, 0])
        torch.testing.assert_close(nxt, raw[:, -1])
        # forward() gives the same reconstruction, so reconstruction callers are unaffected
        torch.testing.assert_close(m(x)[0], recon)


def test_regression_needs_the_latent_decoder_and_a_regression_model():
    with pytest.raises(ValueError, match="regression"):
        AutoencoderConfig(n_features=1, regression=True, decoder_input="teacher")
    plain = LSTMAutoencoder(AutoencoderConfig(n_features=1, hidden_size=4, latent_size=2))
    with pytest.raises(ValueError, match="regression=False"):
        plain.forward_regression(torch.zeros(1, 5, 1))


def test_loss_weights_reconstruction_and_both_predictions():
    m = _model().eval()
    xb = torch.randn(4, 12, 2)                                      # window 10 + one each side
    with torch.no_grad():
        prev, recon, nxt, _ = m.forward_regression(xb[:, 1:-1])
        mse = torch.nn.functional.mse_loss
        r = 0.3
        want = (1 - r) * mse(recon, xb[:, 1:-1]) + r / 2 * (mse(prev, xb[:, 0])
                                                           + mse(nxt, xb[:, -1]))
        torch.testing.assert_close(autoencoder_loss(m, xb, r), want)


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    t = np.arange(700)
    x = np.sin(2 * np.pi * t / 25) + 0.05 * rng.standard_normal(len(t))
    est = SeriesAutoencoder(window=16, hidden_size=16, latent_size=8, epochs=25, regression=0.5,
                            seed=0, num_threads=1)
    return est.fit(x[:400]), x


def test_regression_errors_come_from_the_neighbouring_windows(fitted):
    est, x = fitted
    x_scaled = est.scaler_.transform(x[:60, None])                  # (60, 1)
    reg = WindowRunner(est.model_, est.window).regression_errors(x_scaled)  # (60, 1)
    T = est.window
    win = torch.from_numpy(np.lib.stride_tricks.sliding_window_view(
        x_scaled[:, 0], T).astype(np.float32)[:, :, None].copy())   # (60 - T + 1, T, 1)
    with torch.no_grad():
        prev, _, nxt, _ = est.model_.forward_regression(win)
    for p in (0, 5, T, 30, 59):
        parts = []
        if p >= T:                   # the window [p - T, p - 1] predicts p forward
            parts.append(abs(x_scaled[p, 0] - float(nxt[p - T, 0])))
        if p + T <= 59:              # the window [p + 1, p + T] predicts p backward
            parts.append(abs(x_scaled[p, 0] - float(prev[p + 1, 0])))
        assert reg[p, 0] == pytest.approx(np.mean(parts), rel=1e-5, abs=1e-6)
    # the point errors carry the C regression channels after the C reconstruction channels
    errors = est.point_errors(x_scaled)
    assert errors.shape == (60, 2)
    np.testing.assert_allclose(errors[:, 1], reg[:, 0])


@pytest.mark.cpu_sensitive
def test_a_missing_cycle_is_flagged(fitted):
    est, x = fitted
    y = x.copy()
    y[520:545] = 0.0                                                # one period goes flat
    events = est.detect_events(y)
    assert any(s <= 545 and e >= 520 for s, e in events)
    # nothing in the normal stretch between the series' first windows and the anomaly
    assert not any(s <= 500 and e >= 2 * est.window for s, e in events)


def test_save_load_and_samples_are_refused(fitted, tmp_path):
    est, x = fitted
    est.save(tmp_path / "m")
    back = SeriesAutoencoder.load(tmp_path / "m")
    np.testing.assert_allclose(back.score_samples(x), est.score_samples(x), rtol=1e-6)
    assert back.score_samples(x, level="window").ndim == 1
    with pytest.raises(ValueError, match="samples"):
        est.score_samples(np.zeros((3, est.window, 1)))
    with pytest.raises(ValueError, match="series"):
        SeriesAutoencoder(window=8, regression=0.5).fit(np.zeros((5, 8, 1)))
    with pytest.raises(ValueError, match="regression"):
        SeriesAutoencoder(window=8, regression=1.0).fit(x)
