"""sacreBLEU BLEU/chrF and the lowercased-tokenised BLEU, on detokenised text."""

from __future__ import annotations

import pytest

from seqlab.text.metrics import format_scores, score_corpus

REFS = ["Le chat est assis sur le tapis.", "Il fait très froid ce matin, n'est-ce pas ?",
        "Deux hommes marchent dans la rue avec leurs chiens.", "Je suis fatigué."]


def test_perfect_hypothesis_scores_100() -> None:
    s = score_corpus(REFS, REFS, "fr")
    assert s["bleu"] == pytest.approx(100.0)
    assert s["chrf"] == pytest.approx(100.0)
    assert s["bleu_lc_tok"] == pytest.approx(100.0)
    assert s["n_sentences"] == 4 and s["bleu_bp"] == pytest.approx(1.0)


def test_divergent_hypotheses_score_lower_in_order() -> None:
    close = ["Le chat est assis sur le tapis.", "Il fait froid ce matin, n'est-ce pas ?",
             "Deux hommes marchent dans la rue avec des chiens.", "Je suis très fatigué."]
    far = ["Un chien dort.", "Nous mangeons.", "La maison est rouge.", "Bonjour."]
    s_close, s_far = score_corpus(close, REFS, "fr"), score_corpus(far, REFS, "fr")
    assert 0 <= s_far["bleu"] < s_close["bleu"] < 100
    assert 0 <= s_far["chrf"] < s_close["chrf"] < 100


def test_lowercased_tokenised_bleu_ignores_case_only() -> None:
    upper = [r.upper() for r in REFS]
    s = score_corpus(upper, REFS, "fr")
    assert s["bleu"] < 20            # case-sensitive BLEU punishes case
    assert s["bleu_lc_tok"] == pytest.approx(100.0)
    assert "case:lc" in s["bleu_lc_tok_signature"] and "tok:13a" in s["bleu_lc_tok_signature"]
    assert "case:mixed" in s["bleu_signature"] and "nrefs:1" in s["bleu_signature"]
    assert s["chrf_signature"].startswith("nrefs:1")


def test_detokenised_input_is_tokenised_by_13a() -> None:
    # Punctuation attached or split by spaces: same 13a tokens, same score.
    hyps = ["Le chat est assis sur le tapis ."]
    assert score_corpus(hyps, REFS[:1], "fr")["bleu"] == pytest.approx(100.0)


def test_errors_and_format() -> None:
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        score_corpus(["a", "b"], ["a"], "fr")
    with pytest.raises(ValueError, match="lists of strings"):
        score_corpus("a", ["a"], "fr")  # type: ignore[arg-type]
    text = format_scores(score_corpus(REFS, REFS, "fr"))
    assert "BLEU 100.00" in text and "lowercased-tokenised" in text and "tok:13a" in text
