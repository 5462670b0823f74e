"""LSTMAutoencoder: shapes, reversed targets, teacher forcing vs free running, seqlab's LSTM."""

from __future__ import annotations

import pytest
import torch

from seqlab.nn import LSTM
from seqlab.series.model import AutoencoderConfig, LSTMAutoencoder


def _model(**kw) -> LSTMAutoencoder:
    torch.manual_seed(0)
    return LSTMAutoencoder(AutoencoderConfig(n_features=3, hidden_size=8, latent_size=4, **kw))


@pytest.mark.parametrize("decoder_input", ["latent", "teacher"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_shapes_and_seqlab_lstm(decoder_input, num_layers):
    m = _model(decoder_input=decoder_input, num_layers=num_layers, dropout=0.1)
    assert isinstance(m.encoder, LSTM) and isinstance(m.decoder, LSTM)
    x = torch.randn(5, 11, 3)                                       # (B, T, C)
    for mode in (m.train, m.eval):
        mode()
        recon, z = m(x)
        assert recon.shape == (5, 11, 3) and z.shape == (5, 4)
    assert m.encode(x).shape == (5, 4)


def test_reverse_target_returns_the_original_order():
    m = _model(reverse_target=True).eval()
    x = torch.randn(2, 7, 3)
    with torch.no_grad():
        recon, z = m(x)
        # the decoder produces the last step first; forward flips it back
        raw = m.decode(z, 7)
    torch.testing.assert_close(recon, raw.flip(1))
    m2 = _model(reverse_target=False).eval()
    with torch.no_grad():
        recon2, z2 = m2(x)
        torch.testing.assert_close(recon2, m2.decode(z2, 7))


def test_teacher_decoder_feeds_true_values_in_training_and_its_own_at_inference():
    m = _model(decoder_input="teacher", reverse_target=False)
    x = torch.randn(2, 6, 3)
    with torch.no_grad():
        m.train()
        forced, z = m(x)
        manual_forced = m.decode(z, 6, target=x)
        torch.testing.assert_close(forced, manual_forced)
        m.eval()
        free, z = m(x)
        # free running, built by hand: each step's input is the previous output
        state = m._initial_state(z)
        prev, outs = torch.zeros(2, 1, 3), []
        for _ in range(6):
            out, state = m.decoder(prev, state)
            prev = m.readout(out)
            outs.append(prev)
        torch.testing.assert_close(free, torch.cat(outs, 1))
    assert not torch.allclose(forced, free)


def test_bad_config():
    with pytest.raises(ValueError, match="decoder_input"):
        AutoencoderConfig(n_features=1, decoder_input="nope")
    with pytest.raises(ValueError, match="dropout"):
        AutoencoderConfig(n_features=1, dropout=1.5)
