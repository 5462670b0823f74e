"""Reference implementations: the textbook formulas, written to be read rather than to be fast.

The fast paths beside them are optimised in ways that make them harder to read:

* `seqlab.nn.LSTM` runs torch's fused kernel, or (recording gates) a loop that writes into
  preallocated buffers, evaluates tanh through a sigmoid and has a hand-written backward pass;
* `seqlab.nn.AdditiveAttention` computes its scores in cache-sized blocks of a reused buffer,
  with a hand-written backward pass that recomputes tanh instead of storing it.

The functions here compute the same numbers the plain way: one step after the other with the
gate functions of `seqlab.nn.gates` (`lstm_reference`), the attention formulas in one line each
(`attention_scores_reference`, `additive_attention_reference`), and autograd for every
gradient. Tests compare the fast paths against them (float64 and float32); they are also the
place to start reading. They are slow (a Python loop over layers, directions and steps; the
full (B, Tq, S, A) additive tensor) and not meant for training.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor

from seqlab.nn.attention import (
    AdditiveAttention,
    Attention,
    DotAttention,
    GeneralAttention,
    ScaledDotAttention,
    UniformAttention,
)
from seqlab.nn.gates import lstm_step

__all__ = [
    "additive_attention_reference",
    "additive_scores_reference",
    "attention_reference",
    "attention_scores_reference",
    "lstm_reference",
    "masked_softmax_reference",
]

_FIELDS = ("f", "i", "g", "o", "c", "h")


class _LSTMWeights(Protocol):
    """What `lstm_reference` reads: torch.nn.LSTM's attributes and parameter names
    (`weight_ih_l0`, `bias_hh_l1_reverse`, ...), as `seqlab.nn.LSTM` and `torch.nn.LSTM` have."""

    num_layers: int
    hidden_size: int
    bidirectional: bool
    bias: bool


def lstm_reference(lstm: _LSTMWeights, x: Tensor, hx: tuple[Tensor, Tensor] | None = None,
                   lengths: Tensor | None = None
                   ) -> tuple[Tensor, tuple[Tensor, Tensor], dict[str, Tensor]]:
    """Run the weights of `lstm` over a sequence, step by step with `gates.lstm_step`.

    Args:
        lstm: a `seqlab.nn.LSTM` or `torch.nn.LSTM` (any num_layers, bidirectional, bias;
            no dropout: this is the evaluation-mode computation).
        x: (T, B, I), time first whatever `lstm.batch_first` says.
        hx: (h_0, c_0), each (L*D, B, H); None = zeros.
        lengths: (B,) real lengths; steps t >= lengths[b] are padding: the state is carried
            through them unchanged and the output there is 0. None = all T steps are real.

    Returns:
        output (T, B, D*H), (h_n, c_n) each (L*D, B, H), and the gates
        {"f", "i", "g", "o", "c", "h"}, each (L, D, B, T, H) in natural time order, NaN at
        padded steps (the layout of `LSTMGates`). Everything is differentiable by autograd.
    """
    T, B, _ = x.shape
    L, H = lstm.num_layers, lstm.hidden_size
    D = 2 if lstm.bidirectional else 1
    if hx is None:
        h0 = c0 = x.new_zeros(L * D, B, H)
    else:
        h0, c0 = hx
    real = torch.ones(T, B, dtype=torch.bool, device=x.device)  # (T, B)
    if lengths is not None:
        real = torch.arange(T, device=x.device)[:, None] < lengths.to(x.device)[None, :]
    layer_in = x
    h_n: list[Tensor] = []
    c_n: list[Tensor] = []
    gates: dict[str, list[Tensor]] = {k: [] for k in _FIELDS}  # (D, B, T, H) per layer
    for layer in range(L):
        outs = []
        layer_gates: dict[str, list[Tensor]] = {k: [] for k in _FIELDS}
        for direction in range(D):
            sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
            w_ih, w_hh = getattr(lstm, "weight_ih" + sfx), getattr(lstm, "weight_hh" + sfx)
            b_ih = getattr(lstm, "bias_ih" + sfx) if lstm.bias else None
            b_hh = getattr(lstm, "bias_hh" + sfx) if lstm.bias else None
            h, c = h0[layer * D + direction], c0[layer * D + direction]  # (B, H)
            out: list[Tensor] = [x.new_empty(0)] * T
            step_gates: dict[str, list[Tensor]] = {k: [x.new_empty(0)] * T for k in _FIELDS}
            for t in range(T - 1, -1, -1) if direction == 1 else range(T):
                h_t, c_t, (i, f, g, o) = lstm_step(layer_in[t], h, c, w_ih, w_hh, b_ih, b_hh)
                keep = real[t, :, None]  # (B, 1): padded rows keep their state
                h = torch.where(keep, h_t, h)
                c = torch.where(keep, c_t, c)
                out[t] = torch.where(keep, h_t, 0.0)
                for name, value in zip(_FIELDS, (f, i, g, o, c_t, h_t), strict=True):
                    step_gates[name][t] = torch.where(keep, value.detach(), math.nan)
            outs.append(torch.stack(out))  # (T, B, H)
            h_n.append(h)
            c_n.append(c)
            for name in _FIELDS:
                layer_gates[name].append(torch.stack(step_gates[name], dim=1))  # (B, T, H)
        layer_in = torch.cat(outs, dim=-1)  # (T, B, D*H)
        for name in _FIELDS:
            gates[name].append(torch.stack(layer_gates[name]))  # (D, B, T, H)
    record = {name: torch.stack(values) for name, values in gates.items()}  # (L, D, B, T, H)
    return layer_in, (torch.stack(h_n), torch.stack(c_n)), record


def masked_softmax_reference(scores: Tensor, mask: Tensor | None) -> Tensor:
    """softmax over the last dimension with masked-out (False) positions at exactly 0.

    scores (..., S), mask bool broadcastable to scores (None = all real)."""
    if mask is not None:
        scores = scores.masked_fill(~mask, -math.inf)
    return torch.softmax(scores, dim=-1)


def additive_attention_reference(query: Tensor, keys: Tensor, values: Tensor, W_q: Tensor,
                                 W_k: Tensor, v: Tensor, mask: Tensor | None = None
                                 ) -> tuple[Tensor, Tensor]:
    """Bahdanau attention from its formula, score(q, k_s) = v^T tanh(W_q q + W_k k_s).

    Args:
        query: (B, Tq, Dq); keys: (B, S, Dk); values: (B, S, Dv).
        W_q: (A, Dq), W_k: (A, Dk), v: (A,): `query_layer.weight`, `key_layer.weight` and
            `energy_layer.weight[0]` of an `AdditiveAttention`.
        mask: (B, S) or (B, Tq, S) bool, True = real position; None = all real.

    Returns:
        context (B, Tq, Dv) and weights (B, Tq, S).
    """
    return _attend(additive_scores_reference(query, keys, W_q, W_k, v), values, mask)


def additive_scores_reference(query: Tensor, keys: Tensor, W_q: Tensor, W_k: Tensor,
                              v: Tensor) -> Tensor:
    """score[b, t, s] = v^T tanh(W_q q[b, t] + W_k k[b, s]): query (B, Tq, Dq), keys
    (B, S, Dk), W_q (A, Dq), W_k (A, Dk), v (A,) -> (B, Tq, S), through the whole
    (B, Tq, S, A) tensor of energies."""
    energy = torch.tanh((query @ W_q.T)[:, :, None, :] + (keys @ W_k.T)[:, None, :, :])
    return energy @ v  # (B, Tq, S, A) @ (A,) -> (B, Tq, S)


def attention_scores_reference(attn: Attention, query: Tensor, keys: Tensor) -> Tensor:
    """The score formula of a single-head attention module, in the dtype of `query`.

    attn: uniform ("none"), dot, scaled dot, general or additive (its weights are converted to
    the query's dtype). query (B, Tq, Dq), keys (B, S, Dk) -> scores (B, Tq, S).
    """
    dtype = query.dtype
    if isinstance(attn, UniformAttention):
        return query.new_zeros(query.shape[0], query.shape[1], keys.shape[1])
    if isinstance(attn, ScaledDotAttention):  # before DotAttention, its base class
        return torch.einsum("btd,bsd->bts", query, keys) / math.sqrt(keys.shape[-1])
    if isinstance(attn, DotAttention):
        return torch.einsum("btd,bsd->bts", query, keys)
    if isinstance(attn, GeneralAttention):
        W = attn.key_layer.weight.to(dtype)  # (Dq, Dk)
        return torch.einsum("btq,qk,bsk->bts", query, W, keys)
    if isinstance(attn, AdditiveAttention):
        return additive_scores_reference(query, keys, attn.query_layer.weight.to(dtype),
                                         attn.key_layer.weight.to(dtype),
                                         attn.energy_layer.weight.to(dtype)[0])
    raise ValueError(f"attention_scores_reference: no reference for {type(attn).__name__} "
                     "(multi-head is compared with torch.nn.MultiheadAttention instead)")


def attention_reference(attn: Attention, query: Tensor, keys: Tensor, values: Tensor,
                        mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """score -> masked softmax -> weighted sum of the values, for a single-head module.

    query (B, Tq, Dq), keys (B, S, Dk), values (B, S, Dv), mask (B, S) or (B, Tq, S) bool.
    Returns context (B, Tq, Dv) and weights (B, Tq, S), in the dtype of `query`.
    """
    return _attend(attention_scores_reference(attn, query, keys), values, mask)


def _attend(scores: Tensor, values: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    if mask is not None and mask.dim() == 2:
        mask = mask[:, None, :]  # (B, 1, S): the same positions for every query step
    weights = masked_softmax_reference(scores, mask)  # (B, Tq, S)
    return weights @ values, weights
