"""seqlab.nn.LSTM / LSTMCell against torch.nn.LSTM / LSTMCell with copied weights.

Exactness is property-based: random shapes, lengths, layers, directions, layouts and both
paths (fused kernel, gate loop), comparing outputs, final states and gradients with
max|ours - torch| / max(1, max|torch|) <= 1e-5 (float32) or 1e-10 (float64).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seqlab.nn import LSTM, LSTMCell, LSTMGates, record_gates
from seqlab.nn import gates as G
from seqlab.nn.reference import lstm_reference

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    if ref.numel() == 0:
        return 0.0
    return (ours - ref).abs().max().item() / max(1.0, ref.abs().max().item())


def copy_of(ref: torch.nn.Module, cls, **kwargs) -> torch.nn.Module:
    ours = cls(**kwargs).to(next(ref.parameters()).dtype)
    ours.load_state_dict(ref.state_dict())
    return ours


@st.composite
def lstm_cases(draw):
    return {
        "dtype": draw(st.sampled_from([torch.float32, torch.float64])),
        "I": draw(st.integers(1, 5)),
        "H": draw(st.integers(1, 6)),
        "L": draw(st.integers(1, 3)),
        "bidirectional": draw(st.booleans()),
        "batch_first": draw(st.booleans()),
        "bias": draw(st.booleans()),
        "B": draw(st.integers(1, 4)),
        "T": draw(st.integers(1, 7)),
        "mode": draw(st.sampled_from(["plain", "lengths", "packed"])),
        "hx": draw(st.booleans()),
        "gates": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


@pytest.mark.cpu_sensitive
@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=lstm_cases())
def test_matches_torch_outputs_states_and_gradients(case):
    torch.manual_seed(case["seed"])
    dt, I, H, L, B, T = (case[k] for k in ("dtype", "I", "H", "L", "B", "T"))
    bf = case["batch_first"]
    kw = dict(input_size=I, hidden_size=H, num_layers=L, bias=case["bias"], batch_first=bf,
              bidirectional=case["bidirectional"])
    ref = torch.nn.LSTM(**kw).to(dt)
    ours = copy_of(ref, LSTM, **kw)
    D = 2 if case["bidirectional"] else 1
    x = torch.randn((B, T, I) if bf else (T, B, I), dtype=dt, requires_grad=True)
    h0 = torch.randn(L * D, B, H, dtype=dt, requires_grad=True)
    c0 = torch.randn(L * D, B, H, dtype=dt, requires_grad=True)
    hx = (h0, c0) if case["hx"] else None
    lengths = torch.randint(1, T + 1, (B,))
    lengths[torch.randint(0, B, ())] = T  # the padded tensor is exactly T long

    if case["mode"] == "plain":
        ref_out, (ref_h, ref_c) = ref(x, hx)
        res = ours(x, hx, return_gates=case["gates"])
    elif case["mode"] == "lengths":
        packed = pack_padded_sequence(x, lengths, batch_first=bf, enforce_sorted=False)
        ref_out, (ref_h, ref_c) = ref(packed, hx)
        ref_out, _ = pad_packed_sequence(ref_out, batch_first=bf, total_length=T)
        res = ours(x, hx, lengths=lengths, return_gates=case["gates"])
    else:
        packed = pack_padded_sequence(x, lengths, batch_first=bf, enforce_sorted=False)
        ref_out, (ref_h, ref_c) = ref(packed, hx)
        res = ours(packed, hx, return_gates=case["gates"])
    out, (h, c) = res[:2]
    if case["mode"] == "packed":
        assert isinstance(out, PackedSequence)
        assert torch.equal(out.batch_sizes, ref_out.batch_sizes)
        out, ref_out = out.data, ref_out.data
    tol = TOL[dt]
    assert out.shape == ref_out.shape and h.shape == ref_h.shape and c.shape == ref_c.shape
    for name, a, b in (("output", out, ref_out), ("h_n", h, ref_h), ("c_n", c, ref_c)):
        assert rel_err(a, b) <= tol, (name, rel_err(a, b))

    # gradients w.r.t. inputs, initial state and every weight, for random upstream gradients
    gs = [torch.randn_like(t) for t in (ref_out, ref_h, ref_c)]
    wrt_ref = [x, *( [h0, c0] if hx else []), *ref.parameters()]
    wrt_ours = [x, *( [h0, c0] if hx else []), *ours.parameters()]
    g_ref = torch.autograd.grad((ref_out, ref_h, ref_c), wrt_ref, gs, retain_graph=True)
    g_ours = torch.autograd.grad((out, h, c), wrt_ours, gs)
    names = ["x", *(["h0", "c0"] if hx else []), *(n for n, _ in ref.named_parameters())]
    for name, a, b in zip(names, g_ours, g_ref, strict=True):
        assert rel_err(a, b) <= tol, (name, rel_err(a, b))

    if case["gates"]:
        gates = res[2]
        assert isinstance(gates, LSTMGates)
        for k in ("f", "i", "g", "o", "c", "h"):
            assert getattr(gates, k).shape == (L, D, B, T, H)
        real = torch.arange(T)[None, :] < lengths[:, None] if case["mode"] != "plain" \
            else torch.ones(B, T, dtype=torch.bool)
        assert torch.equal(gates.mask, real)
        assert torch.isnan(gates.f[:, :, ~real]).all()
        assert not torch.isnan(gates.f[:, :, real]).any()


@st.composite
def reference_cases(draw):
    return {
        "dtype": draw(st.sampled_from([torch.float32, torch.float64])),
        "I": draw(st.integers(1, 4)), "H": draw(st.integers(1, 5)), "L": draw(st.integers(1, 2)),
        "bidirectional": draw(st.booleans()), "batch_first": draw(st.booleans()),
        "bias": draw(st.booleans()), "B": draw(st.integers(1, 3)), "T": draw(st.integers(1, 6)),
        "lengths": draw(st.booleans()), "gates": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=reference_cases())
def test_fast_paths_match_the_float64_reference(case):
    """Fused kernel and gate loop (custom backward, sigmoid-based tanh) in float32/float64
    against `lstm_reference` (gate functions step by step, autograd) in float64."""
    torch.manual_seed(case["seed"])
    dt, I, H, L, B, T = (case[k] for k in ("dtype", "I", "H", "L", "B", "T"))
    bf, D = case["batch_first"], 2 if case["bidirectional"] else 1
    ours = LSTM(I, H, num_layers=L, bias=case["bias"], batch_first=bf,
                bidirectional=case["bidirectional"]).to(dt)
    ref = LSTM(I, H, num_layers=L, bias=case["bias"], bidirectional=case["bidirectional"])
    ref = ref.double()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(T, B, I, dtype=dt)  # time first; transposed for batch_first
    h0, c0 = torch.randn(L * D, B, H, dtype=dt), torch.randn(L * D, B, H, dtype=dt)
    lengths = None
    if case["lengths"]:
        lengths = torch.randint(1, T + 1, (B,))
        lengths[0] = T
    leaves = [t.clone().requires_grad_(True) for t in (x, h0, c0)]
    leaves64 = [t.detach().double().requires_grad_(True) for t in (x, h0, c0)]
    xin = leaves[0].transpose(0, 1) if bf else leaves[0]
    res = ours(xin, (leaves[1], leaves[2]), lengths=lengths, return_gates=case["gates"])
    out = res[0].transpose(0, 1) if bf else res[0]
    h, c = res[1]
    out64, (h64, c64), gates64 = lstm_reference(ref, leaves64[0], (leaves64[1], leaves64[2]),
                                                lengths)
    tol = TOL[dt]
    for name, a, b in (("output", out, out64), ("h_n", h, h64), ("c_n", c, c64)):
        assert rel_err(a.double(), b) <= tol, (name, rel_err(a.double(), b))
    upstream = [torch.randn_like(t) for t in (out64, h64, c64)]
    g64 = torch.autograd.grad((out64, h64, c64), [*leaves64, *ref.parameters()], upstream)
    g = torch.autograd.grad((out, h, c), [*leaves, *ours.parameters()],
                            [u.to(dt) for u in upstream])
    names = ["x", "h0", "c0", *(n for n, _ in ours.named_parameters())]
    for name, a, b in zip(names, g, g64, strict=True):
        assert rel_err(a.double(), b) <= tol, (name, rel_err(a.double(), b))
    if case["gates"]:
        for name, ref_value in gates64.items():
            value = getattr(res[2], name).double()
            assert torch.equal(value.isnan(), ref_value.isnan()), name
            assert rel_err(value.nan_to_num(), ref_value.nan_to_num()) <= tol, name


def test_seeded_init_equals_torch():
    for kw in (dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True),
               dict(input_size=2, hidden_size=5, bias=False)):
        torch.manual_seed(123)
        ref = torch.nn.LSTM(**kw)
        torch.manual_seed(123)
        ours = LSTM(**kw)
        ref_sd, our_sd = ref.state_dict(), ours.state_dict()
        assert list(ref_sd) == list(our_sd)
        for k in ref_sd:
            assert torch.equal(ref_sd[k], our_sd[k]), k
        bound = 1 / math.sqrt(kw["hidden_size"])
        assert all(p.abs().max() <= bound for p in ours.parameters())
    torch.manual_seed(7)
    ref_cell = torch.nn.LSTMCell(3, 4)
    torch.manual_seed(7)
    cell = LSTMCell(3, 4)
    for (n1, p1), (n2, p2) in zip(ref_cell.named_parameters(), cell.named_parameters(),
                                  strict=True):
        assert n1 == n2 and torch.equal(p1, p2)


@pytest.mark.cpu_sensitive
def test_load_state_dict_both_ways():
    kw = dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True, batch_first=True)
    ours, ref = LSTM(**kw), torch.nn.LSTM(**kw)
    ref.load_state_dict(ours.state_dict())  # ours -> torch
    x = torch.randn(2, 5, 3)
    assert torch.allclose(ref(x)[0], ours(x)[0], atol=1e-6)
    ref2 = torch.nn.LSTM(**kw)
    ours.load_state_dict(ref2.state_dict())  # torch -> ours
    assert torch.allclose(ref2(x)[0], ours(x, return_gates=True)[0], atol=1e-6)
    assert "weight_hh_l1_reverse" in ours.state_dict()


@pytest.mark.parametrize("gates", [False, True])
def test_dropout_only_in_training(gates):
    torch.manual_seed(0)
    ref = torch.nn.LSTM(3, 8, num_layers=3, dropout=0.5)
    ours = copy_of(ref, LSTM, input_size=3, hidden_size=8, num_layers=3, dropout=0.5)
    x = torch.randn(6, 2, 3)
    ref.eval()
    ours.eval()
    eval_out = ours(x, return_gates=gates)[0]
    assert rel_err(eval_out, ref(x)[0]) <= 1e-5
    ours.train()
    train_out = ours(x, return_gates=gates)[0]
    assert (train_out - eval_out).abs().max() > 1e-3  # dropout acted between layers


@pytest.mark.cpu_sensitive
def test_padding_never_changes_real_positions():
    torch.manual_seed(1)
    lstm = LSTM(2, 3, num_layers=2, bidirectional=True, batch_first=True)
    lengths = torch.tensor([5, 2, 4])
    x = torch.randn(3, 5, 2)
    junk = x.clone()
    pad = torch.arange(5)[None, :] >= lengths[:, None]
    junk[pad] = 1e3
    for gates in (False, True):
        a, (ha, ca) = lstm(x, lengths=lengths, return_gates=gates)[:2]
        b, (hb, cb) = lstm(junk, lengths=lengths, return_gates=gates)[:2]
        assert torch.equal(a, b) and torch.equal(ha, hb) and torch.equal(ca, cb)
        assert torch.all(a[pad] == 0)
        for k in range(3):  # each sequence alone, unpadded
            n = int(lengths[k])
            alone, (h1, c1) = lstm(x[k:k + 1, :n])
            assert torch.allclose(alone, a[k:k + 1, :n], atol=1e-6)
            assert torch.allclose(h1[:, 0], ha[:, k], atol=1e-6)
            assert torch.allclose(c1[:, 0], ca[:, k], atol=1e-6)
    # the recorded gates of each sequence equal those of the sequence run alone
    gates = lstm(junk, lengths=lengths, return_gates=True)[2]
    for k in range(3):
        n = int(lengths[k])
        alone = lstm(x[k:k + 1, :n], return_gates=True)[2]
        for field in ("f", "i", "g", "o", "c", "h"):
            padded_value = getattr(gates, field)[:, :, k]  # (L, D, T, H)
            assert torch.allclose(padded_value[:, :, :n], getattr(alone, field)[:, :, 0],
                                  atol=1e-6)
            assert torch.isnan(padded_value[:, :, n:]).all()
        for layer in range(2):
            for direction in range(2):  # select() reads the buffers directly: same values
                sel = gates.select(layer, direction, k)
                assert torch.equal(sel["o"], gates.o[layer, direction, k, :n])
                assert torch.equal(sel["c"], gates.c[layer, direction, k, :n])


def test_gates_follow_the_equations_and_natural_time_order():
    torch.manual_seed(2)
    lstm = LSTM(3, 4, bidirectional=True).double()
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    out, (h_n, _), gates = lstm(x, return_gates=True)
    for d in range(2):
        f, i, g, o, c, h = (getattr(gates, k)[0, d] for k in ("f", "i", "g", "o", "c", "h"))
        # recompute each step from the recorded gates: C_t = f C_{t-1} + i C~, h = o tanh(C)
        steps = range(6) if d == 0 else range(5, -1, -1)
        c_prev = torch.zeros(2, 4, dtype=torch.float64)
        for t in steps:
            assert torch.allclose(c[:, t], f[:, t] * c_prev + i[:, t] * g[:, t], atol=1e-12)
            assert torch.allclose(h[:, t], o[:, t] * torch.tanh(c[:, t]), atol=1e-12)
            c_prev = c[:, t]
        assert torch.allclose(h.transpose(0, 1), out[..., d * 4:(d + 1) * 4], atol=1e-12)
    # the reverse direction equals a forward LSTM with the reverse weights on the flipped input
    fwd = LSTM(3, 4).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(fwd, name + "_l0").copy_(getattr(lstm, name + "_l0_reverse"))
    _, (h_rev, _), g_rev = fwd(x.flip(0), return_gates=True)
    assert torch.allclose(g_rev.f[0, 0].flip(1), gates.f[0, 1], atol=1e-12)
    assert torch.allclose(h_rev[0], h_n[1], atol=1e-12)
    # recorded gates stay out of the graph and the gate functions agree with the record
    assert not gates.f.requires_grad
    w_ih, w_hh, b_ih, b_hh = lstm.layer_weights(0, 0)
    z_i, z_f, z_g, z_o = G.split_gates(G.preactivations(x[0], torch.zeros(2, 4).double(),
                                                        w_ih, w_hh, b_ih, b_hh))
    assert torch.allclose(G.forget_gate(z_f), gates.f[0, 0, :, 0], atol=1e-12)
    assert torch.allclose(G.cell_update(z_g), gates.g[0, 0, :, 0], atol=1e-12)


def test_record_gates_inside_a_bigger_model():
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = LSTM(2, 3, batch_first=True)
            self.cell = LSTMCell(3, 3)
            self.head = torch.nn.Linear(3, 1)

        def forward(self, x):
            out, (h, c) = self.encoder(x)
            h2, _ = self.cell(out[:, -1], (h[0], c[0]))
            return self.head(h2)

    torch.manual_seed(3)
    model = Model()
    x = torch.randn(4, 5, 2)
    plain = model(x)
    with record_gates(model) as store:
        recorded = model(x)
        model(x)
    assert torch.allclose(plain, recorded, atol=1e-6)
    assert set(store.names()) == {"encoder", "cell"}
    assert len(store["encoder"]) == 2
    direct = model.encoder(x, return_gates=True)[2]
    assert torch.allclose(store["encoder"][-1].i, direct.i)
    assert store["cell"][0].f.shape == (4, 3)
    model(x)  # outside the context: nothing more is recorded
    assert len(store["encoder"]) == 2 and model.encoder._gate_recorder is None
    with pytest.raises(ValueError, match="no seqlab LSTM"), record_gates(torch.nn.Linear(2, 2)):
        pass


@pytest.mark.cpu_sensitive
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cell_matches_torch(dtype):
    torch.manual_seed(4)
    ref = torch.nn.LSTMCell(3, 5).to(dtype)
    cell = copy_of(ref, LSTMCell, input_size=3, hidden_size=5)
    x = torch.randn(4, 3, dtype=dtype, requires_grad=True)
    hx = (torch.randn(4, 5, dtype=dtype, requires_grad=True),
          torch.randn(4, 5, dtype=dtype, requires_grad=True))
    rh, rc = ref(x, hx)
    g_ref = torch.autograd.grad(rh.sum() + rc.pow(2).sum(), [x, *hx, *ref.parameters()])
    for gates in (False, True):
        res = cell(x, hx, return_gates=gates)
        h, c = res[:2]
        assert rel_err(h, rh) <= TOL[dtype] and rel_err(c, rc) <= TOL[dtype]
        g = torch.autograd.grad(h.sum() + c.pow(2).sum(), [x, *hx, *cell.parameters()])
        assert all(rel_err(a, b) <= TOL[dtype] for a, b in zip(g, g_ref, strict=True))
    h1, c1 = cell(x[0].detach())  # unbatched
    assert h1.shape == (5,) and torch.allclose(h1, ref(x[0].detach())[0], atol=1e-6)


@pytest.mark.cpu_sensitive
def test_unbatched_input_like_torch():
    torch.manual_seed(5)
    ref = torch.nn.LSTM(2, 3, num_layers=2)
    ours = copy_of(ref, LSTM, input_size=2, hidden_size=3, num_layers=2)
    x = torch.randn(4, 2)
    r_out, (r_h, _) = ref(x)
    for gates in (False, True):
        out, (h, _) = ours(x, return_gates=gates)[:2]
        assert out.shape == r_out.shape and h.shape == r_h.shape
        assert rel_err(out, r_out) <= 1e-5 and rel_err(h, r_h) <= 1e-5


def test_bad_arguments_raise_clear_errors():
    lstm = LSTM(3, 4, num_layers=2)
    x = torch.randn(5, 2, 3)
    with pytest.raises(ValueError, match=r"input_size=3, got shape \(5, 2, 7\)"):
        lstm(torch.randn(5, 2, 7))
    with pytest.raises(ValueError, match=r"LSTM input: expected a 3-D tensor.*got \(5,\)"):
        lstm(torch.randn(5))
    with pytest.raises(ValueError, match="dtype torch.float64 does not match"):
        lstm(x.double())
    with pytest.raises(ValueError, match="floating-point"):
        lstm(torch.ones(5, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"hx\[0\] \(h_0\): expected shape \(2, 2, 4\), got "
                                         r"\(1, 2, 4\)"):
        lstm(x, (torch.zeros(1, 2, 4), torch.zeros(2, 2, 4)))
    with pytest.raises(ValueError, match=r"hx\[1\] \(c_0\): expected dtype"):
        lstm(x, (torch.zeros(2, 2, 4), torch.zeros(2, 2, 4, dtype=torch.float64)))
    with pytest.raises(ValueError, match=r"lengths: expected shape \(2,\).*got \(3,\)"):
        lstm(x, lengths=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"lengths: every length must be in \[1, 5\]"):
        lstm(x, lengths=torch.tensor([6, 2]))
    with pytest.raises(ValueError, match="lengths: not allowed with a PackedSequence"):
        lstm(pack_padded_sequence(x, torch.tensor([5, 3])), lengths=torch.tensor([5, 3]))
    with pytest.raises(ValueError, match="proj_size=2 is not supported"):
        LSTM(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        LSTM(3, 0)
    cell = LSTMCell(3, 4)
    with pytest.raises(ValueError, match=r"LSTMCell hx\[0\] \(h\): expected shape \(2, 4\)"):
        cell(torch.randn(2, 3), (torch.zeros(3, 4), torch.zeros(2, 4)))
    with pytest.raises(ValueError, match=r"input_size=3, got shape \(2, 5\)"):
        cell(torch.randn(2, 5))
