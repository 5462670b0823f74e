"""Batched greedy and beam search over any step-wise decoder.

A decoder takes part by offering (see `seqlab.nn.decoder.AttentionDecoder`):

    logprobs, state, weights = decoder.step(tokens, state, memory)   # (N,) -> (N, V), ..., (N, S)
    state = decoder.reorder_state(state, index)                      # pick rows, index (N',)
    memory = decoder.expand_memory(memory, k)                        # repeat each row k times
    memory = decoder.select_memory(memory, index)                    # optional: pick rows, so
                                                                     # finished sentences drop out

so the translator and the captioner share this module. `memory` is whatever the decoder reads and
never changes while decoding (encoder outputs, mask, key cache).

Beam search (fairseq-style, vectorised over the batch):
- each step every live beam proposes its continuations; the 2K best are ranked; an EOS among the
  first K closes a hypothesis (its score is normalised by the length penalty), the best K
  non-EOS continuations stay alive;
- a sentence is done once it has K closed hypotheses (or reaches its length limit, which closes
  its live beams); the search stops when every sentence is done. With K=1 this is exactly
  greedy search.
- length penalty: `score / lp(len)` with GNMT's `lp = ((5 + len) / 6) ** alpha` (`length_penalty`
  is alpha; 0 = raw log-probability sums, 1 = roughly the per-token average). `len` counts the
  output tokens plus EOS.
- `num_return_sequences` best hypotheses per sentence (n-best), best first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor


class StepDecoder(Protocol):
    def step(self, tokens: Tensor, state: Any, memory: Any) -> tuple[Tensor, Any, Tensor]: ...
    def reorder_state(self, state: Any, index: Tensor) -> Any: ...
    def expand_memory(self, memory: Any, k: int) -> Any: ...


@dataclass
class Hypothesis:
    tokens: list[int]              # output ids, without BOS/EOS
    score: float                   # length-normalised log-probability (the ranking key)
    logprob: float                 # raw sum of log-probabilities (EOS included when closed)
    attention: Tensor | None = None  # (len(tokens), S) weights per output token, on request


@dataclass
class SearchResult:
    hypotheses: list[list[Hypothesis]] = field(default_factory=list)  # per sentence, best first

    def best(self) -> list[Hypothesis]:
        return [h[0] for h in self.hypotheses]


def gnmt_length_penalty(length: int | Tensor, alpha: float) -> float | Tensor:
    """((5 + length) / 6) ** alpha; 1 for alpha = 0."""
    return ((5.0 + length) / 6.0) ** alpha


def _max_lengths(max_len: int | Tensor | list[int], batch: int) -> Tensor:
    if isinstance(max_len, int):
        return torch.full((batch,), max_len, dtype=torch.long)
    out = torch.as_tensor(max_len, dtype=torch.long).cpu()
    if out.shape != (batch,):
        raise ValueError(f"max_len must be an int or have shape ({batch},), got {tuple(out.shape)}")
    return out


@torch.no_grad()
def greedy_search(decoder: StepDecoder, memory: Any, state: Any, *, bos_id: int, eos_id: int,
                  max_len: int | Tensor | list[int], return_attention: bool = False
                  ) -> SearchResult:
    """Pick the most likely token at every step, for B sentences at once.

    state/memory: B rows each. max_len: output tokens allowed per sentence (int or (B,)).
    """
    B = state[0].size(0)
    limits = _max_lengths(max_len, B)
    device = state[0].device
    T_max = int(limits.max().item()) if B else 0
    can_prune = hasattr(decoder, "select_memory")
    tokens = torch.full((B,), bos_id, dtype=torch.long, device=device)
    out = torch.zeros(B, T_max, dtype=torch.long)                    # (B, T) chosen tokens
    attn: Tensor | None = None                                       # (B, T, S) on request
    logprob = torch.zeros(B, dtype=torch.float64)
    ended = torch.full((B,), -1, dtype=torch.long)   # step at which EOS came, -1: not yet
    rows = torch.arange(B)        # original sentence of each row still decoded
    live = torch.ones(B, dtype=torch.bool)   # rows still searched (all, when pruning)
    for t in range(T_max):
        lp, state, w = decoder.step(tokens, state, memory)          # (N, V), ..., (N, S)
        best_lp, tokens = lp.max(dim=-1)                             # (N,)
        r, tok_cpu = rows[live], tokens.cpu()[live]
        out[r, t] = tok_cpu
        logprob[r] += best_lp.cpu().double()[live]
        if return_attention:
            if attn is None:
                attn = torch.zeros(B, T_max, w.size(-1), dtype=w.dtype)
            attn[r, t] = w.cpu()[live]
        eos = tok_cpu == eos_id
        ended[r[eos]] = t
        fin = torch.zeros_like(live)
        fin[live] = eos | (t + 1 >= limits[r])
        live &= ~fin
        if not bool(live.any()):
            break
        if can_prune and bool(fin.any()):
            # drop finished sentences: later steps only compute the ones still decoded
            keep = live.nonzero().squeeze(1)
            rows, live = rows[keep], live[keep]
            keep = keep.to(device)
            tokens = tokens.index_select(0, keep)
            state = decoder.reorder_state(state, keep)
            memory = decoder.select_memory(memory, keep)  # type: ignore[attr-defined]
    result = SearchResult()
    for b in range(B):
        n = int(ended[b]) if ended[b] >= 0 else int(limits[b])
        result.hypotheses.append([Hypothesis(
            out[b, :n].tolist(), float(logprob[b]), float(logprob[b]),
            attn[b, :n] if attn is not None else None)])
    return result


@torch.no_grad()
def beam_search(decoder: StepDecoder, memory: Any, state: Any, *, bos_id: int, eos_id: int,
                max_len: int | Tensor | list[int], num_beams: int = 5, length_penalty: float = 1.0,
                num_return_sequences: int = 1, return_attention: bool = False) -> SearchResult:
    """Beam search for B sentences at once (see the module docstring for the rules).

    state/memory: B rows each (they are expanded to B*K here). Returns, per sentence,
    `num_return_sequences` hypotheses ranked by length-normalised score.
    """
    K = num_beams
    if K < 1:
        raise ValueError(f"num_beams must be >= 1, got {K}")
    if not 1 <= num_return_sequences <= K:
        raise ValueError(f"num_return_sequences must be in 1..num_beams={K}, "
                         f"got {num_return_sequences}")
    B = state[0].size(0)
    limits = _max_lengths(max_len, B)
    device = state[0].device
    flat = torch.arange(B, device=device).repeat_interleave(K)       # (B*K,)
    state = decoder.reorder_state(state, flat)
    memory = decoder.expand_memory(memory, K)
    can_prune = hasattr(decoder, "select_memory")
    tokens = torch.full((B * K,), bos_id, dtype=torch.long, device=device)
    # only the first beam is live at t=0, so the K beams do not start as K copies
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0
    history = torch.zeros(B, K, 0, dtype=torch.long, device=device)  # (Ba, K, t)
    attn_hist: Tensor | None = None                                  # (Ba, K, t, S)
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    done = [False] * B
    active = list(range(B))   # original sentence of each row group still searched (Ba of them)
    for t in range(int(limits.max().item()) if B else 0):
        Ba = len(active)
        lp, state, w = decoder.step(tokens, state, memory)            # (Ba*K, V), ..., (Ba*K, S)
        V = lp.size(-1)
        cand = (scores.unsqueeze(-1) + lp.view(Ba, K, V)).view(Ba, K * V)  # (Ba, K*V)
        top_scores, top_idx = cand.topk(2 * K, dim=1)                 # (Ba, 2K)
        top_beam, top_tok = top_idx // V, top_idx % V                 # (Ba, 2K)
        is_eos = top_tok == eos_id
        if return_attention:
            w = w.view(Ba, K, -1)
            step_attn = w.gather(1, top_beam.unsqueeze(-1).expand(-1, -1, w.size(-1)))  # (Ba,2K,S)
        # close hypotheses: EOS among the first K candidates (live, finite scores only)
        close = is_eos[:, :K] & torch.isfinite(top_scores[:, :K])
        if bool(close.any()):
            for i, j in close.nonzero().tolist():
                b = active[i]
                if done[b]:
                    continue
                beam = int(top_beam[i, j])
                toks = history[i, beam].tolist()
                raw = float(top_scores[i, j])
                a = None
                if return_attention:
                    a = (attn_hist[i, beam].cpu() if attn_hist is not None
                         else step_attn.new_zeros(0, step_attn.size(-1)).cpu())
                finished[b].append(Hypothesis(
                    toks, raw / float(gnmt_length_penalty(len(toks) + 1, length_penalty)),
                    raw, a))
        # the best K non-EOS candidates stay alive (stable sort keeps the ranking)
        order = torch.sort(is_eos.to(torch.int8), dim=1, stable=True).indices[:, :K]  # (Ba, K)
        new_beam = top_beam.gather(1, order)                          # (Ba, K)
        tokens2d = top_tok.gather(1, order)                           # (Ba, K)
        scores = top_scores.gather(1, order)                          # (Ba, K)
        history = torch.cat([history.gather(1, new_beam.unsqueeze(-1).expand_as(history)),
                             tokens2d.unsqueeze(-1)], dim=2)          # (Ba, K, t+1)
        if return_attention:
            picked = step_attn.gather(1, order.unsqueeze(-1).expand(-1, -1, step_attn.size(-1)))
            if attn_hist is None:
                attn_hist = picked.unsqueeze(2)
            else:
                prev = attn_hist.gather(1, new_beam[:, :, None, None].expand(
                    -1, -1, attn_hist.size(2), attn_hist.size(3)))
                attn_hist = torch.cat([prev, picked.unsqueeze(2)], dim=2)  # (Ba, K, t+1, S)
        offsets = (torch.arange(Ba, device=device) * K).unsqueeze(1)  # (Ba, 1)
        rows = (offsets + new_beam).view(-1)                          # (Ba*K,)
        # which sentences are done: K closed hypotheses, or the length limit (close live beams)
        for i, b in enumerate(active):
            if done[b]:
                continue
            if len(finished[b]) >= K:
                done[b] = True
            elif t + 1 >= int(limits[b]):
                for k in range(K):
                    raw = float(scores[i, k])
                    if raw == float("-inf") or len(finished[b]) >= K:
                        continue
                    toks = history[i, k].tolist()
                    a = attn_hist[i, k].cpu() if attn_hist is not None else None
                    finished[b].append(Hypothesis(
                        toks, raw / float(gnmt_length_penalty(len(toks), length_penalty)),
                        raw, a))
                done[b] = True
        keep = [i for i, b in enumerate(active) if not done[b]]
        if not keep:
            break
        if can_prune and len(keep) < Ba:
            # drop finished sentences' rows: later steps only compute the ones still searched
            kept = torch.tensor(keep, device=device)                  # (Ba',)
            kept_rows = (kept.unsqueeze(1) * K + torch.arange(K, device=device)).view(-1)
            rows = rows.view(Ba, K).index_select(0, kept).view(-1)    # (Ba'*K,)
            memory = decoder.select_memory(memory, kept_rows)  # type: ignore[attr-defined]
            tokens2d, scores = tokens2d.index_select(0, kept), scores.index_select(0, kept)
            history = history.index_select(0, kept)
            if attn_hist is not None:
                attn_hist = attn_hist.index_select(0, kept)
            active = [active[i] for i in keep]
        state = decoder.reorder_state(state, rows)
        tokens = tokens2d.reshape(-1)
    result = SearchResult()
    for b in range(B):
        hyps = sorted(finished[b], key=lambda h: h.score, reverse=True)
        if not hyps:  # max_len 0
            hyps = [Hypothesis([], 0.0, 0.0, None)]
        result.hypotheses.append(hyps[:num_return_sequences])
    return result
