"""The emoji set: Google's emoji images with their official names as captions.

Source: the npm package `emoji-datasource-google@16.0.0` (images Apache-2.0, package MIT),
fetched once with `npm pack` into the cache (`$SEQLAB_CACHE` or `~/.cache/seqlab`, under
`emoji/`) and unpacked with Python's tarfile (only `emoji.json` and `img/google/64/`).

Captions (lowercased), from `emoji.json`:
- `name` of each entry ("GRINNING FACE WITH SMILING EYES" -> "grinning face with smiling eyes");
- country and subdivision flags, named "France Flag" there, become CLDR-style "flag: france";
- each skin-tone variant (`skin_variations`, keyed by modifier code points) gets the base name
  plus its tones, CLDR-style: "woman technologist: medium skin tone"; two-person emoji with
  two tones "people holding hands: light skin tone, dark skin tone" (one tone when both are
  equal); a base name that already has a colon continues with a comma
  ("kiss: man, man, light skin tone").

Every image's group is its base emoji (its `unified` code point sequence), so the grouped
split never puts two skin tones of one emoji on different sides.

Output (`prepare_emoji`): the generic folder form of `seqlab.caption.data`,
    <cache>/emoji/emoji-google-16.0.0-64/{images/*.png, captions.tsv}
written into a temporary folder and renamed into place when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from seqlab.errors import UserError

PACKAGE = "emoji-datasource-google"
VERSION = "16.0.0"
IMG_DIR = "package/img/google/64/"
TONES = {"1F3FB": "light skin tone", "1F3FC": "medium-light skin tone",
         "1F3FD": "medium skin tone", "1F3FE": "medium-dark skin tone",
         "1F3FF": "dark skin tone"}


def cache_dir() -> Path:
    return Path(os.environ.get("SEQLAB_CACHE") or Path.home() / ".cache" / "seqlab")


def fetch_tarball(cache: Path | None = None) -> Path:
    """`npm pack` the package into <cache>/emoji/ once; returns the .tgz path."""
    dest = (cache or cache_dir()) / "emoji"
    tgz = dest / f"{PACKAGE}-{VERSION}.tgz"
    if tgz.is_file():
        return tgz
    dest.mkdir(parents=True, exist_ok=True)
    if shutil.which("npm") is None:
        raise UserError(f"npm not found: it is needed once to fetch {PACKAGE}@{VERSION} "
                        f"(or put {tgz.name} into {dest} yourself)")
    with tempfile.TemporaryDirectory(dir=dest) as tmp:  # npm writes there; rename when done
        try:
            proc = subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}", "--silent"],
                                  cwd=tmp, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            raise UserError(f"npm pack {PACKAGE}@{VERSION}: timed out") from None
        got = Path(tmp) / tgz.name
        if proc.returncode != 0 or not got.is_file():
            msg = (proc.stderr or proc.stdout).strip().splitlines()
            raise UserError(f"npm pack {PACKAGE}@{VERSION} failed: "
                            f"{msg[-1] if msg else 'exit ' + str(proc.returncode)}")
        os.replace(got, tgz)
    return tgz


def emoji_captions(entries: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """emoji.json entries -> (image file name, caption, group) for every image Google has."""
    out: list[tuple[str, str, str]] = []
    for e in entries:
        name = str(e.get("name") or e.get("short_name") or "").strip()
        if e.get("subcategory") in ("country-flag", "subdivision-flag") and \
                name.lower().endswith(" flag"):
            name = "flag: " + name[: -len(" flag")]
        name = " ".join(name.lower().split())
        if not name:
            continue
        group = str(e["unified"]).lower()
        if e.get("has_img_google", True):
            out.append((str(e["image"]), name, group))
        for key, var in (e.get("skin_variations") or {}).items():
            if not var.get("has_img_google", True):
                continue
            tones = list(dict.fromkeys(TONES[k] for k in key.split("-")))
            sep = ", " if ":" in name else ": "
            out.append((str(var["image"]), name + sep + ", ".join(tones), group))
    return out


def prepare_emoji(cache: Path | None = None) -> Path:
    """Fetch, unpack and convert (once); returns the folder holding captions.tsv + images/."""
    root = (cache or cache_dir()) / "emoji"
    folder = root / f"emoji-google-{VERSION}-64"
    if (folder / "captions.tsv").is_file():
        return folder
    tgz = fetch_tarball(cache)
    if folder.exists():  # a leftover without captions.tsv (not written by this code)
        shutil.rmtree(folder)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".emoji-", dir=root))
    try:
        images = tmp / "images"
        images.mkdir()
        try:
            with tarfile.open(tgz, "r:gz") as tar:
                meta = tar.extractfile("package/emoji.json")
                if meta is None:
                    raise KeyError("package/emoji.json")
                entries = json.loads(meta.read().decode("utf-8"))
                files = {m.name[len(IMG_DIR):]: m for m in tar.getmembers()
                         if m.isfile() and m.name.startswith(IMG_DIR)}
                rows = emoji_captions(entries)
                lines = []
                for fname, caption, group in rows:
                    member = files.get(fname)
                    if member is None or "/" in fname:   # no image, or not a plain file name
                        continue
                    src = tar.extractfile(member)
                    assert src is not None
                    (images / fname).write_bytes(src.read())
                    lines.append(f"images/{fname}\t{caption}\t{group}\n")
        except (tarfile.TarError, KeyError, OSError, ValueError) as err:
            raise UserError(f"{tgz}: not a usable {PACKAGE} package ({err}); delete it to "
                            "fetch it again") from None
        (tmp / "captions.tsv").write_text(
            f"# {PACKAGE}@{VERSION}: images Apache-2.0, package MIT\n" + "".join(lines),
            encoding="utf-8")
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return folder
