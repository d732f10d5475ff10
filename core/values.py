"""Validation and coercion of metric keys, metric values, steps and config values.

Runs on the training thread (the caller's), so what leaves it is always writable.
The common case (known key, float or int value) never gets here; everything else
takes the slow path.

Coercions (documented, each with a warning naming the key where data changes):

- metrics: Python, numpy and torch scalars, 0-d and one-element arrays count as their
  number; an int beyond float64's range is a ``ValueError`` naming the key.
- steps: whole numbers from 0 to ``MAX_STEP`` (2**63 - 1, the int64 column of
  ``metrics.bin``); anything larger is a ``ValueError`` naming the largest step allowed.
- config values (:func:`jsonable`): JSON types kept; numpy/torch scalars as their
  Python value (a numpy bool is ``true``); ints outside the int64 range as their
  decimal string (exact, and readable by every JSON reader; an int too long to print
  becomes ``"<int of N bits>"``); other objects by ``repr``; an object whose ``repr``
  raises becomes ``"<unrepresentable TYPE>"``.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import sys
from argparse import Namespace
from typing import Any, Mapping

__all__ = [
    "MAX_KEY_LENGTH", "MAX_STEP", "RESERVED_KEYS", "check_key", "check_step_range", "to_number",
    "clean_metrics", "jsonable", "plain", "model_facts",
]

log = logging.getLogger("epochal")
MAX_KEY_LENGTH = 256
MAX_STEP = 2**63 - 1
RESERVED_KEYS = frozenset({"step", "time"})
_FLOAT_INT_LIMIT = 2**1024  # the smallest int float() refuses
_INT64 = 2**63


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
    if kind is float:
        return value
    if kind is int:
        if -_FLOAT_INT_LIMIT < value < _FLOAT_INT_LIMIT:
            return value
        raise ValueError(
            f"{_what(key)} is an int of {value.bit_length()} bits, beyond float64's range; "
            "log it scaled down (e.g. math.log10 of it)"
        )
    if kind is bool:
        return int(value)
    if isinstance(value, (str, bytes)):
        raise TypeError(
            f"metric {key!r} is a string ({value!r:.40}); metrics are numbers. "
            "Put text in run.config, run.summary or run.notes instead"
        )
    if _one_element(value):
        item = value.item()  # numpy scalar, 0-d or one-element array or tensor (any device)
        if isinstance(item, bool):
            return int(item)
        if isinstance(item, (int, float)):
            return to_number(key, item)
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


def _what(key: str) -> str:
    return key if key in ("step", "epoch") else f"metric {key!r}"


def _one_element(value: Any) -> bool:
    """A 0-d or one-element array, tensor or numpy scalar (anything with ``.item()`` and such a shape)."""
    shape = getattr(value, "shape", None)
    if shape is None:
        return getattr(value, "ndim", None) == 0 and hasattr(value, "item")
    try:
        return math.prod(shape) == 1 and hasattr(value, "item")
    except TypeError:
        return False


def check_step_range(step: int, automatic: bool = False) -> int:
    """``step`` if it fits the int64 step column, else a ``ValueError`` naming the largest step allowed."""
    if 0 <= step <= MAX_STEP:
        return step
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step!r}")
    how = " (the automatic step after the largest one; pass step= to log again)" if automatic else ""
    raise ValueError(f"step {step} is beyond the largest step allowed, {MAX_STEP} (2**63 - 1){how}")


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


def jsonable(value: Any, key: str = "value", _seen: frozenset[int] = frozenset()) -> Any:
    """A JSON-able copy of a config value under ``key`` (see the module's coercions); never raises.

    Dicts stay nested, lists and tuples become lists, cycles the string ``"<cycle>"``;
    non-finite floats are kept (JSON ``NaN``/``Infinity``).
    """
    if value is None or isinstance(value, (bool, str, float)):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else _big_int(key, value)
    if id(value) in _seen:
        return "<cycle>"
    if isinstance(value, Mapping):
        seen = _seen | {id(value)}
        return {str(k): jsonable(v, f"{key}.{k}", seen) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        seen = _seen | {id(value)}
        return [jsonable(v, f"{key}[{i}]", seen) for i, v in enumerate(value)]
    try:
        if getattr(value, "shape", None) == () and hasattr(value, "item"):  # numpy/torch scalars, numpy bool
            item = value.item()
            if item is None or isinstance(item, (bool, int, float, str)):
                return jsonable(item, key)
        number = to_number(key, value)
        if not (isinstance(number, float) and math.isnan(number) and not _is_nan(value)):
            return number
    except Exception:  # not a number: kept by repr below
        pass
    if hasattr(value, "__fspath__"):
        return str(value)
    try:
        return repr(value)
    except Exception as exc:
        name = type(value).__qualname__
        log.warning("epochal: %s: repr() of this %s raised %r; stored as '<unrepresentable %s>'",
                    key, name, exc, name)
        return f"<unrepresentable {name}>"


def _big_int(key: str, value: int) -> str:
    if value.bit_length() * 0.302 < sys.get_int_max_str_digits() - 2 or not sys.get_int_max_str_digits():
        text = str(value)
    else:
        text = f"<int of {value.bit_length()} bits>"
    log.warning("epochal: %s is an int outside the int64 range; stored as the string %.60s", key, text)
    return text


def _is_nan(value: Any) -> bool:
    try:
        return value != value
    except Exception:
        return False


# -- hyperparameters of framework objects ------------------------------------------------------
def plain(value: Any) -> Any:
    """Hyperparameters in JSON shapes: namespaces and dataclasses as dicts (nested too), sets as
    sorted lists, enums as their values; anything else is left for the run's config to coerce."""
    if isinstance(value, Namespace):
        value = vars(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((plain(v) for v in value), key=repr)
    if isinstance(value, enum.Enum):
        return plain(value.value)
    return value


def model_facts(model: Any) -> dict[str, Any]:
    """``{"class", "parameters", "trainable_parameters"}`` of a torch module (sizes left out while lazy)."""
    facts: dict[str, Any] = {"class": type(model).__name__}
    try:
        sizes = [(getattr(p, "ds_numel", None) or p.numel(), p.requires_grad) for p in model.parameters()]
    except Exception:  # lazy (uninitialised) parameters have no size yet
        return facts
    facts["parameters"] = sum(n for n, _ in sizes)  # ds_numel: DeepSpeed ZeRO-3 shards report 0 elements
    facts["trainable_parameters"] = sum(n for n, trainable in sizes if trainable)
    return facts
