"""A Transformer translator (Vaswani et al. 2017, pre-norm) built from seqlab's own multi-head
attention (`seqlab.nn.attention.MultiHeadAttention`), a drop-in for `Seq2Seq`: the same
`encode` / `forward` / `loss` / `generate`, run directory, training loop, search and CLI
(`seqlab translate train --arch transformer`).

    src (B, S) -> embed * sqrt(d_model) + positions -> num_encoder_layers x
        [x + SelfAttn(LN(x), padding mask); x + FFN(LN(x))] -> LN -> memory (B, S, d_model)
    tgt_in (B, T) -> embed * sqrt(d_model) + positions -> num_decoder_layers x
        [x + SelfAttn(LN(x), causal mask); x + CrossAttn(LN(x), memory); x + FFN(LN(x))]
        -> LN -> logits = x E^T (B, T, V)     (tied: E is the target embedding)

Embeddings: the output layer is always the target embedding; with `share_embeddings` (one
tokenizer for both sides) the source uses the same matrix. Positions: fixed sinusoids or
learned vectors (`positions`). Search (`seqlab.decoding.search`): `TransformerDecoder.step`
feeds one token per sentence, keeping each layer's self-attention keys/values (the KV cache)
in the state, and each layer's cross-attention projections of the memory are computed once per
source; beam search reorders the caches with `reorder_state`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab.errors import UserError
from seqlab.nn.attention import AttentionCache, MultiHeadAttention
from seqlab.text.config import (
    check_flags,
    check_fraction,
    check_non_negative,
    check_positive,
    config_from_dict,
)
from seqlab.translate.model import (
    Generates,
    Seq2Seq,
    Seq2SeqConfig,
    smoothed_cross_entropy,
)

ARCHS = ("lstm", "transformer")
POSITIONS = ("sinusoidal", "learned")


@dataclass
class TransformerConfig:
    """The Transformer translator's hyperparameters (torch.nn.Transformer's names).

    Saved as config.json's "model" with `arch: "transformer"` (runs without an arch field are
    LSTM translators, `Seq2SeqConfig`).
    """

    src_vocab_size: int = 8000
    tgt_vocab_size: int = 8000
    d_model: int = 256             # embeddings, residual stream, attention size
    num_heads: int = 4
    num_encoder_layers: int = 3
    num_decoder_layers: int = 3
    dim_feedforward: int = 1024
    dropout: float = 0.1           # embeddings and every residual branch
    # inside the feed-forward block, after the ReLU (fairseq's name and default): a mask there
    # is dim_feedforward wide, so drawing it costs about as much as the block's matmuls
    activation_dropout: float = 0.0
    positions: str = "sinusoidal"  # or "learned"
    max_positions: int = 512       # longest sequence (source or target) the positions cover
    share_embeddings: bool = True  # source embedding = target embedding (shared tokenizer)
    label_smoothing: float = 0.1
    pad_id: int = 0
    bos_id: int = 2
    eos_id: int = 3
    arch: str = "transformer"

    def __post_init__(self) -> None:
        check_positive(self, "src_vocab_size", "tgt_vocab_size", "d_model", "num_heads",
                       "num_encoder_layers", "num_decoder_layers", "dim_feedforward",
                       "max_positions")
        check_non_negative(self, "pad_id", "bos_id", "eos_id")
        check_flags(self, "share_embeddings")
        check_fraction(self, "dropout", "activation_dropout", "label_smoothing")
        name = type(self).__name__
        if self.arch != "transformer":
            raise UserError(f"{name}.arch: expected 'transformer', got {self.arch!r}")
        if self.positions not in POSITIONS:
            raise UserError(f"{name}.positions: expected one of {', '.join(POSITIONS)}, "
                            f"got {self.positions!r}")
        if self.d_model % self.num_heads:
            raise UserError(f"{name}.d_model: expected a multiple of num_heads="
                            f"{self.num_heads}, got {self.d_model}")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise UserError(f"{name}.share_embeddings: needs src_vocab_size == tgt_vocab_size, "
                            f"got {self.src_vocab_size} and {self.tgt_vocab_size}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransformerConfig:
        return config_from_dict(cls, d)


def sinusoids(max_positions: int, d_model: int) -> Tensor:
    """(max_positions, d_model): PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...)."""
    pos = torch.arange(max_positions, dtype=torch.float64).unsqueeze(1)            # (P, 1)
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64)
                     * (-math.log(10000.0) / d_model))                              # (d/2,)
    pe = torch.zeros(max_positions, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : d_model // 2]
    return pe.float()


class Embeddings(nn.Module):
    """Token embedding * sqrt(d_model) + position, then dropout: ids (B, T) -> (B, T, d)."""

    def __init__(self, token: nn.Embedding, cfg: TransformerConfig):
        super().__init__()
        self.token = token
        self.scale = math.sqrt(cfg.d_model)
        self.max_positions = cfg.max_positions
        if cfg.positions == "learned":
            self.position = nn.Parameter(torch.randn(cfg.max_positions, cfg.d_model) * 0.02)
        else:   # fixed: not a parameter, not saved
            self.register_buffer("position", sinusoids(cfg.max_positions, cfg.d_model),
                                 persistent=False)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, ids: Tensor, positions: Tensor) -> Tensor:
        """ids (B, T), positions (T,) or (B, T) -> (B, T, d)."""
        if int(positions.max()) >= self.max_positions:
            raise ValueError(f"sequence longer than max_positions={self.max_positions}")
        x = self.token(ids) * self.scale + self.position[positions].to(self.token.weight.dtype)
        return self.dropout(x)


class FeedForward(nn.Sequential):
    """Linear(d, ff) -> ReLU -> dropout (activation_dropout) -> Linear(ff, d): (..., d) -> (..., d).
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__(nn.Linear(cfg.d_model, cfg.dim_feedforward), nn.ReLU(),
                         nn.Dropout(cfg.activation_dropout) if cfg.activation_dropout
                         else nn.Identity(),
                         nn.Linear(cfg.dim_feedforward, cfg.d_model))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        d = cfg.d_model
        self.self_attn_norm = nn.LayerNorm(d)
        self.self_attn = MultiHeadAttention(d, d, d, cfg.num_heads)
        self.ff_norm = nn.LayerNorm(d)
        self.ff = FeedForward(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, S, d), mask (B, S) bool (True = real) -> (B, S, d)."""
        h = self.self_attn_norm(x)
        x = x + self.dropout(self.self_attn(h, h, h, mask=mask)[0])
        return x + self.dropout(self.ff(self.ff_norm(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        d = cfg.d_model
        self.self_attn_norm = nn.LayerNorm(d)
        self.self_attn = MultiHeadAttention(d, d, d, cfg.num_heads)
        self.cross_attn_norm = nn.LayerNorm(d)
        self.cross_attn = MultiHeadAttention(d, d, d, cfg.num_heads)
        self.ff_norm = nn.LayerNorm(d)
        self.ff = FeedForward(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, past: AttentionCache | None, self_mask: Tensor | None,
                memory_cache: AttentionCache, memory_mask: Tensor
                ) -> tuple[Tensor, Tensor, AttentionCache]:
        """x (B, Tq, d) the new positions; past: self-attention K, V of the earlier target
        positions (B, h, T0, d_head) (None: none); self_mask (B, Tq, T0 + Tq) bool or None (all
        visible); memory_cache: the memory's cross-attention K, V (B, h, S, d_head);
        memory_mask (B, S).

        Returns x (B, Tq, d), the cross-attention weights per head (B, h, Tq, S) and the
        self-attention K, V with the new positions appended (B, h, T0 + Tq, d_head).
        """
        h = self.self_attn_norm(x)
        self_cache = self.self_attn.extend_cache(past, h)
        x = x + self.dropout(self.self_attn.attend(h, self_cache, self_mask)[0])
        ctx, w = self.cross_attn.attend(self.cross_attn_norm(x), memory_cache,
                                        memory_mask.unsqueeze(1), return_head_weights=True)
        x = x + self.dropout(ctx)
        return x + self.dropout(self.ff(self.ff_norm(x))), w, self_cache


class TransformerMemory(NamedTuple):
    """What stays fixed while decoding."""

    values: Tensor                    # (N, S, d) encoder output
    mask: Tensor                      # (N, S) bool, True = real position
    caches: tuple[AttentionCache, ...]  # per decoder layer: cross-attention K, V (N, h, S, dh)


class TransformerState(NamedTuple):
    """What grows while decoding: the position of the next token and, per decoder layer, the
    self-attention keys and values of the tokens fed so far (the KV cache)."""

    position: Tensor             # (N,) long
    keys: tuple[Tensor, ...]     # per layer (N, h, t, d_head)
    values: tuple[Tensor, ...]   # per layer (N, h, t, d_head)


class TransformerDecoder(nn.Module):
    """The decoder stack and its search protocol (`seqlab.decoding.search.PrunableStepDecoder`:
    step, reorder_state, expand_memory, select_memory)."""

    def __init__(self, cfg: TransformerConfig, embed: nn.Embedding):
        super().__init__()
        self.cfg = cfg
        self.embed = Embeddings(embed, cfg)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_decoder_layers))
        self.norm = nn.LayerNorm(cfg.d_model)

    def make_memory(self, values: Tensor, mask: Tensor) -> TransformerMemory:
        """values (B, S, d), mask (B, S): each layer's cross-attention K, V, once per source."""
        caches = tuple(layer.cross_attn.precompute(values)
                       for layer in cast(list[DecoderLayer], self.layers))
        return TransformerMemory(values, mask, caches)

    def init_state(self, memory: TransformerMemory) -> TransformerState:
        B, dev = memory.values.size(0), memory.values.device
        h = self.cfg.num_heads
        empty = memory.values.new_zeros(B, h, 0, self.cfg.d_model // h)     # (B, h, 0, dh)
        L = len(self.layers)
        return TransformerState(torch.zeros(B, dtype=torch.long, device=dev),
                                (empty,) * L, (empty,) * L)

    def logits(self, x: Tensor) -> Tensor:
        """(..., d) -> (..., V): the tied output layer (the target embedding)."""
        return F.linear(x, self.embed.token.weight)

    def forward(self, tgt_in: Tensor, memory: TransformerMemory, return_attention: bool = False
                ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced: tgt_in (B, T) -> final hidden states (B, T, d) and, on request, the
        cross-attention of every layer and head (B, layers, heads, T, S)."""
        B, T = tgt_in.shape
        x = self.embed(tgt_in, torch.arange(T, device=tgt_in.device))        # (B, T, d)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()  # (T, T)
        # padded target positions as keys are masked too (only later rows could see them)
        # (BOS, never padding, keeps every row non-empty)
        self_mask = causal.unsqueeze(0) & (tgt_in != self.cfg.pad_id).unsqueeze(1)  # (B, T, T)
        weights = []
        for layer, cache in zip(self.layers, memory.caches, strict=True):
            x, w, _ = layer(x, None, self_mask, cache, memory.mask)
            weights.append(w)
        att = torch.stack(weights, 1) if return_attention else None          # (B, L, h, T, S)
        return self.norm(x), att

    # ---- the search protocol ----------------------------------------------------------------

    def step(self, tokens: Tensor, state: TransformerState, memory: TransformerMemory
             ) -> tuple[Tensor, TransformerState, Tensor]:
        """tokens (N,) -> log-probs (N, V), the state with this token's keys/values appended,
        the last layer's cross-attention averaged over heads (N, S)."""
        x = self.embed(tokens.unsqueeze(1), state.position.unsqueeze(1))     # (N, 1, d)
        keys, values = [], []
        w = x.new_zeros(0)
        for layer, k, v, cache in zip(self.layers, state.keys, state.values, memory.caches,
                                      strict=True):
            x, w, self_cache = layer(x, AttentionCache(k, v), None, cache,
                                     memory.mask)                            # (N, 1, d)
            keys.append(self_cache.keys)                                     # (N, h, t+1, dh)
            values.append(self_cache.values)
        logits = self.logits(self.norm(x[:, 0]))                             # (N, V)
        # at least float32 (bfloat16 logits under mixed precision)
        lp = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
        state = TransformerState(state.position + 1, tuple(keys), tuple(values))
        return lp.to(x.dtype), state, w[:, :, 0].mean(1)

    @staticmethod
    def reorder_state(state: TransformerState, index: Tensor) -> TransformerState:
        index = index.to(state.position.device)
        return TransformerState(state.position.index_select(0, index),
                                tuple(k.index_select(0, index) for k in state.keys),
                                tuple(v.index_select(0, index) for v in state.values))

    def select_memory(self, memory: TransformerMemory, index: Tensor) -> TransformerMemory:
        index = index.to(memory.values.device)
        return TransformerMemory(memory.values.index_select(0, index),
                                 memory.mask.index_select(0, index),
                                 tuple(c.index_select(index) for c in memory.caches))

    def expand_memory(self, memory: TransformerMemory, k: int) -> TransformerMemory:
        index = torch.arange(memory.values.size(0), device=memory.values.device)
        return self.select_memory(memory, index.repeat_interleave(k))


class Transformer(Generates, nn.Module):
    """The Transformer translator; the interface of `seqlab.translate.model.Seq2Seq`."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        tgt_embed = nn.Embedding(cfg.tgt_vocab_size, d, padding_idx=cfg.pad_id)
        src_embed = (tgt_embed if cfg.share_embeddings
                     else nn.Embedding(cfg.src_vocab_size, d, padding_idx=cfg.pad_id))
        for e in {id(tgt_embed): tgt_embed, id(src_embed): src_embed}.values():
            # the embedding is also the output layer: N(0, 1/d) keeps the logits O(1)
            nn.init.normal_(e.weight, std=d ** -0.5)
            with torch.no_grad():
                e.weight[cfg.pad_id].zero_()
        self.src_embed = Embeddings(src_embed, cfg)
        self.encoder_layers = nn.ModuleList(EncoderLayer(cfg)
                                            for _ in range(cfg.num_encoder_layers))
        self.encoder_norm = nn.LayerNorm(d)
        self.decoder = TransformerDecoder(cfg, tgt_embed)

    @property
    def max_target_positions(self) -> int:   # type: ignore[override]
        return self.cfg.max_positions

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def encode(self, src: Tensor, src_lengths: Tensor, src_mask: Tensor
               ) -> tuple[TransformerMemory, TransformerState]:
        """src (B, S) ids, src_lengths (B,), src_mask (B, S) bool (True = real) -> the
        decoder's memory (encoder output (B, S, d) and its cross-attention caches) and the
        initial search state."""
        x = self.src_embed(src, torch.arange(src.size(1), device=src.device))   # (B, S, d)
        for layer in self.encoder_layers:
            x = layer(x, src_mask)
        memory = self.decoder.make_memory(self.encoder_norm(x), src_mask)
        return memory, self.decoder.init_state(memory)

    def forward(self, src: Tensor, src_lengths: Tensor, src_mask: Tensor, tgt_in: Tensor,
                return_attention: bool = False) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced logits (B, T, V) (and cross-attention (B, layers, heads, T, S))."""
        memory, _ = self.encode(src, src_lengths, src_mask)
        x, weights = self.decoder(tgt_in, memory, return_attention=return_attention)
        return self.decoder.logits(x), weights

    def loss(self, src: Tensor, src_lengths: Tensor, src_mask: Tensor, tgt_in: Tensor,
             tgt_out: Tensor) -> tuple[Tensor, int]:
        """Summed label-smoothed cross-entropy over the real target tokens, and their count."""
        memory, _ = self.encode(src, src_lengths, src_mask)
        x, _ = self.decoder(tgt_in, memory)                                      # (B, T, d)
        real = tgt_out != self.cfg.pad_id                                         # (B, T)
        logits = self.decoder.logits(x[real])                                     # (N, V)
        loss = smoothed_cross_entropy(logits, tgt_out[real], self.cfg.label_smoothing)
        return loss, int(real.sum())

    @torch.no_grad()
    def cross_attention(self, src: Tensor, src_lengths: Tensor, src_mask: Tensor,
                        tgt_in: Tensor) -> Tensor:
        """Every decoder layer's cross-attention per head for given outputs (teacher-forced,
        equal to what the incremental search saw): (B, layers, heads, T, S)."""
        _, weights = self.forward(src, src_lengths, src_mask, tgt_in, return_attention=True)
        assert weights is not None
        return weights


def model_config_from_dict(d: dict[str, Any]) -> Any:
    """config.json's "model" -> TransformerConfig (arch "transformer") or Seq2SeqConfig (no
    arch field, or "lstm": every run written before the Transformer)."""
    arch = d.get("arch", "lstm") if isinstance(d, dict) else "lstm"
    if arch == "transformer":
        return TransformerConfig.from_dict(d)
    if arch != "lstm":
        raise UserError(f"model.arch: expected one of {', '.join(ARCHS)}, got {arch!r}")
    return Seq2SeqConfig.from_dict({k: v for k, v in d.items() if k != "arch"})


def build_model(cfg: Any) -> Transformer | Seq2Seq:
    """The translator for a model config: Transformer or Seq2Seq (the LSTM)."""
    return Transformer(cfg) if isinstance(cfg, TransformerConfig) else Seq2Seq(cfg)
