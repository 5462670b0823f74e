"""Sentencepiece tokenizer: round trips, byte fallback, fixed special ids, saving with a run."""

from __future__ import annotations

import json
import random
import unicodedata
from pathlib import Path

import pytest

from seqlab.errors import UserError
from seqlab.text.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    SubwordTokenizer,
    TokenizerPair,
)


def _words(text: str) -> list[str]:
    return text.split()


_EN = _words("the cat dog house small big red green eats sleeps runs sees a an is are was were "
       "on under near with without today tomorrow very quickly slowly i you we they")
_FR = _words("le la chat chien maison petite grande rouge verte mange dort court voit un une est "
       "sont était étaient sur sous près avec sans aujourd'hui demain très vite lentement "
       "je tu nous ils élève garçon fille où déjà")


def _sentences(words: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))).capitalize() + "."
            for _ in range(n)]


EN = _sentences(_EN, 600, 1)
FR = _sentences(_FR, 600, 2)
VOCAB = 400   # 4 special + 256 bytes + ~140 learned pieces: small and fast


@pytest.fixture(scope="module")
def tok() -> SubwordTokenizer:
    return SubwordTokenizer.train(EN + FR, None, vocab_size=VOCAB)


def test_special_ids_and_vocab(tok: SubwordTokenizer) -> None:
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert [tok.id_to_piece(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert 260 < tok.vocab_size <= VOCAB


def test_round_trip_training_text(tok: SubwordTokenizer) -> None:
    texts = EN[:50] + FR[:50]
    ids = tok.encode(texts)
    assert all(ids_row and all(4 <= i < tok.vocab_size for i in ids_row) for ids_row in ids)
    assert tok.decode(ids) == texts
    # Subwords, not characters: the learned pieces make sequences shorter than the text.
    assert sum(map(len, ids)) < 0.6 * sum(map(len, texts))


def test_byte_fallback_unseen_characters(tok: SubwordTokenizer) -> None:
    unseen = ["Ζεύς 😀 漢字 ğ ŋ", "naïve café — «ça» ‽", "QXZ jkw 12345"]
    ids = tok.encode(unseen)
    assert all(UNK_ID not in row for row in ids)
    assert tok.decode(ids) == unseen
    pieces = tok.encode_pieces(["😀"])[0]
    assert "<0xF0>" in pieces     # spelled as UTF-8 bytes
    # Text is NFKC-normalised (nmt_nfkc): compatibility characters come back normalised.
    assert tok.decode(tok.encode(["ŉ ﬁ ２"])) == [unicodedata.normalize("NFKC", "ŉ ﬁ ２")]


def test_decode_strips_specials_and_cuts_at_eos(tok: SubwordTokenizer) -> None:
    ids = tok.encode(["le chat dort."])[0]
    row = [BOS_ID, *ids, EOS_ID, *ids, PAD_ID]
    assert tok.decode([row, [BOS_ID, EOS_ID, PAD_ID], []]) == ["le chat dort.", "", ""]


def test_training_is_deterministic_and_bpe_option(tmp_path: Path, tok: SubwordTokenizer) -> None:
    again = SubwordTokenizer.train(EN + FR, tmp_path / "sub" / "m", vocab_size=VOCAB)
    assert again.sha256 == tok.sha256
    assert (tmp_path / "sub" / "m.model").is_file()
    assert SubwordTokenizer.load(tmp_path / "sub" / "m.model").sha256 == tok.sha256
    (tmp_path / "d").mkdir()
    bpe = SubwordTokenizer.train(EN + FR, tmp_path / "d", vocab_size=VOCAB, model_type="bpe")
    assert (tmp_path / "d" / "spm.model").is_file() and bpe.sha256 != tok.sha256
    assert bpe.decode(bpe.encode(FR[:20])) == FR[:20]
    with pytest.raises(ValueError, match="model_type"):
        SubwordTokenizer.train(EN, None, vocab_size=VOCAB, model_type="word")
    with pytest.raises(ValueError, match="vocab_size"):
        SubwordTokenizer.train(EN, None, vocab_size=100)


def test_pair_shared_save_load(tmp_path: Path) -> None:
    pair = TokenizerPair.train_pair(EN, FR, tmp_path, vocab_size=VOCAB)
    assert pair.shared and pair.src is pair.tgt
    meta = json.loads((tmp_path / "tokenizer" / "tokenizer.json").read_text())
    assert meta["shared"] is True and set(meta["sha256"]) == {"shared.model"}
    assert meta["sha256"]["shared.model"] == pair.src.sha256
    loaded = TokenizerPair.load(tmp_path)
    assert loaded.shared and loaded.fingerprint() == pair.fingerprint()
    assert loaded.tgt.decode(loaded.tgt.encode(FR[:5])) == FR[:5]
    loaded.check_fingerprint(pair.fingerprint())


def test_pair_separate_models(tmp_path: Path) -> None:
    pair = TokenizerPair.train_pair(EN, FR, tmp_path, vocab_size=VOCAB, shared=False)
    assert not pair.shared and pair.src.sha256 != pair.tgt.sha256
    assert {p.name for p in (tmp_path / "tokenizer").iterdir()} == {
        "src.model", "tgt.model", "tokenizer.json"}
    loaded = TokenizerPair.load(tmp_path)
    assert loaded.src.sha256 == pair.src.sha256 and loaded.tgt.sha256 == pair.tgt.sha256
    # The French model has learned French pieces, the English one did not.
    assert len(loaded.tgt.encode(["aujourd'hui"])[0]) < len(loaded.src.encode(["aujourd'hui"])[0])
    other = TokenizerPair.train_pair(EN, FR, None, vocab_size=VOCAB)
    with pytest.raises(UserError, match="does not match"):
        other.check_fingerprint(pair.fingerprint())


def test_load_errors_are_one_line(tmp_path: Path, tok: SubwordTokenizer) -> None:
    with pytest.raises(UserError, match="not found"):
        TokenizerPair.load(tmp_path / "missing_run")
    with pytest.raises(UserError, match="tokenizer model not found"):
        SubwordTokenizer.load(tmp_path / "none.model")
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"this is not a model")
    with pytest.raises(UserError, match="not a valid sentencepiece model"):
        SubwordTokenizer.load(garbage)

    TokenizerPair(tok, tok).save(tmp_path / "run")
    model = tmp_path / "run" / "tokenizer" / "shared.model"
    # Replace the model by another valid one: the recorded sha256 catches it.
    SubwordTokenizer.train(EN, None, vocab_size=VOCAB).save(model)
    with pytest.raises(UserError, match="sha256 differs") as exc:
        TokenizerPair.load(tmp_path / "run")
    assert "\n" not in str(exc.value)
    model.write_bytes(model.read_bytes()[:100])    # truncated
    with pytest.raises(UserError):
        TokenizerPair.load(tmp_path / "run")
    (tmp_path / "run" / "tokenizer" / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt tokenizer metadata"):
        TokenizerPair.load(tmp_path / "run")
