"""LSTM and LSTMCell built from the gate equations in `seqlab.nn.gates`, drop-in for torch's.

Two ways to run the same weights:

* fast path (default): torch's fused kernel (`torch._VF.lstm` / `torch._VF.lstm_cell`, exactly
  what `torch.nn.LSTM` calls), so plain use is as fast as `torch.nn.LSTM`;
* gate path (`return_gates=True`, or inside `record_gates(model)`): an explicit loop over time
  that evaluates `forget_gate`, `input_gate`, `cell_update`, `output_gate`, `cell_state` and
  `hidden_state` step by step and keeps every value, returned as an `LSTMGates` record. Its
  backward pass is written out too (`_GateLoop.backward`, from `gates.local_derivatives`),
  which keeps training through the gate path within ~2x of the fused kernel.

The gate path's backward is once-differentiable (no gradients of gradients), and the recorded
gates are detached: they are for looking at, not for putting a loss on.

Both paths agree with `torch.nn.LSTM` (same parameter names, shapes, init, gate order i, f, g,
o) to float rounding; tests/test_lstm.py checks outputs, states and gradients against torch and
against `seqlab.nn.reference.lstm_reference` (the same equations step by step, plain autograd).

Optimisations in the gate path, each for speed of a loop that runs one small step at a time:
a custom autograd function (`_GateLoop`) instead of autograd through the loop, which would
record a dozen small operations per step and walk them back one by one; one preallocated
(T, B, 4H) buffer that holds the input projections of all steps (one big matmul) and is then
overwritten by the gate values (no allocation per step); tanh through a sigmoid
(`gates.fast_tanh`); small steps on one thread (`_threads_for_steps`).

Variable-length batches: pass a `PackedSequence`, or a padded tensor plus `lengths=` (B,).
Steps t >= lengths[b] are padding: they never change the results at real steps, the outputs
there are exactly zero, and (h_n, c_n) come from each sequence's last real step (for the
reverse direction: from its first step), just as with packing.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import _VF, Tensor, nn
from torch.autograd.function import once_differentiable
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seqlab.device import fused_lstm_supports
from seqlab.nn.gates import (
    cell_state,
    cell_update,
    forget_gate,
    hidden_state,
    input_gate,
    local_derivatives,
    lstm_step,
    output_gate,
    split_gates,
)

__all__ = ["LSTM", "LSTMCell", "LSTMGates", "GateStore", "record_gates"]


# ----------------------------------------------------------------------------- gate record

_FIELDS = ("f", "i", "g", "o", "c", "h")


class LSTMGates:
    """Every gate value of one LSTM call.

    For `LSTM`, each of f, i, g, o, c, h has shape (num_layers, num_directions, B, T, H):
      f: forget gate f_t, i: input gate i_t, g: cell update C~_t, o: output gate o_t,
      c: cell state C_t, h: hidden state h_t (this direction's output).
    Time runs in natural order for both directions (index t is input step t; the reverse
    direction visits them from T-1 down to 0). Padded steps (t >= lengths[b]) are NaN, so
    plots leave them blank and statistics must use `mask` (e.g. `gates.f[:, :, gates.mask]`).
    The tensors are detached copies: looking at them never affects training.
    `lengths`: (B,) real lengths. For `LSTMCell` each field is (B, H) and `lengths` is None.

    The LSTM records into its per-layer buffers; a field is assembled (one copy into the
    (L, D, B, T, H) layout) the first time it is read, so recording costs little when only
    some fields, or only `select()`ed sequences, are looked at.
    """

    NAMES = {"f": "forget gate f", "i": "input gate i", "g": "cell update C~",
             "o": "output gate o", "c": "cell state C", "h": "hidden state h"}

    def __init__(self, f: Tensor, i: Tensor, g: Tensor, o: Tensor, c: Tensor, h: Tensor,
                 lengths: Tensor | None = None):
        self._values: dict[str, Tensor] = {"f": f, "i": i, "g": g, "o": o, "c": c, "h": h}
        self._raw: list[list[dict[str, Tensor]]] | None = None
        self.lengths = lengths

    @classmethod
    def _from_buffers(cls, raw: list[list[dict[str, Tensor]]], lengths: Tensor) -> LSTMGates:
        """raw[layer][direction] = {"f": ..., "h": ...}, each (T, B, H) in time order."""
        gates = cls.__new__(cls)
        gates._values, gates._raw, gates.lengths = {}, raw, lengths
        return gates

    def _field(self, name: str) -> Tensor:
        if name not in self._values:
            assert self._raw is not None and self.lengths is not None
            first = self._raw[0][0][name]
            T, B, H = first.shape
            value = first.new_empty(len(self._raw), len(self._raw[0]), B, T, H)
            for layer, directions in enumerate(self._raw):
                for direction, buffers in enumerate(directions):
                    value[layer, direction].copy_(buffers[name].transpose(0, 1))
            if bool((self.lengths < T).any()):
                value.masked_fill_(~self.mask.to(value.device)[:, :, None], math.nan)
            self._values[name] = value
        return self._values[name]

    f = property(lambda self: self._field("f"), doc="forget gate f_t, (L, D, B, T, H)")
    i = property(lambda self: self._field("i"), doc="input gate i_t, (L, D, B, T, H)")
    g = property(lambda self: self._field("g"), doc="cell update C~_t, (L, D, B, T, H)")
    o = property(lambda self: self._field("o"), doc="output gate o_t, (L, D, B, T, H)")
    c = property(lambda self: self._field("c"), doc="cell state C_t, (L, D, B, T, H)")
    h = property(lambda self: self._field("h"), doc="hidden state h_t, (L, D, B, T, H)")

    @property
    def shape(self) -> tuple[int, ...]:
        """(L, D, B, T, H) (or (B, H) for an LSTMCell record)."""
        if self._raw is None:
            return tuple(self._values["f"].shape)
        T, B, H = self._raw[0][0]["f"].shape
        return (len(self._raw), len(self._raw[0]), B, T, H)

    def __repr__(self) -> str:
        return f"LSTMGates(shape={self.shape}, fields={_FIELDS})"

    def as_dict(self) -> dict[str, Tensor]:
        return {name: self._field(name) for name in _FIELDS}

    @property
    def mask(self) -> Tensor:
        """(B, T) bool, True at real (non-padded) steps."""
        if self.lengths is None:
            raise ValueError("LSTMGates.mask: this record comes from an LSTMCell (no time axis)")
        T = self.shape[3]
        return torch.arange(T)[None, :] < self.lengths[:, None]

    def select(self, layer: int = 0, direction: int = 0, batch_index: int = 0
               ) -> dict[str, Tensor]:
        """The (T_b, H) values of one sequence, padding cut off: {"f": ..., ..., "h": ...}."""
        if self.lengths is None:
            raise ValueError("LSTMGates.select: this record comes from an LSTMCell")
        L, D, B = self.shape[:3]
        for name, value, limit in (("layer", layer, L), ("direction", direction, D),
                                   ("batch_index", batch_index, B)):
            if not 0 <= value < limit:
                raise ValueError(f"LSTMGates.select: {name}={value} out of range [0, {limit})")
        n = int(self.lengths[batch_index])
        if self._raw is not None:  # straight from the buffers, without assembling everything
            raw = self._raw[layer][direction]
            return {k: raw[k][:n, batch_index].clone() for k in _FIELDS}
        return {k: self._field(k)[layer, direction, batch_index, :n] for k in _FIELDS}


class GateStore:
    """Where `record_gates` puts the gates: module name -> list of `LSTMGates`, one per call."""

    def __init__(self) -> None:
        self.records: dict[str, list[LSTMGates]] = {}

    def add(self, name: str, gates: LSTMGates) -> None:
        self.records.setdefault(name, []).append(gates)

    def __getitem__(self, name: str) -> list[LSTMGates]:
        if name not in self.records:
            raise KeyError(f"no gates recorded for module {name!r}; recorded: "
                           f"{sorted(self.records)}")
        return self.records[name]

    def __contains__(self, name: object) -> bool:
        return name in self.records

    def names(self) -> list[str]:
        return list(self.records)

    def last(self, name: str | None = None) -> LSTMGates:
        """The latest record of module `name` (may be omitted when only one module recorded)."""
        if name is None:
            if len(self.records) != 1:
                raise ValueError(f"GateStore.last: give a module name, one of "
                                 f"{sorted(self.records)}")
            name = next(iter(self.records))
        return self[name][-1]


@contextlib.contextmanager
def record_gates(module: nn.Module) -> Iterator[GateStore]:
    """Make every seqlab `LSTM`/`LSTMCell` inside `module` record its gates while active.

        with record_gates(model) as store:
            model(batch)
        gates = store["encoder.rnn"][-1]   # names as in model.named_modules() ("" = model)

    The modules keep returning what they normally return, so `model` needs no change; they run
    the gate path (same results up to float rounding, a bit slower).
    """
    targets = [(name, m) for name, m in module.named_modules() if isinstance(m, LSTM | LSTMCell)]
    if not targets:
        raise ValueError(f"record_gates: {type(module).__name__} contains no seqlab LSTM or "
                         "LSTMCell (torch.nn.LSTM cannot record gates; use seqlab.nn.LSTM)")
    store = GateStore()
    previous = [m._gate_recorder for _, m in targets]
    for name, m in targets:
        m._gate_recorder = (store, name)
    try:
        yield store
    finally:
        for (_, m), prev in zip(targets, previous, strict=True):
            m._gate_recorder = prev


# ----------------------------------------------------------------------------- the gate loop

# Per-step matmuls below this many multiply-adds run faster on one thread: the work is too
# small to split, and waiting for a second thread (worse on a shared CPU) costs more.
_SMALL_STEP_MACS = 1 << 22


@contextlib.contextmanager
def _threads_for_steps(batch: int, hidden: int) -> Iterator[None]:
    """Run the recurrent loop on one thread when its per-step matmul is small."""
    before = torch.get_num_threads()
    small = batch * hidden * 4 * hidden < _SMALL_STEP_MACS
    if small and before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small and before > 1:
            torch.set_num_threads(before)


class _GateLoop(torch.autograd.Function):
    """One layer, one direction over the whole sequence, from the gate functions.

    Forward keeps all gate values (they are the recording and what backward needs); backward
    is backpropagation through time written with `gates.local_derivatives`, one small matmul
    and a few element-wise ops per step instead of a long autograd graph. The same computation
    without these optimisations: `seqlab.nn.reference.lstm_reference`.
    """

    @staticmethod
    def forward(ctx, x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
                b_ih: Tensor | None, b_hh: Tensor | None, mask: Tensor | None, reverse: bool):
        # x: (T, B, I); h0, c0: (B, H); mask: (T, B, 1) bool or None (no padding)
        T, B, I = x.shape
        H = w_hh.shape[1]
        # Input part of every pre-activation for all steps in one matmul: (T, B, 4H). The same
        # buffer then receives the recurrent part and the gate values (i, f, g, o) step by step
        # (one buffer: a second one would cost a copy and fresh memory pages every step).
        if b_ih is not None and b_hh is not None:
            acts = torch.addmm(b_ih + b_hh, x.reshape(T * B, I), w_ih.t())
        else:
            acts = x.reshape(T * B, I) @ w_ih.t()
        acts = acts.view(T, B, 4 * H)
        whh_t = w_hh.t().contiguous()  # (H, 4H); the per-step matmul is faster without transpose
        tanh_cs = x.new_empty(T, B, H)
        # States at slot 0..T: forward keeps C_t in slot t+1 (slot 0 = initial); reverse keeps
        # C_t in slot t (slot T = initial). So step t reads slot `prev` and writes slot `cur`.
        cs = x.new_empty(T + 1, B, H)
        hs = x.new_empty(T + 1, B, H)
        init = T if reverse else 0
        cs[init] = c0
        hs[init] = h0
        # Per-step views made once (unbind is one call; indexing in the loop costs per step).
        acts_t, tanh_t = acts.unbind(0), tanh_cs.unbind(0)
        c_t, h_t = cs.unbind(0), hs.unbind(0)
        # z_i[t], z_f[t], z_g[t], z_o[t]: (B, H) views of acts[t], overwritten by the gates
        z_i, z_f, z_g, z_o = (z.unbind(0) for z in split_gates(acts))
        mask_t = mask.unbind(0) if mask is not None else None
        with _threads_for_steps(B, H):
            for t in (range(T - 1, -1, -1) if reverse else range(T)):
                prev, cur = (t + 1, t) if reverse else (t, t + 1)
                acts_t[t].addmm_(h_t[prev], whh_t)  # (B, 4H) pre-activations
                i = input_gate(z_i[t], out=z_i[t])
                f = forget_gate(z_f[t], out=z_f[t])
                g = cell_update(z_g[t], out=z_g[t])
                o = output_gate(z_o[t], out=z_o[t])
                c = cell_state(f, c_t[prev], i, g, out=c_t[cur])
                h = hidden_state(o, c, out=h_t[cur], tanh_c_out=tanh_t[t])
                if mask_t is not None:  # padded rows keep their state
                    torch.where(mask_t[t], c, c_t[prev], out=c)
                    torch.where(mask_t[t], h, h_t[prev], out=h)
        out = hs[:T] if reverse else hs[1:]
        out = torch.where(mask, out, 0.0) if mask is not None else out.clone()
        last = 0 if reverse else T
        ctx.reverse = reverse
        ctx.has_bias = b_ih is not None
        ctx.save_for_backward(x, w_ih, w_hh, acts, cs, hs, tanh_cs, mask)
        ctx.mark_non_differentiable(acts, cs)
        return out, hs[last].clone(), cs[last].clone(), acts, cs

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_hn, g_cn, _g_acts, _g_cs):
        x, w_ih, w_hh, acts, cs, hs, tanh_cs, mask = ctx.saved_tensors
        reverse = ctx.reverse
        T, B, H = tanh_cs.shape
        i, f, g, o = acts.view(T, B, 4, H).unbind(2)
        c_prev = cs[1:] if reverse else cs[:-1]  # (T, B, H): C_{t-1} as seen by step t
        h_prev = hs[1:] if reverse else hs[:-1]
        P, Q, K = local_derivatives(i, f, g, o, c_prev, tanh_cs)  # (T,B,3,H), (T,B,H) x2
        keep = None
        if mask is not None:  # padded steps: no gate gradient, state gradient passes through
            P = P * mask[..., None]
            Q = Q * mask
            K = K * mask
            f = torch.where(mask, f, 1.0)
            keep = (~mask).to(x.dtype)
        if g_out is None:
            g_out = x.new_zeros(T, B, H)
        elif mask is not None:
            g_out = torch.where(mask, g_out, 0.0)
        dh = g_hn.clone() if g_hn is not None else x.new_zeros(B, H)
        dc = g_cn.clone() if g_cn is not None else x.new_zeros(B, H)
        dZ = x.new_empty(T, B, 4, H)  # dL/d(pre-activations), gate order (i, f, g, o)
        # per-step views, made once
        g_out_t, K_t, P_t, Q_t, f_t = (v.unbind(0) for v in (g_out, K, P, Q, f))
        dZ_ifg, dZ_o = dZ[:, :, :3].unbind(0), dZ[:, :, 3].unbind(0)
        dZ_t = dZ.view(T, B, 4 * H).unbind(0)
        keep_t = keep.unbind(0) if keep is not None else None
        with _threads_for_steps(B, H):
            for t in (range(T) if reverse else range(T - 1, -1, -1)):
                dh = dh + g_out_t[t]
                dc = torch.addcmul(dc, dh, K_t[t])
                torch.mul(dc.unsqueeze(1), P_t[t], out=dZ_ifg[t])
                torch.mul(dh, Q_t[t], out=dZ_o[t])
                dh_prev = torch.mm(dZ_t[t], w_hh)
                if keep_t is not None:
                    dh_prev.addcmul_(dh, keep_t[t])
                dh = dh_prev
                dc = dc * f_t[t]
        dZ2 = dZ.view(T * B, 4 * H)
        need = ctx.needs_input_grad
        dx = torch.mm(dZ2, w_ih).view(T, B, -1) if need[0] else None
        dw_ih = torch.mm(dZ2.t(), x.reshape(T * B, -1)) if need[3] else None
        dw_hh = torch.mm(dZ2.t(), h_prev.reshape(T * B, H)) if need[4] else None
        db_ih = db_hh = None
        if ctx.has_bias and (need[5] or need[6]):
            db_ih = dZ2.sum(0)
            db_hh = db_ih.clone()
        return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh, None, None


# ----------------------------------------------------------------------------- modules

def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _check_state(name: str, state: object, expected: tuple[int, ...], ref: Tensor) -> Tensor:
    if not isinstance(state, Tensor):
        raise ValueError(f"{name}: expected a tensor of shape {expected}, got "
                         f"{type(state).__name__}")
    if _shape(state) != expected:
        raise ValueError(f"{name}: expected shape {expected}, got {_shape(state)}")
    if state.dtype != ref.dtype and not torch.is_autocast_enabled(ref.device.type):
        raise ValueError(f"{name}: expected dtype {ref.dtype} (the input's), got {state.dtype}")
    if state.device != ref.device:
        raise ValueError(f"{name}: expected device {ref.device} (the input's), got "
                         f"{state.device}")
    return state


class LSTM(nn.Module):
    """Multi-layer LSTM, a drop-in for `torch.nn.LSTM` that can also return its gates.

    Args as torch.nn.LSTM: input_size I, hidden_size H, num_layers L, bias, batch_first,
    dropout (between layers, training only), bidirectional (D = 2 directions).

    forward(input, hx=None, lengths=None, return_gates=False):
      input: (T, B, I), (B, T, I) with batch_first, (T, I) unbatched, or a PackedSequence.
      hx: optional (h_0, c_0), each (L*D, B, H) ((L*D, H) unbatched); zeros if omitted.
      lengths: optional (B,) ints in [1, T]: real lengths of a padded batch.
      Returns output (T, B, D*H) (or packed, or batch-first), (h_n, c_n) each (L*D, B, H),
      and with return_gates=True also an `LSTMGates` record (shapes (L, D, B, T, H)).
    """

    weight_ih_l0: Tensor  # registered by name in __init__; declared for type checkers

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        if proj_size != 0:
            raise ValueError(f"LSTM: proj_size={proj_size} is not supported by seqlab.nn.LSTM "
                             "(use proj_size=0, or torch.nn.LSTM for projections)")
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"LSTM: {name} must be a positive int, got {value!r}")
        if not (isinstance(dropout, int | float) and 0 <= dropout <= 1):
            raise ValueError(f"LSTM: dropout must be a number in [0, 1], got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn("LSTM: dropout acts between layers, so it has no effect with "
                          f"num_layers=1 (got dropout={dropout})", stacklevel=2)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = 0
        self._gate_recorder: tuple[GateStore, str] | None = None
        D = 2 if bidirectional else 1
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        # Same registration order as torch.nn.LSTM, so a seeded init gives identical weights.
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * D
            for direction in range(D):
                sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                self.register_parameter(
                    "weight_ih" + sfx, nn.Parameter(torch.empty(4 * hidden_size, layer_in,
                                                                **factory)))
                self.register_parameter(
                    "weight_hh" + sfx, nn.Parameter(torch.empty(4 * hidden_size, hidden_size,
                                                                **factory)))
                if bias:
                    self.register_parameter(
                        "bias_ih" + sfx, nn.Parameter(torch.empty(4 * hidden_size, **factory)))
                    self.register_parameter(
                        "bias_hh" + sfx, nn.Parameter(torch.empty(4 * hidden_size, **factory)))
        self.reset_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def reset_parameters(self) -> None:
        """torch's default: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def flatten_parameters(self) -> None:
        """No-op, for code written for torch.nn.LSTM (the CPU kernel takes the weight list)."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s

    def layer_weights(self, layer: int, direction: int
                      ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """(weight_ih, weight_hh, bias_ih, bias_hh) of one layer and direction."""
        sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        w_ih = getattr(self, "weight_ih" + sfx)
        w_hh = getattr(self, "weight_hh" + sfx)
        if not self.bias:
            return w_ih, w_hh, None, None
        return w_ih, w_hh, getattr(self, "bias_ih" + sfx), getattr(self, "bias_hh" + sfx)

    def _flat_weights(self) -> list[Tensor]:
        """The weights in the order torch's fused kernel expects (as torch.nn.LSTM's)."""
        flat: list[Tensor] = []
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                flat.extend(w for w in self.layer_weights(layer, direction) if w is not None)
        return flat

    # ---------------------------------------------------------------- argument checks

    def _check_input(self, x: Tensor, what: str) -> None:
        w = self.weight_ih_l0
        if not x.is_floating_point():
            raise ValueError(f"LSTM {what}: expected a floating-point tensor, got dtype {x.dtype}")
        if x.dtype != w.dtype and not torch.is_autocast_enabled(x.device.type):
            raise ValueError(f"LSTM {what}: dtype {x.dtype} does not match the weights' dtype "
                             f"{w.dtype}; convert the input with .to({w.dtype}) or the model "
                             f"with .to({x.dtype})")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"LSTM {what}: expected last dimension input_size="
                             f"{self.input_size}, got shape {_shape(x)}")

    def _check_hx(self, hx: object, batch: int, ref: Tensor) -> tuple[Tensor, Tensor]:
        expected = (self.num_layers * self.num_directions, batch, self.hidden_size)
        if hx is None:
            zeros = ref.new_zeros(expected)
            return zeros, zeros
        if not isinstance(hx, tuple | list) or len(hx) != 2:
            raise ValueError(f"LSTM hx: expected a tuple (h_0, c_0) of tensors of shape "
                             f"{expected}, got {type(hx).__name__}")
        return (_check_state("LSTM hx[0] (h_0)", hx[0], expected, ref),
                _check_state("LSTM hx[1] (c_0)", hx[1], expected, ref))

    @staticmethod
    def _check_lengths(lengths: object, batch: int, steps: int) -> Tensor:
        lengths = torch.as_tensor(lengths)
        if lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise ValueError(f"LSTM lengths: expected integers, got dtype {lengths.dtype}")
        if _shape(lengths) != (batch,):
            raise ValueError(f"LSTM lengths: expected shape ({batch},) (one length per "
                             f"sequence), got {_shape(lengths)}")
        lengths = lengths.to("cpu", torch.int64)
        if batch and (int(lengths.min()) < 1 or int(lengths.max()) > steps):
            raise ValueError(f"LSTM lengths: every length must be in [1, {steps}] (the number "
                             f"of time steps), got min {int(lengths.min())}, max "
                             f"{int(lengths.max())}")
        return lengths

    # ---------------------------------------------------------------- forward

    def forward(self, input: Tensor | PackedSequence, hx: tuple[Tensor, Tensor] | None = None,
                lengths: Tensor | None = None, return_gates: bool = False):
        record = return_gates or self._gate_recorder is not None
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError("LSTM lengths: not allowed with a PackedSequence input (it "
                                 "carries its own lengths)")
            result = self._forward_packed(input, hx, record)
        else:
            result = self._forward_padded(input, hx, lengths, record)
        if self._gate_recorder is not None:
            store, name = self._gate_recorder
            store.add(name, result[2])
        return result if return_gates else result[:2]

    def _forward_padded(self, x: Tensor, hx, lengths, record: bool):
        if not isinstance(x, Tensor) or x.dim() not in (2, 3):
            got = _shape(x) if isinstance(x, Tensor) else type(x).__name__
            order = "(B, T, I)" if self.batch_first else "(T, B, I)"
            raise ValueError(f"LSTM input: expected a 3-D tensor {order} or 2-D (T, I) "
                             f"unbatched, got {got}")
        self._check_input(x, "input")
        unbatched = x.dim() == 2
        if unbatched:
            if lengths is not None:
                raise ValueError("LSTM lengths: not allowed with an unbatched (T, I) input")
            x = x.unsqueeze(0 if self.batch_first else 1)
            if hx is not None:
                if not isinstance(hx, tuple | list) or len(hx) != 2:
                    raise ValueError("LSTM hx: expected a tuple (h_0, c_0)")
                hx = tuple(s.unsqueeze(1) if isinstance(s, Tensor) and s.dim() == 2 else s
                           for s in hx)
        B, T = (x.shape[0], x.shape[1]) if self.batch_first else (x.shape[1], x.shape[0])
        h0, c0 = self._check_hx(hx, B, x)
        if lengths is not None:
            lengths = self._check_lengths(lengths, B, T)
        padded = lengths is not None and bool((lengths < T).any())
        gates = None
        if not record:
            if padded:  # through the packed kernel, like pack -> nn.LSTM -> pad
                packed = pack_padded_sequence(x, lengths, self.batch_first, enforce_sorted=False)
                out, (h_n, c_n) = self._forward_packed(packed, (h0, c0), False)[:2]
                out, _ = pad_packed_sequence(out, self.batch_first, total_length=T)
            else:
                with self._fused_precision(x) as cast:
                    out, h_n, c_n = _VF.lstm(cast(x), (cast(h0), cast(c0)),
                                             self._flat_weights(), self.bias, self.num_layers,
                                             self.dropout, self.training, self.bidirectional,
                                             self.batch_first)
        else:
            xt = x.transpose(0, 1) if self.batch_first else x  # (T, B, I)
            if lengths is None:
                lengths = torch.full((B,), T, dtype=torch.int64)
            out, (h_n, c_n), gates = self._gate_path(xt, h0, c0, lengths if padded else None,
                                                     lengths)
            if self.batch_first:
                out = out.transpose(0, 1)
        if unbatched:
            out = out.squeeze(0 if self.batch_first else 1)
            h_n, c_n = h_n.squeeze(1), c_n.squeeze(1)
        return out, (h_n, c_n), gates

    def _forward_packed(self, packed: PackedSequence, hx, record: bool):
        self._check_input(packed.data, "input (PackedSequence.data)")
        B = int(packed.batch_sizes[0])
        h0, c0 = self._check_hx(hx, B, packed.data)
        sorted_idx, unsorted_idx = packed.sorted_indices, packed.unsorted_indices
        if not record:
            if sorted_idx is not None:  # the kernel wants states in sorted-by-length order
                h0, c0 = h0.index_select(1, sorted_idx), c0.index_select(1, sorted_idx)
            with self._fused_precision(packed.data) as cast:
                data, h_n, c_n = _VF.lstm(cast(packed.data), packed.batch_sizes,
                                          (cast(h0), cast(c0)), self._flat_weights(), self.bias,
                                          self.num_layers, self.dropout, self.training,
                                          self.bidirectional)
            if unsorted_idx is not None:
                h_n, c_n = h_n.index_select(1, unsorted_idx), c_n.index_select(1, unsorted_idx)
            out = PackedSequence(data, packed.batch_sizes, sorted_idx, unsorted_idx)
            return out, (h_n, c_n), None
        x, lengths = pad_packed_sequence(packed)  # (T, B, I), original batch order
        T = x.shape[0]
        padded_lengths = lengths if bool((lengths < T).any()) else None
        out, (h_n, c_n), gates = self._gate_path(x, h0, c0, padded_lengths, lengths)
        if sorted_idx is not None:
            out, lengths = out.index_select(1, sorted_idx), lengths[sorted_idx.cpu()]
        repacked = pack_padded_sequence(out, lengths, enforce_sorted=True)
        out = PackedSequence(repacked.data, repacked.batch_sizes, sorted_idx, unsorted_idx)
        return out, (h_n, c_n), gates

    @contextlib.contextmanager
    def _fused_precision(self, x: Tensor) -> Iterator[Callable[[Tensor], Tensor]]:
        """The fused kernel's precision: autocast's, unless torch's CPU kernel cannot run in
        autocast's dtype on the CPU it runs on (oneDNN's bfloat16 LSTM needs AVX-512 or newer); then
        autocast is off for the kernel and it runs in the weights' precision (float32), like
        the cell states always do. Yields the cast to apply to the kernel's inputs."""
        dev = x.device.type
        if (dev != "cpu" or not torch.is_autocast_enabled(dev)
                or fused_lstm_supports(torch.get_autocast_dtype(dev))):
            yield lambda t: t
            return
        w = self.weight_ih_l0.dtype
        with torch.autocast(dev, enabled=False):
            yield lambda t: t.to(w)

    def _gate_path(self, x: Tensor, h0: Tensor, c0: Tensor, mask_lengths: Tensor | None,
                   lengths: Tensor):
        """The explicit loop. x: (T, B, I); h0, c0: (L*D, B, H); lengths: (B,) on CPU.

        mask_lengths is None when no sequence is padded (skips the masking work).
        Returns out (T, B, D*H), (h_n, c_n), LSTMGates.
        """
        # Under autocast the input may be bfloat16; a recorded run is for looking at the gates,
        # so it runs in the weights' precision, autocast off (a no-op otherwise).
        w = self.weight_ih_l0.dtype
        with torch.autocast(x.device.type, enabled=False):
            return self._gate_loop(x.to(w), h0.to(w), c0.to(w), mask_lengths, lengths)

    def _gate_loop(self, x: Tensor, h0: Tensor, c0: Tensor, mask_lengths: Tensor | None,
                   lengths: Tensor):
        T, B, _ = x.shape
        D = self.num_directions
        mask = None
        if mask_lengths is not None:
            mask = (torch.arange(T)[:, None] < mask_lengths[None, :]).to(x.device)[..., None]
        layer_in = x
        h_n, c_n = [], []
        raw: list[list[dict[str, Tensor]]] = []  # recorded buffers, (T, B, H) each
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                layer_in = F.dropout(layer_in, self.dropout, training=True)
            outs = []
            raw.append([])
            for direction in range(D):
                k = layer * D + direction
                out, h, c, acts, cs = _GateLoop.apply(layer_in, h0[k], c0[k],
                                                      *self.layer_weights(layer, direction),
                                                      mask, direction == 1)
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
                i, f, g, o = acts.view(T, B, 4, -1).unbind(2)  # each (T, B, H)
                raw[layer].append({"f": f, "i": i, "g": g, "o": o, "h": out.detach(),
                                   "c": cs[:T] if direction == 1 else cs[1:]})
            layer_in = outs[0] if D == 1 else torch.cat(outs, dim=2)
        gates = LSTMGates._from_buffers(raw, lengths.clone())
        return layer_in, (torch.stack(h_n), torch.stack(c_n)), gates


