"""Ensembles of translators at decode time: the log-probabilities of the models averaged at
every step, through the same search code (`seqlab.decoding.search`).

    model = Ensemble([model_a, model_b])            # LSTM and Transformer runs may be mixed
    model.generate(src, src_lengths, src_mask, num_beams=5)

The models must read and write the same subwords (one tokenizer; `Translator.load` checks the
runs' tokenizer fingerprints) and agree on the special ids. Each model keeps its own memory
and state; `EnsembleDecoder` steps them all and averages their log-probabilities
(mean_m log p_m(y | ...)) and attention weights.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, cast

import torch
from torch import Tensor, nn

from seqlab.decoding.search import PrunableStepDecoder
from seqlab.translate.model import Generates


class _Ids(Protocol):
    pad_id: int
    bos_id: int
    eos_id: int
    tgt_vocab_size: int


class _Translator(Protocol):
    """What the ensemble reads from each model (`Seq2Seq`, `Transformer`)."""

    cfg: _Ids
    decoder: PrunableStepDecoder

    def encode(self, src: Tensor, src_lengths: Tensor, src_mask: Tensor) -> tuple[Any, Any]: ...


class EnsembleState(NamedTuple):
    rows: Tensor              # (N,) a row index: the search reads the batch size from it
    states: tuple[Any, ...]   # each model's decoder state


class EnsembleDecoder(nn.Module):
    """The search protocol (step, reorder_state, expand_memory, select_memory) over several
    decoders; memory: a tuple of the models' memories."""

    def __init__(self, decoders: list[nn.Module]):
        super().__init__()
        self.decoders = nn.ModuleList(decoders)

    def _steps(self) -> list[PrunableStepDecoder]:
        return cast(list[PrunableStepDecoder], list(self.decoders))

    def step(self, tokens: Tensor, state: EnsembleState, memory: tuple[Any, ...]
             ) -> tuple[Tensor, EnsembleState, Tensor]:
        """tokens (N,) -> the mean of the models' log-probs (N, V), the new state, the mean
        of their attention weights (N, S)."""
        lps, states, weights = [], [], []
        for dec, st, mem in zip(self._steps(), state.states, memory, strict=True):
            lp, st, w = dec.step(tokens, st, mem)
            lps.append(lp)
            states.append(st)
            weights.append(w)
        lp = torch.stack(lps).mean(0)                                   # (N, V)
        return lp, EnsembleState(state.rows, tuple(states)), torch.stack(weights).mean(0)

    def reorder_state(self, state: EnsembleState, index: Tensor) -> EnsembleState:
        index = index.to(state.rows.device)
        return EnsembleState(state.rows.index_select(0, index),
                             tuple(dec.reorder_state(st, index)
                                   for dec, st in zip(self._steps(), state.states, strict=True)))

    def expand_memory(self, memory: tuple[Any, ...], k: int) -> tuple[Any, ...]:
        return tuple(dec.expand_memory(m, k)
                     for dec, m in zip(self._steps(), memory, strict=True))

    def select_memory(self, memory: tuple[Any, ...], index: Tensor) -> tuple[Any, ...]:
        return tuple(dec.select_memory(m, index)
                     for dec, m in zip(self._steps(), memory, strict=True))


class Ensemble(Generates, nn.Module):
    """Several translators as one: the interface of `Seq2Seq` for decoding (encode, generate)."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("Ensemble: needs at least one model")
        translators = cast(list[_Translator], models)
        ids = {(m.cfg.pad_id, m.cfg.bos_id, m.cfg.eos_id, m.cfg.tgt_vocab_size)
               for m in translators}
        if len(ids) > 1:
            raise ValueError(f"Ensemble: the models differ in special ids or target vocabulary "
                             f"(pad, bos, eos, size): {sorted(ids)}")
        self.models = nn.ModuleList(models)
        self.cfg: _Ids = translators[0].cfg
        self.decoder = EnsembleDecoder([cast(nn.Module, m.decoder) for m in translators])
        # the shortest output any member can position (a Transformer's max_positions)
        caps = [c for m in models if (c := getattr(m, "max_target_positions", None)) is not None]
        self.max_target_positions = min(caps) if caps else None

    def encode(self, src: Tensor, src_lengths: Tensor, src_mask: Tensor
               ) -> tuple[tuple[Any, ...], EnsembleState]:
        memories, states = [], []
        for m in cast(list[_Translator], list(self.models)):
            mem, st = m.encode(src, src_lengths, src_mask)
            memories.append(mem)
            states.append(st)
        rows = torch.arange(src.size(0), device=src.device)
        return tuple(memories), EnsembleState(rows, tuple(states))
