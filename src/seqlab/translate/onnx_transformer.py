"""The Transformer translator as two ONNX graphs, run by onnxruntime through the same search.

    encoder.onnx  src (B, S) int64, src_lengths (B,) int64
                  -> memory_keys, memory_values (B, L, h, S, dh)
    step.onnx     tokens (N,) int64, position (N,) int64,
                  past_keys, past_values (N, L, h, t, dh), memory_keys, memory_values,
                  mask (N, S) bool
                  -> logprobs (N, V), keys_out, values_out (N, L, h, t + 1, dh),
                     weights (N, S), layer_weights (N, L, h, S)

L decoder layers, h heads of dh = d_model / h. The encoder graph runs the encoder stack and
projects its output once into every decoder layer's cross-attention keys and values (what
`TransformerDecoder.make_memory` caches); the step graph is `TransformerDecoder.step`: one token
per row, each layer's self-attention keys/values of the earlier tokens (the KV cache, t = 0 at
the first step) in and with this token's appended out. `weights` is what the search records
(the last layer's cross-attention averaged over heads), `layer_weights` every layer's and head's
(what the per-layer pictures draw). The caches are stacked over layers so the graphs have a
fixed set of inputs whatever the depth.

The graphs trace the PyTorch layers themselves (`EncoderLayer`, `DecoderLayer`), so they compute
what `Transformer.encode` and the search step compute; only the embedding's range check (a
Python-level error for positions beyond `max_positions`, which the search's length cap already
keeps out) is left out of the graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import torch
from torch import Tensor, nn

from seqlab.export.common import export_graph, make_session
from seqlab.nn.attention import AttentionCache
from seqlab.translate.model import Generates
from seqlab.translate.onnx_backend import InferenceOnly
from seqlab.translate.transformer import (
    DecoderLayer,
    Embeddings,
    Transformer,
    TransformerConfig,
)

ENCODER_INPUTS = ["src", "src_lengths"]
ENCODER_OUTPUTS = ["memory_keys", "memory_values"]
STEP_INPUTS = ["tokens", "position", "past_keys", "past_values", "memory_keys",
               "memory_values", "mask"]
STEP_OUTPUTS = ["logprobs", "keys_out", "values_out", "weights", "layer_weights"]


def _embed(emb: Embeddings, ids: Tensor, positions: Tensor) -> Tensor:
    """Embeddings.forward in eval mode without its Python range check: (B, T) -> (B, T, d)."""
    return emb.token(ids) * emb.scale + emb.position[positions].to(emb.token.weight.dtype)


class _EncoderGraph(nn.Module):
    """Transformer.encode for export: (src, src_lengths) -> cross-attention K, V of every
    decoder layer, stacked (B, L, h, S, dh)."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, Tensor]:
        m = self.model
        S = src.size(1)
        mask = torch.arange(S).unsqueeze(0) < src_lengths.unsqueeze(1)          # (B, S)
        x = _embed(m.src_embed, src, torch.arange(S))                            # (B, S, d)
        for layer in m.encoder_layers:
            x = layer(x, mask)
        memory = m.decoder.make_memory(m.encoder_norm(x), mask)
        keys = torch.stack([c.keys for c in memory.caches], 1)                   # (B, L, h, S, dh)
        values = torch.stack([cast(Tensor, c.values) for c in memory.caches], 1)
        return keys, values


