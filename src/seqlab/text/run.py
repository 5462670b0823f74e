"""Run-directory formats of the text generators: the config.json tag, the model and its config
class, how older layouts are upgraded when a run is read (so old runs still load and resume),
and loading a trained run (config, tokenizer, weights)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from seqlab.errors import UserError
from seqlab.text.tokenizer import TokenizerPair
from seqlab.training.checkpoint import CONFIG_FILE, load_run_weights, read_run_config


@dataclass(frozen=True)
class RunFormat:
    """tag: today's format tag ("seqlab-translator/2"); what: the kind of run, for messages;
    model_cls: the model, built from its config; config_cls: the model config dataclass
    (config.json's "model", via its `from_dict`); vocab_fields: the config fields that must
    equal the source and target tokenizers' vocabulary sizes; renames: per older tag, the
    model fields it named differently {old name: new name}."""

    tag: str
    what: str
    model_cls: Callable[[Any], torch.nn.Module]   # a model class, or a function of the config
    config_cls: Any   # a dataclass with a `from_dict` classmethod (or anything with from_dict)
    vocab_fields: tuple[str, str]
    renames: dict[str, dict[str, str]] = field(default_factory=dict)

    def upgrade(self, cfg: dict[str, Any]) -> dict[str, Any]:
        """A config.json object in an older format -> the same run in format `tag`."""
        if isinstance(cfg, dict) and cfg.get("format") in self.renames:
            renames = self.renames[cfg["format"]]
            model = {renames.get(k, k): v for k, v in cfg.get("model", {}).items()}
            cfg = {**cfg, "format": self.tag, "model": model}
        return cfg

    def _check(self, cfg: dict[str, Any]) -> None:
        try:
            self.config_cls.from_dict(cfg["model"])
        except UserError as err:   # reported as a corrupt config.json, with its path
            raise ValueError(str(err)) from None

    def read(self, run_dir: str | Path) -> dict[str, Any]:
        """config.json of a run in today's layout; missing or corrupt -> one-line UserError."""
        return read_run_config(run_dir, self.tag, self._check, self.what, upgrade=self.upgrade)

    def load(self, run_dir: str | Path, checkpoint: str = "best"
             ) -> tuple[Any, TokenizerPair, dict[str, Any]]:
        """The model (eval mode), tokenizers and config of a run: "best" (model.safetensors)
        or "last" (checkpoint.safetensors) weights. Missing, corrupt or mismatched ->
        UserError."""
        run = Path(run_dir)
        cfg = self.read(run)
        tok = TokenizerPair.load_checked(run, cfg.get("tokenizer", {}), str(run / CONFIG_FILE))
        mcfg = self.config_cls.from_dict(cfg["model"])
        have = (tok.src.vocab_size, tok.tgt.vocab_size)
        want = tuple(getattr(mcfg, f) for f in self.vocab_fields)
        if have != want:
            raise UserError(f"{run / 'tokenizer'}: vocabulary sizes {have[0]}/{have[1]} do not "
                            f"match the model's {want[0]}/{want[1]}")
        model = self.model_cls(mcfg)
        load_run_weights(model, run, checkpoint)
        return model.eval(), tok, cfg
