"""What kind of seqlab run a directory holds, from the "format" tag of its config.json.

Every application saves its runs with its own tag (`seqlab.series.estimator.FORMAT`,
`seqlab.translate.run.FORMAT`, `seqlab.caption.run.FORMAT`, and their older tags); code that
accepts any run (e.g. `seqlab gates --model RUN`) asks `run_kind` and then calls that
application's own loader (`SeriesAutoencoder.load`, `Translator.load`, `Captioner.load`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from seqlab.errors import UserError

RunKind = Literal["series", "translator", "captioner"]


def _formats() -> dict[str, RunKind]:
    # imported here: each tag lives with its application, which is heavy to import
    from seqlab.caption import run as caption_run
    from seqlab.series.estimator import FORMAT as SERIES_FORMAT
    from seqlab.translate import run as translate_run

    return {SERIES_FORMAT: "series",
            translate_run.FORMAT: "translator", translate_run.FORMAT_V1: "translator",
            caption_run.FORMAT: "captioner", caption_run.FORMAT_V1: "captioner"}


def run_kind(run_dir: str | Path) -> RunKind:
    """"series", "translator" or "captioner" for a saved run directory.

    No config.json, invalid JSON or an unknown format tag -> one-line UserError.
    """
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise UserError(f"{run_dir}: not a seqlab run directory (no config.json)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    fmt = config.get("format") if isinstance(config, dict) else None
    formats = _formats()
    if fmt not in formats:
        raise UserError(f"{path}: format {fmt!r} is not a seqlab run format (expected one of "
                        f"{', '.join(map(repr, formats))})")
    return formats[fmt]
