"""The translator as two ONNX graphs, run by onnxruntime through the same search code.

    encoder.onnx   src (B, S) int64, src_lengths (B,) int64
                   -> values (B, S, D), [keys], [head_values], h0 (B, H), c0 (B, H)
    step.onnx      tokens (N,) int64, h, c, [feed] (N, H), values (N, S, D), mask (N, S) bool,
                   [keys], [head_values]
                   -> logprobs (N, V), h_out, c_out, feed_out (N, H), weights (N, S)

`keys` are the attention's key projections (additive: W_k v (B, S, A); general: (B, S, H);
multi-head: K (B, heads, S, d), with `head_values` V alike), computed once by the encoder graph
so no step redoes them; dot, scaled-dot and uniform attention score against the values
themselves and have neither. `feed` (the previous attentional vector) exists with input feeding;
multi-head attention reads `head_values`, not `values`, and its step graph has no `values` input
(the manifest lists each graph's actual inputs and outputs).

`OnnxStepDecoder` offers the step-decoder protocol of `seqlab.decoding.search` over the step
graph, converting torch <-> numpy at the boundary (zero-copy on CPU), so greedy, continuous
batching and beam search are the very functions the PyTorch backend runs. Its memory is the
PyTorch decoder's own `Memory` of torch tensors, and the row bookkeeping (reorder, select, join,
expand) is `AttentionDecoder`'s, so both backends batch the same sentences together.
`OnnxSeq2Seq` offers what `seqlab.translate.api` uses of `Seq2Seq` (cfg, encode, decoder,
generate), so `Translator.load(run, backend="onnx")` changes nothing else.

The step graph is the inference step (`AttentionDecoder._inference_step`) in plain ops: the
embedding half of the cell's input projection as one (V, 4H) table, the gates of
`seqlab.nn.gates.lstm_update`, each attention kind's scores without its autograd function
(additive: the same 2 sigmoid(2x) - 1 form of tanh), a masked softmax, the combine and the
vocabulary projection with its log-softmax.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from seqlab.errors import UserError
from seqlab.export.common import (
    EXPORT_DIR,
    atomic_dir,
    check_unchanged,
    export_graph,
    file_sha256,
    make_session,
    read_manifest,
    require_onnx,
    write_manifest,
)
from seqlab.nn.attention import AdditiveAttention, AttentionCache, MultiHeadAttention
from seqlab.nn.decoder import AttentionDecoder, DecoderState, Memory
from seqlab.nn.gates import lstm_update
from seqlab.translate.model import Generates, Seq2Seq, Seq2SeqConfig

KIND = "translator"
FORMAT = 1
ENCODER_FILE, STEP_FILE = "encoder.onnx", "step.onnx"
# attention kinds that score against projected keys (the others use the values themselves)
_PROJECTED_KEYS = ("additive", "general", "multihead")


def _export_cmd(run: Path) -> str:
    return f"seqlab translate export {run}"


def _memory_names(cfg: Seq2SeqConfig) -> list[str]:
    """The cached memory tensors besides `values` (and `mask`), in graph order."""
    if cfg.attention == "multihead":
        return ["keys", "head_values"]
    return ["keys"] if cfg.attention in _PROJECTED_KEYS else []


class _EncoderGraph(nn.Module):
    """Seq2Seq.encode for export: (src, src_lengths) -> values, [keys, head_values], h0, c0."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, ...]:
        mask = torch.arange(src.size(1)).unsqueeze(0) < src_lengths.unsqueeze(1)   # (B, S)
        memory, state = self.model.encode(src, src_lengths, mask)
        cache = memory.cache
        extra = {"keys": cache.keys, "head_values": cache.values}
        return (memory.values, *(extra[n] for n in _memory_names(self.model.cfg)),
                state.h, state.c)


