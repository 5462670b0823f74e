"""The translator's Python API (mirrors `seqlab translate run/eval`).

    from seqlab.translate.api import Translator
    tr = Translator.load("runs/en-fr")
    tr.translate(["I am cold."])                          # ["J'ai froid."]
    [r] = tr.translate(["I am cold."], return_attention=True)
    r.text, r.src_tokens, r.tgt_tokens, r.attention       # attention: (T, S) numpy array
    tr.evaluate(corpus.test)                              # BLEU, chrF, signatures
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from seqlab.decoding.search import Hypothesis, SearchResult, greedy_search_stream
from seqlab.device import model_device, resolve_device
from seqlab.errors import InputWarning, UserError
from seqlab.export.common import check_backend
from seqlab.nn import LSTMGates
from seqlab.text.batching import collate_src
from seqlab.text.metrics import score_corpus
from seqlab.text.tokenizer import TokenizerPair
from seqlab.translate.ensemble import Ensemble
from seqlab.translate.model import Seq2Seq, default_max_new_tokens
from seqlab.translate.run import load_averaged, load_run
from seqlab.validate import MAX_SOURCE_CHARS, MAX_SOURCE_TOKENS, check_decoding, check_int


@dataclass
class Translation:
    """One translated sentence.

    text: the detokenised output; src_tokens: source subwords (S,) as the model saw them (with
    "</s>" when the model appends EOS to sources); tgt_tokens: output subwords (T,);
    attention: (T, S) weights of each output token over the source (rows sum to 1), when asked;
    score: the length-normalised log-probability; nbest: further (text, score) candidates;
    layer_attention: Transformer only, when attention is asked: the cross-attention of every
    decoder layer and head (layers, heads, T, S) (`attention` is the last layer's head mean).
    """

    text: str
    src_tokens: list[str] = field(default_factory=list)
    tgt_tokens: list[str] = field(default_factory=list)
    attention: np.ndarray | None = None
    score: float = 0.0
    nbest: list[tuple[str, float]] = field(default_factory=list)
    layer_attention: np.ndarray | None = None


@torch.no_grad()
def translate_batched(model: Any, tok: TokenizerPair, sentences: list[str], *,
                      num_beams: int = 5, max_new_tokens: int | None = None,
                      length_penalty: float = 1.0, return_attention: bool = False,
                      batch_size: int = 64, num_return_sequences: int = 1,
                      src_eos: bool = True) -> list[Translation]:
    """Translate `sentences` in length-sorted batches; results in input order.

    Empty (whitespace-only) lines give empty translations without running the model. What one
    sentence may cost is bounded: a source longer than `MAX_SOURCE_TOKENS` subwords is
    truncated, with an `InputWarning` (seqlab.validate).
    """
    check_decoding(num_beams, max_new_tokens, length_penalty, batch_size, num_return_sequences)
    for i, s in enumerate(sentences):
        if not isinstance(s, str):
            raise UserError(f"sentences[{i}]: expected a string, got {type(s).__name__}")
    was_training = model.training
    model.eval()
    try:
        src_ids = _truncated(tok.src.encode([s.strip()[:MAX_SOURCE_CHARS] for s in sentences]),
                             sentences)
        todo = [i for i, s in enumerate(sentences) if s.strip()]
        results: list[Translation] = [Translation("") for _ in sentences]
        # sort by length so each batch pads little; collate_src sorts inside the batch too
        todo.sort(key=lambda i: -len(src_ids[i]))
        eos_piece = "</s>"
        chunks = [todo[start:start + batch_size] for start in range(0, len(todo), batch_size)]

        found: list[tuple[int, list[Hypothesis], Any, int]] = []   # (idx, hyps, batch, row)

        def collect(sb: Any, res: SearchResult) -> None:
            for row, idx in enumerate(sb.indices):
                found.append((idx, res.hypotheses[row], sb, row))

        def finish() -> list[Translation]:
            # one detokenisation call for everything (sentencepiece's batch decode has a high
            # fixed cost per call)
            texts = iter(tok.tgt.decode([h.tokens for _, hyps, _, _ in found for h in hyps]))
            for idx, hyps, sb, row in found:
                best = hyps[0]
                text = next(texts)
                nbest = [(next(texts), h.score) for h in hyps[1:]]
                tr = Translation(text, score=best.score, nbest=nbest)
                if return_attention:
                    n_src = int(sb.src_lengths[row])
                    tr.src_tokens = tok.src.ids_to_pieces(src_ids[idx]) + (
                        [eos_piece] if src_eos else [])
                    tr.tgt_tokens = tok.tgt.ids_to_pieces(best.tokens)
                    att = best.attention
                    tr.attention = (att[:, :n_src].float().numpy() if att is not None
                                    else np.zeros((0, n_src), dtype=np.float32))
                    if hasattr(model, "cross_attention"):
                        tr.layer_attention = _layer_attention(model, sb, row, best.tokens)
                results[idx] = tr
            return results

        def collate(chunk: list[int]) -> Any:
            return collate_src(src_ids, chunk, pad_id=model.cfg.pad_id, eos_id=model.cfg.eos_id,
                               src_eos=src_eos).to(model_device(model))

        if (num_beams == 1 and num_return_sequences == 1 and not return_attention
                and hasattr(model.decoder, "join")):
            # greedy with continuous batching: sentences join the running batch as others end
            collated: list[Any] = []

            def encoded() -> Iterator[tuple[Any, Any, Any]]:
                for chunk in chunks:
                    sb = collate(chunk)
                    collated.append(sb)
                    memory, state = model.encode(sb.src, sb.src_lengths, sb.src_mask)
                    yield memory, state, (max_new_tokens if max_new_tokens is not None
                                          else default_max_new_tokens(sb.src_lengths))

            searched = greedy_search_stream(model.decoder, encoded(), bos_id=model.cfg.bos_id,
                                            eos_id=model.cfg.eos_id, max_rows=batch_size)
            for sb, res in zip(collated, searched, strict=True):
                collect(sb, res)
            return finish()
        for chunk in chunks:
            sb = collate(chunk)
            res = model.generate(sb.src, sb.src_lengths, sb.src_mask, num_beams=num_beams,
                                 max_new_tokens=max_new_tokens, length_penalty=length_penalty,
                                 num_return_sequences=num_return_sequences,
                                 return_attention=return_attention)
            collect(sb, res)
        return finish()
    finally:
        model.train(was_training)


def _layer_attention(model: Any, sb: Any, row: int, tokens: list[int]) -> np.ndarray:
    """Per layer and head cross-attention (layers, heads, T, S) of one output (Transformer)."""
    n = int(sb.src_lengths[row])
    tgt_in = torch.tensor([[model.cfg.bos_id] + tokens], device=sb.src.device)   # (1, T)
    w = model.cross_attention(sb.src[row:row + 1, :n], sb.src_lengths[row:row + 1],
                              sb.src_mask[row:row + 1, :n], tgt_in)           # (1, L, h, T, S)
    # row t predicts token t (the last row, EOS, is not drawn): (L, h, T, S)
    out: np.ndarray = w[0, :, :, :len(tokens)].float().cpu().numpy()
    return out


def _truncated(src_ids: list[list[int]], sentences: list[str]) -> list[list[int]]:
    """Sources cut to MAX_SOURCE_TOKENS subwords (their text was already cut to
    MAX_SOURCE_CHARS characters); how many were cut is an InputWarning."""
    long = [i for i, ids in enumerate(src_ids) if len(ids) > MAX_SOURCE_TOKENS]
    if long:
        warnings.warn(f"{len(long)} sentence(s) longer than {MAX_SOURCE_TOKENS} subwords "
                      f"truncated to that length (the first: sentence {long[0] + 1}, "
                      f"{len(sentences[long[0]]):,} characters)", InputWarning, stacklevel=3)
    return [ids[:MAX_SOURCE_TOKENS] for ids in src_ids]


def translate_texts(model: Any, tok: TokenizerPair, sentences: list[str], *,
                    num_beams: int = 1, batch_size: int = 64, src_eos: bool = True) -> list[str]:
    """Plain strings out (used for dev BLEU during training)."""
    return [t.text for t in translate_batched(model, tok, sentences, num_beams=num_beams,
                                              batch_size=batch_size, src_eos=src_eos)]


class Translator:
    """A trained translator loaded from its run directory."""

    def __init__(self, model: Any, tok: TokenizerPair, config: dict[str, Any],
                 run_dir: Path | None = None):
        self.model = model.eval()
        self.tok = tok
        self.config = config
        self.run_dir = run_dir
        self.src_eos = bool(config.get("data", {}).get("src_eos", True))
        self.tgt_lang = str(config.get("data", {}).get("tgt_lang", "fr"))

    @classmethod
    def load(cls, run_dir: str | Path, checkpoint: str = "best",
             device: str | torch.device = "auto", backend: str = "torch",
             threads: int | None = None, *, average: int | None = None,
             ensemble: Sequence[str | Path] = ()) -> Translator:
        """Load `run_dir`: config.json, tokenizer/, model.safetensors ("best") or the
        last checkpoint ("last"), onto `device` ("auto": cuda, else mps, else cpu; a run
        trained on any device loads on any other). Anything missing, corrupt or mismatched ->
        one-line UserError. backend="onnx": run the graphs `seqlab translate export` wrote to
        run_dir/onnx/ with onnxruntime on the CPU (`threads` intra-op threads; None: its
        default) through the same search.

        average: use the mean of the run's last `average` weight snapshots instead.
        ensemble: further run directories (either architecture, the same tokenizer) decoded
        together with this one, their log-probabilities averaged at every step.
        """
        if check_backend(backend) == "onnx":
            if average or ensemble:
                raise UserError("--backend onnx: runs one exported model; drop --average and "
                                "--ensemble (or export an averaged run)")
            from seqlab.translate.onnx_backend import load_onnx_translator

            model, tok, cfg = load_run(run_dir, checkpoint)
            onnx_model = load_onnx_translator(Path(run_dir), model.cfg, checkpoint, threads)
            return cls(onnx_model, tok, cfg, Path(run_dir))
        if average:
            model, tok, cfg = load_averaged(run_dir, average)
        else:
            model, tok, cfg = load_run(run_dir, checkpoint)
        if ensemble:
            models = [model]
            for other in ensemble:
                m, t, c = load_run(other, checkpoint)
                if t.fingerprint() != tok.fingerprint():
                    raise UserError(f"{other}: its tokenizer differs from {run_dir}'s; an "
                                    "ensemble needs runs trained with one tokenizer")
                src_eos = (c.get("data", {}).get("src_eos", True),
                           cfg.get("data", {}).get("src_eos", True))
                if src_eos[0] != src_eos[1]:
                    raise UserError(f"{other}: data.src_eos={src_eos[0]} differs from "
                                    f"{run_dir}'s ({src_eos[1]})")
                models.append(m)
            model = Ensemble(models).eval()
        return cls(model.to(resolve_device(device)), tok, cfg, Path(run_dir))

    @property
    def has_gates(self) -> bool:
        """Whether the encoder is an LSTM whose gates can be recorded (a Transformer's,
        an ensemble's or an exported graph's cannot)."""
        return isinstance(self.model, Seq2Seq)

    def encoder_gates(self, text: str, max_steps: int | None = None
                      ) -> tuple[LSTMGates, list[str]]:
        """The encoder's gates over `text`'s first `max_steps` subwords (and the source EOS
        when the run appends one and it fits), with those subwords ("</s>" for the EOS)."""
        if not self.has_gates:
            raise TypeError("this translator's encoder has no LSTM gates")
        pieces = self.tok.src.encode_pieces([text])[0][:max_steps]
        ids = self.tok.src.encode([text])[0][:max_steps]
        if self.src_eos and (max_steps is None or len(ids) < max_steps):
            ids, pieces = ids + [self.tok.src.eos_id], pieces + ["</s>"]
        src = torch.tensor([ids], device=model_device(self.model))            # (1, S)
        with torch.no_grad():
            emb = self.model.src_embed(src)                                    # (1, S, E)
            _, _, gates = self.model.encoder(emb, return_gates=True)
        return gates, pieces

    def translate(self, sentences: list[str] | str, num_beams: int = 5,
                  max_new_tokens: int | None = None, length_penalty: float = 1.0,
                  return_attention: bool = False, batch_size: int = 64,
                  num_return_sequences: int = 1) -> list[str] | list[Translation]:
        """Translate sentences: strings, or `Translation` objects with the subword tokens and
        (T, S) attention when `return_attention` (or n-best) is asked for."""
        if isinstance(sentences, str):
            sentences = [sentences]
        res = translate_batched(self.model, self.tok, list(sentences), num_beams=num_beams,
                                max_new_tokens=max_new_tokens, length_penalty=length_penalty,
                                return_attention=return_attention, batch_size=batch_size,
                                num_return_sequences=num_return_sequences,
                                src_eos=self.src_eos)
        if return_attention or num_return_sequences > 1:
            return res
        return [r.text for r in res]

    def evaluate(self, split: Any, num_beams: int = 5, batch_size: int = 64,
                 length_penalty: float = 1.0, limit: int | None = None) -> dict[str, Any]:
        """BLEU/chrF (sacreBLEU, with signatures) and the lowercased-tokenised BLEU on a
        ParallelText (or anything with `.src` and `.tgt` lists)."""
        src, refs = list(split.src), list(split.tgt)
        if limit is not None:
            check_int("limit", limit)
            src, refs = src[:limit], refs[:limit]
        hyps = self.translate(src, num_beams=num_beams, batch_size=batch_size,
                              length_penalty=length_penalty)
        scores = dict(score_corpus(cast(list[str], hyps), refs, self.tgt_lang))
        scores["n_sentences"] = len(src)
        scores["num_beams"] = num_beams
        return scores

