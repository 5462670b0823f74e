"""Parallel text reading, bad-input errors, length filter, grouped split, named corpora."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqlab.errors import UserError
from seqlab.translate.corpora import Corpus, list_corpora, load_corpus, resolve_data_dir
from seqlab.translate.data import (
    DEFAULT_MAX_TOKENS,
    ParallelText,
    filter_by_length,
    read_aligned,
    read_tsv,
    split_grouped,
)

DATA = resolve_data_dir()
TATOEBA = DATA / "tatoeba-fra-eng" / "fra.txt" if DATA else None
MULTI30K = DATA / "multi30k" if DATA else None


def _write(path: Path, data: bytes) -> Path:
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


# --- TSV -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pairs.tsv", "pairs.tsv.gz"])
def test_read_tsv_plain_and_gz(tmp_path: Path, name: str) -> None:
    text = "\ufeffHello.\tBonjour.\tCC-BY 2.0 (France) Attribution: tatoeba.org\r\n" \
           "  I am cold. \t J'ai froid.\n" \
           "Thanks!\tMerci\u202f!\n"
    pt = read_tsv(_write(tmp_path / name, text.encode()))
    assert pt.src == ["Hello.", "I am cold.", "Thanks!"]
    assert pt.tgt == ["Bonjour.", "J'ai froid.", "Merci\u202f!"]
    assert pt.skipped == 0 and pt.source.endswith(name)


def test_read_tsv_gz_detected_by_magic_bytes(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_bytes(gzip.compress(b"a\tb\n"))
    assert read_tsv(path).tgt == ["b"]


@pytest.mark.parametrize("bad, what", [
    (b"no tab here", "no tab"),
    (b"\tle chat", "empty source"),
    (b"the cat\t  ", "empty target"),
    (b"caf\xe9\tcaf\xc3\xa9", "invalid UTF-8"),
    (b"", "empty line"),
])
@pytest.mark.parametrize("name", ["bad.tsv", "bad.tsv.gz"])
def test_read_tsv_bad_lines_name_file_and_line(tmp_path: Path, bad: bytes, what: str,
                                               name: str) -> None:
    path = _write(tmp_path / name, b"one\tun\ntwo\tdeux\n" + bad + b"\nthree\ttrois\n")
    with pytest.raises(UserError) as exc:
        read_tsv(path)
    msg = str(exc.value)
    assert f"{path}:3:" in msg and what in msg and "\n" not in msg
    pt = read_tsv(path, skip_bad_lines=True)
    assert pt.skipped == 1
    assert pt.src == ["one", "two", "three"] and pt.tgt == ["un", "deux", "trois"]


def test_read_tsv_counts_several_bad_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.tsv", b"a\tb\nbad\n\tc\nd\t\ne\tf\n\xff\xfe\tg\n")
    pt = read_tsv(path, skip_bad_lines=True)
    assert (pt.src, pt.tgt, pt.skipped) == (["a", "e"], ["b", "f"], 4)


def test_read_tsv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        read_tsv(tmp_path / "nope.tsv")


# --- two aligned files ---------------------------------------------------------------------
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_aligned(tmp_path: Path, suffix: str) -> None:
    src = _write(tmp_path / f"train.en{suffix}", b"A dog runs.\nTwo men .\n")
    tgt = _write(tmp_path / f"train.de{suffix}", "Ein Hund läuft.\nZwei Männer .\n".encode())
    pt = read_aligned(src, tgt)
    assert pt.src == ["A dog runs.", "Two men ."]
    assert pt.tgt == ["Ein Hund läuft.", "Zwei Männer ."]


def test_read_aligned_count_mismatch_names_both(tmp_path: Path) -> None:
    src = _write(tmp_path / "a.en", b"1\n2\n3\n")
    tgt = _write(tmp_path / "a.fr.gz", b"1\n2\n")
    with pytest.raises(UserError) as exc:
        read_aligned(src, tgt, skip_bad_lines=True)   # never skippable
    msg = str(exc.value)
    assert str(src) in msg and str(tgt) in msg and "3 lines" in msg and "has 2" in msg


@pytest.mark.parametrize("side", ["src", "tgt"])
@pytest.mark.parametrize("bad, what", [(b"   ", "empty line"), (b"\xc3\x28", "invalid UTF-8")])
def test_read_aligned_bad_lines(tmp_path: Path, side: str, bad: bytes, what: str) -> None:
    lines = {"src": [b"one", b"two", b"three"], "tgt": [b"un", b"deux", b"trois"]}
    lines[side][1] = bad
    src = _write(tmp_path / "x.en", b"\n".join(lines["src"]) + b"\n")
    tgt = _write(tmp_path / "x.fr", b"\n".join(lines["tgt"]) + b"\n")
    with pytest.raises(UserError) as exc:
        read_aligned(src, tgt)
    bad_file = src if side == "src" else tgt
    assert f"{bad_file}:2:" in str(exc.value) and what in str(exc.value)
    pt = read_aligned(src, tgt, skip_bad_lines=True)
    assert (pt.src, pt.tgt, pt.skipped) == (["one", "three"], ["un", "trois"], 1)


# --- length filter ---------------------------------------------------------------------------
def test_filter_by_length_default_and_counts() -> None:
    long = " ".join(["word"] * (DEFAULT_MAX_TOKENS + 1))
    ok = " ".join(["word"] * DEFAULT_MAX_TOKENS)
    pt = ParallelText(["a", long, ok, "b"], ["x", "y", ok, long], skipped=2, source="s")
    out, removed = filter_by_length(pt)
    assert removed == 2 and out.src == ["a", ok] and out.tgt == ["x", ok]
    assert out.skipped == 2 and out.source == "s"


def test_filter_by_length_with_tokenizer_and_chars() -> None:
    pt = ParallelText(["abcdef", "ab", "abc"], ["x", "y", "z"])
    # A "tokenizer" counting characters as tokens (the encode() protocol of SubwordTokenizer).
    class CharTok:
        def encode(self, texts: list[str]) -> list[list[int]]:
            return [[ord(c) for c in t] for t in texts]

    out, removed = filter_by_length(pt, max_tokens=3, tokenizer=CharTok())
    assert out.src == ["ab", "abc"] and removed == 1
    out, removed = filter_by_length(pt, max_tokens=10, tokenizer=len, max_chars=2)
    assert out.src == ["ab"] and removed == 2
    with pytest.raises(ValueError, match="max_tokens"):
        filter_by_length(pt, max_tokens=0)


# --- grouped split ---------------------------------------------------------------------------
def _toy(n_groups: int = 400, seed: int = 0) -> ParallelText:
    import random

    rng = random.Random(seed)
    src, tgt = [], []
    for g in range(n_groups):
        for k in range(rng.choice([1, 1, 1, 2, 3, 5])):
            src.append(f"sentence {g}")
            tgt.append(f"phrase {g} variante {k}")
    order = list(range(len(src)))
    rng.shuffle(order)
    return ParallelText([src[i] for i in order], [tgt[i] for i in order], source="toy")


def test_split_grouped_sizes_disjoint_deterministic() -> None:
    pt = _toy()
    train, dev, test = split_grouped(pt, dev_size=100, test_size=80, seed=7)
    assert (len(dev), len(test)) == (100, 80)
    assert len(train) + len(dev) + len(test) == len(pt)
    assert not set(train.src) & set(dev.src)
    assert not set(train.src) & set(test.src)
    assert not set(dev.src) & set(test.src)
    # Every pair is in exactly one split, with its own translation.
    pairs = sorted(zip(pt.src, pt.tgt, strict=True))
    got = sorted(p for s in (train, dev, test) for p in zip(s.src, s.tgt, strict=True))
    assert got == pairs
    again = split_grouped(pt, dev_size=100, test_size=80, seed=7)
    assert [s.src for s in again] == [train.src, dev.src, test.src]
    other = split_grouped(pt, dev_size=100, test_size=80, seed=8)
    assert other[2].src != test.src


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 15), st.integers(0, 15)), min_size=12, max_size=80),
       st.integers(0, 3), st.sampled_from(["src", "tgt", "both"]))
def test_split_grouped_never_shares_a_sentence(pairs: list[tuple[int, int]], seed: int,
                                               group_by: str) -> None:
    pt = ParallelText([f"s{a}" for a, _ in pairs], [f"t{b}" for _, b in pairs])
    train, dev, test = split_grouped(pt, dev_size=3, test_size=3, seed=seed, group_by=group_by)
    assert len(train) + len(dev) + len(test) == len(pt)
    assert len(dev) <= 3 and len(test) <= 3
    sides = {"src": ["src"], "tgt": ["tgt"], "both": ["src", "tgt"]}[group_by]
    for side in sides:
        sets = [set(getattr(s, side)) for s in (train, dev, test)]
        assert not sets[0] & sets[1] and not sets[0] & sets[2] and not sets[1] & sets[2]


def test_split_grouped_too_small() -> None:
    pt = ParallelText(["a", "b", "c"], ["x", "y", "z"], source="tiny.tsv")
    with pytest.raises(UserError, match="tiny.tsv: 3 pairs are too few"):
        split_grouped(pt, dev_size=2, test_size=2)


# --- corpora: user files, errors -------------------------------------------------------------
def test_load_corpus_user_tsv_and_pair(tmp_path: Path) -> None:
    lines = [f"sentence number {i}\tphrase numéro {i}" for i in range(50)]
    tsv = _write(tmp_path / "mine.tsv", ("\n".join(lines) + "\n").encode())
    c = load_corpus(str(tsv), "en", "fr")
    assert isinstance(c, Corpus) and (len(c.train), len(c.dev), len(c.test)) == (40, 5, 5)
    assert c.src_lang == "en" and c.tgt_lang == "fr"
    src = _write(tmp_path / "a.en.gz", "\n".join(l.split("\t")[0] for l in lines).encode())
    tgt = _write(tmp_path / "a.fr.gz", "\n".join(l.split("\t")[1] for l in lines).encode())
    c2 = load_corpus(f"{src},{tgt}")
    assert c2.test.src == c.test.src and c2.test.tgt == c.test.tgt   # same grouped split


def test_load_corpus_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a known corpus"):
        load_corpus(str(tmp_path / "nothing.tsv"))
    with pytest.raises(UserError, match="manythings.org"):
        load_corpus("tatoeba-fra-eng", data_dir=tmp_path)
    with pytest.raises(UserError, match="multi30k"):
        load_corpus("multi30k", "en", "de", data_dir=tmp_path)
    with pytest.raises(UserError, match="en->de"):
        load_corpus("tatoeba-fra-eng", "en", "de", data_dir=tmp_path)
    assert set(list_corpora()) == {"tatoeba-fra-eng", "multi30k", "libreoffice-help"}


def test_data_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQLAB_DATA_DIR", str(tmp_path))
    assert resolve_data_dir() == tmp_path
    assert resolve_data_dir(tmp_path / "x") == tmp_path / "x"
    folder = tmp_path / "tatoeba-fra-eng"
    folder.mkdir()
    rows = [f"Sentence {i}.\tPhrase {i}.\tCC-BY" for i in range(4100)]
    (folder / "fra.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    c = load_corpus("tatoeba-fra-eng", "fr", "en")
    assert (len(c.train), len(c.dev), len(c.test)) == (100, 2000, 2000)
    assert c.train.src[0].startswith("Phrase")


# --- real data -------------------------------------------------------------------------------
@pytest.mark.skipif(TATOEBA is None or not TATOEBA.is_file(),
                    reason="Tatoeba data not found (../shared/data/tatoeba-fra-eng/fra.txt)")
def test_real_tatoeba_split() -> None:
    en_fr = load_corpus("tatoeba-fra-eng", "en", "fr")
    assert (len(en_fr.dev), len(en_fr.test)) == (2000, 2000)
    assert len(en_fr.train) + 4000 == 138_648 and en_fr.train.skipped == 0
    assert not set(en_fr.train.src) & set(en_fr.test.src)
    assert not set(en_fr.train.src) & set(en_fr.dev.src)
    assert not set(en_fr.dev.src) & set(en_fr.test.src)
    fr_en = load_corpus("tatoeba-fra-eng", "fr", "en")
    assert fr_en.test.tgt == en_fr.test.src and fr_en.test.src == en_fr.test.tgt


@pytest.mark.skipif(MULTI30K is None or not (MULTI30K / "train.en.gz").is_file(),
                    reason="Multi30k data not found (../shared/data/multi30k)")
@pytest.mark.parametrize("src, tgt", [("en", "fr"), ("en", "de"), ("de", "fr")])
def test_real_multi30k_official_split(src: str, tgt: str) -> None:
    c = load_corpus("multi30k", src, tgt)
    assert (len(c.train), len(c.dev), len(c.test)) == (29_000, 1_014, 1_000)
    assert all(s and t for s, t in zip(c.test.src, c.test.tgt, strict=True))
    if src == "en":
        assert c.train.src[0].split()[0] == "Two"   # the well-known first caption
