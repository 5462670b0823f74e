"""The LSTM gate equations, one function per gate.

At time step t an LSTM layer reads the input x_t and its previous hidden state h_{t-1}, and
keeps a cell state C (its long-term memory). With [h_{t-1}, x_t] the two concatenated:

    forget gate     f_t  = sigmoid(W_f [h_{t-1}, x_t] + b_f)    how much of C_{t-1} to keep
    input gate      i_t  = sigmoid(W_i [h_{t-1}, x_t] + b_i)    how much new content to write
    cell update     C~_t = tanh(W_C [h_{t-1}, x_t] + b_C)       the new content (candidate)
    output gate     o_t  = sigmoid(W_o [h_{t-1}, x_t] + b_o)    how much of the cell to show
    cell state      C_t  = f_t * C_{t-1} + i_t * C~_t
    hidden state    h_t  = o_t * tanh(C_t)

As in torch.nn.LSTM, the four weight matrices are stacked row-wise in the order (i, f, g, o)
(g is torch's name for C~) and split into an input part and a recurrent part, so
`W_f [h_{t-1}, x_t] + b_f` is computed as `x_t @ W_ih[H:2H].T + b_ih[H:2H] + h_{t-1} @
W_hh[H:2H].T + b_hh[H:2H]`. `preactivations` computes all four at once (one matmul), and
`split_gates` cuts the result into the four gates' pre-activations z_i, z_f, z_g, z_o.

The gate functions take their pre-activation z (B, H) and accept `out=` so the sequence loop in
`seqlab.nn.lstm` can write straight into its preallocated recordings (no fresh tensor per gate
and step). `lstm_step` is the plain, autograd-differentiable step; the whole sequence the plain
way is `seqlab.nn.reference.lstm_reference`. `local_derivatives` holds
the derivatives of these equations that the loop's hand-written backward pass (BPTT) uses.
"""

from __future__ import annotations

import torch
from torch import Tensor

GATE_ORDER = ("i", "f", "g", "o")  # row blocks of weight_ih / weight_hh, as in torch.nn.LSTM


