"""Decoding: batched greedy and beam search over any step-wise decoder (translator, captioner)."""

from seqlab.decoding.search import (
    Hypothesis,
    PrunableStepDecoder,
    SearchResult,
    StepDecoder,
    StreamingStepDecoder,
    beam_search,
    greedy_search,
)

__all__ = [
    "Hypothesis",
    "PrunableStepDecoder",
    "SearchResult",
    "StepDecoder",
    "StreamingStepDecoder",
    "beam_search",
    "greedy_search",
]