class _StepGraph(nn.Module):
    """TransformerDecoder.step for export (see the module docstring)."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, tokens: Tensor, position: Tensor, past_keys: Tensor, past_values: Tensor,
                memory_keys: Tensor, memory_values: Tensor, mask: Tensor
                ) -> tuple[Tensor, ...]:
        dec = self.decoder
        x = _embed(dec.embed, tokens.unsqueeze(1), position.unsqueeze(1))        # (N, 1, d)
        keys, values, weights = [], [], []
        for i, layer in enumerate(cast(list[DecoderLayer], dec.layers)):
            past = AttentionCache(past_keys[:, i], past_values[:, i])            # (N, h, t, dh)
            memory = AttentionCache(memory_keys[:, i], memory_values[:, i])      # (N, h, S, dh)
            x, w, cache = layer(x, past, None, memory, mask)                     # w (N, h, 1, S)
            keys.append(cache.keys)                                              # (N, h, t+1, dh)
            values.append(cast(Tensor, cache.values))
            weights.append(w[:, :, 0])                                           # (N, h, S)
        lp = torch.log_softmax(dec.logits(dec.norm(x[:, 0])), dim=-1)            # (N, V)
        layer_weights = torch.stack(weights, 1)                                  # (N, L, h, S)
        return (lp, torch.stack(keys, 1), torch.stack(values, 1),
                layer_weights[:, -1].mean(1), layer_weights)


def _axes(name: str) -> dict[int, str]:
    """Dynamic axes by tensor name: rows first; S for source positions, t for the KV cache."""
    if name in ("src", "mask", "weights"):
        return {0: "N", 1: "S"}
    if name in ("memory_keys", "memory_values"):
        return {0: "N", 3: "S"}
    if name in ("past_keys", "past_values"):
        return {0: "N", 3: "t"}
    if name in ("keys_out", "values_out"):
        return {0: "N", 3: "t_out"}
    if name == "layer_weights":
        return {0: "N", 3: "S"}
    return {0: "N"}


def export_graphs(model: Transformer, out: Path, encoder_file: str, step_file: str
                  ) -> tuple[dict[str, Any], float]:
    """Write the two graphs of `model` (eval mode) into `out` and check them against PyTorch
    on a padded example batch, with an empty and a non-empty KV cache.

    Returns the manifest's graph fields and the largest difference found.
    """
    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([7, 5, 2])
    src = torch.randint(4, cfg.src_vocab_size, (3, 7), generator=g)
    src[torch.arange(7)[None, :] >= lengths[:, None]] = cfg.pad_id
    mask = torch.arange(7)[None, :] < lengths[:, None]
    enc, step = _EncoderGraph(model).eval(), _StepGraph(model).eval()
    with torch.no_grad():
        mem_k, mem_v = enc(src, lengths)
        L, h = cfg.num_decoder_layers, cfg.num_heads
        dh = cfg.d_model // h
        # the trace example has two earlier tokens; the check also runs the first step (t = 0)
        past = torch.randn(2, 3, L, h, 2, dh, generator=g)
        tokens = torch.randint(4, cfg.tgt_vocab_size, (3,), generator=g)
        examples = [
            {"tokens": tokens, "position": torch.full((3,), 2), "past_keys": past[0],
             "past_values": past[1]},
            {"tokens": torch.full((3,), cfg.bos_id), "position": torch.zeros(3, dtype=torch.long),
             "past_keys": past[0][..., :0, :], "past_values": past[1][..., :0, :]},
        ]
        for ex in examples:
            ex.update(memory_keys=mem_k, memory_values=mem_v, mask=mask)
        refs = [step(*(ex[n] for n in STEP_INPUTS)) for ex in examples]
    export_graph(enc, (src, lengths), out / encoder_file, input_names=ENCODER_INPUTS,
                 output_names=ENCODER_OUTPUTS,
                 dynamic_axes={n: _axes(n) for n in ENCODER_INPUTS + ENCODER_OUTPUTS})
    export_graph(step, tuple(examples[0][n] for n in STEP_INPUTS), out / step_file,
                 input_names=STEP_INPUTS, output_names=STEP_OUTPUTS,
                 dynamic_axes={n: _axes(n) for n in STEP_INPUTS + STEP_OUTPUTS})
    got_enc = make_session(out / encoder_file).run(
        None, {"src": src.numpy(), "src_lengths": lengths.numpy()})
    diffs = [float(np.abs(a - b.numpy()).max()) for a, b in zip(got_enc, (mem_k, mem_v),
                                                                 strict=True)]
    session = make_session(out / step_file)
    for ex, ref in zip(examples, refs, strict=True):
        got = session.run(None, {n: ex[n].numpy() for n in STEP_INPUTS})
        diffs += [float(np.abs(a - b.numpy()).max()) if a.size else 0.0
                  for a, b in zip(got, ref, strict=True)]
    fields = {"encoder": {"inputs": ENCODER_INPUTS, "outputs": ENCODER_OUTPUTS},
              "step": {"inputs": STEP_INPUTS, "outputs": STEP_OUTPUTS}}
    return fields, max(diffs)


class OnnxMemory(NamedTuple):
    """What stays fixed while decoding (rows first)."""

    mask: Tensor     # (N, S) bool, True = real position
    keys: Tensor     # (N, L, h, S, dh) cross-attention keys of every decoder layer
    values: Tensor   # (N, L, h, S, dh)


class OnnxState(NamedTuple):
    """What grows while decoding: the next position and the KV cache of every layer."""

    position: Tensor   # (N,) long
    keys: Tensor       # (N, L, h, t, dh)
    values: Tensor     # (N, L, h, t, dh)


class OnnxTransformerDecoder:
    """The search protocol (`seqlab.decoding.search.PrunableStepDecoder`) over the step graph."""

    def __init__(self, session: Any):
        self.session = session
        self.last_layer_weights: Tensor | None = None   # (N, L, h, S) of the latest step

    def step(self, tokens: Tensor, state: OnnxState, memory: OnnxMemory
             ) -> tuple[Tensor, OnnxState, Tensor]:
        """tokens (N,) -> log-probs (N, V), the state with this token appended, the last
        layer's cross-attention averaged over heads (N, S)."""
        feeds = {"tokens": tokens, "position": state.position, "past_keys": state.keys,
                 "past_values": state.values, "memory_keys": memory.keys,
                 "memory_values": memory.values, "mask": memory.mask}
        out = self.session.run(None, {n: np.ascontiguousarray(t.numpy())
                                      for n, t in feeds.items()})
        lp, keys, values, w, layer_w = (torch.from_numpy(a) for a in out)
        self.last_layer_weights = layer_w
        return lp, OnnxState(state.position + 1, keys, values), w

    @staticmethod
    def reorder_state(state: OnnxState, index: Tensor) -> OnnxState:
        return OnnxState(*(t.index_select(0, index) for t in state))

    @staticmethod
    def select_memory(memory: OnnxMemory, index: Tensor) -> OnnxMemory:
        return OnnxMemory(*(t.index_select(0, index) for t in memory))

    def expand_memory(self, memory: OnnxMemory, k: int) -> OnnxMemory:
        index = torch.arange(memory.mask.size(0)).repeat_interleave(k)
        return self.select_memory(memory, index)