def preactivations(x: Tensor, h_prev: Tensor, w_ih: Tensor, w_hh: Tensor,
                   b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor:
    """All four gates' pre-activations W [h_{t-1}, x_t] + b, stacked as (i, f, g, o).

    x: (B, I), h_prev: (B, H), w_ih: (4H, I), w_hh: (4H, H), b_ih, b_hh: (4H,) or None.
    Returns (B, 4H).
    """
    z = x @ w_ih.t() + h_prev @ w_hh.t()
    if b_ih is not None:
        z = z + b_ih
    if b_hh is not None:
        z = z + b_hh
    return z


def split_gates(z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Cut (..., 4H) pre-activations into z_i, z_f, z_g, z_o, each (..., H) (views)."""
    z_i, z_f, z_g, z_o = z.chunk(4, dim=-1)
    return z_i, z_f, z_g, z_o


_CONSTANTS: dict[tuple[torch.dtype, torch.device], tuple[Tensor, Tensor]] = {}


def _minus_one_and_two(like: Tensor) -> tuple[Tensor, Tensor]:
    """Cached 0-dim -1 and 2 (a Python scalar would be wrapped into a tensor at every call)."""
    key = (like.dtype, like.device)
    if key not in _CONSTANTS:
        _CONSTANTS[key] = (torch.tensor(-1.0, dtype=like.dtype, device=like.device),
                           torch.tensor(2.0, dtype=like.dtype, device=like.device))
    return _CONSTANTS[key]


def fast_tanh(x: Tensor, out: Tensor | None = None) -> Tensor:
    """tanh(x), computed as 2 * sigmoid(2x) - 1 (the same function).

    An optimisation: on CPU builds of torch whose tanh kernel is much slower than their sigmoid
    kernel, one sigmoid plus two cheap element-wise ops beats tanh. It agrees with torch.tanh
    to ~2e-7 (float32) / ~4e-16 (float64); `seqlab.nn.reference.lstm_reference` and the tests
    check the gate loop that uses it against the plain equations.
    """
    minus_one, two = _minus_one_and_two(x)
    if out is None:  # out-of-place, so autograd can follow
        return torch.addcmul(minus_one, torch.sigmoid(x + x), two)
    torch.add(x, x, out=out)  # 2x, exactly
    torch.sigmoid(out, out=out)
    return torch.addcmul(minus_one, out, two, out=out)  # -1 + 2 * sigmoid(2x)


def forget_gate(z_f: Tensor, out: Tensor | None = None) -> Tensor:
    """The forget gate f_t = sigmoid(W_f [h_{t-1}, x_t] + b_f), in (0, 1).

    1 keeps the old cell state C_{t-1}, 0 erases it. z_f: (B, H) pre-activation.
    """
    return torch.sigmoid(z_f, out=out)


def input_gate(z_i: Tensor, out: Tensor | None = None) -> Tensor:
    """The input gate i_t = sigmoid(W_i [h_{t-1}, x_t] + b_i), in (0, 1).

    How much of the cell update C~_t is written into the cell. z_i: (B, H).
    """
    return torch.sigmoid(z_i, out=out)


def cell_update(z_g: Tensor, out: Tensor | None = None) -> Tensor:
    """The cell update (candidate) C~_t = tanh(W_C [h_{t-1}, x_t] + b_C), in (-1, 1).

    The new content proposed for the cell. z_g: (B, H) (torch calls this gate "g").
    """
    return fast_tanh(z_g, out=out)


def output_gate(z_o: Tensor, out: Tensor | None = None) -> Tensor:
    """The output gate o_t = sigmoid(W_o [h_{t-1}, x_t] + b_o), in (0, 1).

    How much of tanh(C_t) is exposed as the hidden state h_t. z_o: (B, H).
    """
    return torch.sigmoid(z_o, out=out)


def cell_state(f: Tensor, c_prev: Tensor, i: Tensor, g: Tensor,
               out: Tensor | None = None) -> Tensor:
    """The new cell state C_t = f_t * C_{t-1} + i_t * C~_t. All (B, H)."""
    return torch.mul(f, c_prev, out=out).addcmul_(i, g)


def hidden_state(o: Tensor, c: Tensor, out: Tensor | None = None,
                 tanh_c_out: Tensor | None = None) -> Tensor:
    """The new hidden state h_t = o_t * tanh(C_t). All (B, H).

    `tanh_c_out` optionally receives tanh(C_t), which the backward pass reuses.
    """
    return torch.mul(o, fast_tanh(c, out=tanh_c_out), out=out)


def lstm_step(x: Tensor, h_prev: Tensor, c_prev: Tensor, w_ih: Tensor, w_hh: Tensor,
              b_ih: Tensor | None, b_hh: Tensor | None
              ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor, Tensor]]:
    """One LSTM step from the equations above (differentiable by autograd).

    x: (B, I), h_prev, c_prev: (B, H). Returns h_t, C_t and the gates (i, f, g, o), all (B, H).
    """
    return lstm_update(preactivations(x, h_prev, w_ih, w_hh, b_ih, b_hh), c_prev)


def lstm_update(z: Tensor, c_prev: Tensor
                ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor, Tensor]]:
    """The gates and the new state from stacked pre-activations (differentiable by autograd).

    z: (B, 4H) in the order (i, f, g, o), c_prev: (B, H). Returns h_t, C_t and (i, f, g, o).
    Used by `lstm_step` and by decoders that compute their own pre-activations (e.g. with
    input feeding folded into one matmul).
    """
    z_i, z_f, z_g, z_o = split_gates(z)
    f = forget_gate(z_f)
    i = input_gate(z_i)
    g = cell_update(z_g)
    o = output_gate(z_o)
    c = f * c_prev + i * g  # cell_state() without its in-place add, so autograd can follow
    h = o * fast_tanh(c)
    return h, c, (i, f, g, o)


def local_derivatives(i: Tensor, f: Tensor, g: Tensor, o: Tensor, c_prev: Tensor,
                      tanh_c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Derivatives of one step's equations, for backpropagation through time.

    All arguments (..., H); returns (P, Q, K) with P: (..., 3, H), Q, K: (..., H) such that,
    with dh = dL/dh_t and dC = dL/dC_t (the latter including the path through h_t):

        dC  = dC_from_later + dh * K                 K = o * (1 - tanh(C_t)^2)
        dz_i, dz_f, dz_g = dC * P[0], dC * P[1], dC * P[2]
              P = (C~ * i(1-i),  C_{t-1} * f(1-f),  i * (1 - C~^2))
        dz_o = dh * Q                                Q = tanh(C_t) * o(1-o)
        dC_{t-1} = dC * f,   dh_{t-1} = dz @ W_hh,   dx_t = dz @ W_ih
    """
    P = torch.stack((g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g)), dim=-2)
    Q = tanh_c * o * (1 - o)
    K = o * (1 - tanh_c * tanh_c)
    return P, Q, K
