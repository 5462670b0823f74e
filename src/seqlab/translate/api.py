"""The translator's Python API (mirrors `seqlab translate run/eval`).

    from seqlab.translate.api import Translator
    tr = Translator.load("runs/en-fr")
    tr.translate(["I am cold."])                          # ["J'ai froid."]
    [r] = tr.translate(["I am cold."], return_attention=True)
    r.text, r.src_tokens, r.tgt_tokens, r.attention       # attention: (T, S) numpy array
    tr.evaluate(corpus.test)                              # BLEU, chrF, signatures
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqlab.decoding.search import Hypothesis, SearchResult, greedy_search_stream
from seqlab.errors import UserError
from seqlab.export.common import check_backend
from seqlab.translate.batching import collate_src
from seqlab.translate.model import Seq2Seq, TranslatorConfig, default_max_new_tokens
from seqlab.translate.tokenizer import TokenizerPair


@dataclass
class Translation:
    """One translated sentence.

    text: the detokenised output; src_tokens: source subwords (S,) as the model saw them (with
    "</s>" when the model appends EOS to sources); tgt_tokens: output subwords (T,);
    attention: (T, S) weights of each output token over the source (rows sum to 1), when asked;
    score: the length-normalised log-probability; nbest: further (text, score) candidates.
    """

    text: str
    src_tokens: list[str] = field(default_factory=list)
    tgt_tokens: list[str] = field(default_factory=list)
    attention: np.ndarray | None = None
    score: float = 0.0
    nbest: list[tuple[str, float]] = field(default_factory=list)


@torch.no_grad()
def translate_batched(model: Seq2Seq, tok: TokenizerPair, sentences: list[str], *,
                      num_beams: int = 5, max_new_tokens: int | None = None,
                      length_penalty: float = 1.0, return_attention: bool = False,
                      batch_size: int = 64, num_return_sequences: int = 1,
                      src_eos: bool = True) -> list[Translation]:
    """Translate `sentences` in length-sorted batches; results in input order.

    Empty (whitespace-only) lines give empty translations without running the model.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    try:
        src_ids = tok.src.encode([s.strip() for s in sentences])
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
                results[idx] = tr
            return results

        def collate(chunk: list[int]) -> Any:
            return collate_src(src_ids, chunk, pad_id=model.cfg.pad_id, eos_id=model.cfg.eos_id,
                               src_eos=src_eos)

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


def translate_texts(model: Seq2Seq, tok: TokenizerPair, sentences: list[str], *,
                    num_beams: int = 1, batch_size: int = 64, src_eos: bool = True) -> list[str]:
    """Plain strings out (used for dev BLEU during training)."""
    return [t.text for t in translate_batched(model, tok, sentences, num_beams=num_beams,
                                              batch_size=batch_size, src_eos=src_eos)]


