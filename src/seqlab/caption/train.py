"""Training the captioner, with exact resume (the run directory: `seqlab.caption.run`).

A thin adapter over `seqlab.training`: the generic loop (`train_loop`: schedule
`WarmupPlateau`, clipping, stop rules, checkpoints, exact resume) with the captioner's pieces:
a batch is a list of training rows (an image and one of its captions), bucketed by caption
length with the shared `seqlab.text.batching.make_batches` (seeded by (seed, epoch)); the dev
metric is BLEU of greedy captions. Throughput is counted in images ("images_per_s").

Tokenizer: the shared `SubwordTokenizer` (sentencepiece unigram with byte fallback) trained on
the training captions with a small vocabulary (default 1000 pieces, 740 of them learnt; the
emoji names have ~1,800 distinct words), so no caption word is ever unknown and frequent words
("skin", "tone", "flag:", "face") are single pieces. The attention pictures merge a word's
pieces back into one word.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from seqlab.caption.api import caption_tensor
from seqlab.caption.data import CaptionDataConfig, CaptionSplits, load_splits
from seqlab.caption.encoder import images_to_tensor
from seqlab.caption.model import CaptionerConfig, CaptionModel
from seqlab.caption.run import FORMAT, read_run_config
from seqlab.device import model_device, to_device
from seqlab.text.batching import make_batches
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

__all__ = ["TrainConfig", "default_train_config", "pad_captions", "train_captioner"]


def default_train_config(**kw: Any) -> TrainConfig:
    """The translator's TrainConfig with captioning defaults: batches of 64 images."""
    base = dict(batch_tokens=None, batch_size=64, lr=3e-3, warmup_steps=100, eval_every=150,
                eval_sentences=400, eval_batch_size=128, patience=10, log_every=25)
    return TrainConfig(**{**base, **kw})


