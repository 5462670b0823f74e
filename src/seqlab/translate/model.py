"""The translator: a bidirectional LSTM encoder and the attention LSTM decoder.

    src (B, S) -> embed -> bi-LSTM (lengths-masked) -> memory (B, S, 2He)
    final states [h_fwd; h_bwd] (B, 2He) -> bridge -> decoder (h0, c0)
    tgt_in (B, T) -> AttentionDecoder over the memory -> (B, T, H) -> vocabulary logits

    (He = encoder_hidden_size, H = decoder_hidden_size: the fields of `Seq2SeqConfig`)

Loss: label-smoothed cross-entropy summed over real target tokens (PAD rows are removed before
the vocabulary projection, so they cost nothing and never reach the loss).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from seqlab.decoding.search import SearchResult, search
from seqlab.nn.decoder import AttentionDecoder, DecoderConfig, DecoderState, Memory
from seqlab.nn.lstm import LSTM
from seqlab.text.config import (
    check_attention,
    check_flags,
    check_fraction,
    check_non_negative,
    check_positive,
    check_tied,
    config_from_dict,
)


class _SmoothedCrossEntropy(torch.autograd.Function):
    """Summed label-smoothed cross-entropy, equal to
    `F.cross_entropy(logits, target, label_smoothing=eps, reduction="sum")` with fewer passes
    over the large (N, V) logits and one (N, V) buffer: with logp = log_softmax(z),

        loss_n = -(1 - eps) logp_y - (eps / V) sum_v logp_v
        dloss/dz = softmax(z) - (1 - eps) onehot(y) - eps / V

    The backward turns the saved logp into the gradient in place (so it runs once per forward).
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, target: Tensor, eps: float) -> Tensor:
        V = logits.size(1)
        # at least float32 (bfloat16 logits under mixed precision): a bfloat16 log-softmax over
        # V loses the loss; float64 stays float64
        logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)),
                                 dim=1)                                    # (N, V)
        loss = -(1.0 - eps) * logp.gather(1, target.unsqueeze(1)).sum()
        if eps:
            loss = loss - (eps / V) * logp.sum()
        ctx.save_for_backward(logp, target)
        ctx.eps, ctx.dtype = eps, logits.dtype
        return loss

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        logp, target = ctx.saved_tensors
        eps, V = ctx.eps, logp.size(1)
        g = logp.exp_()                                                    # softmax, in place
        if eps:
            g.sub_(eps / V)
        g.scatter_add_(1, target.unsqueeze(1), g.new_full((g.size(0), 1), -(1.0 - eps)))
        return g.mul_(grad).to(ctx.dtype), None, None


def smoothed_cross_entropy(logits: Tensor, target: Tensor, eps: float = 0.0) -> Tensor:
    """logits (N, V), target (N,) -> summed label-smoothed cross-entropy (a scalar)."""
    if logits.dim() != 2 or target.shape != logits.shape[:1]:
        raise ValueError(f"smoothed_cross_entropy: expected logits (N, V) and target (N,), got "
                         f"{tuple(logits.shape)} and {tuple(target.shape)}")
    if logits.size(0) == 0:
        return logits.sum()
    return _SmoothedCrossEntropy.apply(logits, target, float(eps))


@dataclass
class Seq2SeqConfig:
    """The translator's hyperparameters, named as the torch modules they size.

    Saved as the "model" object of the run's config.json (`to_dict` / `from_dict`); the CLI
    flags carry the same names (`--decoder-hidden-size`). Checked on construction: a bad value
    is a one-line UserError naming the field.
    """

    src_vocab_size: int = 8000     # training sets both from the tokenizer
    tgt_vocab_size: int = 8000
    embedding_dim: int = 256       # source and target embeddings
    encoder_hidden_size: int = 256  # per direction; the memory is 2 * encoder_hidden_size wide
    num_encoder_layers: int = 1
    decoder_hidden_size: int = 256
    attention: str = "additive"    # one of seqlab.nn.attention.ATTENTION_KINDS
    attn_dim: int | None = None    # additive: score MLP size; multihead: projection size
    num_heads: int = 1             # multihead only
    input_feeding: bool = True
    bridge: bool = True            # decoder (h0, c0) from the encoder's final states (else 0)
    dropout: float = 0.2
    tie_embeddings: bool = False   # target embeddings = output projection
    label_smoothing: float = 0.1
    pad_id: int = 0
    bos_id: int = 2
    eos_id: int = 3

    def __post_init__(self) -> None:
        check_positive(self, "src_vocab_size", "tgt_vocab_size", "embedding_dim",
                       "encoder_hidden_size", "num_encoder_layers", "decoder_hidden_size")
        check_non_negative(self, "pad_id", "bos_id", "eos_id")
        check_flags(self, "input_feeding", "bridge", "tie_embeddings")
        check_fraction(self, "dropout", "label_smoothing")
        check_attention(self, "decoder_hidden_size", 2 * self.encoder_hidden_size,
                        "2 * encoder_hidden_size")
        check_tied(self, "embedding_dim", "decoder_hidden_size")

    def decoder_config(self) -> DecoderConfig:
        return DecoderConfig(
            vocab_size=self.tgt_vocab_size, embedding_dim=self.embedding_dim,
            hidden_size=self.decoder_hidden_size, memory_dim=2 * self.encoder_hidden_size,
            attention=self.attention, attn_dim=self.attn_dim, num_heads=self.num_heads,
            input_feeding=self.input_feeding, bridge=self.bridge,
            summary_dim=2 * self.encoder_hidden_size, dropout=self.dropout,
            tie_embeddings=self.tie_embeddings, pad_id=self.pad_id)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Seq2SeqConfig:
        return config_from_dict(cls, d)


