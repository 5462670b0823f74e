"""Checks shared by the text generators' model configs (`Seq2SeqConfig`, `CaptionerConfig`).

Each check raises a one-line `UserError` that names the config class and field, e.g.
"Seq2SeqConfig.num_heads: expected a positive int, got 0", so a bad CLI flag, Python argument
or config.json value is reported without building a model. The CLI flags carry the field names
(`--decoder-hidden-size` is `decoder_hidden_size`).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from seqlab.errors import UserError
from seqlab.nn.attention import ATTENTION_KINDS


def _fail(cfg: Any, name: str, expected: str) -> UserError:
    return UserError(f"{type(cfg).__name__}.{name}: expected {expected}, "
                     f"got {getattr(cfg, name)!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_positive(cfg: Any, *names: str, optional: bool = False) -> None:
    """Each field is an int >= 1 (or None with optional=True)."""
    for name in names:
        v = getattr(cfg, name)
        if not ((optional and v is None) or (_is_int(v) and v >= 1)):
            raise _fail(cfg, name, "a positive int" + (" or null" if optional else ""))


def check_non_negative(cfg: Any, *names: str) -> None:
    """Each field is an int >= 0 (token ids)."""
    for name in names:
        v = getattr(cfg, name)
        if not (_is_int(v) and v >= 0):
            raise _fail(cfg, name, "an int >= 0")


def check_fraction(cfg: Any, *names: str) -> None:
    """Each field is a number in [0, 1) (dropout, label smoothing)."""
    for name in names:
        v = getattr(cfg, name)
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1):
            raise _fail(cfg, name, "a number in [0, 1)")


def check_flags(cfg: Any, *names: str) -> None:
    for name in names:
        if not isinstance(getattr(cfg, name), bool):
            raise _fail(cfg, name, "true or false")


def check_attention(cfg: Any, hidden_field: str, key_size: int, key_what: str) -> None:
    """`cfg.attention`, `cfg.attn_dim` and `cfg.num_heads` fit a decoder whose LSTM size is
    the field `hidden_field` and whose memory is `key_size` wide (`key_what` says how)."""
    kind = cfg.attention
    if kind not in ATTENTION_KINDS:
        raise _fail(cfg, "attention", "one of " + ", ".join(ATTENTION_KINDS))
    check_positive(cfg, "num_heads")
    check_positive(cfg, "attn_dim", optional=True)
    if kind != "multihead" and cfg.num_heads != 1:
        raise _fail(cfg, "num_heads", f"1 (only attention='multihead' has heads, not {kind!r})")
    hidden = getattr(cfg, hidden_field)
    if kind == "multihead" and (cfg.attn_dim or hidden) % cfg.num_heads:
        size = "attn_dim" if cfg.attn_dim else hidden_field
        raise UserError(f"{type(cfg).__name__}.num_heads: {size}={cfg.attn_dim or hidden} must "
                        f"divide by num_heads, got {cfg.num_heads}")
    if kind in ("dot", "scaled_dot") and hidden != key_size:
        raise UserError(f"{type(cfg).__name__}.attention: {kind!r} needs {hidden_field} == "
                        f"{key_what} ({key_size}), got {hidden}; use 'general' or 'additive'")


def check_tied(cfg: Any, embedding_field: str, hidden_field: str) -> None:
    """tie_embeddings shares the (V, E) embedding with the (V, H) output layer: E == H."""
    if cfg.tie_embeddings and getattr(cfg, embedding_field) != getattr(cfg, hidden_field):
        raise UserError(f"{type(cfg).__name__}.tie_embeddings: needs {embedding_field} == "
                        f"{hidden_field}, got {getattr(cfg, embedding_field)} and "
                        f"{getattr(cfg, hidden_field)}")


def config_from_dict(cls: type, d: dict[str, Any]) -> Any:
    """`cls(**d)` for a config dataclass; unknown fields -> UserError naming them."""
    if not isinstance(d, dict):
        raise UserError(f"{cls.__name__}: expected a JSON object, got {type(d).__name__}")
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise UserError(f"{cls.__name__}: unknown fields {unknown}")
    try:
        return cls(**d)
    except TypeError as err:   # a required field is missing
        raise UserError(f"{cls.__name__}: {err}") from None

