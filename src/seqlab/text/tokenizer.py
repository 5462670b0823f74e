"""Subword tokenisation with sentencepiece, saved with the run.

`SubwordTokenizer` wraps one SentencePiece model. Its special ids are fixed so the model code can
rely on them: PAD=0, UNK=1, BOS=2, EOS=3. Models are trained with byte fallback, so characters
never seen in training are spelled as UTF-8 byte pieces (<0xE2>...) and nothing is unknown.
Text is normalised with sentencepiece's `nmt_nfkc` rule (NFKC plus whitespace clean-up), so
`decode(encode(x))` returns the normalised form of `x`.

`TokenizerPair` holds the source and target tokenizers of a translator: by default one shared
model trained on both sides (the same object twice), or one per side. On disk, in a run
directory:

    tokenizer/shared.model                 (shared) or tokenizer/src.model + tokenizer/tgt.model
    tokenizer/tokenizer.json               {"shared": ..., "files": {...}, "sha256": {...},
                                            "vocab_size": {...}, ...}

The sha256 of each model file is recorded so a model's config can store `pair.fingerprint()` and
detect a tokenizer that does not match it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm

from seqlab.errors import UserError
from seqlab.io import atomic_path, write_json_atomic

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
TOKENIZER_DIR = "tokenizer"
META_FILE = "tokenizer.json"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _model_path(model_dir_or_prefix: str | os.PathLike[str]) -> Path:
    """`dir/` or an existing directory -> dir/spm.model; `prefix` -> prefix.model."""
    p = Path(model_dir_or_prefix)
    if str(model_dir_or_prefix).endswith(("/", os.sep)) or p.is_dir():
        return p / "spm.model"
    return p if p.suffix == ".model" else p.with_name(p.name + ".model")


class SubwordTokenizer:
    """One SentencePiece model: text <-> lists of subword ids."""

    pad_id = PAD_ID
    unk_id = UNK_ID
    bos_id = BOS_ID
    eos_id = EOS_ID

    def __init__(self, model_proto: bytes, source: str = "<memory>") -> None:
        """Wrap a serialised SentencePiece model (the bytes of a .model file)."""
        self.model_proto = model_proto
        self.source = source
        try:
            self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        except (RuntimeError, OSError, TypeError) as err:
            raise UserError(f"{source}: not a valid sentencepiece model ({err})") from None
        ids = (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id())
        if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise UserError(f"{source}: sentencepiece model has special ids pad/unk/bos/eos="
                            f"{ids}, expected {(PAD_ID, UNK_ID, BOS_ID, EOS_ID)}")

    # --- construction -------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Iterable[str], model_dir_or_prefix: str | os.PathLike[str] | None,
              vocab_size: int = 8000, model_type: str = "unigram",
              input_sentence_size: int = 1_000_000, character_coverage: float = 1.0,
              seed: int = 1234, num_threads: int = 2) -> SubwordTokenizer:
        """Train a model on `texts` (one sentence each) and save it atomically.

        `model_dir_or_prefix`: a directory (existing, or ending in "/") -> DIR/spm.model; a
        prefix -> PREFIX.model; None -> not saved. `vocab_size` counts everything, including the
        4 special and 256 byte-fallback pieces, so it must be well above 260; when the text
        cannot fill it, the vocabulary is smaller (hard_vocab_limit off). `model_type`:
        "unigram" or "bpe". At most `input_sentence_size` sentences (a seeded sample) are used,
        for speed. Same texts + arguments -> the same model.
        """
        if model_type not in ("unigram", "bpe"):
            raise ValueError(f"SubwordTokenizer.train: model_type must be 'unigram' or 'bpe', "
                             f"got {model_type!r}")
        if vocab_size < 300:
            raise ValueError(f"SubwordTokenizer.train: vocab_size={vocab_size} is too small: "
                             "byte fallback alone needs 256+4 pieces; use >= 300")
        sentences = [t for t in texts if t.strip()]
        if not sentences:
            raise ValueError("SubwordTokenizer.train: no non-empty training sentences")
        spm.set_random_generator_seed(seed)
        buf = _BytesSink()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=buf,
            vocab_size=vocab_size, model_type=model_type, byte_fallback=True,
            character_coverage=character_coverage, normalization_rule_name="nmt_nfkc",
            pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
            pad_piece="<pad>", unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
            input_sentence_size=input_sentence_size, shuffle_input_sentence=True,
            hard_vocab_limit=False, num_threads=num_threads, minloglevel=2,
            max_sentence_length=1 << 16, train_extremely_large_corpus=False,
        )
        tok = cls(buf.data)
        if model_dir_or_prefix is not None:
            path = _model_path(model_dir_or_prefix)
            tok.save(path)
            tok.source = str(path)
        return tok

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SubwordTokenizer:
        """Load a .model file; a missing or corrupt file raises a one-line UserError."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise UserError(f"{path}: tokenizer model not found") from None
        except OSError as err:
            raise UserError(f"{path}: cannot read tokenizer model ({err.strerror})") from None
        return cls(data, source=str(path))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model file atomically; returns its path."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_bytes(self.model_proto)
        return path

    # --- use ------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @property
    def sha256(self) -> str:
        return _sha256(self.model_proto)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Texts -> subword ids (no BOS/EOS; `batching.collate` adds them)."""
        if isinstance(texts, str):
            raise ValueError("encode: expected a list of strings, got one str")
        return self.sp.encode(list(texts), out_type=int)

    def encode_pieces(self, texts: Sequence[str]) -> list[list[str]]:
        """Texts -> subword pieces (strings like "▁chat", "<0xE2>"), e.g. for plot axes."""
        if isinstance(texts, str):
            raise ValueError("encode_pieces: expected a list of strings, got one str")
        return self.sp.encode(list(texts), out_type=str)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Id lists -> detokenised texts. Each list is cut at its first EOS; PAD and BOS ids
        are dropped (so raw beam-search rows can be passed)."""
        clean = []
        for row in ids:
            row = [int(i) for i in row]
            if EOS_ID in row:
                row = row[: row.index(EOS_ID)]
            clean.append([i for i in row if i not in (PAD_ID, BOS_ID)])
        return self.sp.decode(clean)

    def id_to_piece(self, i: int) -> str:
        return self.sp.id_to_piece(int(i))

    def ids_to_pieces(self, ids: Sequence[int]) -> list[str]:
        return [self.sp.id_to_piece(int(i)) for i in ids]

    def __repr__(self) -> str:
        return f"SubwordTokenizer({self.source!r}, vocab_size={self.vocab_size})"