class Translator:
    """A trained translator loaded from its run directory."""

    def __init__(self, model: Seq2Seq, tok: TokenizerPair, config: dict[str, Any],
                 run_dir: Path | None = None):
        self.model = model.eval()
        self.tok = tok
        self.config = config
        self.run_dir = run_dir
        self.src_eos = bool(config.get("data", {}).get("src_eos", True))
        self.tgt_lang = str(config.get("data", {}).get("tgt_lang", "fr"))

    @classmethod
    def load(cls, run_dir: str | Path, checkpoint: str = "best", backend: str = "torch",
             threads: int | None = None) -> Translator:
        """Load `run_dir`: config.json, tokenizer/, model.safetensors ("best") or the
        last checkpoint ("last"). Anything missing, corrupt or mismatched -> one-line UserError.
        backend="onnx": run the graphs `seqlab translate export` wrote to run_dir/onnx/ with
        onnxruntime (`threads` intra-op threads; None: its default) through the same search.
        """
        from seqlab.training.checkpoint import CONFIG_FILE, load_run_weights
        from seqlab.translate.train import read_run_config

        run = Path(run_dir)
        cfg = read_run_config(run)
        tok = TokenizerPair.load_checked(run, cfg.get("tokenizer", {}), str(run / CONFIG_FILE))
        mcfg = TranslatorConfig.from_dict(cfg["model"])
        if (tok.src.vocab_size, tok.tgt.vocab_size) != (mcfg.src_vocab_size, mcfg.tgt_vocab_size):
            raise UserError(f"{run / 'tokenizer'}: vocabulary sizes {tok.src.vocab_size}/"
                            f"{tok.tgt.vocab_size} do not match the model's "
                            f"{mcfg.src_vocab_size}/{mcfg.tgt_vocab_size}")
        if check_backend(backend) == "onnx":
            from seqlab.translate.onnx_backend import OnnxSeq2Seq

            onnx_model: Any = OnnxSeq2Seq.load(run, mcfg, checkpoint, threads)
            return cls(onnx_model, tok, cfg, run)
        model = Seq2Seq(mcfg)
        load_run_weights(model, run, checkpoint)
        return cls(model, tok, cfg, run)

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
        from seqlab.translate.metrics import score_corpus

        src, refs = list(split.src), list(split.tgt)
        if limit is not None:
            src, refs = src[:limit], refs[:limit]
        hyps = self.translate(src, num_beams=num_beams, batch_size=batch_size,
                              length_penalty=length_penalty)
        scores = dict(score_corpus(hyps, refs, self.tgt_lang))
        scores["n_sentences"] = len(src)
        scores["num_beams"] = num_beams
        return scores


def run_translate_demo(out_dir: str | Path, minutes: float = 5.0, corpus: str = "libreoffice-help",
                       sentences: list[str] | None = None, progress: bool = True,
                       seed: int = 1234, model_size: int = 128, vocab_size: int = 4000,
                       max_len: int = 32) -> dict[str, Any]:
    """The README demo: train a small translator for `minutes` on the built-in corpus,
    translate a few sentences and save their attention heat maps under out_dir/attention/.

    Running it again continues the same run (resume) for another `minutes`.
    Sized for a few CPU minutes: a 128-unit model, a 4k vocabulary and the pairs of at most
    `max_len` subwords (UI strings and short help sentences) see many epochs in that time.
    Returns {"run_dir", "train": summary, "translations": [{source, translation, plot}]}.
    """
    from seqlab.translate.train import DataConfig, TrainConfig, train_translator
    from seqlab.viz.attention_plot import plot_attention

    out = Path(out_dir)
    run = out / "translator"
    summary = train_translator(
        run,
        model_cfg={"emb_dim": model_size, "enc_hidden": model_size, "dec_hidden": model_size,
                   "attention": "additive", "dropout": 0.2},
        train_cfg=TrainConfig(time_budget_min=minutes, eval_every=400, eval_sentences=300,
                              batch_tokens=2048, lr=3e-3, seed=seed, max_epochs=1000),
        data_cfg=DataConfig(corpus=corpus, src_lang="en", tgt_lang="fr", vocab_size=vocab_size,
                            max_len=max_len),
        resume=(run / "checkpoint.safetensors").exists(), progress=progress,
        overrides={"time_budget_min": minutes})
    tr = Translator.load(run)
    sentences = sentences or ["Click the OK button.", "Select the cells you want to delete.",
                              "Opens the Save As dialog.", "The table has three columns."]
    outs = tr.translate(sentences, num_beams=5, return_attention=True)
    shown = []
    for i, (s, r) in enumerate(zip(sentences, outs, strict=True)):
        assert not isinstance(r, str)
        path = out / "attention" / f"sentence_{i + 1}.png"
        if r.tgt_tokens:   # an empty output has nothing to draw
            plot_attention(r.attention, r.src_tokens, r.tgt_tokens, out_path=path,
                           title=f"{s} -> {r.text}")
        shown.append({"source": s, "translation": r.text,
                      "plot": str(path) if r.tgt_tokens else None})
    return {"run_dir": str(run), "train": summary, "translations": shown}
