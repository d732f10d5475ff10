"""``autolog()`` for Keras: ``keras.Model.fit``/``evaluate`` patched to add one ``EpochalCallback`` per model."""

from __future__ import annotations

import functools
import inspect
import weakref
from typing import Any, Callable

import keras

from epochal.checkpoints import Checkpoints
from epochal.integrations import Patches

from .keras import EpochalCallback

__all__ = ["autolog"]

_FIT_ARGS = ("batch_size", "epochs", "steps_per_epoch", "initial_epoch", "validation_split", "validation_freq",
             "shuffle")

_patches = Patches()  # fit/evaluate on keras.Model, and what keras.Model.__dict__ held before
_options: dict[str, Any] = {}
_callbacks: weakref.WeakKeyDictionary[Any, EpochalCallback] = weakref.WeakKeyDictionary()  # model -> its callback


def autolog(disable: bool = False, log_every_n_batches: int | None = None, checkpoints: Checkpoints | bool = "best",
            keep_last: int | None = None, **init_kwargs: Any) -> None:
    """Track every ``keras.Model.fit`` (one run per model) and the ``evaluate`` after it.

    A fit given its own ``EpochalCallback`` keeps it. ``disable=True`` restores ``fit`` and
    ``evaluate`` exactly.
    """
    if disable:
        _patches.restore()
        _callbacks.clear()
        return
    options = dict(log_every_n_batches=log_every_n_batches, checkpoints=checkpoints, keep_last=keep_last,
                   **init_kwargs)
    EpochalCallback(**options)  # user errors surface now, not at the first fit
    _options.clear()
    _options.update(options)
    _callbacks.clear()
    if not _patches:
        _patches.swap(keras.Model, "fit", _patched_fit)
        _patches.swap(keras.Model, "evaluate", _patched_evaluate)


def _with_callback(bound: inspect.BoundArguments, callback: EpochalCallback | None) -> bool:
    """Add ``callback`` to the call's callbacks unless the user gave one (or a CallbackList: Keras' own call)."""
    given = bound.arguments.get("callbacks") or []
    if callback is None or isinstance(given, keras.callbacks.CallbackList):
        return False
    given = list(given) if isinstance(given, (list, tuple)) else [given]
    if any(isinstance(c, EpochalCallback) for c in given):
        return False
    bound.arguments["callbacks"] = [*given, callback]
    return True


def _patched_fit(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def fit(self, *args, **kwargs):
        callback = _callbacks.get(self) or EpochalCallback(**_options)
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError:
            return original(self, *args, **kwargs)  # Keras' own error for a wrong argument
        if _with_callback(bound, callback):
            _callbacks[self] = callback
            arguments = {k: p.default for k, p in signature.parameters.items()} | dict(bound.arguments)
            callback._fit_args = {k: arguments[k] for k in _FIT_ARGS if arguments.get(k) is not None}
            x = arguments.get("x")
            if hasattr(x, "shape"):
                callback._data = x
                if arguments.get("batch_size") is None and arguments.get("steps_per_epoch") is None:
                    callback._fit_args["batch_size"] = 32  # Keras' default for arrays
            args, kwargs = bound.args[1:], bound.kwargs
        else:
            callback = None
        try:
            return original(self, *args, **kwargs)
        except BaseException as exc:
            if callback is not None:
                callback.stop_following()
                callback.tracking.end(error=exc)
            raise

    return fit


def _patched_evaluate(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def evaluate(self, *args, **kwargs):
        callback = _callbacks.get(self)
        bound = signature.bind(self, *args, **kwargs) if callback is not None else None
        if bound is not None and _with_callback(bound, callback):
            args, kwargs = bound.args[1:], bound.kwargs
        return original(self, *args, **kwargs)

    return evaluate
