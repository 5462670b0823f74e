"""The attention family behind one interface.

Every variant scores a query against the source keys, turns the scores into weights with a
masked softmax, and returns the weighted sum of the values:

    score(q, k_s)  ->  a_s = softmax_s(score)  (padding -> exactly 0)  ->  context = sum_s a_s v_s

    attn = build_attention(kind, query_dim, key_dim, attn_dim=None, num_heads=1)
    cache = attn.precompute(keys)              # key (and value) projections, once per source
    context, weights = attn(query, keys, values, mask=None, cache=None)

Shapes (batch first everywhere):
    query   (B, Dq) for one decoder step, or (B, Tq, Dq) for all steps at once
    keys    (B, S, Dk);  values (B, S, Dv)
    mask    (B, S) bool, True = real position; the all-steps form also takes (B, Tq, S)
            (e.g. a causal mask). A row with no real position raises ValueError: a softmax over
            nothing is undefined, and we never hand back silent NaNs.
    context (B, Dv) or (B, Tq, Dv); multi-head: (B, A) or (B, Tq, A) after its output projection
    weights (B, S) or (B, Tq, S); multi-head: averaged over heads (torch's default);
            `return_head_weights=True` gives (B, heads, S) or (B, heads, Tq, S) instead.

Variants (`kind`):
    "none"        UniformAttention     uniform over the real positions (ablation baseline)
    "additive"    AdditiveAttention    Bahdanau: v^T tanh(W_q q + W_k k)
    "dot"         DotAttention         Luong dot: q . k            (needs Dq == Dk)
    "general"     GeneralAttention     Luong general: q^T W k
    "scaled_dot"  ScaledDotAttention   q . k / sqrt(Dk)            (needs Dq == Dk)
    "multihead"   MultiHeadAttention   Transformer-style, torch.nn.MultiheadAttention layout

Optimisations (the plain formulas are in `seqlab.nn.reference`; the tests compare against them):
every projection of the keys/values happens in `precompute`, once per source, not once per step;
scores are bmm(q, K^T) with the (small) query as the left operand, the layout CPU bmm kernels
handle best for one decoder step; additive attention computes its scores in blocks with a
hand-written backward (`_AdditiveScores`).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = [
    "ATTENTION_KINDS",
    "AdditiveAttention",
    "Attention",
    "AttentionCache",
    "DotAttention",
    "GeneralAttention",
    "MultiHeadAttention",
    "ScaledDotAttention",
    "UniformAttention",
    "build_attention",
    "masked_softmax",
]

ATTENTION_KINDS = ("none", "additive", "dot", "general", "scaled_dot", "multihead")

# The all-steps additive form needs tanh over a (B, Tq, S, A) tensor (118 MB at
# B=64, T=S=30, A=512). It is processed in (batch, step) blocks of about this many elements
# (4 MB of float32: a block stays in cache through add -> tanh -> dot with v, where the whole
# tensor would go to memory and back three times).
ADDITIVE_CHUNK_ELEMENTS = 1 << 20
# That chunk buffer is kept per thread and reused across calls: a fresh 4 MB tensor per decoder
# step costs more in page faults than the add that fills it. Buffers above this size are not kept.
_WORKSPACE_MAX_BYTES = 64 << 20
_workspace = threading.local()


# ---------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------


def _autocast(t: Tensor) -> bool:
    """Mixed precision (torch.autocast) is on for t's device: dtypes may differ by design."""
    return torch.is_autocast_enabled(t.device.type)


