"""The captioner's Python API (mirrors `seqlab caption run/eval`).

    from seqlab.caption.api import Captioner
    cap = Captioner.load("runs/emoji")
    cap.caption(["face.png"])                                  # ["grinning face"]
    [c] = cap.caption([pil_image], num_beams=5, return_attention=True)
    c.text, c.words, c.word_attention                          # (W, G, G): each word's map
    cap.evaluate(dataset)                                      # BLEU, chrF, exact match

Attention: the decoder attends over the encoder's G x G regions (row-major). `Caption.attention`
is per output subword (T, G, G); `Caption.word_attention` merges the subwords of each word
(a piece starting with "▁" starts a word) by averaging their maps, so pictures show words.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from seqlab.caption.data import CaptionDataConfig, CaptionDataset, load_image, load_splits, to_rgb
from seqlab.caption.encoder import images_to_tensor
from seqlab.caption.model import CaptionModel
from seqlab.caption.run import load_run
from seqlab.device import model_device, resolve_device
from seqlab.errors import UserError
from seqlab.text.metrics import score_corpus
from seqlab.text.tokenizer import SubwordTokenizer, TokenizerPair
from seqlab.validate import check_decoding, check_int

WORD_START = "\u2581"   # sentencepiece's word-boundary mark


@dataclass
class Caption:
    """One generated caption.

    text: detokenised caption; tokens: output subwords (T,); words: the caption's words (W,);
    attention: (T, G, G) weights of each subword over the regions (each map sums to 1);
    word_attention: (W, G, G) the mean map of each word's subwords; image: (S, S, 3) uint8,
    the picture the model saw; score: length-normalised log-probability; nbest: further
    (text, score) candidates.
    """

    text: str
    tokens: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    attention: np.ndarray | None = None
    word_attention: np.ndarray | None = None
    image: np.ndarray | None = None
    score: float = 0.0
    nbest: list[tuple[str, float]] = field(default_factory=list)


def word_groups(pieces: Sequence[str]) -> list[list[int]]:
    """Indices of the subword pieces of each word (a piece starting with "▁" starts a word)."""
    groups: list[list[int]] = []
    for t, p in enumerate(pieces):
        if p.startswith(WORD_START) or not groups:
            groups.append([t])
        else:
            groups[-1].append(t)
    return groups


def merge_pieces(pieces: Sequence[str], attention: np.ndarray | None,
                 tok: SubwordTokenizer | None = None, ids: Sequence[int] | None = None
                 ) -> tuple[list[str], np.ndarray | None]:
    """Subword pieces (T,) and their maps (T, ...) -> words (W,) and mean maps (W, ...).

    With `tok` and `ids`, each word is its pieces decoded by the tokenizer (so byte-fallback
    pieces become the characters they spell); otherwise the pieces are joined.
    """
    groups = word_groups(pieces)
    if tok is not None and ids is not None:
        words = tok.decode([[ids[t] for t in g] for g in groups])
    else:
        words = ["".join(pieces[t] for t in g).lstrip(WORD_START) for g in groups]
    keep = [i for i, w in enumerate(words) if w.strip()]    # a bare "▁" piece is no word
    words = [words[i].strip() for i in keep]
    if attention is None:
        return words, None
    maps = [attention[groups[i]].mean(0) for i in keep]
    return words, (np.stack(maps) if maps else attention[:0])


@torch.no_grad()
def caption_tensor(model: CaptionModel, tok: SubwordTokenizer, images: torch.Tensor, *,
                   num_beams: int = 5, max_new_tokens: int | None = None,
                   length_penalty: float = 1.0, return_attention: bool = False,
                   num_return_sequences: int = 1, batch_size: int = 64) -> list[Caption]:
    """Caption images (N, 3, S, S) in [0, 1], in batches; results in input order."""
    check_decoding(num_beams, max_new_tokens, length_penalty, batch_size, num_return_sequences)
    was_training = model.training
    model.eval()
    G = model.cfg.grid
    out: list[Caption] = []
    try:
        for start in range(0, images.size(0), batch_size):
            chunk = images[start:start + batch_size].to(model_device(model))
            res = model.generate(chunk, num_beams=num_beams, max_new_tokens=max_new_tokens,
                                 length_penalty=length_penalty,
                                 num_return_sequences=num_return_sequences,
                                 return_attention=return_attention)
            for row, hyps in enumerate(res.hypotheses):
                texts = tok.decode([h.tokens for h in hyps])
                best = hyps[0]
                c = Caption(texts[0], score=best.score,
                            nbest=list(zip(texts[1:], [h.score for h in hyps[1:]], strict=True)))
                if return_attention:
                    c.tokens = tok.ids_to_pieces(best.tokens)
                    att = best.attention
                    att_np = (att.float().numpy().reshape(-1, G, G) if att is not None
                              else np.zeros((0, G, G), np.float32))
                    c.attention = att_np
                    c.words, c.word_attention = merge_pieces(c.tokens, att_np, tok, best.tokens)
                    c.image = (chunk[row].permute(1, 2, 0) * 255).round().byte().cpu().numpy()
                out.append(c)
        return out
    finally:
        model.train(was_training)


def exact_match(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """Share (0..100) of hypotheses equal to one of their references (whitespace-normalised)."""
    if len(hyps) != len(refs):
        raise ValueError(f"exact_match: {len(hyps)} hypotheses but {len(refs)} reference sets")
    if not hyps:
        return 0.0
    norm = lambda s: " ".join(s.split())  # noqa: E731
    hits = sum(norm(h) in {norm(r) for r in rs} for h, rs in zip(hyps, refs, strict=True))
    return 100.0 * hits / len(hyps)


ImageLike = str | os.PathLike[str] | np.ndarray | Any   # a path, an (H, W, 3) array, a PIL image


class Captioner:
    """A trained captioner loaded from its run directory."""

    def __init__(self, model: CaptionModel, tok: TokenizerPair, config: dict[str, Any],
                 run_dir: Path | None = None):
        self.model = model.eval()
        self.tok = tok
        self.config = config
        self.run_dir = run_dir

    @property
    def image_size(self) -> int:
        return self.model.cfg.image_size

    @classmethod
    def load(cls, run_dir: str | Path, checkpoint: str = "best",
             device: str | torch.device = "auto") -> Captioner:
        """Load `run_dir`: config.json, tokenizer/, model.safetensors ("best") or the last
        checkpoint ("last"), onto `device` ("auto": cuda, else mps, else cpu; a run trained on
        any device loads on any other). Anything missing, corrupt or mismatched -> one-line
        UserError."""
        model, tok, cfg = load_run(run_dir, checkpoint)
        return cls(model.to(resolve_device(device)), tok, cfg, Path(run_dir))

    def _pixels(self, images: Sequence[ImageLike]) -> np.ndarray:
        S = self.image_size
        out = np.empty((len(images), S, S, 3), np.uint8)
        for i, im in enumerate(images):
            if isinstance(im, (str, os.PathLike)):
                out[i] = load_image(im, S)
            elif isinstance(im, Image.Image):
                out[i] = to_rgb(im, S, where=f"images[{i}]")
            elif isinstance(im, np.ndarray) and im.ndim == 3 and im.shape[-1] in (3, 4) \
                    and im.dtype == np.uint8:
                out[i] = to_rgb(Image.fromarray(im), S, where=f"images[{i}]")
            else:
                raise UserError(f"images[{i}]: expected a path, a PIL image or an (H, W, 3|4) "
                                 f"uint8 array, got {type(im).__name__}")
        return out

    def caption(self, images: ImageLike | Sequence[ImageLike], num_beams: int = 5,
                max_new_tokens: int | None = None, length_penalty: float = 1.0,
                return_attention: bool = False, num_return_sequences: int = 1,
                batch_size: int = 64) -> list[str] | list[Caption]:
        """Caption images (paths, PIL images or uint8 arrays): strings, or `Caption` objects
        with words and attention maps when `return_attention` (or n-best) is asked for."""
        if isinstance(images, (str, os.PathLike, np.ndarray)) or not isinstance(images, Sequence):
            images = [images]
        pixels = self._pixels(list(images))
        res = caption_tensor(self.model, self.tok.tgt, images_to_tensor(pixels),
                             num_beams=num_beams, max_new_tokens=max_new_tokens,
                             length_penalty=length_penalty, return_attention=return_attention,
                             num_return_sequences=num_return_sequences, batch_size=batch_size)
        if return_attention or num_return_sequences > 1:
            return res
        return [c.text for c in res]

    def evaluate(self, dataset: CaptionDataset, num_beams: int = 5, batch_size: int = 64,
                 length_penalty: float = 1.0, limit: int | None = None) -> dict[str, Any]:
        """sacreBLEU BLEU/chrF against each image's first caption (with signatures), and the
        exact-match rate against any of its captions."""
        if limit is not None:
            check_int("limit", limit)
        ds = dataset if limit is None else dataset.subset(range(min(limit, len(dataset))))
        if len(ds) == 0:
            raise UserError(f"{ds.source or 'dataset'}: no images to evaluate")
        hyps = [c.text for c in caption_tensor(self.model, self.tok.tgt,
                                               images_to_tensor(ds.load_pixels()),
                                               num_beams=num_beams, batch_size=batch_size,
                                               length_penalty=length_penalty)]
        refs = [it.captions for it in ds.items]
        scores = score_corpus(hyps, [r[0] for r in refs], "en")
        out = {k: scores[k] for k in ("bleu", "chrf", "bleu_signature", "chrf_signature")}
        out.update(exact_match=exact_match(hyps, refs), n_images=len(ds), num_beams=num_beams,
                   examples=[{"file": it.path.name, "reference": it.captions[0], "output": h}
                             for it, h in list(zip(ds.items, hyps, strict=True))[:20]])
        return out

    def test_split(self, split: str = "test") -> CaptionDataset:
        """The run's own held-out split (re-made from its data config: same data, same seed)."""
        splits = load_splits(CaptionDataConfig(**self.config["data"]))
        if split not in ("train", "dev", "test"):
            raise ValueError(f"split must be train, dev or test, got {split!r}")
        return getattr(splits, split)
