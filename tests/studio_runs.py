"""Tiny real runs for the studio tests (a translator, a series autoencoder, a captioner), each
trained for a few steps through the public APIs, and the files the tests upload."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from test_caption_e2e import TINY as CAPTION_TINY
from test_caption_e2e import _make_set
from test_translate_train import write_corpus

SERIES_N = 600


@dataclass
class StudioRuns:
    translator: Path
    series: Path
    captioner: Path
    normal_csv: Path          # what the autoencoder learned
    anomaly_csv: Path         # the same signal with a burst of large values
    image: Path               # one of the captioner's training images
    anomaly_span: tuple[int, int]


def _series_frame(n: int, seed: int, burst: tuple[int, int] | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    a = np.sin(2 * np.pi * t / 25) + 0.05 * rng.standard_normal(n)
    b = np.cos(2 * np.pi * t / 25) + 0.05 * rng.standard_normal(n)
    if burst is not None:
        a[burst[0]:burst[1]] += 6.0
    ts = pd.date_range("2024-01-01", periods=n, freq="min")
    return pd.DataFrame({"timestamp": ts, "a": a, "b": b})


def make_runs(root: Path) -> StudioRuns:
    """Train the three runs into `root` (seconds on one thread)."""
    from seqlab.caption.data import CaptionDataConfig, CaptionSplits, read_caption_folder
    from seqlab.caption.train import default_train_config, train_captioner
    from seqlab.series.estimator import SeriesAutoencoder
    from seqlab.translate.train import DataConfig, TrainConfig, train_translator

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        corpus = write_corpus(root / "pairs.tsv")
        translator = root / "enfr"
        # multi-head attention, so the per-head maps are there to test
        train_translator(
            translator, model_cfg={"embedding_dim": 16, "encoder_hidden_size": 16,
                                   "decoder_hidden_size": 16, "attention": "multihead",
                                   "num_heads": 2, "dropout": 0.0},
            train_cfg=TrainConfig(batch_tokens=600, lr=5e-3, warmup_steps=3, eval_every=10,
                                  eval_sentences=8, log_every=2, seed=7, threads=1,
                                  max_steps=20),
            data_cfg=DataConfig(corpus=str(corpus), vocab_size=300), progress=False,
            echo=lambda s: None)

        normal_csv, anomaly_csv = root / "normal.csv", root / "anomaly.csv"
        _series_frame(SERIES_N, 0).to_csv(normal_csv, index=False)
        span = (400, 420)
        _series_frame(SERIES_N, 1, span).to_csv(anomaly_csv, index=False)
        series = root / "series"
        SeriesAutoencoder(window=16, hidden_size=8, latent_size=4, epochs=3, batch_size=32,
                          lr=1e-2, seed=0, num_threads=1).fit(str(normal_csv)).save(series)

        images = _make_set(root / "images")
        ds = read_caption_folder(images, image_size=32)
        captioner = root / "emoji"
        train_captioner(
            captioner, model_cfg=CAPTION_TINY,
            train_cfg=default_train_config(batch_size=9, lr=1e-2, warmup_steps=5,
                                           eval_every=20, lr_patience=100, log_every=5,
                                           max_steps=20, max_epochs=1000, seed=7, threads=1),
            data_cfg=CaptionDataConfig(data=str(images), vocab_size=300, image_size=32),
            splits=CaptionSplits(ds, ds, ds, "random"), progress=False, echo=lambda s: None)
    finally:
        torch.set_num_threads(before)
    return StudioRuns(translator, series, captioner, normal_csv, anomaly_csv,
                      images / "red_square.png", span)


def make_transformer_run(root: Path) -> Path:
    """A tiny Transformer translator (2 decoder layers, 2 heads), trained 40 steps: enough that
    its search writes words, so there are attention maps to check."""
    from seqlab.translate.train import DataConfig, TrainConfig, train_translator
    from seqlab.translate.transformer import TransformerConfig

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = root / "trf"
        train_translator(
            run, model_cfg=TransformerConfig(d_model=16, num_heads=2, num_encoder_layers=1,
                                             num_decoder_layers=2, dim_feedforward=32,
                                             dropout=0.0),
            train_cfg=TrainConfig(batch_tokens=600, lr=5e-3, warmup_steps=3, eval_every=20,
                                  eval_sentences=8, log_every=5, seed=7, threads=1,
                                  max_steps=40),
            data_cfg=DataConfig(corpus=str(write_corpus(root / "pairs.tsv")), vocab_size=300),
            progress=False, echo=lambda s: None)
        return run
    finally:
        torch.set_num_threads(before)