def masked_softmax(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """Softmax over the last dimension that gives padded positions exactly zero weight.

    Args:
        scores: (..., S) float scores.
        mask: bool, broadcastable to `scores`, True = real position; None = all real.

    Returns:
        (..., S) weights; each row sums to 1 over its real positions, masked entries are 0.0.

    Raises:
        ValueError: if some row has no real position at all (its softmax would be 0/0 = NaN).
    """
    if mask is None:
        return torch.softmax(scores, dim=-1)
    if mask.dtype != torch.bool:
        raise ValueError(f"mask: expected a bool tensor (True = real position), got {mask.dtype}")
    if not bool(mask.any(dim=-1).all()):
        raise ValueError(
            "mask: a row has no real position (all False); attention over an empty source is "
            "undefined - drop empty sequences or give them at least one real position"
        )
    # exp(-inf) == 0 exactly, so padded positions get exactly zero weight (and zero gradient)
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


@dataclass
class AttentionCache:
    """What `precompute(keys)` computes once per source and every step reuses.

    Attributes:
        keys: the projected keys in the layout the variant scores against: (B, S, Dk) for
            uniform/dot/scaled-dot (the keys themselves), (B, S, A) for additive (W_k k),
            (B, S, Dq) for general (W k), (B, heads, S, d) for multi-head.
        values: multi-head only: projected values (B, heads, S, d); None elsewhere.
        values_from_keys: multi-head only: `values` was projected from the keys because
            `precompute` got no values; a call whose values are a different tensor than its
            keys then re-projects them (correct, just not cached).
    """

    keys: Tensor
    values: Tensor | None = None
    values_from_keys: bool = False

    @property
    def batch_size(self) -> int:
        return self.keys.shape[0]

    @property
    def source_len(self) -> int:
        return self.keys.shape[-2]

    def index_select(self, index: Tensor) -> AttentionCache:
        """The cache for a subset/reordering of the batch (e.g. beam search, finished rows).

        Args:
            index: (B',) long tensor of batch rows to keep.
        """
        return AttentionCache(
            keys=self.keys.index_select(0, index),
            values=None if self.values is None else self.values.index_select(0, index),
            values_from_keys=self.values_from_keys,
        )


def _same_tensor(a: Tensor, b: Tensor) -> bool:
    """True if `a` and `b` are the same numbers in memory (same object, or same view)."""
    return a is b or (
        a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()
    )


# ---------------------------------------------------------------------------------------------
# base class: argument checks and the score -> softmax -> context pipeline
# ---------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Base class: checks arguments, runs score -> masked softmax -> weighted sum.

    Subclasses implement `precompute(keys, values=None)` and `scores(q, cache)` with
    q (B, Tq, Dq) -> scores (B, Tq, S). Multi-head overrides `forward` pieces as well.
    """

    kind: str = ""

    def __init__(self, query_dim: int, key_dim: int) -> None:
        super().__init__()
        for name, value in (("query_dim", query_dim), ("key_dim", key_dim)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self.query_dim = query_dim
        self.key_dim = key_dim

    # -- interface ----------------------------------------------------------------------------

    def context_size(self, value_dim: int) -> int:
        """Size of the context vector for values of size `value_dim` (multi-head: A)."""
        return value_dim

    def precompute(self, keys: Tensor, values: Tensor | None = None) -> AttentionCache:
        """Project the keys once per source.

        Make the cache in the autograd mode of the calls that use it: one made under no_grad
        passes no gradient back to the keys or the key projection. The cache must come from
        these keys; only its shape is checked.

        Args:
            keys: (B, S, Dk) encoder outputs.
            values: (B, S, Dv); only multi-head projects values (None: they are the keys).
        """
        self._check_keys(keys)
        return AttentionCache(keys=keys)

    def scores(self, query: Tensor, cache: AttentionCache) -> Tensor:
        """Unnormalised scores: query (B, Tq, Dq), cache from `precompute` -> (B, Tq, S)."""
        raise NotImplementedError

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor | None = None,
        cache: AttentionCache | None = None,
        return_head_weights: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Attend from `query` over the source.

        Args:
            query: (B, Dq) one decoder step, or (B, Tq, Dq) all steps at once.
            keys: (B, S, Dk).
            values: (B, S, Dv).
            mask: (B, S) bool, True = real position; (B, Tq, S) also for the all-steps form.
            cache: from `self.precompute(keys)`; None computes the projections now.
            return_head_weights: return per-head weights (B, heads, S) / (B, heads, Tq, S)
                instead of the head average (single-head variants: heads = 1).

        Returns:
            context: (B, Dv) or (B, Tq, Dv) (multi-head: A instead of Dv).
            weights: (B, S) or (B, Tq, S); rows sum to 1, padded positions are exactly 0.
        """
        q, step, mask3 = self._check_call(query, keys, values, mask)
        cache = self._get_cache(keys, values, cache)
        weights = masked_softmax(self.scores(q, cache), mask3)  # (B, Tq, S)
        context = torch.bmm(weights, values)  # (B, Tq, Dv)
        if return_head_weights:
            weights = weights.unsqueeze(1)  # (B, 1, Tq, S)
        if step:
            return context.squeeze(1), weights.squeeze(-2)
        return context, weights

    # -- checks -------------------------------------------------------------------------------

    def _param_dtype(self) -> torch.dtype | None:
        for p in self.parameters():
            return p.dtype
        return None

    def _check_keys(self, keys: Tensor) -> None:
        if not isinstance(keys, Tensor) or keys.dim() != 3 or keys.shape[-1] != self.key_dim:
            got = _shape(keys) if isinstance(keys, Tensor) else type(keys).__name__
            raise ValueError(f"keys: expected shape (B, S, {self.key_dim}), got {got}")
        if not keys.is_floating_point():
            raise ValueError(f"keys: expected a floating point tensor, got {keys.dtype}")
        pdtype = self._param_dtype()
        if pdtype is not None and keys.dtype != pdtype and not _autocast(keys):
            raise ValueError(
                f"keys: dtype {keys.dtype} differs from the attention parameters ({pdtype}); "
                f"convert one of them (e.g. attn.to({keys.dtype}))"
            )

    def _check_call(
        self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None
    ) -> tuple[Tensor, bool, Tensor | None]:
        """Validate arguments; return query as (B, Tq, Dq), whether it was one step, mask."""
        self._check_keys(keys)
        B, S, _ = keys.shape
        if not isinstance(query, Tensor) or query.dim() not in (2, 3) or (
            query.shape[0] != B or query.shape[-1] != self.query_dim
        ):
            got = _shape(query) if isinstance(query, Tensor) else type(query).__name__
            raise ValueError(
                f"query: expected shape ({B}, {self.query_dim}) or ({B}, Tq, {self.query_dim}), "
                f"got {got}"
            )
        if not isinstance(values, Tensor) or values.dim() != 3 or values.shape[:2] != (B, S):
            got = _shape(values) if isinstance(values, Tensor) else type(values).__name__
            raise ValueError(f"values: expected shape ({B}, {S}, Dv), got {got}")
        for name, t in (("query", query), ("values", values)):
            if t.dtype != keys.dtype and not _autocast(keys):
                raise ValueError(f"{name}: dtype {t.dtype} differs from keys ({keys.dtype})")
        step = query.dim() == 2
        q = query.unsqueeze(1) if step else query  # (B, Tq, Dq)
        Tq = q.shape[1]
        if mask is None:
            return q, step, None
        if not isinstance(mask, Tensor):
            raise ValueError(f"mask: expected a bool tensor, got {type(mask).__name__}")
        if mask.dtype != torch.bool:
            raise ValueError(
                f"mask: expected a bool tensor (True = real position), got {mask.dtype}"
            )
        if mask.shape == (B, S):
            return q, step, mask.unsqueeze(1)  # (B, 1, S), broadcast over Tq
        if not step and mask.shape == (B, Tq, S):
            return q, step, mask
        expected = f"({B}, {S})" if step else f"({B}, {S}) or ({B}, {Tq}, {S})"
        raise ValueError(f"mask: expected shape {expected}, got {_shape(mask)}")

    def _get_cache(
        self, keys: Tensor, values: Tensor, cache: AttentionCache | None
    ) -> AttentionCache:
        if cache is None:
            return self.precompute(keys)
        if not isinstance(cache, AttentionCache):
            raise ValueError(
                f"cache: expected the AttentionCache from precompute(keys), got "
                f"{type(cache).__name__}"
            )
        if (cache.batch_size, cache.source_len) != tuple(keys.shape[:2]):
            raise ValueError(
                f"cache: built for batch {cache.batch_size} x source {cache.source_len}, but keys "
                f"have shape {_shape(keys)}; call precompute(keys) again for this source"
            )
        return cache

    def extra_repr(self) -> str:
        return f"query_dim={self.query_dim}, key_dim={self.key_dim}"


# ---------------------------------------------------------------------------------------------
# the variants
# ---------------------------------------------------------------------------------------------


class UniformAttention(Attention):
    """No attention: uniform weights over the real positions (an ablation baseline).

        a_s = m_s / sum_s' m_s'        context = sum_s a_s v_s

    The query is checked but not used, so it receives no gradient. No parameters.
    """

    kind = "none"

    def scores(self, query: Tensor, cache: AttentionCache) -> Tensor:
        # all-equal scores through the shared masked softmax: 1/n over the n real positions
        B, Tq = query.shape[:2]
        return query.new_zeros(B, Tq, cache.source_len)  # (B, Tq, S)


class DotAttention(Attention):
    """Luong dot attention: score(q, k) = q . k.

    query (B, [Tq,] D), keys (B, S, D): needs query_dim == key_dim. No parameters.
    """

    kind = "dot"

    def __init__(self, query_dim: int, key_dim: int) -> None:
        super().__init__(query_dim, key_dim)
        if query_dim != key_dim:
            raise ValueError(
                f"{self.kind} attention needs query_dim == key_dim, got query_dim={query_dim}, "
                f"key_dim={key_dim}; use kind='general' or 'additive' for different sizes"
            )

    def scores(self, query: Tensor, cache: AttentionCache) -> Tensor:
        # (B, Tq, D) @ (B, D, S): the query as the left operand (see the module docstring)
        return torch.bmm(query, cache.keys.transpose(1, 2))  # (B, Tq, S)


class ScaledDotAttention(DotAttention):
    """Scaled dot-product attention: score(q, k) = q . k / sqrt(D).

    Same numbers as torch.nn.functional.scaled_dot_product_attention with a bool mask.
    query (B, [Tq,] D), keys (B, S, D): needs query_dim == key_dim. No parameters.
    """

    kind = "scaled_dot"

    def scores(self, query: Tensor, cache: AttentionCache) -> Tensor:
        # scale the (small) query rather than the (B, Tq, S) scores, as SDPA does
        q = query * (1.0 / math.sqrt(self.key_dim))
        return torch.bmm(q, cache.keys.transpose(1, 2))  # (B, Tq, S)


class GeneralAttention(Attention):
    """Luong general (bilinear) attention: score(q, k) = q^T W k.

    W: (Dq, Dk), stored as `key_layer` (Linear Dk -> Dq, no bias); `precompute` computes
    W k for the whole source once (B, S, Dq), so each step is a dot product.
    """

    kind = "general"

    def __init__(self, query_dim: int, key_dim: int) -> None:
        super().__init__(query_dim, key_dim)
        self.key_layer = nn.Linear(key_dim, query_dim, bias=False)

    def precompute(self, keys: Tensor, values: Tensor | None = None) -> AttentionCache:
        self._check_keys(keys)
        return AttentionCache(keys=self.key_layer(keys))  # (B, S, Dq)

    def scores(self, query: Tensor, cache: AttentionCache) -> Tensor:
        return torch.bmm(query, cache.keys.transpose(1, 2))  # (B, Tq, S)


def _chunk_buffer(like: Tensor, shape: tuple[int, ...]) -> Tensor:
    """An uninitialised tensor of `shape`, reused between calls on this thread when small."""
    numel = math.prod(shape)
    if numel * like.element_size() > _WORKSPACE_MAX_BYTES:
        return like.new_empty(shape)
    # a buffer made under inference_mode cannot be written outside it: one buffer per mode
    key = (like.dtype, like.device, torch.is_inference_mode_enabled())
    buf = getattr(_workspace, "buffers", {}).get(key)
    if buf is None or buf.numel() < numel:
        buf = like.new_empty(numel)
        _workspace.buffers = {**getattr(_workspace, "buffers", {}), key: buf}
    return buf[:numel].view(shape)


def _fast_tanh_ok(x: Tensor) -> bool:
    # tanh(x) = 2 sigmoid(2x) - 1 (as `gates.fast_tanh`: cheaper where torch's tanh kernel is
    # slow) is within ~2e-7 of tanh: fine at float32 resolution. Other dtypes use torch.tanh.
    return x.dtype == torch.float32


def _tanh_(buf: Tensor, fast: bool) -> Tensor:
    """In place: buf holds 2x if `fast` (else x); afterwards it holds tanh(x)."""
    if fast:
        return torch.sigmoid(buf, out=buf).mul_(2.0).sub_(1.0)
    return torch.tanh(buf, out=buf)


def _additive_chunks(B: int, Tq: int, S: int, A: int) -> list[tuple[int, int, int, int]]:
    """(b0, b1, t0, t1) blocks whose (b, t, S, A) slab holds about ADDITIVE_CHUNK_ELEMENTS."""
    tc = min(Tq, max(1, ADDITIVE_CHUNK_ELEMENTS // (S * A)))
    bc = min(B, max(1, ADDITIVE_CHUNK_ELEMENTS // (tc * S * A)))
    return [(b0, min(B, b0 + bc), t0, min(Tq, t0 + tc))
            for b0 in range(0, B, bc) for t0 in range(0, Tq, tc)]


class _AdditiveScores(torch.autograd.Function):
    """score[b, t, s] = sum_a v[a] tanh(pq[b, t, a] + pk[b, s, a]), in (b, t) blocks.

    Forward never holds the whole (B, Tq, S, A) tensor (118 MB at B=64, T=S=30, A=512): each
    block stays in cache through add -> tanh -> dot with v, whatever B and Tq are. The backward
    is written by hand because autograd would save that whole tensor for it; this one
    recomputes tanh block by block instead, like activation checkpointing, and forms each
    gradient as a matrix product over the block. Compared with
    `seqlab.nn.reference.additive_scores_reference` (and gradcheck) in the tests.
    """

    @staticmethod
    def forward(ctx, pq: Tensor, pk: Tensor, v: Tensor) -> Tensor:
        B, Tq, A = pq.shape
        S = pk.shape[1]
        fast = _fast_tanh_ok(pq)
        scale = 2.0 if fast else 1.0
        pq_s = pq * scale if fast else pq  # (B, Tq, A)
        out = pq.new_empty(B, Tq, S)
        for b0, b1, t0, t1 in _additive_chunks(B, Tq, S, A):
            x = _chunk_buffer(pq, (b1 - b0, t1 - t0, S, A))  # (b, t, S, A)
            torch.add(pq_s[b0:b1, t0:t1, None, :], pk[b0:b1, None, :, :], alpha=scale, out=x)
            # fast: v^T (2 sig(2x) - 1) = 2 v^T sig(2x) - sum(v), the affine part applied to
            # the small scores instead of the big block
            (torch.sigmoid if fast else torch.tanh)(x, out=x)
            out[b0:b1, t0:t1] = torch.matmul(x, v)
        if fast:
            out.mul_(2.0).sub_(v.sum())
        ctx.save_for_backward(pq, pk, v)
        return out  # (B, Tq, S)

    @staticmethod
    @once_differentiable  # no second derivatives: say so instead of returning wrong ones
    def backward(ctx, grad: Tensor):
        # With th = tanh(x) and d = 1 - th^2 (so d score / d x = v * d):
        #   grad_v[a]       = sum_{b,t,s} g[b,t,s] th[b,t,s,a]
        #   grad_pq[b,t,a]  = v[a] sum_s g[b,t,s] d[b,t,s,a]
        #   grad_pk[b,s,a]  = v[a] sum_t g[b,t,s] d[b,t,s,a]
        # each a matrix product or a multiply-add over the block; v is applied at the end.
        pq, pk, v = ctx.saved_tensors
        grad = grad.contiguous()
        B, Tq, A = pq.shape
        S = pk.shape[1]
        fast = _fast_tanh_ok(pq)
        scale = 2.0 if fast else 1.0
        pq_s = pq * scale if fast else pq
        grad_pq = torch.empty_like(pq)  # (B, Tq, A)
        grad_pk = torch.zeros_like(pk)  # (B, S, A)
        grad_v = torch.zeros_like(v)  # (A,)
        one = pq.new_ones(())
        for b0, b1, t0, t1 in _additive_chunks(B, Tq, S, A):
            nb, nt = b1 - b0, t1 - t0
            g = grad[b0:b1, t0:t1]  # (b, t, S)
            th = _chunk_buffer(pq, (nb, nt, S, A))  # (b, t, S, A)
            torch.add(pq_s[b0:b1, t0:t1, None, :], pk[b0:b1, None, :, :], alpha=scale, out=th)
            _tanh_(th, fast)
            grad_v.addmv_(th.view(-1, A).t(), g.reshape(-1))
            d = torch.addcmul(one, th, th, value=-1.0, out=th)  # 1 - th^2, in place
            # (b*t, 1, S) @ (b*t, S, A): the sum over s
            grad_pq[b0:b1, t0:t1] = torch.bmm(
                g.reshape(nb * nt, 1, S), d.view(nb * nt, S, A)).view(nb, nt, A)
            for i in range(nt):  # the sum over t
                grad_pk[b0:b1].addcmul_(d[:, i], g[:, i, :, None])
        return grad_pq.mul_(v), grad_pk.mul_(v), grad_v


class AdditiveAttention(Attention):
    """Bahdanau (additive, MLP) attention: score(q, k) = v^T tanh(W_q q + W_k k).

    W_q: `query_layer` (Linear Dq -> A), W_k: `key_layer` (Linear Dk -> A), v: `energy_layer`
    (Linear A -> 1); no biases (as Joey NMT). `precompute` computes W_k k once per source,
    (B, S, A). A step then costs a tanh over (B, S, A); the all-steps form over (B, Tq, S, A),
    done in chunks over Tq and recomputed in backward rather than stored. In float32, tanh(x)
    is evaluated as 2 sigmoid(2x) - 1 (see `gates.fast_tanh`; within 2e-7 per element, scores
    within about twice float32's own rounding of the float64 values); other dtypes use tanh.
    The plain formula: `seqlab.nn.reference.additive_attention_reference`.
    """

    kind = "additive"

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int | None = None) -> None:
        super().__init__(query_dim, key_dim)
        attn_dim = query_dim if attn_dim is None else attn_dim
        if not isinstance(attn_dim, int) or attn_dim <= 0:
            raise ValueError(f"attn_dim: expected a positive int, got {attn_dim!r}")
        self.attn_dim = attn_dim
        self.key_layer = nn.Linear(key_dim, attn_dim, bias=False)
        self.query_layer = nn.Linear(query_dim, attn_dim, bias=False)
        self.energy_layer = nn.Linear(attn_dim, 1, bias=False)

    def precompute(self, keys: Tensor, values: Tensor | None = None) -> AttentionCache:
        self._check_keys(keys)
        return AttentionCache(keys=self.key_layer(keys))  # (B, S, A)

    def scores(self, query: Tensor, cache: AttentionCache) -> Tensor:
        pq = self.query_layer(query)  # (B, Tq, A)
        v = self.energy_layer.weight[0]  # (A,)
        pk = cache.keys
        if _autocast(pq):
            # mixed precision: the projections ran in low precision, the tanh block and its
            # sums stay in the parameters' precision (bf16 sums over S and T lose too much)
            pq, pk = pq.to(v.dtype), pk.to(v.dtype)
        return _AdditiveScores.apply(pq, pk, v)  # (B, Tq, S)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, attn_dim={self.attn_dim}"


class MultiHeadAttention(Attention):
    """Multi-head attention (Vaswani et al.), parameters laid out as torch.nn.MultiheadAttention.

        Q = q W_q^T + b_q, K = k W_k^T + b_k, V = v W_v^T + b_v        (B, *, A), A = heads * d
        head_h = softmax(Q_h K_h^T / sqrt(d)) V_h                       (B, Tq, d) per head
        context = concat_h(head_h) W_o^T + b_o                          (B, Tq, A)

    Parameters have torch's names and shapes, so `load_state_dict` works in both directions
    with a batch-first or seq-first `nn.MultiheadAttention(A, heads, kdim=Dk, vdim=Dv)` whose
    query size is A: `in_proj_weight` (3A, Dq) when Dq == Dk == Dv, else `q_proj_weight`
    (A, Dq), `k_proj_weight` (A, Dk), `v_proj_weight` (A, Dv); `in_proj_bias` (3A);
    `out_proj.weight` (A, A), `out_proj.bias` (A). See `from_torch` / `to_torch`.
    `precompute(keys, values=None)` caches K and V (values default to the keys), so a decoder
    step projects only its query. No dropout.
    """

    kind = "multihead"

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        attn_dim: int | None = None,
        num_heads: int = 1,
        value_dim: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__(query_dim, key_dim)
        attn_dim = query_dim if attn_dim is None else attn_dim
        value_dim = key_dim if value_dim is None else value_dim
        if not isinstance(num_heads, int) or num_heads <= 0:
            raise ValueError(f"num_heads: expected a positive int, got {num_heads!r}")
        if not isinstance(attn_dim, int) or attn_dim <= 0 or attn_dim % num_heads:
            raise ValueError(
                f"attn_dim: expected a positive multiple of num_heads={num_heads}, got {attn_dim!r}"
            )
        if not isinstance(value_dim, int) or value_dim <= 0:
            raise ValueError(f"value_dim: expected a positive int, got {value_dim!r}")
        self.attn_dim = attn_dim
        self.value_dim = value_dim
        self.num_heads = num_heads
        self.head_dim = attn_dim // num_heads
        A = attn_dim
        self.packed = query_dim == key_dim == value_dim
        if self.packed:
            self.in_proj_weight = nn.Parameter(torch.empty(3 * A, query_dim))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.register_parameter("in_proj_weight", None)
            self.q_proj_weight = nn.Parameter(torch.empty(A, query_dim))
            self.k_proj_weight = nn.Parameter(torch.empty(A, key_dim))
            self.v_proj_weight = nn.Parameter(torch.empty(A, value_dim))
        if bias:
            self.in_proj_bias = nn.Parameter(torch.empty(3 * A))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = nn.Linear(A, A, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torch.nn.MultiheadAttention's initialisation
        if self.packed:
            nn.init.xavier_uniform_(self.in_proj_weight)
        else:
            nn.init.xavier_uniform_(self.q_proj_weight)
            nn.init.xavier_uniform_(self.k_proj_weight)
            nn.init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    # -- torch interop ------------------------------------------------------------------------

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """A MultiHeadAttention with a copy of `mha`'s weights (batch_first or not)."""
        if mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("mha: add_bias_kv / add_zero_attn are not supported")
        attn = cls(
            mha.embed_dim,
            mha.kdim,
            attn_dim=mha.embed_dim,
            num_heads=mha.num_heads,
            value_dim=mha.vdim,
            bias=mha.in_proj_bias is not None,
        )
        p = next(mha.parameters())
        attn.to(device=p.device, dtype=p.dtype)
        attn.load_torch_state_dict(mha.state_dict())
        return attn

    def load_torch_state_dict(self, state_dict: dict[str, Tensor]) -> None:
        """Load the state_dict of a torch.nn.MultiheadAttention (same names and shapes)."""
        self.load_state_dict(state_dict, strict=True)

    def to_torch(self, batch_first: bool = True) -> nn.MultiheadAttention:
        """An nn.MultiheadAttention with a copy of these weights (needs query_dim == attn_dim)."""
        if self.query_dim != self.attn_dim:
            raise ValueError(
                f"to_torch: torch needs query size == embed size, got query_dim={self.query_dim}"
                f", attn_dim={self.attn_dim}"
            )
        p = self.out_proj.weight
        mha = nn.MultiheadAttention(
            self.attn_dim, self.num_heads, bias=self.in_proj_bias is not None,
            kdim=self.key_dim, vdim=self.value_dim, batch_first=batch_first,
            device=p.device, dtype=p.dtype,
        )
        mha.load_state_dict(self.state_dict(), strict=True)
        return mha

    # -- projections --------------------------------------------------------------------------

    def _proj(self, x: Tensor, i: int) -> Tensor:
        """Projection i (0 = q, 1 = k, 2 = v) of x (B, T, D) -> (B, T, A)."""
        A = self.attn_dim
        if self.packed:
            w = self.in_proj_weight[i * A : (i + 1) * A]
        else:
            w = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)[i]
        b = None if self.in_proj_bias is None else self.in_proj_bias[i * A : (i + 1) * A]
        return F.linear(x, w, b)

    def _split_heads(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape  # (B, T, A) -> (B, heads, T, d), contiguous for the per-step matmuls
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2).contiguous()

    def context_size(self, value_dim: int) -> int:
        return self.attn_dim

    def precompute(self, keys: Tensor, values: Tensor | None = None) -> AttentionCache:
        """Project keys and values once per source: K, V (B, heads, S, d).

        Args:
            keys: (B, S, Dk).
            values: (B, S, Dv); None = the keys are also the values (encoder outputs).
        """
        self._check_keys(keys)
        from_keys = values is None
        if values is None:
            if self.value_dim != self.key_dim:
                raise ValueError(
                    f"values: needed for precompute when value_dim={self.value_dim} differs "
                    f"from key_dim={self.key_dim}"
                )
            values = keys
        elif values.dim() != 3 or values.shape[:2] != keys.shape[:2] or (
            values.shape[-1] != self.value_dim
        ):
            raise ValueError(
                f"values: expected shape ({keys.shape[0]}, {keys.shape[1]}, {self.value_dim}), "
                f"got {_shape(values)}"
            )
        if self.packed and _same_tensor(values, keys):
            # keys are the values (encoder outputs): one matmul with the stacked [W_k; W_v]
            B, S, _ = keys.shape
            A, h, d = self.attn_dim, self.num_heads, self.head_dim
            b = None if self.in_proj_bias is None else self.in_proj_bias[A:]
            kv = F.linear(keys, self.in_proj_weight[A:], b)  # (B, S, 2A)
            kv = kv.view(B, S, 2, h, d).permute(2, 0, 3, 1, 4).contiguous()  # (2, B, h, S, d)
            K, V = kv[0], kv[1]
        else:
            K = self._split_heads(self._proj(keys, 1))  # (B, h, S, d)
            V = self._split_heads(self._proj(values, 2))  # (B, h, S, d)
        return AttentionCache(keys=K, values=V, values_from_keys=from_keys)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor | None = None,
        cache: AttentionCache | None = None,
        return_head_weights: bool = False,
    ) -> tuple[Tensor, Tensor]:
        q, step, mask3 = self._check_call(query, keys, values, mask)
        if values.shape[-1] != self.value_dim:
            raise ValueError(
                f"values: expected shape ({keys.shape[0]}, {keys.shape[1]}, {self.value_dim}), "
                f"got {_shape(values)}"
            )
        if cache is None:
            cache = self.precompute(keys, values)
        else:
            cache = self._get_cache(keys, values, cache)
        if cache.values is None:
            raise ValueError("cache: has no value projections; build it with precompute()")
        if cache.values_from_keys and not _same_tensor(values, keys):
            # values differ from the cached ones
            cache = replace(cache, values=self._split_heads(self._proj(values, 2)))
        context, weights = self.attend(q, cache, mask3, return_head_weights)
        if step:
            return context.squeeze(1), weights.squeeze(-2)
        return context, weights

    def attend(
        self,
        query: Tensor,
        cache: AttentionCache,
        mask: Tensor | None = None,
        return_head_weights: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """`forward` on projected keys/values only, without argument checks (the caller built
        `cache` with `precompute` / `extend_cache`): what a Transformer layer calls per step.

        Args:
            query: (B, Tq, Dq).
            cache: K, V (B, heads, S, d).
            mask: bool, broadcastable to (B, Tq, S) ((B, 1, S) or (B, Tq, S)), True = real.

        Returns:
            context (B, Tq, A); weights (B, Tq, S), or (B, heads, Tq, S) per head on request.
        """
        V = cache.values
        assert V is not None
        B, Tq, _ = query.shape
        Q = self._split_heads(self._proj(query, 0) * (1.0 / math.sqrt(self.head_dim)))  # (B,h,Tq,d)
        scores = torch.matmul(Q, cache.keys.transpose(-2, -1))  # (B, h, Tq, S)
        head_weights = masked_softmax(scores, None if mask is None else mask.unsqueeze(1))
        heads = torch.matmul(head_weights, V)  # (B, h, Tq, d)
        context = self.out_proj(heads.transpose(1, 2).reshape(B, Tq, self.attn_dim))
        weights = head_weights if return_head_weights else head_weights.mean(dim=1)
        return context, weights

    def extend_cache(self, cache: AttentionCache | None, keys: Tensor,
                     values: Tensor | None = None) -> AttentionCache:
        """Self-attention while decoding: project the new positions' keys (and values; None =
        the keys) (B, T_new, D) and append them to `cache` (None = empty):
        K, V (B, heads, S, d) -> (B, heads, S + T_new, d)."""
        new = self.precompute(keys, values)
        if cache is None or cache.values is None or new.values is None:
            return new
        return AttentionCache(keys=torch.cat([cache.keys, new.keys], dim=2),
                              values=torch.cat([cache.values, new.values], dim=2),
                              values_from_keys=new.values_from_keys)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, value_dim={self.value_dim}, attn_dim={self.attn_dim}, "
            f"num_heads={self.num_heads}"
        )


# ---------------------------------------------------------------------------------------------
# factory
# ---------------------------------------------------------------------------------------------


def build_attention(
    kind: str,
    query_dim: int,
    key_dim: int,
    attn_dim: int | None = None,
    num_heads: int = 1,
    *,
    value_dim: int | None = None,
) -> Attention:
    """Build one attention variant.

    Args:
        kind: one of "none", "additive", "dot", "general", "scaled_dot", "multihead".
        query_dim: Dq, size of the query (decoder state).
        key_dim: Dk, size of the keys (encoder outputs).
        attn_dim: A, the hidden size of additive attention and the total projection size of
            multi-head (default: query_dim); the other kinds have no such size and ignore it.
        num_heads: heads of "multihead" (A must divide by it); other kinds need 1.
        value_dim: multi-head only: Dv of the values (default: key_dim).
    """
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"kind: expected one of {', '.join(ATTENTION_KINDS)}, got {kind!r}")
    if kind != "multihead" and num_heads != 1:
        raise ValueError(f"num_heads: only kind='multihead' has heads, got num_heads={num_heads} "
                         f"for kind={kind!r}")
    if kind == "multihead":
        return MultiHeadAttention(query_dim, key_dim, attn_dim, num_heads, value_dim=value_dim)
    if kind == "additive":
        return AdditiveAttention(query_dim, key_dim, attn_dim)
    cls = {"none": UniformAttention, "dot": DotAttention, "general": GeneralAttention,
           "scaled_dot": ScaledDotAttention}[kind]
    return cls(query_dim, key_dim)
