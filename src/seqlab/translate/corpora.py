"""Named parallel corpora and user files, each as a fixed train/dev/test split.

    load_corpus("tatoeba-fra-eng", "en", "fr")   # DATA/tatoeba-fra-eng/fra.txt
    load_corpus("multi30k", "en", "de")          # DATA/multi30k/{train,val,test_2016_flickr}.xx.gz
    load_corpus("libreoffice-help")              # built-in, offline (see libreoffice.py)
    load_corpus("my_pairs.tsv")                  # source<TAB>target
    load_corpus("train.en,train.fr")             # two line-aligned files

Splits:
- tatoeba-fra-eng: no official split; a grouped split by the English sentence (no English
  sentence in two splits), dev and test 2,000 pairs each, seed 1234. The split is made on the
  English->French orientation and then turned around for fr->en, so both directions share it.
- multi30k: the official train (29,000), val (1,014) and test_2016_flickr (1,000).
- libreoffice-help: grouped by English paragraph, dev and test 1,000 pairs each (of ~34k;
  smaller held-out sets keep the README demo's periodic dev BLEU cheap), seed 1234.
- a user TSV or file pair: grouped by source sentence, dev and test min(2,000, 10% of the
  pairs) each.

The data directory is `data_dir` if given, else $SEQLAB_DATA_DIR, else ../shared/data relative
to the current directory, else ../shared/data next to the seqlab checkout. A missing named
dataset raises UserError saying where to get it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from seqlab.errors import UserError
from seqlab.translate.data import ParallelText, read_aligned, read_tsv, split_grouped
from seqlab.translate.libreoffice import prepare_libreoffice_help

DATA_ENV = "SEQLAB_DATA_DIR"
DEFAULT_SEED = 1234

_CORPORA = {
    "libreoffice-help": "English-French LibreOffice help paragraphs (~34k pairs, MPL-2.0), "
                        "built-in: fetched from Debian packages and cached on first use",
    "tatoeba-fra-eng": "Tatoeba English-French sentence pairs (138k, CC-BY 2.0 FR), "
                       "DATA/tatoeba-fra-eng/fra.txt",
    "multi30k": "Multi30k image captions en/fr/de (29k train), "
                "DATA/multi30k/{train,val,test_2016_flickr}.{en,fr,de}.gz",
}

_WHERE = {
    "tatoeba-fra-eng": "download fra-eng.zip from https://www.manythings.org/anki/ (Tatoeba, "
                       "CC-BY 2.0 FR) and put its fra.txt at {path}",
    "multi30k": "download the task-1 raw files {{train,val,test_2016_flickr}}.{{en,fr,de}}.gz "
                "from https://github.com/multi30k/dataset (data/task1/raw) into {path}",
}


@dataclass
class Corpus:
    """A parallel corpus split into train/dev/test, with its direction."""

    train: ParallelText
    dev: ParallelText
    test: ParallelText
    name: str
    src_lang: str
    tgt_lang: str
    description: str

    def summary(self) -> str:
        """One line: name, direction and split sizes (plus skipped bad lines, if any)."""
        skipped = self.train.skipped + self.dev.skipped + self.test.skipped
        extra = f", {skipped} bad lines skipped" if skipped else ""
        return (f"{self.name} {self.src_lang}->{self.tgt_lang}: train {len(self.train)}, "
                f"dev {len(self.dev)}, test {len(self.test)} pairs{extra}")


def list_corpora() -> dict[str, str]:
    """Built-in corpus names -> one-line descriptions (for --help texts)."""
    return dict(_CORPORA)


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The data directory: argument, $SEQLAB_DATA_DIR, ../shared/data from the current
    directory or from the repository; None if none of the defaults exists."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[3]
    for cand in (Path.cwd() / ".." / "shared" / "data", repo / ".." / "shared" / "data"):
        if cand.is_dir():
            return cand.resolve()
    return None


def _missing(name: str, path: Path | None) -> UserError:
    where = _WHERE[name].format(path=path if path is not None else f"<data dir>/{name}")
    hint = "" if path is not None else (f" (no data directory found: pass --data-dir or set "
                                         f"{DATA_ENV})")
    return UserError(f"dataset {name} not found{hint}; {where}")


def _check_langs(name: str, src: str, tgt: str, allowed: tuple[str, ...]) -> None:
    if src == tgt or src not in allowed or tgt not in allowed:
        raise UserError(f"{name}: cannot translate {src}->{tgt}; languages available: "
                        f"{', '.join(allowed)} (two different ones)")


def _grouped_en_fr(pt: ParallelText, name: str, src_lang: str, tgt_lang: str, size: int,
                   seed: int, description: str) -> Corpus:
    """Grouped split of an English<TAB>French text by its English side, then orient."""
    train, dev, test = split_grouped(pt, size, size, seed=seed, group_by="src")
    if src_lang == "fr":
        train, dev, test = train.swapped(), dev.swapped(), test.swapped()
    return Corpus(train, dev, test, name, src_lang, tgt_lang, description)


def load_corpus(name_or_path: str, src_lang: str = "en", tgt_lang: str = "fr",
                data_dir: str | os.PathLike[str] | None = None, seed: int = DEFAULT_SEED,
                skip_bad_lines: bool = False, cache_dir: str | os.PathLike[str] | None = None
                ) -> Corpus:
    """Load a named corpus or a user file as a `Corpus` (see the module docstring).

    `src_lang`/`tgt_lang` choose the direction of a named corpus; for user files they only
    label the columns (column 1 / the first file is the source). `skip_bad_lines` counts bad
    lines instead of failing; `cache_dir` is where libreoffice-help is cached.
    """
    if name_or_path == "libreoffice-help":
        _check_langs(name_or_path, src_lang, tgt_lang, ("en", "fr"))
        pt = read_tsv(prepare_libreoffice_help(cache_dir), skip_bad_lines=skip_bad_lines)
        return _grouped_en_fr(pt, name_or_path, src_lang, tgt_lang, 1000, seed,
                              _CORPORA[name_or_path])
    if name_or_path == "tatoeba-fra-eng":
        _check_langs(name_or_path, src_lang, tgt_lang, ("en", "fr"))
        root = resolve_data_dir(data_dir)
        path = root / name_or_path / "fra.txt" if root is not None else None
        if path is None or not path.is_file():
            raise _missing(name_or_path, path)
        pt = read_tsv(path, skip_bad_lines=skip_bad_lines)
        return _grouped_en_fr(pt, name_or_path, src_lang, tgt_lang, 2000, seed,
                              _CORPORA[name_or_path])
    if name_or_path == "multi30k":
        _check_langs(name_or_path, src_lang, tgt_lang, ("en", "fr", "de"))
        root = resolve_data_dir(data_dir)
        folder = root / name_or_path if root is not None else None
        if folder is None:
            raise _missing(name_or_path, folder)
        splits = []
        for split in ("train", "val", "test_2016_flickr"):
            files = [folder / f"{split}.{lang}.gz" for lang in (src_lang, tgt_lang)]
            if not all(f.is_file() for f in files):
                raise _missing(name_or_path, folder)
            splits.append(read_aligned(files[0], files[1], skip_bad_lines=skip_bad_lines))
        train, dev, test = splits
        return Corpus(train, dev, test, name=name_or_path, src_lang=src_lang, tgt_lang=tgt_lang,
                      description=_CORPORA[name_or_path])
    # A user file: "a.tsv" or "src_file,tgt_file".
    if "," in name_or_path and not Path(name_or_path).exists():
        src_file, tgt_file = (s.strip() for s in name_or_path.split(",", 1))
        pt = read_aligned(src_file, tgt_file, skip_bad_lines=skip_bad_lines)
    else:
        path = Path(name_or_path)
        if not path.is_file():
            names = ", ".join(_CORPORA)
            raise UserError(f"{name_or_path}: no such file and not a known corpus ({names}); "
                            "give a TSV file or two files as SRC_FILE,TGT_FILE")
        pt = read_tsv(path, skip_bad_lines=skip_bad_lines)
    if len(pt) < 3:
        raise UserError(f"{pt.source}: {len(pt)} sentence pairs, need at least 3 for "
                        "train/dev/test splits")
    size = max(1, min(2000, len(pt) // 10))
    train, dev, test = split_grouped(pt, size, size, seed=seed, group_by="src")
    return Corpus(train, dev, test, pt.source, src_lang, tgt_lang,
                  f"user corpus {pt.source}: grouped split by source sentence")
