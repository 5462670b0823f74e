"""The attention LSTM decoder, generic over its "memory".

The decoder writes a token sequence while attending to a memory: any encoder's outputs `(B, S, D)`
plus a mask `(B, S)` (True = real position). The translator's memory is the bidirectional LSTM's
outputs over the source subwords; a captioner's memory is a grid of image-region features. The
same decoder, attention and search (`seqlab.decoding.search`) serve both.

One step, Luong et al. (2015) with Bahdanau-style attention as an option:

    x_t   = [E y_{t-1}; a_{t-1}]              input feeding: the previous attentional vector
    h_t, c_t = LSTMCell(x_t, (h_{t-1}, c_{t-1}))
    ctx_t, w_t = attention(h_t, memory, mask)  any kind from seqlab.nn.attention
    a_t   = tanh(W_c [h_t; ctx_t])             the attentional vector
    p(y_t) = softmax(W_s dropout(a_t))

The initial state is zeros, or a bridge from a summary vector of the memory
(`(h_0, c_0) = tanh(W_b s)`; the translator passes the encoder's final states, other users get
the masked mean of the memory).

Speed (CPU): the embedding half of the cell's input projection is one matmul over all steps, the
attention's key projection is computed once per memory (`attn.precompute`), and the vocabulary
projection is one matmul after the loop over the real (non-pad) positions only.

Incremental decoding (`step` in eval mode without autograd) reads inference weights cached
until a parameter changes: the embedding half of the cell's input projection for the whole
vocabulary (a (V, 4H) table: a row lookup instead of a matmul per step), the cell's [W_feed; W_hh]
concatenated once, and the transposed (contiguous) combine and vocabulary weights, which MKL
multiplies faster than nn.Linear's layout. The results equal the plain step's (tests), to
the last bit with MKL's sgemm (benchmarks/bench_decode.py checks it on 2000 Tatoeba sentences):
with fewer than `_SAME_BITS_MIN_ROWS` rows MKL takes a kernel that rounds differently, so small
batches keep the plain operands.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab.nn.attention import Attention, AttentionCache, build_attention, masked_softmax
from seqlab.nn.gates import lstm_update
from seqlab.nn.lstm import LSTMCell


@dataclass
class DecoderConfig:
    vocab_size: int
    embedding_dim: int = 256
    hidden_size: int = 256
    memory_dim: int = 512          # D: feature size of the memory (e.g. 2 x encoder hidden)
    attention: str = "additive"    # one of seqlab.nn.attention.ATTENTION_KINDS
    attn_dim: int | None = None    # additive: size of the score MLP (default hidden_size)
    num_heads: int = 1             # multihead only
    input_feeding: bool = True
    bridge: bool = True            # (h0, c0) = tanh(W s) from a summary vector; False: zeros
    summary_dim: int | None = None  # size of that summary vector (default memory_dim)
    dropout: float = 0.2
    tie_embeddings: bool = False   # output projection shares the target embedding matrix
    pad_id: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DecoderState(NamedTuple):
    """What changes from step to step; every tensor has the (flattened) batch first."""

    h: Tensor      # (N, H)
    c: Tensor      # (N, H)
    feed: Tensor   # (N, H) previous attentional vector (zeros at t=0; unused without feeding)


class Memory(NamedTuple):
    """What stays fixed while decoding: the encoder outputs and the attention's key cache."""

    values: Tensor  # (N, S, D)
    mask: Tensor    # (N, S) bool, True = real position
    cache: Any      # attn.precompute(values): key projections, computed once


# From this many rows on, MKL's sgemm gives each row the same bits whatever the operand layout
# (nn.Linear's x @ W^T view vs a contiguous W^T) and whichever rows are multiplied together
# (a lookup in a precomputed (V, 4H) table vs a matmul of the looked-up embeddings); with 1-3
# rows it takes another kernel (measured for 1..400 rows; other BLAS libraries may differ).
_SAME_BITS_MIN_ROWS = 4


def softmax_vector_len() -> int:
    """Source length from which ATen's CPU softmax runs its vectorised kernel: the float width
    of the vector unit it dispatched to (16 with AVX-512, 8 with AVX2 and elsewhere).

    Below it a scalar kernel runs; each gives a row the same bits however much masked padding
    follows, but the two differ in the last bit, so `join` keeps memories on their side of it.
    """
    return 16 if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else 8


_SOFTMAX_VECTOR_LEN = softmax_vector_len()


