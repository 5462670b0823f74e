"""The LSTM autoencoder: a window in, a feature vector in the middle, the window back out.

    x (B, T, C) --encoder LSTM--> h_T (B, H) --linear--> z (B, Z)     the feature vector
    z --linear/tanh--> decoder initial h (layers, B, H), c = 0
    decoder LSTM --linear--> x' (B, T, C)

Options (Srivastava et al. 2015, "Unsupervised learning of video representations using LSTMs";
Malhotra et al. 2016, "LSTM-based encoder-decoder for multi-sensor anomaly detection"):
- reverse_target: the decoder rebuilds the window last step first (x_T, ..., x_1), so the
  first thing it must produce is what the encoder saw last (short dependencies at the start).
  `forward` flips the output back: callers always get x' in the original order.
- decoder_input="latent": z is fed at every decoder step (an unconditioned decoder).
- decoder_input="teacher": the decoder gets the previous target value (zeros at the first
  step). Training feeds the TRUE previous values (teacher forcing); at inference (eval mode)
  the decoder feeds back ITS OWN previous outputs, as EncDec-AD does at test time, so the
  reconstruction never sees the values it rebuilds.
- regression (AER, Wong et al. 2022, "AER: Auto-Encoder with Regression for Time Series
  Anomaly Detection"): the decoder runs T + 2 steps and its first and last outputs predict the
  point just BEFORE and just AFTER the window (backward and forward regression), the T steps in
  between rebuild the window. `forward_regression` returns the three parts; `forward` returns
  the reconstruction only, so reconstruction callers need not care. Latent decoder input only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seqlab.nn import LSTM

DECODER_INPUTS = ("latent", "teacher")
EMBEDDINGS = ("latent", "states", "pooled")  # what `embed` returns, see its docstring


@dataclass
class AutoencoderConfig:
    n_features: int                 # C, channels of the series
    hidden_size: int = 64           # H, both LSTMs
    latent_size: int = 32           # Z, the feature vector
    num_layers: int = 1
    dropout: float = 0.0            # between LSTM layers and on z during training
    reverse_target: bool = True
    decoder_input: str = "latent"   # "latent" or "teacher"
    regression: bool = False        # AER: also predict the points before and after the window

    def __post_init__(self) -> None:
        if self.decoder_input not in DECODER_INPUTS:
            raise ValueError(f"decoder_input: expected one of {DECODER_INPUTS}, "
                             f"got {self.decoder_input!r}")
        for name in ("n_features", "hidden_size", "latent_size", "num_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected 0 <= dropout < 1, got {self.dropout}")
        if self.regression and self.decoder_input != "latent":
            raise ValueError("regression: needs decoder_input='latent' (the decoder's two extra "
                             "steps have no previous target to be fed)")


class LSTMAutoencoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.cfg = cfg
        C, H, Z, L = cfg.n_features, cfg.hidden_size, cfg.latent_size, cfg.num_layers
        inter = cfg.dropout if L > 1 else 0.0  # torch warns about dropout with one layer
        self.encoder = LSTM(C, H, num_layers=L, batch_first=True, dropout=inter)
        self.to_latent = nn.Linear(H, Z)
        self.latent_to_state = nn.Linear(Z, L * H)
        dec_in = Z if cfg.decoder_input == "latent" else C
        self.decoder = LSTM(dec_in, H, num_layers=L, batch_first=True, dropout=inter)
        self.readout = nn.Linear(H, C)
        self.latent_dropout = nn.Dropout(cfg.dropout)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) -> z: (B, Z), the feature vector of each window."""
        _, (h_n, _) = self.encoder(x)           # h_n: (L, B, H)
        return self.to_latent(h_n[-1])          # (B, Z)

    def embed(self, x: torch.Tensor, kind: str = "latent") -> torch.Tensor:
        """x: (B, T, C) -> a feature vector per window, for classification or plots.

        kind="latent": z (B, Z), the autoencoder's bottleneck (`encode`).
        kind="states": the encoder's final h and c of every layer, (B, 2 * L * H) (TimeNet,
        Malhotra et al. 2017, concatenates the final states of all layers).
        kind="pooled": mean and max over time of the top encoder layer's hidden states,
        (B, 2 * H): every step contributes, not only the last one, so a shape early in a long
        window is not washed out by the time the encoder reaches its end.
        """
        if kind == "latent":
            return self.encode(x)
        if kind not in EMBEDDINGS:
            raise ValueError(f"embedding: expected one of {EMBEDDINGS}, got {kind!r}")
        out, (h_n, c_n) = self.encoder(x)       # (B, T, H), (L, B, H) each
        if kind == "states":
            return torch.cat([h_n, c_n]).transpose(0, 1).reshape(x.shape[0], -1)
        return torch.cat([out.mean(dim=1), out.amax(dim=1)], dim=1)      # (B, 2H)

    def _initial_state(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, L, H = z.shape[0], self.cfg.num_layers, self.cfg.hidden_size
        h0 = torch.tanh(self.latent_to_state(z)).view(B, L, H).transpose(0, 1).contiguous()
        return h0, torch.zeros_like(h0)         # (L, B, H) each

    def decode(self, z: torch.Tensor, steps: int, target: torch.Tensor | None = None
               ) -> torch.Tensor:
        """Rebuild a window from z, in decoder order (reversed when `reverse_target`).

        z: (B, Z); steps: T; target: (B, T, C) in decoder order, for teacher forcing only
        (decoder_input="teacher" and training). Returns (B, T, C) in decoder order.
        """
        state = self._initial_state(z)
        if self.cfg.decoder_input == "latent":
            inp = z.unsqueeze(1).expand(-1, steps, -1)                   # (B, T, Z)
            out, _ = self.decoder(inp, state)                            # (B, T, H)
            return self.readout(out)                                     # (B, T, C)
        B, C = z.shape[0], self.cfg.n_features
        start = z.new_zeros(B, 1, C)
        if target is not None:  # teacher forcing: all steps in one LSTM call
            inp = torch.cat([start, target[:, :-1]], dim=1)             # (B, T, C)
            out, _ = self.decoder(inp, state)
            return self.readout(out)
        # Free running: each step's input is the previous step's output.
        prev, outs = start, []
        for _ in range(steps):
            out, state = self.decoder(prev, state)                       # (B, 1, H)
            prev = self.readout(out)                                     # (B, 1, C)
            outs.append(prev)
        return torch.cat(outs, dim=1)                                    # (B, T, C)

    def forward_regression(self, x: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """AER's three outputs. x: (B, T, C) -> (x_prev' (B, C), x' (B, T, C), x_next' (B, C),
        z (B, Z)): the predicted point before the window, the reconstruction (original order),
        the predicted point after it, and the feature vector. Needs `regression`."""
        if not self.cfg.regression:
            raise ValueError("forward_regression: the model was built with regression=False")
        z = self.encode(x)
        y = self.decode(self.latent_dropout(z), x.shape[1] + 2)         # (B, T + 2, C)
        if self.cfg.reverse_target:
            y = y.flip(1)
        return y[:, 0], y[:, 1:-1], y[:, -1], z

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, T, C) -> (x' (B, T, C) in the original order, z (B, Z))."""
        if self.cfg.regression:
            _, recon, _, z = self.forward_regression(x)
            return recon, z
        T = x.shape[1]
        z = self.encode(x)
        target = x.flip(1) if self.cfg.reverse_target else x
        teacher = target if (self.training and self.cfg.decoder_input == "teacher") else None
        y = self.decode(self.latent_dropout(z), T, teacher)
        if self.cfg.reverse_target:
            y = y.flip(1)
        return y, z


def autoencoder_loss(model: LSTMAutoencoder, xb: torch.Tensor, regression: float) -> torch.Tensor:
    """The training objective on a batch. Plain: MSE of the reconstruction, xb (B, T, C).
    AER (regression = ratio r > 0): xb (B, T + 2, C), the window plus one point either side;
    (1 - r) * MSE(reconstruction of xb[:, 1:-1]) + r / 2 * (MSE(backward prediction of xb[:, 0])
    + MSE(forward prediction of xb[:, -1])), AER's weighting."""
    mse = nn.functional.mse_loss
    if not regression:
        recon, _ = model(xb)                                                  # (B, T, C)
        return mse(recon, xb)
    prev, recon, nxt, _ = model.forward_regression(xb[:, 1:-1])
    return (1.0 - regression) * mse(recon, xb[:, 1:-1]) \
        + 0.5 * regression * (mse(prev, xb[:, 0]) + mse(nxt, xb[:, -1]))
