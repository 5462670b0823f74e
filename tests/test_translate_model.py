"""The translator model and the generic attention decoder: shapes, masking, loss, steps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqlab.errors import UserError
from seqlab.nn.attention import ATTENTION_KINDS
from seqlab.nn.decoder import AttentionDecoder, DecoderConfig
from seqlab.translate.model import Seq2Seq, Seq2SeqConfig, smoothed_cross_entropy

PAD = 0


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(attention: str = "additive", **kw) -> Seq2Seq:
    torch.manual_seed(0)
    kw.setdefault("dropout", 0.0)
    cfg = Seq2SeqConfig(src_vocab_size=40, tgt_vocab_size=35, embedding_dim=16,
                        encoder_hidden_size=8, decoder_hidden_size=16, attention=attention,
                        attn_dim=16, num_heads=2 if attention == "multihead" else 1, **kw)
    return Seq2Seq(cfg).double()


def batch(lengths: list[int], S: int | None = None, T: int = 6, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    S = S or max(lengths)
    B = len(lengths)
    lengths_t = torch.tensor(lengths)
    mask = torch.arange(S)[None] < lengths_t[:, None]
    src = torch.randint(4, 40, (B, S), generator=g).masked_fill(~mask, PAD)
    tgt_in = torch.randint(4, 35, (B, T), generator=g)
    tgt_out = torch.randint(4, 35, (B, T), generator=g)
    return src, lengths_t, mask, tgt_in, tgt_out


@pytest.mark.parametrize("attention", ATTENTION_KINDS)
def test_shapes_and_attention_rows(attention):
    m = tiny(attention).eval()
    src, lengths, mask, tgt_in, _ = batch([5, 3, 4])
    logits, w = m(src, lengths, mask, tgt_in, return_attention=True)
    assert logits.shape == (3, 6, 35)
    assert w.shape == (3, 6, 5)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 6, dtype=w.dtype))
    assert torch.all(w.masked_select(~mask[:, None, :].expand_as(w)) == 0)


@pytest.mark.parametrize("attention", ["additive", "general", "multihead", "none"])
@pytest.mark.parametrize("input_feeding", [True, False])
def test_source_padding_never_changes_outputs(attention, input_feeding):
    """Extra PAD columns (and garbage under the mask) leave every real output unchanged."""
    m = tiny(attention, input_feeding=input_feeding).eval()
    src, lengths, mask, tgt_in, _ = batch([4, 2, 3])
    ref, ref_w = m(src, lengths, mask, tgt_in, return_attention=True)
    extra = 3
    src2 = torch.cat([src, torch.full((3, extra), 7)], 1)   # junk ids after the real tokens
    src2[~torch.cat([mask, torch.zeros(3, extra, dtype=torch.bool)], 1)] = 9
    mask2 = torch.arange(src2.size(1))[None] < lengths[:, None]
    out, w = m(src2, lengths, mask2, tgt_in, return_attention=True)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(w[..., :4], ref_w, rtol=0, atol=1e-12)
    assert torch.all(w[..., 4:] == 0)


def test_each_sentence_independent_of_its_batch():
    m = tiny().eval()
    src, lengths, mask, tgt_in, _ = batch([5, 2, 4])
    full, _ = m(src, lengths, mask, tgt_in)
    one, _ = m(src[1:2, :2], lengths[1:2], mask[1:2, :2], tgt_in[1:2])
    torch.testing.assert_close(one[0], full[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("attention", ["additive", "dot", "multihead"])
def test_step_by_step_equals_teacher_forcing(attention):
    m = tiny(attention).eval()
    src, lengths, mask, tgt_in, _ = batch([5, 3])
    logits, w = m(src, lengths, mask, tgt_in, return_attention=True)
    memory, state = m.encode(src, lengths, mask)
    for t in range(tgt_in.size(1)):
        lp, state, wt = m.decoder.step(tgt_in[:, t], state, memory)
        torch.testing.assert_close(lp, F.log_softmax(logits[:, t], -1), rtol=0, atol=1e-10)
        torch.testing.assert_close(wt, w[:, t], rtol=0, atol=1e-12)


def test_pad_targets_are_not_in_the_loss():
    m = tiny(label_smoothing=0.1).eval()
    src, lengths, mask, tgt_in, tgt_out = batch([5, 3], T=6)
    tgt_out[1, 4:] = PAD
    loss, n = m.loss(src, lengths, mask, tgt_in, tgt_out)
    assert n == 2 * 6 - 2
    logits, _ = m(src, lengths, mask, tgt_in)
    ref = F.cross_entropy(logits.reshape(-1, 35), tgt_out.reshape(-1), ignore_index=PAD,
                          label_smoothing=0.1, reduction="sum")
    torch.testing.assert_close(loss, ref)
    # whatever sits at PAD target positions cannot change the loss or its gradient
    m.zero_grad()
    loss.backward()
    g1 = [p.grad.clone() for p in m.parameters() if p.grad is not None]
    tgt_in2 = tgt_in.clone()
    tgt_in2[1, 5] = 11    # input at a step whose output is PAD: affects nothing real
    m.zero_grad()
    loss2, _ = m.loss(src, lengths, mask, tgt_in2, tgt_out)
    loss2.backward()
    g2 = [p.grad.clone() for p in m.parameters() if p.grad is not None]
    torch.testing.assert_close(loss2, loss, rtol=0, atol=1e-12)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_smoothed_cross_entropy_matches_torch(eps):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20, 13, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.randint(0, 13, (20,), generator=g)
    ours = smoothed_cross_entropy(z, y, eps)
    (ga,) = torch.autograd.grad(ours * 1.5, z)
    ref = F.cross_entropy(z, y, label_smoothing=eps, reduction="sum")
    (gb,) = torch.autograd.grad(ref * 1.5, z)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(ga, gb)
    with pytest.raises(ValueError, match="logits"):
        smoothed_cross_entropy(z[0], y, eps)


def test_tied_embeddings_share_the_matrix():
    m = tiny(tie_embeddings=True)
    assert m.decoder.out.weight is m.decoder.embed.weight
    with pytest.raises(UserError, match=r"Seq2SeqConfig\.tie_embeddings: needs embedding_dim"):
        Seq2SeqConfig(src_vocab_size=10, tgt_vocab_size=10, embedding_dim=8,
                      decoder_hidden_size=16, tie_embeddings=True)
    with pytest.raises(ValueError, match="tie_embeddings"):   # the decoder's own check
        AttentionDecoder(DecoderConfig(vocab_size=10, embedding_dim=8, hidden_size=16,
                                       tie_embeddings=True))


def test_no_bridge_starts_from_zeros_and_gradients_flow():
    m = tiny(bridge=False)
    src, lengths, mask, tgt_in, tgt_out = batch([4, 4])
    memory, state = m.encode(src, lengths, mask)
    assert torch.all(state.h == 0) and torch.all(state.c == 0)
    loss, _ = m.loss(src, lengths, mask, tgt_in, tgt_out)
    loss.backward()
    assert m.src_embed.weight.grad.abs().sum() > 0   # through attention into the encoder


def test_decoder_is_generic_over_any_memory():
    """The captioner's use: a (B, S, D) grid of features, no encoder final state."""
    torch.manual_seed(0)
    dec = AttentionDecoder(DecoderConfig(vocab_size=12, embedding_dim=8, hidden_size=8,
                                         memory_dim=5, attention="general", dropout=0.0)).eval()
    feats = torch.randn(2, 9, 5)
    memory = dec.make_memory(feats)                 # mask: all real
    state = dec.init_state(memory)                  # bridge from the mean feature
    att, w = dec(torch.randint(0, 12, (2, 4)), memory, state, return_attention=True)
    assert dec.logits(att).shape == (2, 4, 12) and w.shape == (2, 4, 9)
    with pytest.raises(ValueError, match="memory"):
        dec.make_memory(torch.randn(2, 9, 6))