class _BytesSink:
    """A file-like `model_writer` for SentencePieceTrainer: keeps the model bytes in memory."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


class TokenizerPair:
    """Source and target tokenizers; `shared` means one model (the same object) for both."""

    def __init__(self, src: SubwordTokenizer, tgt: SubwordTokenizer, shared: bool | None = None):
        self.src = src
        self.tgt = tgt
        self.shared = (src.model_proto == tgt.model_proto) if shared is None else shared

    @classmethod
    def train_pair(cls, src_texts: Sequence[str], tgt_texts: Sequence[str],
                   out_dir: str | os.PathLike[str] | None, vocab_size: int = 8000,
                   shared: bool = True, **train_kwargs: Any) -> TokenizerPair:
        """Train the tokenizers on the training split and, unless `out_dir` is None, save them
        into the run directory `out_dir` (as `out_dir/tokenizer/...`, see `save`).

        shared=True (default): one model of `vocab_size` trained on source + target sentences.
        shared=False: one model of `vocab_size` per side. `train_kwargs` go to
        `SubwordTokenizer.train` (model_type, input_sentence_size, seed, ...).
        """
        if shared:
            tok = SubwordTokenizer.train(list(src_texts) + list(tgt_texts), None, vocab_size,
                                         **train_kwargs)
            pair = cls(tok, tok, shared=True)
        else:
            pair = cls(SubwordTokenizer.train(src_texts, None, vocab_size, **train_kwargs),
                       SubwordTokenizer.train(tgt_texts, None, vocab_size, **train_kwargs),
                       shared=False)
        if out_dir is not None:
            pair.save(out_dir)
        return pair

    def _files(self) -> dict[str, SubwordTokenizer]:
        return {"shared.model": self.src} if self.shared else {"src.model": self.src,
                                                                "tgt.model": self.tgt}

    def fingerprint(self) -> dict[str, Any]:
        """What a model config should record to detect a mismatched tokenizer later."""
        return {"shared": self.shared, "src_sha256": self.src.sha256,
                "tgt_sha256": self.tgt.sha256, "src_vocab_size": self.src.vocab_size,
                "tgt_vocab_size": self.tgt.vocab_size}

    def check_fingerprint(self, expected: dict[str, Any], where: str = "model config") -> None:
        """UserError (one line) when these tokenizers are not the ones `expected` describes."""
        mine = self.fingerprint()
        diff = [k for k in mine if k in expected and expected[k] != mine[k]]
        if diff:
            raise UserError(f"tokenizer does not match the {where}: {', '.join(diff)} differ "
                            f"(tokenizer {self.src.source})")

    def save(self, run_dir: str | os.PathLike[str]) -> Path:
        """Write run_dir/tokenizer/{shared.model | src.model, tgt.model} and tokenizer.json,
        each atomically (models first, so the metadata never points at a missing file)."""
        tdir = Path(run_dir) / TOKENIZER_DIR
        files = self._files()
        for name, tok in files.items():
            tok.save(tdir / name)
        meta = {
            "format": "seqlab-sentencepiece-pair/1",
            "shared": self.shared,
            "files": {"src": "shared.model" if self.shared else "src.model",
                      "tgt": "shared.model" if self.shared else "tgt.model"},
            "sha256": {name: tok.sha256 for name, tok in files.items()},
            "vocab_size": {"src": self.src.vocab_size, "tgt": self.tgt.vocab_size},
            "special_ids": {"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID},
        }
        write_json_atomic(tdir / META_FILE, meta)
        return tdir

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str]) -> TokenizerPair:
        """Load what `save` wrote; missing/corrupt files or a sha256 mismatch -> UserError."""
        tdir = Path(run_dir) / TOKENIZER_DIR
        meta_path = tdir / META_FILE
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            files, sums, shared = meta["files"], meta["sha256"], bool(meta["shared"])
            src_name, tgt_name = files["src"], files["tgt"]
        except FileNotFoundError:
            raise UserError(f"{meta_path}: not found (no tokenizer in {run_dir})") from None
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UserError(f"{meta_path}: corrupt tokenizer metadata ({err!r})") from None
        loaded: dict[str, SubwordTokenizer] = {}
        for name in dict.fromkeys((src_name, tgt_name)):
            tok = SubwordTokenizer.load(tdir / name)
            if name in sums and tok.sha256 != sums[name]:
                raise UserError(f"{tdir / name}: sha256 differs from {meta_path}; the tokenizer "
                                "file was changed or corrupted")
            loaded[name] = tok
        return cls(loaded[src_name], loaded[tgt_name], shared=shared)

    @classmethod
    def load_checked(cls, run_dir: str | os.PathLike[str], expected: dict[str, Any],
                     where: str) -> TokenizerPair:
        """`load` the run's tokenizers and `check_fingerprint` them against `expected` (the
        run config's "tokenizer" record; `where` names that config in the error)."""
        tok = cls.load(run_dir)
        tok.check_fingerprint(expected, where=where)
        return tok

    def __repr__(self) -> str:
        return f"TokenizerPair(shared={self.shared}, src={self.src!r}, tgt={self.tgt!r})"


def vocabulary_note(asked: int, got: int) -> str:
    """'352 subwords (asked for 8000: the training text holds no more)', or '8000 subwords'."""
    if got == asked:
        return f"{got} subwords"
    return f"{got} subwords (asked for {asked}: the training text holds no more)"