def pad_captions(ids: list[list[int]], pad_id: int, bos_id: int, eos_id: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Caption id lists -> tgt_in [BOS]+y and tgt_out y+[EOS], both (B, T), right-padded."""
    T = max(len(r) for r in ids) + 1
    tgt_in = torch.full((len(ids), T), pad_id, dtype=torch.long)
    tgt_out = torch.full((len(ids), T), pad_id, dtype=torch.long)
    for b, r in enumerate(ids):
        tgt_in[b, 0] = bos_id
        tgt_in[b, 1:len(r) + 1] = torch.tensor(r, dtype=torch.long)
        tgt_out[b, :len(r)] = torch.tensor(r, dtype=torch.long)
        tgt_out[b, len(r)] = eos_id
    return tgt_in, tgt_out


def train_captioner(out_dir: str | Path,
                    model_cfg: CaptionerConfig | dict[str, Any] | None = None,
                    train_cfg: TrainConfig | None = None,
                    data_cfg: CaptionDataConfig | None = None, *, resume: bool = False,
                    overrides: dict[str, Any] | None = None, progress: bool = True,
                    splits: CaptionSplits | None = None,
                    echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (or, with resume=True, continue) a captioner in `out_dir`.

    model_cfg: the model (a CaptionerConfig or a dict of its fields; vocab_size and the special
    ids come from the tokenizer, image_size from `data_cfg`).
    overrides (resume only): training fields to change when continuing (max_steps,
    time_budget_min, ...). splits: already loaded data (skips reading `data_cfg.data`).
    Returns a summary: steps, epochs, best dev BLEU, images/s, why it stopped.
    """
    out = Path(out_dir)
    if resume:
        cfg = read_run_config(out)
        data_cfg = CaptionDataConfig(**cfg["data"])
        train_cfg = TrainConfig.from_dict({**cfg["train"], **(overrides or {})})
        mcfg = CaptionerConfig.from_dict(cfg["model"])
        tok = TokenizerPair.load_checked(out, cfg["tokenizer"], str(out / CONFIG_FILE))
    else:
        data_cfg = data_cfg or CaptionDataConfig()
        train_cfg = train_cfg or default_train_config()
        # checked (in __post_init__) before any data is read or tokenizer trained
        if isinstance(model_cfg, dict):
            model_cfg = CaptionerConfig.from_dict({"image_size": data_cfg.image_size,
                                                   **model_cfg})
        mcfg = replace(model_cfg or CaptionerConfig(), image_size=data_cfg.image_size)
    check_run_dir(out, resume)
    # under torchrun: one of several processes (seqlab.training.distributed)
    with (distributed.session(train_cfg.device) as dist, torch_threads(train_cfg.threads),
          new_run_cleanup(out, resume)):
        echo = dist.echo(echo)
        seed_everything(train_cfg.seed)
        if splits is None:
            splits = load_splits(data_cfg)
        train_idx, train_caps = splits.train.pairs()
        if not resume:
            tok = dist.made_by_main(
                lambda: TokenizerPair.train_pair(train_caps, [], out,
                                                 vocab_size=data_cfg.vocab_size, shared=True),
                lambda: TokenizerPair.load(out))
            echo(f"tokenizer: {vocabulary_note(data_cfg.vocab_size, tok.tgt.vocab_size)}, "
                 f"trained on {len(train_caps)} captions")
            mcfg = replace(mcfg, vocab_size=tok.tgt.vocab_size, pad_id=tok.tgt.pad_id,
                           bos_id=tok.tgt.bos_id, eos_id=tok.tgt.eos_id)
        cap_ids = tok.tgt.encode(train_caps)
        images = images_to_tensor(splits.train.load_pixels())            # (N, 3, S, S)
        n_dev = min(train_cfg.eval_sentences, len(splits.dev))
        dev = splits.dev.subset(range(n_dev))
        dev_images = images_to_tensor(dev.load_pixels()) if n_dev else None
        dev_refs = dev.first_captions()

        torch.manual_seed(train_cfg.seed)
        model = CaptionModel(mcfg)
        run_config = None
        if not resume:
            run_config = {"format": FORMAT, "model": mcfg.to_dict(), "train": asdict(train_cfg),
                          "data": asdict(data_cfg), "tokenizer": tok.fingerprint(),
                          "splits": splits.info(), "num_parameters": model.num_parameters()}
            echo(f"{model.num_parameters():,} parameters; {len(splits.train)} training images, "
                 f"{len(train_caps)} captions; {mcfg.grid}x{mcfg.grid} regions")

        src_lens = [1] * len(cap_ids)                 # one image each: bucket by caption length
        tgt_lens = [len(c) for c in cap_ids]

        def batches(epoch: int) -> list[list[int]]:
            return make_batches(src_lens, tgt_lens, max_tokens=train_cfg.batch_tokens,
                                batch_size=train_cfg.batch_size, seed=train_cfg.seed,
                                epoch=epoch)

        def loss(m: CaptionModel, rows: list[int]) -> tuple[torch.Tensor, int]:
            imgs = images[torch.tensor([train_idx[i] for i in rows])]     # (B, 3, S, S)
            tgt_in, tgt_out = pad_captions([cap_ids[i] for i in rows], mcfg.pad_id,
                                           mcfg.bos_id, mcfg.eos_id)
            return m.loss(*to_device((imgs, tgt_in, tgt_out), model_device(m)))

        def evaluate(m: CaptionModel) -> float | None:
            if dev_images is None:       # no dev images: keep the latest weights
                return None
            hyps = [c.text for c in caption_tensor(m, tok.tgt, dev_images, num_beams=1,
                                                   batch_size=train_cfg.eval_batch_size)]
            return float(score_corpus(hyps, dev_refs, "en")["bleu"])

        def split(rows: list[int], world_size: int) -> list[list[int]]:
            # the image encoder's work is the same for every image: equal row counts
            return distributed.shard_rows(rows, [1] * len(rows), world_size)

        return train_loop(out, model, train_cfg, fmt=FORMAT, batches=batches, loss=loss,
                          evaluate=evaluate, resume=resume, run_config=run_config, count=len,
                          unit="images", progress=progress, echo=echo, split=split, dist=dist)
