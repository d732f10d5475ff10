"""What the Keras callback reads from a model and its fit: scalars, config facts, the fit's callbacks."""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import tempfile
from types import FrameType
from typing import Any, Mapping

import keras

from epochal.media import Histogram
from epochal.values import to_number

__all__ = ["scalars", "fit_facts", "store_summary", "fit_callbacks", "iterations", "learning_rate", "file_state",
           "weight_histograms"]

log = logging.getLogger("epochal")


def scalars(logs: Mapping[str, Any] | None) -> dict[str, float | int]:
    """The numeric entries of Keras ``logs`` (a non-scalar entry is skipped)."""
    out = {}
    for key, value in (logs or {}).items():
        try:
            out[key] = to_number(key, value)
        except (TypeError, ValueError):
            log.debug("epochal: Keras log %r is not a scalar; skipped", key)
    return out


def iterations(model: Any) -> int:
    """The optimizer's step count (the record's ``step``)."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def learning_rate(model: Any) -> float | None:
    """The learning rate now (a schedule evaluated at the iteration count), or None."""
    try:
        return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    except Exception:
        return None


def fit_facts(model: Any, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Config of a fit: epochs, steps per epoch, optimizer config, model class and parameter counts, loss."""
    params = params or {}
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    frozen = sum(math.prod(w.shape) for w in model.non_trainable_weights)
    optimizer = dict(model.optimizer.get_config())
    lr = optimizer.get("learning_rate")
    if isinstance(lr, dict):  # a serialized LearningRateSchedule
        optimizer["learning_rate"] = {"class": lr.get("class_name"), **(lr.get("config") or {})}
    facts = {
        "epochs": params.get("epochs"), "steps_per_epoch": params.get("steps"),
        "optimizer": {"class": type(model.optimizer).__name__, **optimizer},
        "model": {"class": type(model).__name__, "name": model.name,
                  "params": {"trainable": int(trainable), "non_trainable": int(frozen),
                             "total": int(trainable + frozen)}},
        "loss": _loss_name(model.loss),
    }
    return {k: v for k, v in facts.items() if v is not None}


def _loss_name(loss: Any) -> Any:
    if loss is None or isinstance(loss, str):
        return loss
    if isinstance(loss, Mapping):
        return {str(k): _loss_name(v) for k, v in loss.items()}
    if isinstance(loss, (list, tuple)):
        return [_loss_name(v) for v in loss]
    return getattr(loss, "name", None) or getattr(loss, "__name__", None) or type(loss).__name__


def store_summary(run: Any, model: Any) -> None:
    """``model.summary()`` as the text artifact ``model-summary``."""
    lines: list[str] = []
    model.summary(print_fn=lambda text, *a, **k: lines.append(str(text)))
    with tempfile.TemporaryDirectory(prefix="epochal-keras-") as tmp:
        path = os.path.join(tmp, "model_summary.txt")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines).rstrip() + "\n")
        run.log_artifact(path, name="model-summary", type="text")


def fit_callbacks(callback: Any) -> list[Any]:
    """The other callbacks of the fit ``callback`` is in (Keras gives a callback no view of them).

    Found as the ``CallbackList`` that is calling ``callback`` (a few frames up the stack),
    so it works for any fit, autologged or not; empty when called from elsewhere.
    """
    frame: FrameType | None = sys._getframe(1)
    for _ in range(8):
        if frame is None:
            break
        owner = frame.f_locals.get("self")
        if isinstance(owner, keras.callbacks.CallbackList) and any(c is callback for c in owner.callbacks):
            return list(owner.callbacks)
        frame = frame.f_back
    return []


def file_state(path: str) -> tuple[int, int, int] | None:
    """(mtime, size, inode) of ``path``, or None: tells whether a checkpoint was written."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def weight_histograms(model: Any) -> dict[str, Histogram]:
    """A histogram of each weight, keyed ``weights/<weight path>`` (``weights/dense/kernel``)."""
    return {"weights/" + re.sub(r"[^A-Za-z0-9._=+/-]", "_", w.path): Histogram(keras.ops.convert_to_numpy(w))
            for w in model.weights}
