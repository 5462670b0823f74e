"""Greedy and beam search (seqlab.decoding.search) on small random translators."""

from __future__ import annotations

import pytest
import torch

from seqlab.decoding.search import (
    PrunableStepDecoder,
    StepDecoder,
    StreamingStepDecoder,
    beam_search,
    gnmt_length_penalty,
    greedy_search,
    greedy_search_stream,
)
from seqlab.translate.model import Seq2Seq, Seq2SeqConfig

BOS, EOS = 2, 3


pytestmark = pytest.mark.usefixtures("one_thread")


def sources(B: int = 6, seed: int = 1, vocab: int = 20):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 8, (B,), generator=g)
    S = int(lengths.max())
    mask = torch.arange(S)[None] < lengths[:, None]
    src = torch.randint(4, vocab, (B, S), generator=g).masked_fill(~mask, 0)
    return src, lengths, mask


def _reverse_task(B: int, g: torch.Generator):
    src, lengths, mask = sources(B, int(torch.randint(0, 10**6, (1,), generator=g)))
    rev = [src[b, : lengths[b]].flip(0).tolist() for b in range(B)]
    T = src.size(1) + 1
    tgt_in = torch.zeros(B, T, dtype=torch.long)
    tgt_out = torch.zeros(B, T, dtype=torch.long)
    for b, r in enumerate(rev):
        tgt_in[b, : len(r) + 1] = torch.tensor([BOS, *r])
        tgt_out[b, : len(r) + 1] = torch.tensor([*r, EOS])
    return src, lengths, mask, tgt_in, tgt_out


