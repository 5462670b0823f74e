"""Joey NMT 2.3.0 inputs for the peer benchmark: data files, vocabulary and the YAML config.

Everything Joey reads is generated here from what seqlab uses, so both systems see the same
sentence pairs and the same subword model:

- data: `{prefix}.{lang}` plain-text files, one sentence a line (Joey's `dataset_type: plain`);
- tokenizer: seqlab's trained sentencepiece model, passed as
  `tokenizer_type: sentencepiece, tokenizer_cfg: {model_file: ...}` (joeynmt/tokenizers.py);
- vocabulary: the sentencepiece pieces in id order, minus the four specials (Joey adds its own
  `<unk> <pad> <s> </s>` in front, joeynmt/vocabulary.py), so both vocabularies have the same
  pieces and size;
- config: JSON-like YAML written by `to_yaml` (no PyYAML needed on our side; floats are written
  so that YAML 1.1 does not read `1e-08` as a string).

Model: the same size as seqlab's default translator: embeddings 256, 1-layer bidirectional LSTM
encoder 256 per direction, LSTM decoder 256 with Bahdanau (additive) attention, input feeding,
bridge initialisation, dropout 0.2 on embeddings and on the attentional layer's input.
Training settings mirror seqlab's TrainConfig where Joey has a counterpart (Adam, peak lr,
warmup steps, minimum lr, token batches of about the same padded size, clip norm, label
smoothing, per-token loss, validation every `validation_freq` steps on the same 500 dev pairs).
The schedule is Joey's `warmupinversesquareroot` (linear warmup to the peak, then decay with
1/sqrt(step)): Joey's `plateau` scheduler, the one its recurrent example configs use, passes
`verbose=` to torch's ReduceLROnPlateau, which newer torch releases no longer accept (TypeError
at start-up on the pinned torch).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# str.splitlines() (which Joey uses to read data files) also breaks lines at these characters;
# one inside a sentence would shift every later line, so they become spaces in Joey's files.
_LINE_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\r\n"
_TO_SPACE = str.maketrans({c: " " for c in _LINE_BREAKS})


@dataclass
class JoeySettings:
    """What Joey is told; defaults mirror seqlab's TranslatorConfig / TrainConfig."""

    emb_dim: int = 256
    enc_hidden: int = 256
    dec_hidden: int = 256
    dropout: float = 0.2
    lr: float = 2e-3                  # peak learning rate (seqlab's TrainConfig.lr)
    lr_warmup: int = 200              # linear warmup steps (seqlab's TrainConfig.warmup_steps)
    lr_min: float = 1e-5              # floor of the decay (seqlab's TrainConfig.min_lr)
    batch_tokens: int = 4096          # Joey's token batch: n x max(src+1, tgt+1) >= this
    clip_norm: float = 1.0
    label_smoothing: float = 0.1
    validation_freq: int = 250        # steps; greedy BLEU on the small dev file
    logging_freq: int = 10            # steps; each log line has "Tokens per Sec"
    seed: int = 1234
    beam_alpha: float = 1.0           # length penalty for beam search at test time


def clean_line(text: str) -> str:
    """One sentence as a single line Joey reads back unchanged (line-break characters -> space)."""
    return text.translate(_TO_SPACE)


def write_lines(path: Path, lines: Sequence[str]) -> int:
    """Write one sentence a line; returns how many lines had to be cleaned."""
    cleaned = [clean_line(s) for s in lines]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(s + "\n" for s in cleaned), encoding="utf-8")
    return sum(a != b for a, b in zip(lines, cleaned, strict=True))


def write_parallel(prefix: Path, src_lang: str, tgt_lang: str, src: Sequence[str],
                   tgt: Sequence[str]) -> int:
    """Write `{prefix}.{src_lang}` and `{prefix}.{tgt_lang}`; returns the cleaned-line count."""
    if len(src) != len(tgt):
        raise ValueError(f"write_parallel: {len(src)} source but {len(tgt)} target sentences")
    return (write_lines(Path(f"{prefix}.{src_lang}"), src)
            + write_lines(Path(f"{prefix}.{tgt_lang}"), tgt))


def write_vocab(pieces: Sequence[str], special_ids: Sequence[int], path: Path) -> int:
    """Joey vocabulary file: the sentencepiece pieces in id order without the specials.

    pieces: all pieces of the sentencepiece model, index = id. Returns the vocabulary size Joey
    will have (its 4 specials + these pieces).
    """
    specials = set(special_ids)
    body = [p for i, p in enumerate(pieces) if i not in specials]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(p + "\n" for p in body), encoding="utf-8")
    return len(body) + 4