def default_max_new_tokens(src_lengths: Tensor) -> Tensor:
    """Output length limit per sentence when none is given: 2 x source length + 10, (B,)."""
    return (2 * src_lengths.cpu() + 10).long()


class Generates:
    """`generate` for every translator (LSTM, Transformer, their ensembles, the onnxruntime
    stand-ins): encode the batch, then greedy or beam search over `self.decoder` with
    `self.cfg`'s special ids. `max_target_positions` caps the output length (None: no cap;
    the Transformer's learned or sinusoid positions end at `max_positions`)."""

    max_target_positions: int | None = None

    @torch.no_grad()
    def generate(self, src: Tensor, src_lengths: Tensor, src_mask: Tensor, *,
                 num_beams: int = 5, max_new_tokens: int | Tensor | None = None,
                 length_penalty: float = 1.0, num_return_sequences: int = 1,
                 return_attention: bool = False) -> SearchResult:
        """Translate a batch. src (B, S) ids, src_lengths (B,), src_mask (B, S) bool;
        max_new_tokens: int, (B,) or None = 2 * source length + 10."""
        if max_new_tokens is None:
            max_new_tokens = default_max_new_tokens(src_lengths)
        if self.max_target_positions is not None:
            limit = torch.as_tensor(max_new_tokens).clamp(max=self.max_target_positions)
            max_new_tokens = int(limit) if limit.dim() == 0 else limit
        model: Any = self
        memory, state = model.encode(src, src_lengths, src_mask)
        return search(model.decoder, memory, state, bos_id=model.cfg.bos_id,
                      eos_id=model.cfg.eos_id, max_len=max_new_tokens, num_beams=num_beams,
                      length_penalty=length_penalty,
                      num_return_sequences=num_return_sequences,
                      return_attention=return_attention)


class Seq2Seq(Generates, nn.Module):
    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.cfg = cfg
        self.src_embed = nn.Embedding(cfg.src_vocab_size, cfg.embedding_dim,
                                      padding_idx=cfg.pad_id)
        self.encoder = LSTM(cfg.embedding_dim, cfg.encoder_hidden_size,
                            num_layers=cfg.num_encoder_layers, batch_first=True,
                            bidirectional=True,
                            dropout=cfg.dropout if cfg.num_encoder_layers > 1 else 0.0)
        self.dropout = nn.Dropout(cfg.dropout)
        self.decoder = AttentionDecoder(cfg.decoder_config())

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def encode(self, src: Tensor, src_lengths: Tensor, src_mask: Tensor
               ) -> tuple[Memory, DecoderState]:
        """src: (B, S) ids, src_lengths: (B,), src_mask: (B, S) bool (True = real).

        Returns the decoder's memory (B, S, 2He) and its initial state.
        """
        emb = self.dropout(self.src_embed(src))                               # (B, S, E)
        out, (h_n, _) = self.encoder(emb, lengths=src_lengths.cpu())          # (B, S, 2He)
        summary = torch.cat([h_n[-2], h_n[-1]], dim=-1)                       # (B, 2He)
        memory = self.decoder.make_memory(self.dropout(out), src_mask)
        return memory, self.decoder.init_state(memory, summary)

    def forward(self, src: Tensor, src_lengths: Tensor, src_mask: Tensor, tgt_in: Tensor,
                return_attention: bool = False) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced logits (B, T, V) (and attention (B, T, S) on request)."""
        memory, state = self.encode(src, src_lengths, src_mask)
        att, weights = self.decoder(tgt_in, memory, state, return_attention=return_attention)
        return self.decoder.logits(att), weights

    def loss(self, src: Tensor, src_lengths: Tensor, src_mask: Tensor, tgt_in: Tensor,
             tgt_out: Tensor) -> tuple[Tensor, int]:
        """Summed label-smoothed cross-entropy over the real target tokens, and their count.

        tgt_in, tgt_out: (B, T); positions where tgt_out == pad are left out.
        """
        memory, state = self.encode(src, src_lengths, src_mask)
        att, _ = self.decoder(tgt_in, memory, state)                          # (B, T, H)
        real = tgt_out != self.cfg.pad_id                                     # (B, T)
        logits = self.decoder.logits(att[real])                               # (N, V)
        loss = smoothed_cross_entropy(logits, tgt_out[real], self.cfg.label_smoothing)
        return loss, int(real.sum())