class LSTMCell(nn.Module):
    """One LSTM step, a drop-in for `torch.nn.LSTMCell` (weight_ih, weight_hh, bias_ih, bias_hh).

    forward(input, hx=None, return_gates=False):
      input: (B, I) or (I,) unbatched; hx: optional (h, c), each (B, H) or (H,); zeros if omitted.
      Returns (h', c'), or (h', c', gates) with return_gates=True (`LSTMGates`, (B, H) fields).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"LSTMCell: {name} must be a positive int, got {value!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self._gate_recorder: tuple[GateStore, str] | None = None
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's default: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None,
                return_gates: bool = False):
        if not isinstance(input, Tensor) or input.dim() not in (1, 2):
            got = _shape(input) if isinstance(input, Tensor) else type(input).__name__
            raise ValueError(f"LSTMCell input: expected a 2-D tensor (B, I) or 1-D (I,) "
                             f"unbatched, got {got}")
        w = self.weight_ih
        if not input.is_floating_point() or input.dtype != w.dtype:
            raise ValueError(f"LSTMCell input: dtype {input.dtype} does not match the weights' "
                             f"dtype {w.dtype}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"LSTMCell input: expected last dimension input_size="
                             f"{self.input_size}, got shape {_shape(input)}")
        unbatched = input.dim() == 1
        x = input.unsqueeze(0) if unbatched else input
        expected = (x.shape[0], self.hidden_size)
        if hx is None:
            h0 = c0 = x.new_zeros(expected)
        else:
            if not isinstance(hx, tuple | list) or len(hx) != 2:
                raise ValueError(f"LSTMCell hx: expected a tuple (h, c) of tensors of shape "
                                 f"{expected}, got {type(hx).__name__}")
            h0, c0 = (s.unsqueeze(0) if unbatched and isinstance(s, Tensor) else s for s in hx)
            h0 = _check_state("LSTMCell hx[0] (h)", h0, expected, x)
            c0 = _check_state("LSTMCell hx[1] (c)", c0, expected, x)
        record = return_gates or self._gate_recorder is not None
        gates = None
        if not record:
            h, c = _VF.lstm_cell(x, (h0, c0), self.weight_ih, self.weight_hh, self.bias_ih,
                                 self.bias_hh)
        else:
            h, c, (i, f, g, o) = lstm_step(x, h0, c0, self.weight_ih, self.weight_hh,
                                           self.bias_ih, self.bias_hh)
            gates = LSTMGates(*(v.detach().clone() for v in (f, i, g, o, c, h)))
            if self._gate_recorder is not None:
                store, name = self._gate_recorder
                store.add(name, gates)
        if unbatched:
            h, c = h.squeeze(0), c.squeeze(0)
        return (h, c, gates) if return_gates else (h, c)

