"""Training the translator: data, tokenizer, model and dev BLEU on top of seqlab.training.

The run directory and its config.json are described in `seqlab.translate.run`.

The loop, the schedule (`WarmupPlateau`: warmup, then halving on a dev-BLEU plateau), the stop
rules and exact resume live in `seqlab.training.loop`; this module supplies the batches
(length-bucketed, seeded by (seed, epoch)), the loss of a (source, target) batch and dev BLEU:
greedy decoding of the first `eval_sentences` dev pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from seqlab.device import model_device
from seqlab.errors import UserError
from seqlab.text.batching import collate, make_batches
from seqlab.text.metrics import score_corpus
from seqlab.text.tokenizer import TokenizerPair, vocabulary_note
from seqlab.training import distributed
from seqlab.training.checkpoint import (
    CONFIG_FILE,
    check_run_dir,
    new_run_cleanup,
    seed_everything,
)
from seqlab.training.loop import TrainConfig, torch_threads, train_loop
from seqlab.translate.api import translate_texts
from seqlab.translate.corpora import load_corpus
from seqlab.translate.model import Seq2SeqConfig
from seqlab.translate.run import FORMAT, read_run_config
from seqlab.translate.transformer import TransformerConfig, build_model, model_config_from_dict
from seqlab.validate import MIN_VOCAB_SIZE, check_fields

ModelConfig = Seq2SeqConfig | TransformerConfig

__all__ = ["DataConfig", "EncodedData", "TrainConfig", "load_run_corpus", "train_translator"]


@dataclass
class DataConfig:
    corpus: str = "libreoffice-help"   # tatoeba-fra-eng, multi30k, libreoffice-help, or a path
    src_lang: str = "en"
    tgt_lang: str = "fr"
    data_dir: str | None = None
    split_seed: int = 1234
    vocab_size: int = 8000
    shared_vocab: bool = True
    max_len: int = 100                 # drop training pairs with a side longer (subwords)
    src_eos: bool = True               # append EOS to sources (a "nothing here" position to attend)
    skip_bad_lines: bool = False       # count and skip malformed input lines instead of failing

    def __post_init__(self) -> None:
        check_fields(self, {"vocab_size": (int, MIN_VOCAB_SIZE), "max_len": (int, 1),
                            "split_seed": (int, 0)})


# ---- data -------------------------------------------------------------------------------


@dataclass
class EncodedData:
    src_ids: list[list[int]]
    tgt_ids: list[list[int]]
    dev_src: list[str]
    dev_ref: list[str]
    n_filtered: int
    corpus_info: dict[str, Any]


def _encode_data(data_cfg: DataConfig, tok: TokenizerPair, corpus: Any,
                 eval_sentences: int) -> EncodedData:
    src_ids = tok.src.encode(corpus.train.src)
    tgt_ids = tok.tgt.encode(corpus.train.tgt)
    keep = [i for i in range(len(src_ids))
            if 0 < len(src_ids[i]) <= data_cfg.max_len and 0 < len(tgt_ids[i]) <= data_cfg.max_len]
    info = {"name": corpus.name, "description": getattr(corpus, "description", ""),
            "train_pairs": len(corpus.train), "dev_pairs": len(corpus.dev),
            "test_pairs": len(corpus.test), "train_pairs_used": len(keep),
            "filtered_by_length": len(src_ids) - len(keep)}
    n_dev = min(eval_sentences, len(corpus.dev))
    return EncodedData([src_ids[i] for i in keep], [tgt_ids[i] for i in keep],
                       list(corpus.dev.src[:n_dev]), list(corpus.dev.tgt[:n_dev]),
                       len(src_ids) - len(keep), info)


def load_run_corpus(data_cfg: DataConfig) -> Any:
    return load_corpus(data_cfg.corpus, data_cfg.src_lang, data_cfg.tgt_lang,
                       data_dir=data_cfg.data_dir, seed=data_cfg.split_seed,
                       skip_bad_lines=data_cfg.skip_bad_lines)


# ---- training ---------------------------------------------------------------------------


def train_translator(out_dir: str | Path,
                     model_cfg: ModelConfig | dict[str, Any] | None = None,
                     train_cfg: TrainConfig | None = None, data_cfg: DataConfig | None = None,
                     *, resume: bool = False, overrides: dict[str, Any] | None = None,
                     progress: bool = True, corpus: Any = None,
                     echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (or, with resume=True, continue) a translator in `out_dir`.

    model_cfg: the model (a Seq2SeqConfig, a TransformerConfig, or a dict of either's fields
    with "arch"; the vocabulary sizes and special ids are set from the tokenizer, and a
    Transformer shares its source and target embeddings only with a shared tokenizer).
    overrides (resume only): training fields to change when continuing (max_steps,
    time_budget_min, ...). corpus: an already loaded Corpus (skips `load_corpus`).
    Returns a summary: steps, epochs, best dev BLEU, tokens/s, why it stopped.
    """
    out = Path(out_dir)
    tok: TokenizerPair | None = None
    if resume:
        cfg = read_run_config(out)
        data_cfg = DataConfig(**{k: v for k, v in cfg["data"].items()
                                 if k in {f.name for f in fields(DataConfig)}})
        train_cfg = TrainConfig.from_dict({**cfg["train"], **(overrides or {})})
        mcfg = model_config_from_dict(cfg["model"])
        tok = TokenizerPair.load_checked(out, cfg["tokenizer"], str(out / CONFIG_FILE))
    else:
        data_cfg = data_cfg or DataConfig()
        train_cfg = train_cfg or TrainConfig()
        # checked (in __post_init__) before any data is read or tokenizer trained
        mcfg = (model_config_from_dict(model_cfg) if isinstance(model_cfg, dict)
                else model_cfg or Seq2SeqConfig())
    check_run_dir(out, resume)
    # under torchrun: one of several processes (seqlab.training.distributed)
    with (distributed.session(train_cfg.device) as dist, torch_threads(train_cfg.threads),
          new_run_cleanup(out, resume)):
        return _train(out, resume, mcfg, train_cfg, data_cfg, tok, corpus, progress,
                      dist.echo(echo), dist)