@pytest.fixture(scope="module")
def trained():
    """A small model half-trained to reverse its input: real, uncertain distributions."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = Seq2Seq(Seq2SeqConfig(src_vocab_size=20, tgt_vocab_size=20, embedding_dim=16,
                                 encoder_hidden_size=16, decoder_hidden_size=16, dropout=0.0))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(80):
        loss, n = m.loss(*_reverse_task(32, g))
        opt.zero_grad()
        (loss / n).backward()
        opt.step()
    torch.set_num_threads(old)
    return m.eval()


def model(seed: int = 0, attention: str = "additive") -> Seq2Seq:
    """An untrained model (peaky random distributions)."""
    torch.manual_seed(seed)
    m = Seq2Seq(Seq2SeqConfig(src_vocab_size=20, tgt_vocab_size=20, embedding_dim=16,
                                 encoder_hidden_size=8, decoder_hidden_size=16, attention=attention,
                                 dropout=0.0)).eval()
    with torch.no_grad():
        m.decoder.out.weight.mul_(3.0)
        m.decoder.out.bias[EOS] += 0.2
    return m


def score_of(m: Seq2Seq, src, lengths, mask, b: int, tokens: list[int], closed: bool) -> float:
    """Model log-probability of `tokens` (+ EOS if closed) for sentence b, by teacher forcing."""
    seq = tokens + ([EOS] if closed else [])
    tgt_in = torch.tensor([[BOS] + seq[:-1]]) if seq else torch.zeros(1, 0, dtype=torch.long)
    if not seq:
        return 0.0
    logits, _ = m(src[b:b + 1], lengths[b:b + 1], mask[b:b + 1], tgt_in)
    lp = torch.log_softmax(logits[0], -1)
    return float(lp[torch.arange(len(seq)), torch.tensor(seq)].sum().detach())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_one_equals_greedy(seed, trained):
    m = trained if seed == 0 else model(seed)
    src, lengths, mask = sources(seed=seed + 10)
    g = m.generate(src, lengths, mask, num_beams=1, max_new_tokens=15, return_attention=True)
    mem, st = m.encode(src, lengths, mask)
    b = beam_search(m.decoder, mem, st, bos_id=BOS, eos_id=EOS, max_len=15, num_beams=1,
                    return_attention=True)
    for hg, hb in zip(g.best(), b.best(), strict=True):
        assert hg.tokens == hb.tokens
        assert hg.logprob == pytest.approx(hb.logprob, abs=1e-4)
        torch.testing.assert_close(hg.attention, hb.attention)


def test_per_sentence_length_limits(trained):
    m = trained
    src, lengths, mask = sources(B=12)
    res = m.generate(src, lengths, mask, num_beams=1, max_new_tokens=torch.arange(12) + 1)
    lens = [len(h.tokens) for h in res.best()]
    assert all(n <= i + 1 for i, n in enumerate(lens))      # per-sentence limits respected
    assert lens[-1] < 12                                     # ... and the model stops itself


def test_greedy_scores_are_the_model_scores(trained):
    m = trained
    src, lengths, mask = sources()
    res = m.generate(src, lengths, mask, num_beams=1, max_new_tokens=12)
    for b, h in enumerate(res.best()):
        closed = len(h.tokens) < 12
        assert h.logprob == pytest.approx(score_of(m, src, lengths, mask, b, h.tokens, closed),
                                          abs=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_finds_at_least_the_greedy_score(seed, trained):
    src, lengths, mask = sources(B=16, seed=seed)
    g = trained.generate(src, lengths, mask, num_beams=1, max_new_tokens=20)
    b = trained.generate(src, lengths, mask, num_beams=5, length_penalty=0.0,
                         max_new_tokens=20)
    better = 0
    for i, (hg, hb) in enumerate(zip(g.best(), b.best(), strict=True)):
        assert hb.logprob >= hg.logprob - 1e-4
        # the reported beam score is the model's own score of that output
        closed = len(hb.tokens) < 20
        assert hb.logprob == pytest.approx(
            score_of(trained, src, lengths, mask, i, hb.tokens, closed), abs=1e-4)
        better += hb.logprob > hg.logprob + 1e-4
    assert better >= 1   # on this half-trained model beam search really finds better outputs


def test_nbest_sorted_distinct_with_attention(trained):
    m = trained
    src, lengths, mask = sources(B=4)
    res = m.generate(src, lengths, mask, num_beams=4, num_return_sequences=3,
                     length_penalty=1.0, max_new_tokens=10, return_attention=True)
    for b, hyps in enumerate(res.hypotheses):
        assert len(hyps) == 3
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == 3
        for h in hyps:
            assert h.attention.shape == (len(h.tokens), src.size(1))
            if h.tokens:
                torch.testing.assert_close(h.attention.sum(-1), torch.ones(len(h.tokens)))
                assert torch.all(h.attention[:, int(lengths[b]):] == 0)
            closed = len(h.tokens) < 10
            lp = gnmt_length_penalty(len(h.tokens) + int(closed), 1.0)
            assert h.score == pytest.approx(h.logprob / lp, rel=1e-5)


def test_batched_search_equals_one_sentence_at_a_time(trained):
    m = trained
    src, lengths, mask = sources(B=5)
    full = m.generate(src, lengths, mask, num_beams=3, max_new_tokens=12)
    for b in range(5):
        S = int(lengths[b])
        one = m.generate(src[b:b + 1, :S], lengths[b:b + 1], mask[b:b + 1, :S], num_beams=3,
                         max_new_tokens=12)
        assert one.best()[0].tokens == full.best()[b].tokens


def test_search_argument_errors():
    m = model()
    src, lengths, mask = sources(B=2)
    mem, st = m.encode(src, lengths, mask)
    with pytest.raises(ValueError, match="num_beams"):
        beam_search(m.decoder, mem, st, bos_id=BOS, eos_id=EOS, max_len=5, num_beams=0)
    with pytest.raises(ValueError, match="num_return_sequences"):
        beam_search(m.decoder, mem, st, bos_id=BOS, eos_id=EOS, max_len=5, num_beams=2,
                    num_return_sequences=3)
    with pytest.raises(ValueError, match="max_len"):
        greedy_search(m.decoder, mem, st, bos_id=BOS, eos_id=EOS, max_len=[3, 4, 5])


class _NoPruning:
    """The decoder without `select_memory`: finished sentences keep their rows."""

    def __init__(self, dec):
        self.dec = dec

    def step(self, tokens, state, memory):
        return self.dec.step(tokens, state, memory)

    def reorder_state(self, state, index):
        return self.dec.reorder_state(state, index)

    def expand_memory(self, memory, k):
        return self.dec.expand_memory(memory, k)


def test_dropping_finished_sentences_changes_nothing(trained):
    src, lengths, mask = sources(B=10, seed=5)
    mem, st = trained.encode(src, lengths, mask)
    kw = dict(bos_id=BOS, eos_id=EOS, max_len=(lengths + 3).tolist(), num_beams=3,
              num_return_sequences=2, return_attention=True)
    pruned = beam_search(trained.decoder, mem, st, **kw)
    full = beam_search(_NoPruning(trained.decoder), mem, st, **kw)
    for hp, hf in zip(pruned.hypotheses, full.hypotheses, strict=True):
        for a, b in zip(hp, hf, strict=True):
            assert a.tokens == b.tokens
            assert a.score == pytest.approx(b.score, abs=1e-5)
            torch.testing.assert_close(a.attention, b.attention)


def test_greedy_dropping_finished_sentences_changes_nothing(trained):
    src, lengths, mask = sources(B=10, seed=6)
    mem, st = trained.encode(src, lengths, mask)
    kw = dict(bos_id=BOS, eos_id=EOS, max_len=(lengths + 2).tolist(), return_attention=True)
    pruned = greedy_search(trained.decoder, mem, st, **kw)
    full = greedy_search(_NoPruning(trained.decoder), mem, st, **kw)
    for a, b in zip(pruned.best(), full.best(), strict=True):
        assert a.tokens == b.tokens
        assert a.logprob == pytest.approx(b.logprob, abs=1e-6)
        torch.testing.assert_close(a.attention, b.attention)


def test_search_protocols_are_checked_at_runtime(trained):
    """The shared decoder offers every optional part; a minimal one only the required three,
    and the stream search refuses it up front instead of failing midway."""
    dec = trained.decoder
    assert isinstance(dec, StreamingStepDecoder) and isinstance(dec, PrunableStepDecoder)
    minimal = _NoPruning(dec)
    assert isinstance(minimal, StepDecoder)
    assert not isinstance(minimal, PrunableStepDecoder)
    src, lengths, mask = sources(B=2, seed=7)
    mem, st = trained.encode(src, lengths, mask)
    with pytest.raises(TypeError, match="lacks the StreamingStepDecoder methods"):
        greedy_search_stream(minimal, [(mem, st, 5)], bos_id=BOS, eos_id=EOS, max_rows=4)


def test_recorded_tree_rebuilds_the_hypotheses(trained):
    """record_tree changes nothing, and replaying its steps (parent beam + token -> new beam)
    gives every returned hypothesis with its log-probability."""
    m = trained
    src, lengths, mask = sources(B=4, seed=3)
    kw = dict(bos_id=BOS, eos_id=EOS, max_len=8, num_beams=3, num_return_sequences=3)
    mem, st = m.encode(src, lengths, mask)
    plain = beam_search(m.decoder, mem, st, **kw)
    mem, st = m.encode(src, lengths, mask)
    rec = beam_search(m.decoder, mem, st, record_tree=True, **kw)
    assert plain.trees is None and rec.trees is not None and len(rec.trees) == 4
    for b, (hp, hr) in enumerate(zip(plain.hypotheses, rec.hypotheses, strict=True)):
        assert [h.tokens for h in hp] == [h.tokens for h in hr]
        prefixes: dict[int, list[int]] = {0: []}
        ends: dict[tuple[int, ...], float] = {}
        for step in rec.trees[b]:
            assert 1 <= len(step) <= 6 and sum(c.beam >= 0 for c in step) <= 3
            nxt: dict[int, list[int]] = {}
            for c in step:
                assert c.parent in prefixes
                if c.closed:
                    assert c.token == EOS and c.beam == -1
                    ends[tuple(prefixes[c.parent])] = c.logprob
                if c.beam >= 0:
                    nxt[c.beam] = prefixes[c.parent] + [c.token]
                    if len(nxt[c.beam]) == 8:          # closed by the length limit
                        ends[tuple(nxt[c.beam])] = c.logprob
            prefixes = nxt
        for h in hr:
            assert ends[tuple(h.tokens)] == pytest.approx(h.logprob, abs=1e-5)
