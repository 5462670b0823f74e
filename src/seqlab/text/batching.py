"""Length-bucketed batches and padding for the text generators (translator, captioner).

Training batches: `make_batches` groups examples of similar length so padding stays small, then
shuffles the batch order; the result depends only on (lengths, limits, seed, epoch), so a resumed
run that re-creates epoch e's batches gets the same data order as an uninterrupted one.
`collate` turns one batch of id lists into padded tensors for teacher forcing:

    src      (B, S)  source ids, right-padded with PAD
    tgt_in   (B, T)  [BOS] + y      (decoder input)
    tgt_out  (B, T)  y + [EOS]      (what the decoder must predict; PAD there is ignored by the
                                     loss via ignore_index=pad_id)

Inference batches: `collate_src` sorts a batch by decreasing source length (as packing wants)
and keeps the permutation, so results can be put back in input order with `SrcBatch.restore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from seqlab.text.tokenizer import BOS_ID, EOS_ID, PAD_ID

T = TypeVar("T")

# Examples are shuffled, then sorted by length inside pools of this many batches: enough to make
# padding small, few enough that batch composition still varies from epoch to epoch.
POOL_BATCHES = 50


def _cost(max_src: int, max_tgt: int, n: int) -> int:
    """Padded tokens of a batch of n examples: B x max(S, T) with T = target length + 1."""
    return n * max(max_src, max_tgt + 1)


def _chunk(order: Sequence[int], src_lens: Sequence[int], tgt_lens: Sequence[int],
           max_tokens: int | None, batch_size: int | None) -> list[list[int]]:
    """Cut `order` greedily into consecutive batches obeying both limits."""
    batches: list[list[int]] = []
    cur: list[int] = []
    ms = mt = 0
    for i in order:
        s, t = src_lens[i], tgt_lens[i]
        full = cur and ((batch_size is not None and len(cur) >= batch_size) or
                        (max_tokens is not None and
                         _cost(max(ms, s), max(mt, t), len(cur) + 1) > max_tokens))
        if full:
            batches.append(cur)
            cur, ms, mt = [], 0, 0
        cur.append(i)
        ms, mt = max(ms, s), max(mt, t)
    if cur:
        batches.append(cur)
    return batches


def make_batches(src_lens: Sequence[int], tgt_lens: Sequence[int], max_tokens: int | None = None,
                 batch_size: int | None = None, seed: int = 0, epoch: int = 0,
                 shuffle: bool = True) -> list[list[int]]:
    """Split example indices 0..N-1 into length-bucketed batches.

    src_lens, tgt_lens: (N,) token counts (without BOS/EOS). A batch holds at most `batch_size`
    examples and at most `max_tokens` padded tokens, counted as B x max(S, T+1) (an example
    longer than `max_tokens` alone gets a batch of one; nothing is dropped). At least one limit
    is required.

    shuffle=True (training): a generator seeded with (seed, epoch) shuffles the examples, sorts
    them by (source, target) length inside pools of `POOL_BATCHES` batches, cuts batches and
    shuffles the batch order; deterministic for given arguments. shuffle=False (evaluation):
    all examples sorted by length, batches in that order (no randomness).
    Returns a list of batches, each a list of example indices.
    """
    n = len(src_lens)
    if len(tgt_lens) != n:
        raise ValueError(f"make_batches: {n} source lengths but {len(tgt_lens)} target lengths")
    if max_tokens is None and batch_size is None:
        raise ValueError("make_batches: give max_tokens, batch_size or both")
    if (max_tokens is not None and max_tokens < 1) or (batch_size is not None and batch_size < 1):
        raise ValueError(f"make_batches: limits must be >= 1, got max_tokens={max_tokens}, "
                         f"batch_size={batch_size}")
    if n == 0:
        return []
    s_arr = np.asarray(src_lens, dtype=np.int64)
    t_arr = np.asarray(tgt_lens, dtype=np.int64)
    if not shuffle:
        # lexsort: last key is primary; index as final tie-break keeps it stable.
        order = np.lexsort((np.arange(n), t_arr, s_arr)).tolist()
        return _chunk(order, s_arr.tolist(), t_arr.tolist(), max_tokens, batch_size)
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    # Approximate examples per batch, to size the pools.
    per_batch = batch_size or n
    if max_tokens is not None:
        mean_len = max(1.0, float(np.maximum(s_arr, t_arr + 1).mean()))
        per_batch = min(per_batch, max(1, int(max_tokens / mean_len)))
    pool = max(1, POOL_BATCHES * per_batch)
    batches: list[list[int]] = []
    s_list, t_list = s_arr.tolist(), t_arr.tolist()
    for start in range(0, n, pool):
        chunk = perm[start:start + pool]
        # Stable sort by (src, tgt) length; ties keep the random order.
        chunk = chunk[np.lexsort((t_arr[chunk], s_arr[chunk]))]
        batches.extend(_chunk(chunk.tolist(), s_list, t_list, max_tokens, batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def _pad(rows: Sequence[Sequence[int]], pad_id: int, min_len: int = 1) -> torch.Tensor:
    """Right-pad id lists into a (B, L) long tensor, L = max(max row length, min_len)."""
    L = max([len(r) for r in rows] + [min_len])
    out = torch.full((len(rows), L), pad_id, dtype=torch.long)
    for b, r in enumerate(rows):
        if r:
            out[b, : len(r)] = torch.as_tensor(r, dtype=torch.long)
    return out


@dataclass
class Batch:
    """One padded training batch (see the module docstring for the layout).

    src: (B, S) long; src_lengths: (B,) long; src_mask: (B, S) bool, True = real token;
    tgt_in, tgt_out: (B, T) long; tgt_mask: (B, T) bool, True where tgt_out is a real token
    (including the final EOS); n_tgt_tokens: number of real tgt_out tokens (the loss
    normaliser); indices: the example indices, row b is example indices[b].
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    src_mask: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    tgt_mask: torch.Tensor
    n_tgt_tokens: int
    indices: list[int]

    def __len__(self) -> int:
        return self.src.shape[0]

    def to(self, device: torch.device | str) -> Batch:
        """Tensors moved to `device` (src_lengths stays on CPU, as packing needs)."""
        return Batch(self.src.to(device), self.src_lengths, self.src_mask.to(device),
                     self.tgt_in.to(device), self.tgt_out.to(device), self.tgt_mask.to(device),
                     self.n_tgt_tokens, self.indices)


