"""Exactness and contract tests for seqlab.nn.attention.

References are independent: torch's own SDPA / nn.MultiheadAttention, or the textbook formula
evaluated here in float64.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import seqlab.nn.attention as attention_mod
from seqlab.nn.attention import (
    ATTENTION_KINDS,
    AttentionCache,
    MultiHeadAttention,
    build_attention,
    masked_softmax,
)
from seqlab.nn.reference import (
    additive_attention_reference,
    additive_scores_reference,
    attention_reference,
)

SETTINGS = settings(max_examples=20, deadline=None)


def _make(kind: str, dq: int, dk: int, heads: int = 1, dtype=torch.float32, seed: int = 0):
    torch.manual_seed(seed)
    attn = build_attention(kind, dq, dk, attn_dim=4 * heads if kind == "multihead" else 6,
                           num_heads=heads)
    return attn.to(dtype)


def _mask_from_lengths(lengths: list[int], S: int) -> torch.Tensor:
    return torch.arange(S)[None, :] < torch.tensor(lengths)[:, None]  # (B, S)


@st.composite
def problems(draw, same_dims: bool = False):
    """A random (B, Tq, S, Dq, Dk, Dv, lengths, seed) attention problem."""
    B = draw(st.integers(1, 4))
    Tq = draw(st.integers(1, 5))
    S = draw(st.integers(1, 7))
    Dq = draw(st.integers(1, 9))
    Dk = Dq if same_dims else draw(st.integers(1, 9))
    Dv = draw(st.integers(1, 6))
    lengths = draw(st.lists(st.integers(1, S), min_size=B, max_size=B))
    seed = draw(st.integers(0, 2**16))
    return B, Tq, S, Dq, Dk, Dv, lengths, seed


def _tensors(B, Tq, S, Dq, Dk, Dv, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Tq, Dq, generator=g, dtype=dtype)
    k = torch.randn(B, S, Dk, generator=g, dtype=dtype)
    v = torch.randn(B, S, Dv, generator=g, dtype=dtype)
    return q, k, v


# ---------------------------------------------------------------------------------------------
# contract: every kind
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
@SETTINGS
@given(problems(same_dims=True))
def test_contract_all_kinds(kind, prob):
    """Shapes, masked weights exactly 0, rows sum to 1, step == all steps, cache == no cache."""
    B, Tq, S, Dq, Dk, Dv, lengths, seed = prob
    heads = 2 if kind == "multihead" else 1
    attn = _make(kind, Dq, Dk, heads)
    q, k, v = _tensors(B, Tq, S, Dq, Dk, Dv if kind != "multihead" else Dk, seed)
    if kind == "multihead":
        v = k  # values default to the keys in precompute(keys)
    mask = _mask_from_lengths(lengths, S)
    Dc = attn.context_size(v.shape[-1])

    ctx, w = attn(q, k, v, mask)
    assert ctx.shape == (B, Tq, Dc) and w.shape == (B, Tq, S)
    assert torch.all(w[~mask[:, None, :].expand_as(w)] == 0.0)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, Tq), atol=1e-6, rtol=0)

    cache = attn.precompute(k)
    ctx_c, w_c = attn(q, k, v, mask, cache=cache)
    torch.testing.assert_close(ctx_c, ctx, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(w_c, w, atol=1e-6, rtol=1e-6)

    for t in range(Tq):
        ctx_t, w_t = attn(q[:, t], k, v, mask, cache=cache)
        assert ctx_t.shape == (B, Dc) and w_t.shape == (B, S)
        torch.testing.assert_close(ctx_t, ctx[:, t], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(w_t, w[:, t], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_head_weights_and_no_mask(kind):
    heads = 3 if kind == "multihead" else 1
    attn = _make(kind, 6, 6, heads)
    q, k, v = _tensors(2, 4, 5, 6, 6, 6, seed=1)
    ctx, w = attn(q, k, v)
    ctx_h, wh = attn(q, k, v, return_head_weights=True)
    assert wh.shape == (2, heads, 4, 5)
    torch.testing.assert_close(wh.mean(1), w)
    torch.testing.assert_close(ctx_h, ctx)
    _, wh_step = attn(q[:, 0], k, v, return_head_weights=True)
    assert wh_step.shape == (2, heads, 5)
    torch.testing.assert_close(wh_step, wh[:, :, 0])
    assert torch.all(w > 0)  # no mask: every position gets weight


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_causal_mask_all_steps(kind):
    """A (B, Tq, S) mask (causal) equals running each step with its own (B, S) mask."""
    heads = 2 if kind == "multihead" else 1
    attn = _make(kind, 4, 4, heads)
    q, k, _ = _tensors(2, 5, 5, 4, 4, 4, seed=3)
    causal = torch.ones(5, 5, dtype=torch.bool).tril().expand(2, 5, 5)
    ctx, w = attn(q, k, k, causal)
    assert torch.all(w.triu(1) == 0.0)
    for t in range(5):
        ctx_t, w_t = attn(q[:, t], k, k, causal[:, t])
        torch.testing.assert_close(ctx_t, ctx[:, t], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(w_t, w[:, t], atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# exactness against references
# ---------------------------------------------------------------------------------------------


@pytest.mark.cpu_sensitive
@SETTINGS
@given(problems(same_dims=True))
def test_scaled_dot_matches_torch_sdpa(prob):
    B, Tq, S, Dq, Dk, Dv, lengths, seed = prob
    attn = build_attention("scaled_dot", Dq, Dk)
    q, k, v = _tensors(B, Tq, S, Dq, Dk, Dv, seed)
    mask = _mask_from_lengths(lengths, S)
    ctx, w = attn(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, :])
    torch.testing.assert_close(ctx, ref, atol=1e-5, rtol=1e-5)
    ctx1, _ = attn(q[:, 0], k, v, mask)
    torch.testing.assert_close(ctx1, ref[:, 0], atol=1e-5, rtol=1e-5)
    # weights: SDPA's math (q k^T / sqrt d, masked softmax) in float64
    s = (q.double() @ k.double().transpose(1, 2)) / math.sqrt(Dk)
    w_ref = torch.softmax(s.masked_fill(~mask[:, None, :], -math.inf), -1)
    torch.testing.assert_close(w.double(), w_ref, atol=1e-6, rtol=1e-5)


# float32 fast paths (additive: the sigmoid-based tanh, chunks) against the float64 formula at
# float32 resolution; float64 fast paths (exact tanh) against it at float64 resolution
FAST_VS_REFERENCE_TOL = {torch.float32: dict(w=(2e-6, 1e-5), ctx=(1e-5, 1e-5)),
                         torch.float64: dict(w=(1e-12, 1e-10), ctx=(1e-12, 1e-10))}


@pytest.mark.cpu_sensitive
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["none", "dot", "scaled_dot", "general", "additive"])
@SETTINGS
@given(problems())
def test_single_head_matches_float64_reference(kind, dtype, prob):
    B, Tq, S, Dq, Dk, Dv, lengths, seed = prob
    if kind in ("dot", "scaled_dot"):
        Dk = Dq
    attn = _make(kind, Dq, Dk, dtype=dtype)
    q, k, v = _tensors(B, Tq, S, Dq, Dk, Dv, seed, dtype=dtype)
    mask = _mask_from_lengths(lengths, S)
    ctx, w = attn(q, k, v, mask)
    ctx_ref, w_ref = attention_reference(attn, q.double(), k.double(), v.double(), mask)
    tol = FAST_VS_REFERENCE_TOL[dtype]
    torch.testing.assert_close(w.double(), w_ref, atol=tol["w"][0], rtol=tol["w"][1])
    torch.testing.assert_close(ctx.double(), ctx_ref, atol=tol["ctx"][0], rtol=tol["ctx"][1])
    # one decoder step (B, Dq) is the all-steps form's row
    ctx1, w1 = attn(q[:, -1], k, v, mask)
    torch.testing.assert_close(w1.double(), w_ref[:, -1], atol=tol["w"][0], rtol=tol["w"][1])


@pytest.mark.cpu_sensitive
def test_additive_chunked_and_fast_tanh_at_realistic_size(monkeypatch):
    """float32 (fast tanh, several chunks) vs the float64 formula at A=512."""
    monkeypatch.setattr(attention_mod, "ADDITIVE_CHUNK_ELEMENTS", 3 * 7 * 512 * 2)
    torch.manual_seed(0)
    attn = build_attention("additive", 32, 24, attn_dim=512)
    q, k, v = _tensors(3, 9, 7, 32, 24, 5, seed=5)
    mask = _mask_from_lengths([7, 3, 5], 7)
    q.requires_grad_(True)
    ctx, w = attn(q, k, v, mask)
    _, w_ref = attention_reference(attn, q.detach().double(), k.double(), v.double(), mask)
    torch.testing.assert_close(w.double(), w_ref, atol=2e-6, rtol=1e-5)
    # gradients of the chunked, recomputing backward vs autograd through the float64 formula
    g = torch.randn_like(ctx)
    (ctx * g).sum().backward()
    Wq, Wk, v64 = (p.detach().double().requires_grad_(True) for p in
                   (attn.query_layer.weight, attn.key_layer.weight, attn.energy_layer.weight[0]))
    q64 = q.detach().double().requires_grad_(True)
    ctx64, _ = additive_attention_reference(q64, k.double(), v.double(), Wq, Wk, v64, mask)
    (ctx64 * g.double()).sum().backward()
    for got, ref in ((q.grad, q64.grad), (attn.query_layer.weight.grad, Wq.grad),
                     (attn.key_layer.weight.grad, Wk.grad),
                     (attn.energy_layer.weight.grad[0], v64.grad)):
        torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=1e-4)


def test_additive_inference_mode_then_training():
    """The reused chunk buffer works across inference_mode, no_grad and grad mode."""
    attn = build_attention("additive", 4, 4, attn_dim=8)
    q, k, v = _tensors(2, 3, 5, 4, 4, 4, seed=9)
    with torch.inference_mode():
        ref, _ = attn(q, k, v)
    with torch.no_grad():
        torch.testing.assert_close(attn(q, k, v)[0], ref)
    out, _ = attn(q.requires_grad_(True), k, v)
    out.sum().backward()
    torch.testing.assert_close(out.detach(), ref)
    with torch.inference_mode():
        torch.testing.assert_close(attn(q, k, v)[0], ref)


@pytest.mark.parametrize("chunk_elements", [1, 3 * 4 * 2, 3 * 4 * 5 * 2, 1 << 20])
def test_additive_scores_function_gradcheck(monkeypatch, chunk_elements):
    """The blocked, recomputing backward: blocks of one (b, t); 2 steps (last partial);
    all steps of 2 batch rows (last partial); everything at once."""
    monkeypatch.setattr(attention_mod, "ADDITIVE_CHUNK_ELEMENTS", chunk_elements)
    g = torch.Generator().manual_seed(3)
    pq = torch.randn(3, 5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    pk = torch.randn(3, 3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    v = torch.randn(4, dtype=torch.float64, generator=g, requires_grad=True)
    fn = attention_mod._AdditiveScores.apply
    eye = torch.eye(4, dtype=torch.float64)  # pq, pk are already projected: W_q = W_k = I
    expected = additive_scores_reference(pq, pk, eye, eye, v)
    torch.testing.assert_close(fn(pq, pk, v), expected, atol=1e-14, rtol=0)
    assert torch.autograd.gradcheck(fn, (pq, pk, v))


def _torch_mha(E, heads, kdim, vdim, batch_first, seed=0, bias=True):
    torch.manual_seed(seed)
    mha = torch.nn.MultiheadAttention(E, heads, kdim=kdim, vdim=vdim, batch_first=batch_first,
                                      bias=bias)
    with torch.no_grad():  # non-zero biases so they are checked too
        for p in mha.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return mha.eval()


@pytest.mark.cpu_sensitive
@pytest.mark.parametrize("batch_first", [True, False])
@SETTINGS
@given(prob=problems(), heads=st.sampled_from([1, 2, 4]), same=st.booleans(),
       bias=st.booleans())
def test_multihead_matches_torch(batch_first, prob, heads, same, bias):
    B, Tq, S, Dq, Dk, Dv, lengths, seed = prob
    E = 4 * heads
    kdim, vdim = (E, E) if same else (Dk, Dv)
    mha = _torch_mha(E, heads, kdim, vdim, batch_first, seed, bias)
    attn = MultiHeadAttention.from_torch(mha)
    assert attn.packed == (kdim == vdim == E) == mha._qkv_same_embed_dim
    q, k, v = _tensors(B, Tq, S, E, kdim, vdim, seed)
    mask = _mask_from_lengths(lengths, S)

    def torch_call(qq, **kw):
        args = (qq, k, v) if batch_first else (qq.transpose(0, 1), k.transpose(0, 1),
                                                v.transpose(0, 1))
        out, w = mha(*args, key_padding_mask=~mask, need_weights=True, **kw)
        return (out if batch_first else out.transpose(0, 1)), w

    ref_ctx, ref_w = torch_call(q)
    ctx, w = attn(q, k, v, mask)
    torch.testing.assert_close(ctx, ref_ctx, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-5, rtol=1e-5)
    assert torch.all(w[~mask[:, None, :].expand_as(w)] == 0.0)
    _, ref_wh = torch_call(q, average_attn_weights=False)
    _, wh = attn(q, k, v, mask, return_head_weights=True)
    torch.testing.assert_close(wh, ref_wh, atol=1e-5, rtol=1e-5)
    # one decoder step with cached K/V projections
    cache = attn.precompute(k, v)
    ctx0, w0 = attn(q[:, 0], k, v, mask, cache=cache)
    torch.testing.assert_close(ctx0, ref_ctx[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w0, ref_w[:, 0], atol=1e-5, rtol=1e-5)


def test_multihead_state_dict_both_ways_and_causal():
    mha = _torch_mha(8, 2, 8, 8, batch_first=True, seed=4)
    attn = MultiHeadAttention(8, 8, num_heads=2)
    attn.load_state_dict(mha.state_dict())  # same names and shapes
    assert set(attn.state_dict()) == set(mha.state_dict())
    back = attn.to_torch(batch_first=True)
    for name, p in mha.state_dict().items():
        assert torch.equal(back.state_dict()[name], p), name
    q, k, _ = _tensors(2, 5, 5, 8, 8, 8, seed=2)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    ref, ref_w = mha(q, k, k, attn_mask=~causal)  # torch: True = not allowed
    ctx, w = attn(q, k, k, causal.expand(2, 5, 5))
    torch.testing.assert_close(ctx, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-5, rtol=1e-5)


def test_multihead_cache_values_default_to_keys():
    attn = _make("multihead", 6, 6, heads=2)
    q, k, v = _tensors(2, 3, 4, 6, 6, 6, seed=7)
    cache = attn.precompute(k)  # V projected from the keys
    assert cache.values_from_keys
    torch.testing.assert_close(attn(q, k, k, cache=cache)[0], attn(q, k, k)[0])
    # different values than keys: re-projected, so still the right answer
    torch.testing.assert_close(attn(q, k, v, cache=cache)[0], attn(q, k, v)[0])


def test_cache_index_select_for_beam_search():
    attn = _make("additive", 5, 3)
    q, k, v = _tensors(3, 2, 4, 5, 3, 2, seed=8)
    idx = torch.tensor([2, 0, 0])
    cache = attn.precompute(k).index_select(idx)
    ctx, w = attn(q[idx], k[idx], v[idx], cache=cache)
    ctx_ref, w_ref = attn(q[idx], k[idx], v[idx])
    torch.testing.assert_close(ctx, ctx_ref)
    torch.testing.assert_close(w, w_ref)


# ---------------------------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_gradcheck_float64(kind):
    heads = 2 if kind == "multihead" else 1
    attn = _make(kind, 4, 4, heads, dtype=torch.float64, seed=11)
    q, k, v = _tensors(2, 3, 5, 4, 4, 4, seed=12, dtype=torch.float64)
    mask = _mask_from_lengths([5, 3], 5)
    inputs = [t.requires_grad_(True) for t in (q, k, v)]
    names = [name for name, _ in attn.named_parameters()]

    # parameters go in through functional_call so gradcheck perturbs them too
    def g(q, k, v, *ps):
        return torch.func.functional_call(attn, dict(zip(names, ps, strict=True)),
                                          (q, k, v, mask))

    ps = [p.detach().clone().requires_grad_(True) for p in attn.parameters()]
    assert torch.autograd.gradcheck(g, (*inputs, *ps), eps=1e-6, atol=1e-7, fast_mode=True)
    # step form too, through a precomputed cache
    assert torch.autograd.gradcheck(lambda q, k, v: attn(q, k, v, mask, attn.precompute(k))[0],
                                    (q[:, 0].detach().requires_grad_(True), k, v))
    # gradients reach every parameter and the values
    ctx, w = attn(q, k, v, mask)
    (ctx.sum() + (w * torch.randn_like(w)).sum()).backward()
    assert v.grad is not None and v.grad.abs().sum() > 0
    for name, p in attn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # padded source positions get no gradient at all through the keys
    if kind != "none":  # uniform attention never looks at the keys
        assert torch.all(k.grad[1, 3:] == 0.0) and k.grad[1, :3].abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_fully_masked_row_raises(kind):
    attn = _make(kind, 4, 4, 2 if kind == "multihead" else 1)
    q, k, v = _tensors(2, 3, 5, 4, 4, 4, seed=0)
    mask = _mask_from_lengths([5, 2], 5)
    mask[1] = False
    with pytest.raises(ValueError, match="no real position"):
        attn(q, k, v, mask)
    with pytest.raises(ValueError, match="no real position"):
        attn(q[:, 0], k, v, mask)
    causal = torch.ones(3, 5, dtype=torch.bool).tril().expand(2, 3, 5).clone()
    causal[0, 1] = False
    with pytest.raises(ValueError, match="no real position"):
        attn(q, k, v, causal)


def test_masked_softmax_helper():
    s = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 9.0]])
    m = torch.tensor([[True, False, True], [False, False, True]])
    w = masked_softmax(s, m)
    assert w[0, 1] == 0.0 and w[1, 0] == 0.0 and w[1, 1] == 0.0 and w[1, 2] == 1.0
    torch.testing.assert_close(w[0, [0, 2]], torch.softmax(s[0, [0, 2]], -1))
    with pytest.raises(ValueError, match="bool"):
        masked_softmax(s, m.long())


def test_shape_and_dtype_errors_name_the_argument():
    attn = build_attention("additive", 4, 6)
    q, k, v = _tensors(2, 3, 5, 4, 6, 3, seed=0)
    expected = r"query: expected shape \(2, 4\) or \(2, Tq, 4\), got \(2, 3, 5\)"
    with pytest.raises(ValueError, match=expected):
        attn(torch.randn(2, 3, 5), k, v)
    with pytest.raises(ValueError, match=r"keys: expected shape \(B, S, 6\), got \(2, 5\)"):
        attn(q, k[:, :, 0], v)
    with pytest.raises(ValueError, match=r"values: expected shape \(2, 5, Dv\), got \(2, 4, 3\)"):
        attn(q, k, v[:, :4])
    with pytest.raises(ValueError, match=r"mask: expected shape \(2, 5\), got \(2, 4\)"):
        attn(q[:, 0], k, v, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask: expected shape \(2, 5\) or \(2, 3, 5\)"):
        attn(q, k, v, torch.ones(2, 2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask: expected a bool tensor"):
        attn(q, k, v, torch.ones(2, 5))
    with pytest.raises(ValueError, match="query: dtype torch.float64"):
        attn(q.double(), k, v)
    with pytest.raises(ValueError, match="keys: dtype torch.float64 differs"):
        attn(q.double(), k.double(), v.double())
    with pytest.raises(ValueError, match="cache: built for batch 2 x source 5"):
        attn(q[:1], k[:1], v[:1], cache=attn.precompute(k))
    with pytest.raises(ValueError, match="cache: expected the AttentionCache"):
        attn(q, k, v, cache=k)
    assert isinstance(attn.precompute(k), AttentionCache)


def test_constructor_errors():
    with pytest.raises(ValueError, match="query_dim == key_dim, got query_dim=4, key_dim=6"):
        build_attention("dot", 4, 6)
    with pytest.raises(ValueError, match="query_dim == key_dim"):
        build_attention("scaled_dot", 4, 6)
    with pytest.raises(ValueError, match="kind: expected one of"):
        build_attention("bahdanau", 4, 4)
    with pytest.raises(ValueError, match="num_heads"):
        build_attention("additive", 4, 4, num_heads=2)
    with pytest.raises(ValueError, match="attn_dim: expected a positive multiple of num_heads=3"):
        build_attention("multihead", 4, 4, attn_dim=8, num_heads=3)
    with pytest.raises(ValueError, match="query_dim"):
        build_attention("general", 0, 4)