class _StepGraph(nn.Module):
    """One decoder step in plain ops (see the module docstring)."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        dec = model.decoder
        self.cfg = model.cfg
        self.dec = dec
        with torch.no_grad():
            w_emb, w_rec, bias = dec._split_weights()
            # (V, 4H): E W_emb^T + b, one row per token: a gather instead of a matmul per step
            self.emb_proj = nn.Parameter(torch.addmm(bias, dec.embed.weight, w_emb.t()),
                                         requires_grad=False)
            self.w_rec_t = nn.Parameter(w_rec.t().contiguous(), requires_grad=False)

    def _attend(self, h: Tensor, values: Tensor, mask: Tensor, keys: Tensor | None,
                head_values: Tensor | None) -> tuple[Tensor, Tensor]:
        """h (N, H) -> context (N, D'), weights (N, S), as the decoder's attention computes."""
        attn, kind = self.dec.attention, self.cfg.attention
        if kind == "multihead":
            assert keys is not None and head_values is not None
            mha = cast(MultiHeadAttention, attn)
            q = mha._proj(h.unsqueeze(1), 0) * (1.0 / math.sqrt(mha.head_dim))   # (N, 1, A)
            Q = mha._split_heads(q)                                               # (N, h, 1, d)
            scores = torch.matmul(Q, keys.transpose(-2, -1))                       # (N, h, 1, S)
            w = torch.softmax(scores.masked_fill(~mask[:, None, None, :], float("-inf")), -1)
            heads = torch.matmul(w, head_values)                                   # (N, h, 1, d)
            ctx = mha.out_proj(heads.transpose(1, 2).reshape(h.size(0), mha.attn_dim))
            return ctx, w.mean(dim=1).squeeze(1)                                   # (N, A), (N, S)
        if kind == "additive":
            assert keys is not None
            add = cast(AdditiveAttention, attn)
            pq = add.query_layer(h)                                                # (N, A)
            v = add.energy_layer.weight[0]                                        # (A,)
            # v^T tanh(x) as 2 v^T sigmoid(2x) - sum(v), the form the PyTorch step computes
            x = torch.sigmoid(pq.unsqueeze(1) * 2.0 + keys * 2.0)                  # (N, S, A)
            scores = torch.matmul(x, v) * 2.0 - v.sum()                            # (N, S)
        else:
            cache = AttentionCache(keys=values if keys is None else keys)
            scores = attn.scores(h.unsqueeze(1), cache).squeeze(1)                 # (N, S)
        w = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)         # (N, S)
        ctx = torch.bmm(w.unsqueeze(1), values).squeeze(1)                         # (N, D)
        return ctx, w

    def forward(self, tokens: Tensor, h: Tensor, c: Tensor, feed: Tensor, values: Tensor,
                mask: Tensor, keys: Tensor | None = None, head_values: Tensor | None = None
                ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        xproj = self.emb_proj.index_select(0, tokens)                              # (N, 4H)
        rec_in = torch.cat([feed, h], 1) if self.cfg.input_feeding else h
        z = torch.addmm(xproj, rec_in, self.w_rec_t)                               # (N, 4H)
        h, c, _ = lstm_update(z, c)
        ctx, w = self._attend(h, values, mask, keys, head_values)
        a = torch.tanh(self.dec.combine(torch.cat([h, ctx], 1)))                   # (N, H)
        logprobs = torch.log_softmax(self.dec.logits(a), dim=-1)                   # (N, V)
        return logprobs, h, c, a, w


def _step_inputs(cfg: Seq2SeqConfig) -> list[str]:
    names = ["tokens", "h", "c"] + (["feed"] if cfg.input_feeding else [])
    return names + ["values", "mask"] + _memory_names(cfg)


def _axes(name: str, cfg: Seq2SeqConfig) -> dict[int, str]:
    """Dynamic axes by tensor name: rows first; S where the tensor has source positions."""
    rows = "N"
    if name in ("src", "values", "mask", "weights"):
        return {0: rows, 1: "S"}
    if name in ("keys", "head_values"):
        return {0: rows, 2 if cfg.attention == "multihead" else 1: "S"}
    return {0: rows}


def export_translator(run_dir: str | Path, checkpoint: str = "best") -> Path:
    """Export a trained run's encoder and one-step decoder to `run_dir/onnx/`; returns it.

    LSTM and Transformer runs alike (the manifest's `arch` says which graphs these are). The
    graphs are checked against the PyTorch model on a padded example batch (the largest
    difference goes into the manifest as `check_max_abs_diff`).
    """
    from seqlab.translate.api import Translator
    from seqlab.translate.transformer import Transformer

    onnx, ort = require_onnx("seqlab translate export")
    run = Path(run_dir)
    weights = _weights_file(run, checkpoint)
    # hashed before loading and checked again at the end: a run still training may replace it
    weights_sha256 = file_sha256(weights) if weights.is_file() else ""
    tr = Translator.load(run, checkpoint=checkpoint)
    model = tr.model.eval()
    out_dir = run / EXPORT_DIR
    with atomic_dir(out_dir) as tmp:
        if isinstance(model, Transformer):
            from seqlab.translate.onnx_transformer import export_graphs

            arch = "transformer"
            fields, diff = export_graphs(model, tmp, ENCODER_FILE, STEP_FILE)
        else:
            arch = "lstm"
            fields, diff = _export_lstm_graphs(cast(Seq2Seq, model), tmp)
        if not diff < 1e-3:
            raise RuntimeError(f"ONNX export of {run}: onnxruntime differs from PyTorch by "
                               f"{diff:g} on the example batch")
        cfg = model.cfg
        write_manifest(tmp, {
            "kind": KIND, "format": FORMAT, "arch": arch, "checkpoint": checkpoint,
            "weights_file": weights.name, "weights_sha256": weights_sha256,
            "files": {"encoder": ENCODER_FILE, "step": STEP_FILE},
            **fields,
            "model": cfg.to_dict(),
            "special_ids": {"pad": cfg.pad_id, "bos": cfg.bos_id, "eos": cfg.eos_id},
            "vocab_size": {"src": cfg.src_vocab_size, "tgt": cfg.tgt_vocab_size},
            "src_eos": tr.src_eos,
            "versions": {"torch": torch.__version__, "onnx": onnx.__version__,
                         "onnxruntime": ort.__version__},
            "check_max_abs_diff": diff,
        })
        check_unchanged(weights, weights_sha256)
    return out_dir


def _export_lstm_graphs(model: Seq2Seq, out: Path) -> tuple[dict[str, Any], float]:
    """Write the LSTM translator's two graphs into `out` and check them against PyTorch on a
    padded example batch. Returns the manifest's graph fields and the largest difference."""
    cfg = model.cfg
    # padded example sources: the trace follows the packed (variable-length) LSTM path
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([7, 5, 2])
    src = torch.randint(4, cfg.src_vocab_size, (3, 7), generator=g)
    src[torch.arange(7)[None, :] >= lengths[:, None]] = cfg.pad_id
    mem_names = _memory_names(cfg)
    enc_out = ["values", *mem_names, "h0", "c0"]
    step_in = _step_inputs(cfg)
    step_out = ["logprobs", "h_out", "c_out", "feed_out", "weights"]
    with torch.no_grad():
        enc = _EncoderGraph(model)
        enc_ref = enc(src, lengths)
        memory = dict(zip(enc_out, enc_ref, strict=True))
        mask = torch.arange(7)[None, :] < lengths[:, None]
        tokens = torch.randint(4, cfg.tgt_vocab_size, (3,), generator=g)
        feeds = {"tokens": tokens, "h": memory["h0"], "c": memory["c0"],
                 "feed": torch.rand(memory["h0"].shape, generator=g), "mask": mask,
                 **{n: memory[n] for n in ("values", *mem_names)}}
        step = _StepInputs(_StepGraph(model), cfg)
        step_args = tuple(feeds[n] for n in step_in)
        step_ref = step(*step_args)
    export_graph(enc, (src, lengths), out / ENCODER_FILE, input_names=["src", "src_lengths"],
                 output_names=enc_out,
                 dynamic_axes={n: _axes(n, cfg) for n in ["src", "src_lengths", *enc_out]})
    export_graph(step, step_args, out / STEP_FILE, input_names=step_in,
                 output_names=step_out,
                 dynamic_axes={n: _axes(n, cfg) for n in step_in + step_out})
    # the graphs against PyTorch on the example
    got_enc = make_session(out / ENCODER_FILE).run(
        None, {"src": src.numpy(), "src_lengths": lengths.numpy()})
    step_session = make_session(out / STEP_FILE)
    # the exporter drops inputs a graph does not read (multi-head: the raw values)
    step_in = [i.name for i in step_session.get_inputs()]
    got_step = step_session.run(None, {n: feeds[n].numpy() for n in step_in})
    diff = max(float(np.abs(a - b.numpy()).max())
               for a, b in zip([*got_enc, *got_step], [*enc_ref, *step_ref], strict=True))
    fields = {"encoder": {"inputs": ["src", "src_lengths"], "outputs": enc_out},
              "step": {"inputs": step_in, "outputs": step_out}}
    return fields, diff


class _StepInputs(nn.Module):
    """The step graph with exactly the inputs of `_step_inputs` (no unused feed)."""

    def __init__(self, step: _StepGraph, cfg: Seq2SeqConfig):
        super().__init__()
        self.step, self.names = step, _step_inputs(cfg)

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        x = dict(zip(self.names, args, strict=True))
        feed = x.get("feed", x["h"])   # unused without input feeding
        return self.step(x["tokens"], x["h"], x["c"], feed, x["values"], x["mask"],
                         x.get("keys"), x.get("head_values"))


def _weights_file(run: Path, checkpoint: str) -> Path:
    from seqlab.training.checkpoint import CHECKPOINT_FILE, MODEL_FILE

    return run / (MODEL_FILE if checkpoint == "best" else CHECKPOINT_FILE)


class OnnxStepDecoder:
    """The step-decoder protocol of `seqlab.decoding.search` over the step graph."""

    # the memory is AttentionDecoder's Memory of torch tensors with an AttentionCache, so its
    # row bookkeeping applies unchanged (it only calls the attention for caches it lacks)
    reorder_state = staticmethod(AttentionDecoder.reorder_state)
    select_memory = AttentionDecoder.select_memory
    expand_memory = AttentionDecoder.expand_memory
    memory_group = AttentionDecoder.memory_group
    join = AttentionDecoder.join

    def __init__(self, session: Any, cfg: Seq2SeqConfig):
        self.session, self.cfg = session, cfg
        names = [i.name for i in session.get_inputs()]
        self.state_inputs = [n for n in names if n in ("tokens", "h", "c", "feed")]
        self.memory_inputs = [n for n in names if n not in self.state_inputs]
        self.outputs = [o.name for o in session.get_outputs()]
        self.attention = None   # never used: every memory arrives with its key cache
        # The memory is bound once per Memory object (it changes only when rows are dropped or
        # joined), the state every step. The bound arrays stay referenced until rebound (the
        # binding may point into them), and so does the memory, so `is` is safe.
        self._binding = session.io_binding()
        self._bound_memory: Memory | None = None
        self._bound: dict[str, np.ndarray] = {}

    def step(self, tokens: Tensor, state: DecoderState, memory: Memory
             ) -> tuple[Tensor, DecoderState, Tensor]:
        """tokens (N,) -> log-probs (N, V), the new state, attention weights (N, S)."""
        b = self._binding
        if memory is not self._bound_memory:
            x = {"values": memory.values, "mask": memory.mask, "keys": memory.cache.keys,
                 "head_values": memory.cache.values}
            for n in self.memory_inputs:
                self._bound[n] = _array(x[n])
                b.bind_cpu_input(n, self._bound[n])
            self._bound_memory = memory
        x = {"tokens": tokens, "h": state.h, "c": state.c, "feed": state.feed}
        for n in self.state_inputs:
            self._bound[n] = _array(x[n])
            b.bind_cpu_input(n, self._bound[n])
        for n in self.outputs:
            b.bind_output(n, "cpu")
        self.session.run_with_iobinding(b)
        lp, h, c, a, w = (torch.from_numpy(v.numpy()) for v in b.get_outputs())
        return lp, DecoderState(h, c, a), w


def _array(t: Tensor) -> np.ndarray:
    """A CPU tensor as a C-contiguous numpy array (no copy when it already is one)."""
    return np.ascontiguousarray(t.numpy())


class InferenceOnly:
    """What the onnxruntime stand-ins share with an nn.Module in eval mode: `eval()` is a no-op
    and `train()` is refused."""

    training = False

    def eval(self) -> Any:
        return self

    def train(self, mode: bool = True) -> Any:
        if mode:
            raise ValueError("an onnxruntime translator cannot be trained")
        return self


class OnnxSeq2Seq(Generates, InferenceOnly):
    """What `seqlab.translate.api` uses of `Seq2Seq` (cfg, encode, decoder, generate, eval),
    over onnxruntime sessions (`load_onnx_translator` makes one)."""

    def __init__(self, encoder: Any, step: Any, cfg: Seq2SeqConfig,
                 manifest: dict[str, Any]):
        self.encoder_session = encoder
        self.decoder = OnnxStepDecoder(step, cfg)
        self.cfg = cfg
        self.manifest = manifest
        self._enc_outputs = manifest["encoder"]["outputs"]

    def encode(self, src: Tensor, src_lengths: Tensor, src_mask: Tensor
               ) -> tuple[Memory, DecoderState]:
        """src (B, S), src_lengths (B,), src_mask (B, S) -> the decoder's memory, initial state."""
        out = dict(zip(self._enc_outputs, self.encoder_session.run(
            None, {"src": src.numpy(), "src_lengths": src_lengths.numpy()}), strict=True))
        t = {k: torch.from_numpy(v) for k, v in out.items()}
        values = t["values"]
        cache = AttentionCache(keys=t.get("keys", values), values=t.get("head_values"),
                               values_from_keys="head_values" in t)
        zeros = torch.zeros_like(t["h0"])
        return Memory(values, src_mask, cache), DecoderState(t["h0"], t["c0"], zeros)


def load_onnx_translator(run_dir: str | Path, cfg: Any, checkpoint: str = "best",
                         threads: int | None = None) -> Any:
    """The export in `run_dir/onnx/` as an `OnnxSeq2Seq` or `OnnxTransformer` (by the
    manifest's arch); missing, stale (other weights), made from another checkpoint or another
    model configuration -> one-line UserError."""
    require_onnx()
    run = Path(run_dir)
    d = run / EXPORT_DIR
    cmd = _export_cmd(run) + ("" if checkpoint == "best" else f" --checkpoint {checkpoint}")
    manifest = read_manifest(d, KIND, cmd, _weights_file(run, checkpoint))
    if manifest.get("format") != FORMAT:
        raise UserError(f"{d}: export format {manifest.get('format')!r}, expected {FORMAT}; "
                        f"run `{_export_cmd(run)}` again")
    if manifest.get("model") != cfg.to_dict():
        raise UserError(f"{d}: exported from another model configuration than "
                        f"{run / 'config.json'}; run `{_export_cmd(run)}` again")
    files = manifest["files"]
    encoder = make_session(d / files["encoder"], threads)
    step = make_session(d / files["step"], threads)
    if manifest.get("arch", "lstm") == "transformer":
        from seqlab.translate.onnx_transformer import OnnxTransformer

        return OnnxTransformer(encoder, step, cfg, manifest)
    return OnnxSeq2Seq(encoder, step, cfg, manifest)