def _train(out: Path, resume: bool, mcfg: ModelConfig, train_cfg: TrainConfig,
           data_cfg: DataConfig, tok: TokenizerPair | None, corpus: Any, progress: bool,
           echo: Callable[[str], None], dist: distributed.DistContext) -> dict[str, Any]:
    seed_everything(train_cfg.seed)
    if corpus is None:
        corpus = load_run_corpus(data_cfg)
    if not resume:
        tok = dist.made_by_main(
            lambda: TokenizerPair.train_pair(corpus.train.src, corpus.train.tgt, out,
                                             vocab_size=data_cfg.vocab_size,
                                             shared=data_cfg.shared_vocab),
            lambda: TokenizerPair.load(out))
        echo(f"tokenizer: {vocabulary_note(data_cfg.vocab_size, tok.tgt.vocab_size)}, "
             f"trained on {len(corpus.train)} pairs")
        mcfg = replace(mcfg, src_vocab_size=tok.src.vocab_size,
                       tgt_vocab_size=tok.tgt.vocab_size, pad_id=tok.src.pad_id,
                       bos_id=tok.tgt.bos_id, eos_id=tok.tgt.eos_id)
        if isinstance(mcfg, TransformerConfig) and not tok.shared:
            mcfg = replace(mcfg, share_embeddings=False)
    assert tok is not None
    data = _encode_data(data_cfg, tok, corpus, train_cfg.eval_sentences)
    if not data.src_ids:
        raise UserError(f"{data_cfg.corpus}: no training pairs left after the length filter "
                        f"(max_len={data_cfg.max_len})")
    src_lens = [len(s) + int(data_cfg.src_eos) for s in data.src_ids]
    tgt_lens = [len(t) for t in data.tgt_ids]
    row_cost = [max(s, t + 1) for s, t in zip(src_lens, tgt_lens, strict=True)]  # padded tokens

    torch.manual_seed(train_cfg.seed)
    model = build_model(mcfg)
    run_config = None
    if not resume:
        run_config = {"format": FORMAT, "model": mcfg.to_dict(), "train": asdict(train_cfg),
                      "data": asdict(data_cfg), "tokenizer": tok.fingerprint(),
                      "corpus": data.corpus_info, "num_parameters": model.num_parameters()}
        echo(f"{model.num_parameters():,} parameters; {len(data.src_ids)} training pairs "
             f"({data.n_filtered} longer than {data_cfg.max_len} subwords dropped)")

    def batches(epoch: int) -> list[list[int]]:
        return make_batches(src_lens, tgt_lens, max_tokens=train_cfg.batch_tokens,
                            batch_size=train_cfg.batch_size, seed=train_cfg.seed, epoch=epoch)

    def loss(m: Any, rows: list[int]) -> tuple[torch.Tensor, int]:
        b = collate(data.src_ids, data.tgt_ids, rows, pad_id=mcfg.pad_id, bos_id=mcfg.bos_id,
                    eos_id=mcfg.eos_id, src_eos=data_cfg.src_eos).to(model_device(m))
        return m.loss(b.src, b.src_lengths, b.src_mask, b.tgt_in, b.tgt_out)

    def evaluate(m: Any) -> float:
        hyps = translate_texts(m, tok, data.dev_src, num_beams=1,
                               batch_size=train_cfg.eval_batch_size, src_eos=data_cfg.src_eos)
        return float(score_corpus(hyps, data.dev_ref, data_cfg.tgt_lang)["bleu"])

    def split(rows: list[int], world_size: int) -> list[list[int]]:
        return distributed.shard_rows(rows, [row_cost[i] for i in rows], world_size)

    return train_loop(out, model, train_cfg, fmt=FORMAT, batches=batches, loss=loss,
                      evaluate=evaluate, resume=resume, run_config=run_config, unit="tokens",
                      progress=progress, echo=echo, split=split, dist=dist)