class _InferenceWeights(NamedTuple):
    """Weights `step` derives from the parameters once, reused while they stay unchanged."""

    key: tuple[Any, ...]   # identity and version of every parameter they come from
    emb_proj: Tensor       # (V, 4H) E W_emb^T + b_ih + b_hh: the embedding half per token
    w_emb: Tensor          # (4H, E)
    bias: Tensor           # (4H,)
    w_rec: Tensor          # (4H, H [+ H]) [W_feed, W_hh]
    w_rec_t: Tensor        # (H [+ H], 4H) contiguous
    combine_t: Tensor      # (H + D', H) contiguous
    out_t: Tensor          # (H, V) contiguous


class AttentionDecoder(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.cfg = cfg
        E, H, D = cfg.embedding_dim, cfg.hidden_size, cfg.memory_dim
        if cfg.tie_embeddings and E != H:
            raise ValueError(f"tie_embeddings needs embedding_dim == hidden_size, got {E} and {H}")
        self.embed = nn.Embedding(cfg.vocab_size, E, padding_idx=cfg.pad_id)
        self.cell = LSTMCell(E + (H if cfg.input_feeding else 0), H)
        self.attention = build_attention(cfg.attention, H, D, attn_dim=cfg.attn_dim or H,
                                         num_heads=cfg.num_heads)
        if cfg.bridge:
            self.bridge = nn.Linear(cfg.summary_dim or D, 2 * H)
        ctx_dim = self.attention.context_size(D)         # D (multi-head: its attn_dim)
        self.combine = nn.Linear(H + ctx_dim, H, bias=False)  # W_c: [h; ctx] -> attentional vec
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(H, cfg.vocab_size)          # W_s
        if cfg.tie_embeddings:
            self.out.weight = self.embed.weight

    # ---- memory and initial state ------------------------------------------------------------

    def make_memory(self, values: Tensor, mask: Tensor | None = None) -> Memory:
        """values: (B, S, D); mask: (B, S) bool or None (all real)."""
        if values.dim() != 3 or values.size(-1) != self.cfg.memory_dim:
            raise ValueError(f"memory must be (B, S, {self.cfg.memory_dim}), "
                             f"got {tuple(values.shape)}")
        if mask is None:
            mask = torch.ones(values.shape[:2], dtype=torch.bool, device=values.device)
        return Memory(values, mask, self.attention.precompute(values, values))

    def init_state(self, memory: Memory, summary: Tensor | None = None) -> DecoderState:
        """summary: (B, summary_dim), or None for the masked mean of the memory. B rows out."""
        B, H = memory.values.size(0), self.cfg.hidden_size
        zeros = memory.values.new_zeros(B, H)
        if not self.cfg.bridge:
            return DecoderState(zeros, zeros, zeros)
        if summary is None:
            m = memory.mask.unsqueeze(-1).to(memory.values.dtype)            # (B, S, 1)
            summary = (memory.values * m).sum(1) / m.sum(1).clamp_min(1.0)   # (B, D)
        # in the parameters' dtype also under autocast: the recurrent state stays float32
        dtype = self.cell.weight_hh.dtype
        h0, c0 = torch.tanh(self.bridge(summary)).to(dtype).chunk(2, dim=-1)   # (B, H) each
        return DecoderState(h0.contiguous(), c0.contiguous(), zeros.to(dtype))

    # ---- the recurrence ------------------------------------------------------------------------

    def _split_weights(self) -> tuple[Tensor, Tensor, Tensor]:
        """The cell's W_ih split into its embedding and feed columns, and the summed bias."""
        E = self.cfg.embedding_dim
        w_ih = self.cell.weight_ih                                   # (4H, E [+ H])
        w_emb = w_ih[:, :E]                                          # (4H, E)
        w_rec: Tensor = self.cell.weight_hh                          # (4H, H)
        if self.cfg.input_feeding:                                   # one matmul for [a; h]
            w_rec = torch.cat([w_ih[:, E:], w_rec], dim=1)           # (4H, 2H)
        bias = self.cell.bias_ih + self.cell.bias_hh                 # (4H,)
        return w_emb, w_rec, bias

    def _step(self, xproj: Tensor, state: DecoderState, w_rec: Tensor, memory: Memory
              ) -> tuple[DecoderState, Tensor, Tensor]:
        """One step from the precomputed input projection xproj (N, 4H).

        Returns the new state, the attentional vector a_t (N, H) after dropout, and the
        attention weights (N, S).
        """
        rec_in = torch.cat([state.feed, state.h], 1) if self.cfg.input_feeding else state.h
        z = torch.addmm(xproj, rec_in, w_rec.t())                    # (N, 4H), order i,f,g,o
        # under autocast z is bfloat16: the gates and the cell state c stay in c's float32,
        # since c sums its history over all steps (a no-op without autocast)
        z = z.to(state.c.dtype)
        h, c, _ = lstm_update(z, state.c)                            # the gates: nn/gates.py
        ctx, weights = self.attention(h, memory.values, memory.values, mask=memory.mask,
                                      cache=memory.cache)           # (N, D'), (N, S)
        a = self.dropout(torch.tanh(self.combine(torch.cat([h, ctx], 1))))   # (N, H)
        return DecoderState(h, c, a), a, weights

    def forward(self, tgt_in: Tensor, memory: Memory, state: DecoderState,
                return_attention: bool = False) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced pass.

        tgt_in: (B, T) token ids (BOS first). Returns the attentional vectors (B, T, H) (apply
        `logits` to get (B, T, V); the caller can pick the non-pad rows first) and the attention
        weights (B, T, S) if asked.
        """
        B, T = tgt_in.shape
        w_emb, w_rec, bias = self._split_weights()
        emb = self.dropout(self.embed(tgt_in))                       # (B, T, E)
        # the embedding half of the input projection for all steps at once, time-major
        xproj = torch.addmm(bias, emb.transpose(0, 1).reshape(T * B, -1), w_emb.t())
        # unbind: one backward node for all steps (indexing xproj[t] would allocate and add a
        # full-size zero gradient per step)
        xproj_steps = xproj.view(T, B, -1).unbind(0)                 # T x (B, 4H)
        outs, attns = [], []
        for x_t in xproj_steps:
            state, a, w = self._step(x_t, state, w_rec, memory)
            outs.append(a)
            if return_attention:
                attns.append(w)
        att_vecs = torch.stack(outs, 1)                              # (B, T, H)
        return att_vecs, (torch.stack(attns, 1) if return_attention else None)

    def logits(self, att_vecs: Tensor) -> Tensor:
        """(..., H) -> (..., V)"""
        return self.out(att_vecs)

    # ---- incremental decoding (the search protocol) -------------------------------------------

    def step(self, tokens: Tensor, state: DecoderState, memory: Memory
             ) -> tuple[Tensor, DecoderState, Tensor]:
        """tokens: (N,) previous tokens. Returns log-probs (N, V), the new state, weights (N, S)."""
        if not self.training and not torch.is_grad_enabled():
            return self._inference_step(tokens, state, memory)
        w_emb, w_rec, bias = self._split_weights()
        xproj = torch.addmm(bias, self.dropout(self.embed(tokens)), w_emb.t())   # (N, 4H)
        state, a, w = self._step(xproj, state, w_rec, memory)
        return F.log_softmax(self.logits(a), dim=-1), state, w

    def _inference_weights(self) -> _InferenceWeights:
        """The cached inference weights, rebuilt when a parameter was changed or replaced
        (an optimizer step or load_state_dict bumps its version counter)."""
        params = (self.embed.weight, self.cell.weight_ih, self.cell.weight_hh, self.cell.bias_ih,
                  self.cell.bias_hh, self.combine.weight, self.out.weight, self.out.bias)
        key = tuple((id(p), p.data_ptr(), p._version, p.dtype, p.device) for p in params)
        cached = self.__dict__.get("_infer_weights")
        if cached is not None and cached.key == key:
            return cached
        with torch.no_grad():
            w_emb, w_rec, bias = self._split_weights()
            cached = _InferenceWeights(
                key=key, emb_proj=torch.addmm(bias, self.embed.weight, w_emb.t()),
                w_emb=w_emb, bias=bias, w_rec=w_rec, w_rec_t=w_rec.t().contiguous(),
                combine_t=self.combine.weight.t().contiguous(),
                out_t=self.out.weight.t().contiguous())
        self.__dict__["_infer_weights"] = cached   # a plain attribute: not in the state dict
        return cached

    def _inference_step(self, tokens: Tensor, state: DecoderState, memory: Memory
                        ) -> tuple[Tensor, DecoderState, Tensor]:
        """`step` in eval mode without autograd: the same operations as `_step` (dropout is the
        identity) on the cached weights, so the same bits out."""
        iw = self._inference_weights()
        big = tokens.size(0) >= _SAME_BITS_MIN_ROWS
        if big:
            xproj = iw.emb_proj.index_select(0, tokens)                      # (N, 4H)
        else:
            xproj = torch.addmm(iw.bias, self.embed(tokens), iw.w_emb.t())
        rec_in = torch.cat([state.feed, state.h], 1) if self.cfg.input_feeding else state.h
        z = torch.addmm(xproj, rec_in, iw.w_rec_t if big else iw.w_rec.t())  # (N, 4H)
        h, c, _ = lstm_update(z, state.c)
        attn = self.attention
        if type(attn).forward is Attention.forward:
            # Attention.forward without its argument checks (the memory came from make_memory)
            scores = attn.scores(h.unsqueeze(1), memory.cache)              # (N, 1, S)
            w = masked_softmax(scores, memory.mask.unsqueeze(1))             # (N, 1, S)
            ctx = torch.bmm(w, memory.values).squeeze(1)                     # (N, D)
            w = w.squeeze(-2)                                                # (N, S)
        else:
            ctx, w = attn(h, memory.values, memory.values, mask=memory.mask, cache=memory.cache)
        hc = torch.cat([h, ctx], 1)                                          # (N, H + D')
        a = torch.tanh(torch.mm(hc, iw.combine_t) if big else self.combine(hc))   # (N, H)
        logits = (torch.addmm(self.out.bias, a, iw.out_t) if big
                  else self.out(a))                                          # (N, V)
        return F.log_softmax(logits, dim=-1), DecoderState(h, c, a), w

    @staticmethod
    def reorder_state(state: DecoderState, index: Tensor) -> DecoderState:
        """Pick rows of the state: index (N',) into the batch."""
        index = index.to(state.h.device)   # host-side bookkeeping may hold the index on the CPU
        return DecoderState(*(x.index_select(0, index) for x in state))

    def select_memory(self, memory: Memory, index: Tensor) -> Memory:
        """Pick memory rows: index (N',) into the batch (beam search drops finished sentences)."""
        index = index.to(memory.values.device)
        cache = (memory.cache.index_select(index) if hasattr(memory.cache, "index_select")
                 else None)
        values = memory.values.index_select(0, index)
        if cache is None:
            cache = self.attention.precompute(values, values)
        return Memory(values, memory.mask.index_select(0, index), cache)

    def memory_group(self, memory: Memory) -> bool:
        """Memories of one group can be joined (`join`) without changing any row's numbers."""
        return memory.values.size(1) >= _SOFTMAX_VECTOR_LEN

    def join(self, parts: list[tuple[Memory, DecoderState]]) -> tuple[Memory, DecoderState]:
        """Concatenate the rows of (memory, state) pairs of one `memory_group` (continuous
        batching: sentences join a running batch as others finish).

        The sources are cut or zero-padded to the longest real source among the rows (at least
        `_SOFTMAX_VECTOR_LEN` in the long group), so finished long sentences stop costing
        attention work; padded positions are masked, so they get exactly zero weight.
        """
        long = self.memory_group(parts[0][0])
        S = max(int(m.mask.sum(1).max()) for m, _ in parts)
        if long:
            S = max(S, _SOFTMAX_VECTOR_LEN)

        def fit(x: Tensor, dim: int) -> Tensor:   # the first S positions along dim, zero-padded
            dim = dim % x.dim()
            if x.size(dim) >= S:
                return x.narrow(dim, 0, S)
            shape = list(x.shape)
            shape[dim] = S - x.size(dim)
            return torch.cat([x, x.new_zeros(shape)], dim)

        mems = [m for m, _ in parts]
        cache = mems[0].cache
        if isinstance(cache, AttentionCache):     # keys/values (..., S, d): S second to last
            cache = replace(cache, keys=torch.cat([fit(m.cache.keys, -2) for m in mems]),
                            values=None if cache.values is None else
                            torch.cat([fit(m.cache.values, -2) for m in mems]))
        values = torch.cat([fit(m.values, 1) for m in mems])                 # (N, S, D)
        if not isinstance(cache, AttentionCache):
            cache = self.attention.precompute(values, values)
        memory = Memory(values, torch.cat([fit(m.mask, 1) for m in mems]), cache)
        state = DecoderState(*(torch.cat(xs) for xs in zip(*(st for _, st in parts),
                                                            strict=True)))
        return memory, state

    def expand_memory(self, memory: Memory, k: int) -> Memory:
        """Repeat every memory row k times (beam search): (B, S, D) -> (B*k, S, D)."""
        index = torch.arange(memory.values.size(0), device=memory.values.device)
        index = index.repeat_interleave(k)                                    # (B*k,)
        values = memory.values.index_select(0, index)
        cache = (memory.cache.index_select(index) if hasattr(memory.cache, "index_select")
                 else self.attention.precompute(values, values))
        return Memory(values, memory.mask.index_select(0, index), cache)
