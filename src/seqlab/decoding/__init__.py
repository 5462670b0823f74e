"""Decoding: batched greedy and beam search over any step-wise decoder (translator, captioner)."""

from seqlab.decoding.search import Hypothesis, SearchResult, beam_search, greedy_search

__all__ = ["Hypothesis", "SearchResult", "beam_search", "greedy_search"]