class OnnxTransformer(Generates, InferenceOnly):
    """What `seqlab.translate.api` uses of `Transformer` (cfg, encode, decoder, generate,
    cross_attention, eval) over onnxruntime sessions."""

    max_target_positions = Transformer.max_target_positions   # the same length cap

    def __init__(self, encoder: Any, step: Any, cfg: TransformerConfig,
                 manifest: dict[str, Any]):
        self.encoder_session = encoder
        self.decoder = OnnxTransformerDecoder(step)
        self.cfg = cfg
        self.manifest = manifest

    def encode(self, src: Tensor, src_lengths: Tensor, src_mask: Tensor
               ) -> tuple[OnnxMemory, OnnxState]:
        """src (B, S), src_lengths (B,), src_mask (B, S) -> the memory, the empty state."""
        keys, values = (torch.from_numpy(a) for a in self.encoder_session.run(
            None, {"src": src.numpy(), "src_lengths": src_lengths.numpy()}))
        B, L, h, _, dh = keys.shape
        empty = keys.new_zeros(B, L, h, 0, dh)                                   # t = 0
        return (OnnxMemory(src_mask, keys, values),
                OnnxState(torch.zeros(B, dtype=torch.long), empty, empty))

    @torch.no_grad()
    def cross_attention(self, src: Tensor, src_lengths: Tensor, src_mask: Tensor,
                        tgt_in: Tensor) -> Tensor:
        """As `Transformer.cross_attention`: the step graph fed the given outputs one token at
        a time (what the KV cache makes equal to the teacher-forced pass):
        (B, layers, heads, T, S)."""
        memory, state = self.encode(src, src_lengths, src_mask)
        weights = []
        for t in range(tgt_in.size(1)):
            _, state, _ = self.decoder.step(tgt_in[:, t], state, memory)
            weights.append(cast(Tensor, self.decoder.last_layer_weights))
        return torch.stack(weights, 3)                                           # (B, L, h, T, S)
