"""The real emoji set (npm emoji-datasource-google@16.0.0): captions and the grouped split.

Needs the package in the seqlab cache or a reachable npm registry; skips otherwise.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from seqlab.caption.data import CaptionDataset, read_caption_folder, split_dataset
from seqlab.errors import UserError


@pytest.fixture(scope="module")
def emoji() -> CaptionDataset:
    from seqlab.caption.emoji import prepare_emoji

    try:
        folder: Path = prepare_emoji()
    except UserError as err:
        pytest.skip(f"emoji set unavailable (npm fetch failed): {err}")
    return read_caption_folder(folder, image_size=64, check_images=False)


def test_emoji_captions(emoji: CaptionDataset) -> None:
    caps = {it.path.name: it.captions[0] for it in emoji.items}
    assert len(caps) == 3786
    assert caps["1f600.png"] == "grinning face"
    assert caps["1f1eb-1f1f7.png"] == "flag: france"
    assert caps["1f469-1f3fd-200d-1f4bb.png"] == "woman technologist: medium skin tone"
    assert caps["1f44b-1f3ff.png"] == "waving hand sign: dark skin tone"
    assert all(c == c.lower() and c.strip() for c in caps.values())
    # a skin-tone variant shares its base emoji's group
    groups = {it.path.name: it.group for it in emoji.items}
    assert groups["1f44b-1f3ff.png"] == groups["1f44b.png"]
    sample = emoji.subset(range(0, 3786, 379)).load_pixels()
    assert sample.shape == (10, 64, 64, 3)


def test_grouped_split_keeps_skin_tones_together(emoji: CaptionDataset) -> None:
    g = split_dataset(emoji, "grouped", test_frac=0.1, dev_frac=0.05, seed=1234)
    train, dev, test = ({it.group for it in p.items} for p in (g.train, g.dev, g.test))
    assert not (train & test) and not (train & dev) and not (dev & test)
    assert len(g.test) >= 0.1 * len(emoji) and len(g.train) + len(g.dev) + len(g.test) == 3786
    # the random split, by contrast, does put skin-tone siblings on both sides
    r = split_dataset(emoji, "random", test_frac=0.1, dev_frac=0.05, seed=1234)
    r_train = {it.group for it in r.train.items}
    assert sum(it.group in r_train for it in r.test.items) > 0.5 * len(r.test)