def collate(src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]],
            indices: Sequence[int], pad_id: int = PAD_ID, bos_id: int = BOS_ID,
            eos_id: int = EOS_ID, src_eos: bool = False) -> Batch:
    """Pad the examples at `indices` into a `Batch` (rows in the order of `indices`).

    src_ids, tgt_ids: all examples' id lists (without BOS/EOS). With `src_eos=True` an EOS is
    appended to each source. A source of length 0 keeps src_lengths 0 (S is at least 1).
    """
    if not len(indices):
        raise ValueError("collate: empty batch")
    src_rows = [list(src_ids[i]) + ([eos_id] if src_eos else []) for i in indices]
    tgt_rows = [list(tgt_ids[i]) for i in indices]
    src = _pad(src_rows, pad_id)                                     # (B, S)
    src_lengths = torch.tensor([len(r) for r in src_rows], dtype=torch.long)  # (B,)
    S = src.shape[1]
    src_mask = torch.arange(S)[None, :] < src_lengths[:, None]      # (B, S)
    tgt_in = _pad([[bos_id] + r for r in tgt_rows], pad_id)         # (B, T)
    tgt_out = _pad([r + [eos_id] for r in tgt_rows], pad_id)        # (B, T)
    tgt_lengths = torch.tensor([len(r) + 1 for r in tgt_rows], dtype=torch.long)
    tgt_mask = torch.arange(tgt_out.shape[1])[None, :] < tgt_lengths[:, None]  # (B, T)
    return Batch(src, src_lengths, src_mask, tgt_in, tgt_out, tgt_mask,
                 int(tgt_lengths.sum()), list(indices))


@dataclass
class SrcBatch:
    """A padded inference batch, rows sorted by decreasing source length.

    src: (B, S) long; src_lengths: (B,) long; src_mask: (B, S) bool, True = real token;
    indices: example index of each row (sorted order); order: (B,) row b came from position
    order[b] of the `indices` given to `collate_src`.
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    src_mask: torch.Tensor
    indices: list[int]
    order: list[int]

    def __len__(self) -> int:
        return self.src.shape[0]

    def to(self, device: torch.device | str) -> SrcBatch:
        return SrcBatch(self.src.to(device), self.src_lengths, self.src_mask.to(device),
                        self.indices, self.order)

    def restore(self, rows: Sequence[T]) -> list[T]:
        """Per-row results (in this batch's sorted order) -> the order `indices` were given."""
        if len(rows) != len(self.order):
            raise ValueError(f"restore: expected {len(self.order)} rows, got {len(rows)}")
        out: list[T] = [None] * len(rows)  # type: ignore[list-item]
        for b, pos in enumerate(self.order):
            out[pos] = rows[b]
        return out


def collate_src(src_ids: Sequence[Sequence[int]], indices: Sequence[int], pad_id: int = PAD_ID,
                eos_id: int = EOS_ID, src_eos: bool = False) -> SrcBatch:
    """Pad the sources at `indices`, sorted by decreasing length (stable), for decoding."""
    if not len(indices):
        raise ValueError("collate_src: empty batch")
    rows = [list(src_ids[i]) + ([eos_id] if src_eos else []) for i in indices]
    order = sorted(range(len(rows)), key=lambda p: -len(rows[p]))
    rows = [rows[p] for p in order]
    src = _pad(rows, pad_id)                                          # (B, S)
    src_lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)  # (B,)
    src_mask = torch.arange(src.shape[1])[None, :] < src_lengths[:, None]  # (B, S)
    return SrcBatch(src, src_lengths, src_mask, [indices[p] for p in order], order)
