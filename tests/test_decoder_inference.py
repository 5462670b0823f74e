"""The decoder's inference step (cached weights) and the fast greedy paths: same results as the
plain step and search."""

from __future__ import annotations

import pytest
import torch

from seqlab.decoding.search import greedy_search, greedy_search_stream, row_max
from seqlab.nn.attention import masked_softmax
from seqlab.nn.decoder import softmax_vector_len
from seqlab.translate.model import Seq2Seq, Seq2SeqConfig

BOS, EOS = 2, 3

pytestmark = pytest.mark.usefixtures("one_thread")


def model(attention: str = "additive", seed: int = 0, vocab: int = 40, feeding: bool = True
          ) -> Seq2Seq:
    """An untrained translator with peaky output distributions and a likely EOS."""
    torch.manual_seed(seed)
    m = Seq2Seq(Seq2SeqConfig(src_vocab_size=vocab, tgt_vocab_size=vocab, embedding_dim=16,
                                 encoder_hidden_size=8, decoder_hidden_size=16, attention=attention,
                                 input_feeding=feeding, dropout=0.0)).eval()
    with torch.no_grad():
        m.decoder.out.weight.mul_(3.0)
        m.decoder.out.bias[EOS] += 0.2
    return m


def sources(B: int, lo: int, hi: int, seed: int, vocab: int = 40):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(lo, hi + 1, (B,), generator=g)
    lengths[0] = hi
    S = int(lengths.max())
    mask = torch.arange(S)[None] < lengths[:, None]
    src = torch.randint(4, vocab, (B, S), generator=g).masked_fill(~mask, 0)
    return src, lengths, mask


def plain_step(m: Seq2Seq, *args):
    """The training-path step (the inference path is taken only in eval mode without grad;
    dropout is 0, so train mode computes the same function)."""
    m.decoder.train()
    try:
        with torch.no_grad():
            return m.decoder.step(*args)
    finally:
        m.decoder.eval()


