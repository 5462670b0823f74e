"""Length-bucketed batches (determinism, limits, little padding) and padding/masks."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from seqlab.text.batching import collate, collate_src, make_batches
from seqlab.text.tokenizer import BOS_ID, EOS_ID, PAD_ID


def _lengths(n: int = 2000, seed: int = 0) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    src = [rng.randint(1, 60) for _ in range(n)]
    tgt = [max(1, s + rng.randint(-5, 8)) for s in src]
    return src, tgt


def _padding_fraction(batches: list[list[int]], src: list[int], tgt: list[int]) -> float:
    real = padded = 0
    for b in batches:
        for lens in (src, tgt):
            real += sum(lens[i] for i in b)
            padded += len(b) * max(lens[i] for i in b)
    return 1 - real / padded


def test_batches_cover_everything_once_and_respect_limits() -> None:
    src, tgt = _lengths()
    batches = make_batches(src, tgt, max_tokens=600, batch_size=40, seed=3, epoch=0)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(src)))
    for b in batches:
        assert len(b) <= 40
        cost = len(b) * max(max(src[i] for i in b), max(tgt[i] for i in b) + 1)
        assert cost <= 600


def test_overlong_example_gets_its_own_batch() -> None:
    batches = make_batches([5, 500, 6], [5, 7, 6], max_tokens=100, seed=0)
    assert sorted(map(sorted, batches)) == [[0, 2], [1]]


def test_deterministic_per_seed_and_epoch() -> None:
    src, tgt = _lengths()
    a = make_batches(src, tgt, max_tokens=800, seed=1, epoch=4)
    assert a == make_batches(src, tgt, max_tokens=800, seed=1, epoch=4)
    assert a != make_batches(src, tgt, max_tokens=800, seed=1, epoch=5)
    assert a != make_batches(src, tgt, max_tokens=800, seed=2, epoch=4)


def test_bucketing_keeps_padding_small() -> None:
    src, tgt = _lengths()
    bucketed = make_batches(src, tgt, batch_size=32, seed=0)
    rng = random.Random(0)
    order = list(range(len(src)))
    rng.shuffle(order)
    unsorted = [order[i:i + 32] for i in range(0, len(order), 32)]
    pad_b, pad_r = (_padding_fraction(bucketed, src, tgt),
                    _padding_fraction(unsorted, src, tgt))
    assert pad_b < 0.15 < pad_r
    # Batch order is shuffled: lengths are not monotone across batches.
    firsts = [src[b[0]] for b in bucketed]
    assert firsts != sorted(firsts)


def test_no_shuffle_is_sorted_by_length() -> None:
    src, tgt = _lengths(300)
    batches = make_batches(src, tgt, batch_size=16, shuffle=False)
    flat = [i for b in batches for i in b]
    assert [src[i] for i in flat] == sorted(src)
    assert batches == make_batches(src, tgt, batch_size=16, shuffle=False, seed=9, epoch=3)


def test_make_batches_argument_errors() -> None:
    with pytest.raises(ValueError, match="max_tokens, batch_size"):
        make_batches([1], [1])
    with pytest.raises(ValueError, match="lengths"):
        make_batches([1, 2], [1], batch_size=2)
    assert make_batches([], [], batch_size=4) == []


def test_collate_shapes_padding_and_masks() -> None:
    src_ids = [[10, 11, 12], [20], [30, 31, 32, 33, 34]]
    tgt_ids = [[40, 41], [50, 51, 52, 53], [60]]
    b = collate(src_ids, tgt_ids, [2, 0, 1])
    assert b.indices == [2, 0, 1]
    assert b.src.dtype == torch.long and b.src.shape == (3, 5)
    assert b.src_lengths.tolist() == [5, 3, 1]
    assert b.src[1].tolist() == [10, 11, 12, PAD_ID, PAD_ID]
    assert b.src_mask.dtype == torch.bool
    assert b.src_mask.tolist() == [[True] * 5, [True] * 3 + [False] * 2, [True] + [False] * 4]
    assert b.tgt_in.shape == b.tgt_out.shape == (3, 5)
    assert b.tgt_in[2].tolist() == [BOS_ID, 50, 51, 52, 53]
    assert b.tgt_out[2].tolist() == [50, 51, 52, 53, EOS_ID]
    assert b.tgt_in[0].tolist() == [BOS_ID, 60, PAD_ID, PAD_ID, PAD_ID]
    assert b.tgt_out[0].tolist() == [60, EOS_ID, PAD_ID, PAD_ID, PAD_ID]
    assert b.n_tgt_tokens == 2 + 3 + 5 == int(b.tgt_mask.sum())
    assert torch.equal(b.tgt_mask, b.tgt_out != PAD_ID)
    # Teacher forcing alignment: tgt_in shifted left by one equals tgt_out where both are real.
    assert torch.equal(b.tgt_in[:, 1:][b.tgt_mask[:, 1:]], b.tgt_out[:, :-1][b.tgt_mask[:, 1:]])

    e = collate(src_ids, tgt_ids, [1], src_eos=True)
    assert e.src.tolist() == [[20, EOS_ID]] and e.src_lengths.tolist() == [2]


def test_pad_is_ignored_by_the_loss() -> None:
    """The loss over a padded batch equals the loss over each sentence alone."""
    torch.manual_seed(0)
    V = 70
    tgt_ids = [[40, 41, 42], [50], [60, 61, 62, 63, 64]]
    b = collate([[5]] * 3, tgt_ids, [0, 1, 2])
    logits = torch.randn(*b.tgt_out.shape, V)                       # (B, T, V)
    batch_loss = F.cross_entropy(logits.reshape(-1, V), b.tgt_out.reshape(-1),
                                 ignore_index=PAD_ID, reduction="sum")
    one_by_one = sum(
        F.cross_entropy(logits[r, : len(y) + 1], torch.tensor(y + [EOS_ID]), reduction="sum")
        for r, y in enumerate(tgt_ids))
    assert torch.allclose(batch_loss, one_by_one)


def test_empty_source_keeps_a_padded_column() -> None:
    b = collate([[]], [[7]], [0])
    assert b.src.shape == (1, 1) and b.src_lengths.tolist() == [0]
    assert not b.src_mask.any()


def test_collate_src_sorts_and_restores() -> None:
    src_ids = [[1, 2], [3, 4, 5, 6], [7], [8, 9, 10]]
    sb = collate_src(src_ids, [0, 1, 2, 3])
    assert sb.src_lengths.tolist() == [4, 3, 2, 1]
    assert sb.indices == [1, 3, 0, 2]
    assert sb.src_mask.sum(1).tolist() == [4, 3, 2, 1]
    assert sb.src[3].tolist() == [7, PAD_ID, PAD_ID, PAD_ID]
    # Per-row results in sorted order come back in input order.
    rows_in_sorted_order = [src_ids[i] for i in sb.indices]
    assert sb.restore(rows_in_sorted_order) == src_ids
    sub = collate_src(src_ids, [2, 3])
    assert sub.indices == [3, 2] and sub.restore(["for 3", "for 2"]) == ["for 2", "for 3"]
    with pytest.raises(ValueError, match="restore"):
        sb.restore([1])