def joey_config(*, name: str, model_dir: Path, train_prefix: Path | None, dev_prefix: Path,
                test_prefix: Path | None, src_lang: str, tgt_lang: str, spm_model: Path,
                vocab_file: Path, settings: JoeySettings) -> dict[str, Any]:
    """The Joey NMT 2.3.0 configuration (a dict; see `write_config`).

    Keys follow joeynmt/config.py (training/testing), data.py + tokenizers.py (data),
    model.py + encoders.py + decoders.py (model).
    """
    s = settings

    def side(lang: str) -> dict[str, Any]:
        return {"lang": lang, "level": "bpe", "lowercase": False, "normalize": False,
                "max_length": -1, "min_length": -1, "voc_file": str(vocab_file),
                "tokenizer_type": "sentencepiece",
                "tokenizer_cfg": {"model_file": str(spm_model)}}

    data: dict[str, Any] = {"dev": str(dev_prefix), "dataset_type": "plain",
                            "src": side(src_lang), "trg": side(tgt_lang)}
    if train_prefix is not None:
        data["train"] = str(train_prefix)
    if test_prefix is not None:
        data["test"] = str(test_prefix)
    return {
        "name": name,
        "joeynmt_version": "2.3.0",
        "model_dir": str(model_dir),
        "use_cuda": False,
        "random_seed": s.seed,
        "data": data,
        "training": {
            "optimizer": "adam", "adam_betas": [0.9, 0.999], "learning_rate": s.lr,
            "scheduling": "warmupinversesquareroot", "learning_rate_warmup": s.lr_warmup,
            "learning_rate_min": s.lr_min,
            "batch_type": "token", "batch_size": s.batch_tokens, "batch_multiplier": 1,
            "normalization": "tokens", "loss": "crossentropy",
            "label_smoothing": s.label_smoothing, "clip_grad_norm": s.clip_norm,
            "epochs": 100000,                                      # stopped by wall clock
            "validation_freq": s.validation_freq, "logging_freq": s.logging_freq,
            "early_stopping_metric": "bleu", "keep_best_ckpts": 2,
            "shuffle": True, "overwrite": True, "use_cuda": False, "num_workers": 0,
            "print_valid_sents": [0],
        },
        "testing": {
            "batch_size": 64, "batch_type": "sentence", "beam_size": 1,
            "beam_alpha": s.beam_alpha, "eval_metrics": ["bleu"], "max_output_length": -1,
            "sacrebleu_cfg": {"tokenize": "13a"},
        },
        "model": {   # initialisation as in Joey's RNN tutorial config, forget-gate bias 1
            "initializer": "xavier_uniform", "bias_initializer": "zeros",
            "embed_initializer": "normal", "embed_init_weight": 0.1,
            "init_rnn_orthogonal": False, "lstm_forget_gate": 1.0,
            "tied_embeddings": False, "tied_softmax": False,
            "encoder": {
                "type": "recurrent", "rnn_type": "lstm", "hidden_size": s.enc_hidden,
                "num_layers": 1, "bidirectional": True, "dropout": s.dropout,
                "embeddings": {"embedding_dim": s.emb_dim, "scale": False},
            },
            "decoder": {
                "type": "recurrent", "rnn_type": "lstm", "hidden_size": s.dec_hidden,
                "num_layers": 1, "attention": "bahdanau", "input_feeding": True,
                "init_hidden": "bridge", "dropout": s.dropout, "hidden_dropout": s.dropout,
                "embeddings": {"embedding_dim": s.emb_dim, "scale": False},
            },
        },
    }


def yaml_float(x: float) -> str:
    """A float PyYAML (YAML 1.1) reads back as a float: it needs a '.' and a signed exponent,
    so JSON's `1e-08` (a *string* to PyYAML) is written `1.0e-08`."""
    text = repr(float(x))
    if text in ("inf", "-inf", "nan"):
        return {"inf": ".inf", "-inf": "-.inf", "nan": ".nan"}[text]
    mant, _, exp = text.partition("e")
    if "." not in mant:
        mant += ".0"
    if exp and exp[0] not in "+-":
        exp = "+" + exp
    return mant + ("e" + exp if exp else "")


def to_yaml(value: Any, indent: int = 0) -> str:
    """YAML in JSON-like flow style (strings quoted as JSON), floats safe for YAML 1.1."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return yaml_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(str(k))}: {to_yaml(v, indent + 2)}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(to_yaml(v, indent + 2) for v in value) + "]"
    raise TypeError(f"to_yaml: cannot write {type(value).__name__}")


def write_config(cfg: dict[str, Any], path: Path) -> Path:
    """Write the config for Joey's `yaml.safe_load` (JSON-like YAML, see `to_yaml`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(cfg) + "\n", encoding="utf-8")
    return path


def settings_dict(settings: Any) -> dict[str, Any]:
    """A settings dataclass (Joey's or OpenNMT-py's) as a JSON-ready dict."""
    return asdict(settings)
