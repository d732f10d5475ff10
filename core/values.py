"""Validation and coercion of metric keys, metric values and config values.

Runs on the training thread, so the common case (known key, float or int value)
is decided by two C-level set checks; everything else takes the slow path.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

__all__ = ["MAX_KEY_LENGTH", "RESERVED_KEYS", "check_key", "to_number", "clean_metrics", "jsonable"]

MAX_KEY_LENGTH = 256
RESERVED_KEYS = frozenset({"step", "time"})


def check_key(key: object) -> str:
    """Return ``key`` if it is a usable metric name, else raise ``ValueError`` saying why."""
    if not isinstance(key, str):
        raise TypeError(f"metric name {key!r} is a {type(key).__name__}; use a str such as 'train/loss'")
    if not key or key.strip() != key:
        raise ValueError(f"metric name {key!r} is empty or has surrounding spaces; use a name such as 'train/loss'")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"metric name {key[:40]!r}... has {len(key)} characters; keep names under {MAX_KEY_LENGTH}")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise ValueError(f"metric name {key!r} contains a control character; remove it")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(
            f"metric name {key!r} has an empty, '.' or '..' path segment; use names like 'val/accuracy'"
        )
    if key in RESERVED_KEYS:
        raise ValueError(f"metric name {key!r} is reserved; pass it as log(..., {key}=...) or rename it")
    return key


def to_number(key: str, value: Any) -> float | int:
    """Coerce a Python/numpy/torch scalar or 0-d array to ``float``/``int`` without importing numpy or torch."""
    kind = type(value)
    if kind is float or kind is int:
        return value
    if kind is bool:
        return int(value)
    if isinstance(value, (str, bytes)):
        raise TypeError(
            f"metric {key!r} is a string ({value!r:.40}); metrics are numbers. "
            "Put text in run.config, run.summary or run.notes instead"
        )
    if getattr(value, "shape", None) == () or getattr(value, "ndim", None) == 0:
        item = value.item()  # numpy scalar, 0-d array, 0-d tensor (any device)
        if isinstance(item, (bool, int)):
            return int(item)
        if isinstance(item, float):
            return item
        raise TypeError(f"metric {key!r} holds {type(item).__name__} {item!r}; metrics must be real numbers")
    if isinstance(value, (int, float)):  # numbers subclasses, e.g. numpy.float64
        return float(value)
    try:
        import numbers

        if isinstance(value, numbers.Real):
            return float(value)
    except (TypeError, ValueError):
        pass
    shape = getattr(value, "shape", None)
    what = f"an array of shape {tuple(shape)}" if shape is not None else f"a {kind.__name__}"
    raise TypeError(
        f"metric {key!r} is {what}; log one number per name "
        "(reduce it, e.g. tensor.mean().item(), or log each element under its own name)"
    )


def clean_metrics(metrics: Mapping[str, Any], known: set[str]) -> dict[str, float | int]:
    """The slow path: validate every key and coerce every value; add new keys to ``known``."""
    if not isinstance(metrics, Mapping):
        raise TypeError(f"log() takes a mapping of name -> number, got {type(metrics).__name__}")
    out: dict[str, float | int] = {}
    for key, value in metrics.items():
        if key not in known:
            check_key(key)
        out[key] = to_number(key, value)
    known.update(out)
    return out


def jsonable(value: Any, _seen: frozenset[int] = frozenset()) -> Any:
    """A JSON-able copy of a config value: JSON types kept, dicts kept nested, the rest by ``repr``.

    Cycles become the string ``"<cycle>"``; non-finite floats are kept (JSON ``NaN``/``Infinity``).
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if id(value) in _seen:
        return "<cycle>"
    if isinstance(value, Mapping):
        seen = _seen | {id(value)}
        return {str(k): jsonable(v, seen) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        seen = _seen | {id(value)}
        return [jsonable(v, seen) for v in value]
    try:
        number = to_number("config", value)
        if not (isinstance(number, float) and math.isnan(number) and not _is_nan(value)):
            return number
    except (TypeError, ValueError):
        pass
    if hasattr(value, "__fspath__"):
        return str(value)
    return repr(value)


def _is_nan(value: Any) -> bool:
    try:
        return value != value
    except Exception:
        return False
