"""Canonical metric names and the one step model, shared by every integration.

Names are ``{split}/{name}`` with split in ``train | val | test``, plus ``lr`` (and
``lr/<group>``) and ``epoch``. Frameworks' own spellings map onto them:

==========================  ========================
framework name              canonical name
==========================  ========================
``loss`` (HF, Keras)        ``train/loss``
``eval_loss`` (HF)          ``val/loss``
``val_accuracy`` (Keras)    ``val/accuracy``
``test_acc`` (Lightning)    ``test/acc``
``metrics/mAP50(B)`` (YOLO) ``val/mAP50(B)``
``learning_rate``           ``lr``
``lr-Adam`` (Lightning)     ``lr/Adam``
``x_step`` / ``x_epoch``    ``x`` / ``x_epoch`` (Lightning's on_step/on_epoch pair)
==========================  ========================

The step model: every record carries ``step`` (the framework's global optimizer
step, or the user's), ``time`` and, where known, ``epoch``. ``epoch`` is a field of
the record, never a chart of its own. Epoch-level trackers without an optimizer
step (YOLO) use :func:`epoch_step` so step 1 is the end of the first epoch.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

__all__ = ["SPLITS", "canonical", "canonicalize", "epoch_step"]

SPLITS = ("train", "val", "test")
_PREFIX_SPLIT = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "eval": "val",
    "test": "test",
}
_LR_NAMES = {"lr", "learning_rate", "learningrate"}
_ALIASED_PREFIX = {"metrics": "val"}  # YOLO: metrics/mAP50(B) is a validation figure
_SEPARATOR = re.compile(r"[_/.\-]")


def canonical(name: str, default_split: str = "train", *, step_suffixes: bool = False) -> str:
    """The canonical name for a framework's metric ``name``.

    ``default_split`` applies to bare names (``loss`` -> ``train/loss``). With
    ``step_suffixes`` (Lightning), ``x_step`` becomes ``x`` and ``x_epoch`` keeps its suffix.
    """
    if step_suffixes and name.endswith("_step"):
        name = name[: -len("_step")]
    if name == "epoch":
        return "epoch"
    lowered = name.lower()
    if lowered in _LR_NAMES:
        return "lr"
    if lowered.startswith(("lr-", "lr_", "lr/")):
        return "lr/" + name[3:]
    head, sep, rest = name.partition("/")
    if sep and rest:
        if head in SPLITS:
            return name
        if head in _ALIASED_PREFIX:
            return f"{_ALIASED_PREFIX[head]}/{rest}"
        if head.lower() in _PREFIX_SPLIT:
            return f"{_PREFIX_SPLIT[head.lower()]}/{rest}"
        return name  # a namespace of the user's own, e.g. "gan/d_loss"
    match = _SEPARATOR.search(name)
    if match:
        prefix, rest = name[: match.start()], name[match.end():]
        split = _PREFIX_SPLIT.get(prefix.lower())
        if split and rest:
            return f"{split}/{rest}"
    return f"{default_split}/{name}"


def canonicalize(
    metrics: Mapping[str, Any], default_split: str = "train", *, step_suffixes: bool = False
) -> tuple[dict[str, Any], dict[str, str], Any]:
    """Map a framework's metrics dict: returns ``(canonical metrics, {canonical: original}, epoch or None)``.

    A key named ``epoch`` is taken out and returned as the record's epoch.
    """
    out: dict[str, Any] = {}
    originals: dict[str, str] = {}
    epoch = None
    for key, value in metrics.items():
        name = canonical(key, default_split, step_suffixes=step_suffixes)
        if name == "epoch":
            epoch = value
            continue
        out[name] = value
        if name != key:
            originals[name] = key
    return out, originals, epoch


def epoch_step(epoch_index: int) -> int:
    """The step of an epoch-level point: the 0-based epoch index + 1 (step 1 ends the first epoch)."""
    return int(epoch_index) + 1
