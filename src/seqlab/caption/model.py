"""The captioner: a CNN region encoder and the shared attention LSTM decoder (Show, Attend and
Tell, Xu et al. 2015, with Luong-style input feeding from `seqlab.nn.decoder`).

    images (B, 3, S, S) -> ConvEncoder -> regions (B, G*G, D)   the decoder's memory (no mask)
    decoder (h0, c0) = 0 (default), or a bridge from the mean region (`bridge=True`, as SAT)
    tgt_in (B, T) -> AttentionDecoder over the regions -> (B, T, H) -> vocabulary logits

Without the bridge (the default) the whole image reaches the decoder through attention: with
it, the decoder can read most of a short emoji name from the mean feature and the attention
drifts to background "sink" regions, which makes for uninformative pictures.

Loss: label-smoothed cross-entropy summed over real caption tokens (PAD rows never reach the
vocabulary projection), plus optionally Show-Attend-and-Tell's "doubly stochastic" penalty
`attn_reg * sum_regions (1 - sum_t w_t)^2` that asks every region to be looked at about once
over a caption (0 = off). Decoding uses `seqlab.decoding.search` (greedy / beam).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab.caption.encoder import ConvEncoder, EncoderConfig
from seqlab.decoding.search import SearchResult, beam_search, greedy_search
from seqlab.errors import UserError
from seqlab.nn.decoder import AttentionDecoder, DecoderConfig, DecoderState, Memory
from seqlab.text.config import (
    check_attention,
    check_flags,
    check_fraction,
    check_non_negative,
    check_positive,
    config_from_dict,
)


@dataclass
class CaptionerConfig:
    """The captioner's hyperparameters, named as the torch modules they size.

    Saved as the "model" object of the run's config.json (`to_dict` / `from_dict`); the CLI
    flags carry the same names (`--hidden-size`). Checked on construction: a bad value is a
    one-line UserError naming the field.
    """

    vocab_size: int = 1000         # training sets it from the tokenizer
    image_size: int = 64
    channels: tuple[int, ...] = (16, 32, 64)
    feat_dim: int = 256            # region feature size D (the decoder's memory)
    embedding_dim: int = 128
    hidden_size: int = 256         # decoder LSTM size
    attention: str = "additive"    # one of seqlab.nn.attention.ATTENTION_KINDS
    attn_dim: int | None = 128     # additive: score MLP size (None: hidden_size)
    num_heads: int = 1
    input_feeding: bool = True
    bridge: bool = False           # (h0, c0) from the mean region; off: the image reaches the
                                   # decoder only through attention, so attention must be useful
    dropout: float = 0.1
    label_smoothing: float = 0.1
    attn_reg: float = 0.0          # doubly stochastic attention penalty (0 = off)
    max_len: int = 40              # default limit on generated tokens
    pad_id: int = 0
    bos_id: int = 2
    eos_id: int = 3

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)   # a JSON list -> the tuple the field says
        check_positive(self, "vocab_size", "image_size", "feat_dim", "embedding_dim",
                       "hidden_size", "max_len")
        if not self.channels or not all(isinstance(c, int) and c >= 1 for c in self.channels):
            raise UserError(f"CaptionerConfig.channels: expected positive ints, "
                            f"got {list(self.channels)!r}")
        if self.image_size % 2 ** len(self.channels):
            raise UserError(f"CaptionerConfig.image_size: must be divisible by "
                            f"2**{len(self.channels)} (one halving per channels entry), "
                            f"got {self.image_size}")
        check_non_negative(self, "pad_id", "bos_id", "eos_id")
        check_flags(self, "input_feeding", "bridge")
        check_fraction(self, "dropout", "label_smoothing")
        if not (isinstance(self.attn_reg, (int, float)) and self.attn_reg >= 0):
            raise UserError(f"CaptionerConfig.attn_reg: expected a number >= 0, "
                            f"got {self.attn_reg!r}")
        check_attention(self, "hidden_size", self.feat_dim, "feat_dim")

    def encoder_config(self) -> EncoderConfig:
        return EncoderConfig(self.image_size, self.channels, self.feat_dim,
                             dropout=self.dropout / 2)

    def decoder_config(self) -> DecoderConfig:
        return DecoderConfig(
            vocab_size=self.vocab_size, embedding_dim=self.embedding_dim,
            hidden_size=self.hidden_size, memory_dim=self.feat_dim, attention=self.attention,
            attn_dim=self.attn_dim, num_heads=self.num_heads, input_feeding=self.input_feeding,
            bridge=self.bridge, dropout=self.dropout, pad_id=self.pad_id)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CaptionerConfig:
        return config_from_dict(cls, d)

    @property
    def grid(self) -> int:
        return self.image_size // 2 ** len(self.channels)


class CaptionModel(nn.Module):
    def __init__(self, cfg: CaptionerConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = ConvEncoder(cfg.encoder_config())
        self.decoder = AttentionDecoder(cfg.decoder_config())

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def encode(self, images: Tensor) -> tuple[Memory, DecoderState]:
        """images: (B, 3, S, S) in [0, 1]. Returns the memory (B, G*G, D) and the initial state
        (zeros, or the bridge from the mean region feature)."""
        regions = self.encoder(images)                                       # (B, G*G, D)
        memory = self.decoder.make_memory(regions)                          # all regions real
        return memory, self.decoder.init_state(memory)

    def forward(self, images: Tensor, tgt_in: Tensor, return_attention: bool = False
                ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced logits (B, T, V) and, on request, attention (B, T, G*G)."""
        memory, state = self.encode(images)
        att, weights = self.decoder(tgt_in, memory, state, return_attention=return_attention)
        return self.decoder.logits(att), weights

    def loss(self, images: Tensor, tgt_in: Tensor, tgt_out: Tensor) -> tuple[Tensor, int]:
        """Summed label-smoothed cross-entropy over real caption tokens (+ the attention
        penalty, scaled by the token count so `loss / n` keeps its meaning), and the count.

        images: (B, 3, S, S); tgt_in, tgt_out: (B, T) with PAD where tgt_out has no token.
        """
        memory, state = self.encode(images)
        reg = self.cfg.attn_reg > 0 and self.cfg.attention != "none"
        att, weights = self.decoder(tgt_in, memory, state, return_attention=reg)  # (B, T, H)
        real = tgt_out != self.cfg.pad_id                                     # (B, T)
        logits = self.decoder.logits(att[real])                               # (N, V)
        loss = F.cross_entropy(logits, tgt_out[real], reduction="sum",
                               label_smoothing=self.cfg.label_smoothing)
        n = int(real.sum())
        if reg:
            assert weights is not None
            if weights.dim() == 4:        # multi-head per-head weights: average the heads
                weights = weights.mean(1)
            cover = (weights * real.unsqueeze(-1)).sum(1)                     # (B, G*G)
            penalty = ((1.0 - cover) ** 2).sum(1).mean()
            loss = loss + self.cfg.attn_reg * penalty * n
        return loss, n

    @torch.no_grad()
    def generate(self, images: Tensor, *, num_beams: int = 5, max_new_tokens: int | None = None,
                 length_penalty: float = 1.0, num_return_sequences: int = 1,
                 return_attention: bool = False) -> SearchResult:
        """Caption a batch of images (B, 3, S, S). Attention per output token: (T, G*G)."""
        memory, state = self.encode(images)
        common: dict[str, Any] = dict(bos_id=self.cfg.bos_id, eos_id=self.cfg.eos_id,
                                      max_len=max_new_tokens or self.cfg.max_len,
                                      return_attention=return_attention)
        if num_beams == 1 and num_return_sequences == 1:
            return greedy_search(self.decoder, memory, state, **common)
        return beam_search(self.decoder, memory, state, num_beams=num_beams,
                           length_penalty=length_penalty,
                           num_return_sequences=num_return_sequences, **common)
