"""Text quality: sacreBLEU BLEU and chrF, with their signatures (translations, captions).

All scores are computed on detokenised text (what `SubwordTokenizer.decode` returns), against
one reference per sentence:

- "bleu": sacreBLEU BLEU with its default, standard settings (13a tokenisation, case-sensitive,
  exponential smoothing), the comparable number for WMT-style reporting.
- "chrf": sacreBLEU chrF (character 6-grams, beta=2).
- "bleu_lc_tok": the *lowercased, tokenised* BLEU that Multi30k papers report (they score
  lowercased, tokenised text with multi-bleu.perl). Here computed as sacreBLEU BLEU with
  `lowercase=True` and the 13a (mteval-v13a) tokeniser applied to the detokenised text. This is
  an approximation of the papers' Moses-tokenised scoring: 13a does not split French elisions
  ("l'homme" stays one token, Moses -l fr gives "l' homme"), so the two can differ slightly.
  Its signature string says exactly what was computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sacrebleu.metrics import BLEU, CHRF


def _tokenizer_for(tgt_lang: str) -> str:
    # sacreBLEU's 13a suits space-delimited languages; Chinese needs its own tokeniser.
    return "zh" if tgt_lang.lower().startswith("zh") else "13a"


def score_corpus(hyps: Sequence[str], refs: Sequence[str], tgt_lang: str) -> dict[str, Any]:
    """Corpus-level scores of hypotheses against references (both detokenised, one per line).

    Returns {"bleu", "chrf", "bleu_lc_tok": float scores in 0..100, "bleu_signature",
    "chrf_signature", "bleu_lc_tok_signature": str, "bleu_bp", "bleu_ratio": float,
    "bleu_precisions": [p1..p4], "n_sentences": int}.
    """
    if isinstance(hyps, str) or isinstance(refs, str):
        raise ValueError("score_corpus: hyps and refs must be lists of strings, not one str")
    if len(hyps) != len(refs):
        raise ValueError(f"score_corpus: {len(hyps)} hypotheses but {len(refs)} references")
    hyps, refs = [str(h) for h in hyps], [str(r) for r in refs]
    tok = _tokenizer_for(tgt_lang)
    bleu = BLEU(tokenize=tok)
    chrf = CHRF()
    bleu_lc = BLEU(tokenize=tok, lowercase=True)
    b = bleu.corpus_score(hyps, [refs])
    c = chrf.corpus_score(hyps, [refs])
    bl = bleu_lc.corpus_score(hyps, [refs])
    return {
        "bleu": float(b.score),
        "chrf": float(c.score),
        "bleu_lc_tok": float(bl.score),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "bleu_lc_tok_signature": str(bleu_lc.get_signature()),
        "bleu_bp": float(b.bp),
        "bleu_ratio": float(b.ratio),
        "bleu_precisions": [float(p) for p in b.precisions],
        "n_sentences": len(hyps),
    }


def format_scores(scores: dict[str, Any]) -> str:
    """A few readable lines: the scores, then their signatures."""
    return (f"BLEU {scores['bleu']:.2f}  chrF {scores['chrf']:.2f}  "
            f"lowercased-tokenised BLEU (13a, Multi30k-style) {scores['bleu_lc_tok']:.2f}\n"
            f"  BLEU: {scores['bleu_signature']}\n  chrF: {scores['chrf_signature']}\n"
            f"  BLEU lc-tok: {scores['bleu_lc_tok_signature']}")