@pytest.mark.cpu_sensitive
@pytest.mark.parametrize("attention", ["additive", "dot", "general", "multihead", "none"])
@pytest.mark.parametrize("rows", [1, 3, 4, 9, 70])
def test_inference_step_equals_plain_step(attention, rows):
    m = model(attention)
    src, lengths, mask = sources(rows, 1, 9, seed=rows)
    with torch.no_grad():
        memory, state = m.encode(src, lengths, mask)
        tokens = torch.randint(0, 40, (rows,))
        for _ in range(3):   # a few steps, so the state carries attention and feeding
            lp, new_state, w = m.decoder.step(tokens, state, memory)
            lp_ref, state_ref, w_ref = plain_step(m, tokens, state, memory)
            torch.testing.assert_close(lp, lp_ref, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(w, w_ref, rtol=1e-5, atol=1e-6)
            for a, b in zip(new_state, state_ref, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
            state, tokens = new_state, lp.argmax(-1)


def test_inference_weights_follow_parameter_updates():
    m = model(feeding=False)
    src, lengths, mask = sources(8, 2, 6, seed=3)
    with torch.no_grad():
        memory, state = m.encode(src, lengths, mask)
        tokens = torch.randint(0, 40, (8,))
        before = m.decoder.step(tokens, state, memory)[0]
        m.decoder.embed.weight.mul_(-1.5)          # in place: the cache must notice
        m.decoder.out.bias.add_(torch.linspace(-2, 2, 40))
        after = m.decoder.step(tokens, state, memory)[0]
        ref = plain_step(m, tokens, state, memory)[0]
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, ref, rtol=1e-5, atol=1e-6)
    assert "_infer_weights" not in m.decoder.state_dict()


@pytest.mark.parametrize("width", [8000, 640, 100])
def test_row_max_equals_torch_max(width):
    g = torch.Generator().manual_seed(width)
    x = torch.randn(37, width, generator=g)
    x[0, 5] = x[0, width - 1] = x[0].max() + 1.0     # ties: the first index wins
    x[1, :] = -3.0                                   # all equal
    x[2, width // 2] = float("inf")
    best, idx = row_max(x)
    ref_best, ref_idx = x.max(dim=-1)
    assert torch.equal(best, ref_best) and torch.equal(idx, ref_idx)
    assert idx[0] == 5 and idx[1] == 0


def batches(m: Seq2Seq, specs):
    """(memory, state, max_len) per (B, lo, hi, seed) spec, and the per-batch greedy result."""
    out, ref = [], []
    for B, lo, hi, seed in specs:
        src, lengths, mask = sources(B, lo, hi, seed)
        with torch.no_grad():
            memory, state = m.encode(src, lengths, mask)
        max_len = (2 * lengths + 3).long()
        out.append((memory, state, max_len))
        ref.append(greedy_search(m.decoder, memory, state, bos_id=BOS, eos_id=EOS,
                                 max_len=max_len))
    return out, ref


@pytest.mark.cpu_sensitive
def test_masked_padding_keeps_softmax_bits_within_a_memory_group():
    """What `memory_group` and `join` rely on, on the CPU the tests run on: zero-padding a
    memory (masked positions) changes no bit of a row's attention weights as long as the padded
    length stays on the row's side of `softmax_vector_len()`."""
    width = softmax_vector_len()
    g = torch.Generator().manual_seed(0)
    for real in range(1, 3 * width):
        scores = torch.randn(32, 1, real, generator=g) * 4              # (N, 1, S)
        ref = masked_softmax(scores, torch.ones(32, 1, real, dtype=torch.bool))
        longest = width - 1 if real < width else 4 * width
        for padded_len in range(real + 1, longest + 1):
            padded = torch.cat([scores, torch.randn(32, 1, padded_len - real, generator=g)], -1)
            mask = (torch.arange(padded_len) < real).expand(32, 1, padded_len)
            got = masked_softmax(padded, mask)
            assert torch.equal(got[..., :real], ref), (real, padded_len)
            assert not got[..., real:].any()


@pytest.mark.cpu_sensitive
@pytest.mark.parametrize("max_rows", [1, 5, 16])
def test_greedy_stream_equals_greedy_per_batch(max_rows):
    m = model(seed=1)
    # long (>= softmax_vector_len() positions) and short sources, so both memory groups and
    # their switch occur
    specs = [(12, 14, 20, 0), (7, 10, 17, 1), (9, 3, 9, 2), (4, 1, 3, 3), (10, 2, 6, 4)]
    stream, ref = batches(m, specs)
    found = greedy_search_stream(m.decoder, iter(stream), bos_id=BOS, eos_id=EOS,
                                 max_rows=max_rows)
    assert len(found) == len(ref)
    lengths = set()
    for got, want in zip(found, ref, strict=True):
        assert len(got.hypotheses) == len(want.hypotheses)
        for g, w in zip(got.best(), want.best(), strict=True):
            assert g.tokens == w.tokens
            assert g.score == pytest.approx(w.score, rel=1e-6, abs=1e-6)
            lengths.add(len(g.tokens))
    assert len(lengths) > 3      # sentences really ended at different steps


def test_greedy_stream_limits():
    m = model(seed=2)
    (memory, state, _), = batches(m, [(6, 2, 5, 7)])[0]
    limits = torch.tensor([0, 1, 2, 0, 5, 3])
    [res] = greedy_search_stream(m.decoder, [(memory, state, limits)], bos_id=BOS, eos_id=EOS,
                                 max_rows=4)
    ref = greedy_search(m.decoder, memory, state, bos_id=BOS, eos_id=EOS, max_len=limits)
    for b, (g, w) in enumerate(zip(res.best(), ref.best(), strict=True)):
        assert len(g.tokens) <= int(limits[b])
        if limits[b] > 0:
            assert g.tokens == w.tokens and g.score == pytest.approx(w.score, rel=1e-6)
        else:
            assert g.tokens == [] and g.score == 0.0
    with pytest.raises(ValueError, match="max_rows"):
        greedy_search_stream(m.decoder, [], bos_id=BOS, eos_id=EOS, max_rows=0)
    assert greedy_search_stream(m.decoder, [], bos_id=BOS, eos_id=EOS, max_rows=3) == []
