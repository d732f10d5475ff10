"""Post-fit metrics: ``score()``, ``sklearn.metrics`` calls on a model's predictions, and their datasets.

A fitted estimator remembers the :class:`~epochal.lifecycle.Tracking` of its fit. Its
``predict``-like calls note the prediction (by identity, weakly: a recycled ``id()`` never
matches) with the name of the dataset it was made from; a metric function called on that
prediction, or ``score()``, is recorded in the fit's run under ``test/<metric>@<dataset>``.

Dataset names: data the run has already recorded (same sha256: the training data, an earlier
evaluation set, also as a copy) keeps the name it has there (``X_train``...). New data is named
after what the caller's code binds it to (``X_test`` in ``model.predict(X_test)``; the first
frame outside scikit-learn and epochal is read, by identity), else ``eval``; a name already
used in the run for other data becomes ``X_test-2``, ``-3``... Each new input is recorded in
the run's ``datasets`` under that name (fingerprinted, as the training data is).

Where it goes: the run if still open (the user's ``epochal.init`` block). An own run that
has finished is reopened for the write and finished again (the core's ``Tracking.reopen``),
so its status is right at every moment; a user's run that has ended is left alone.
"""

from __future__ import annotations

import functools
import threading
import weakref
from types import FrameType
from typing import Any, Mapping

from ..datasets import fingerprint
from ..lifecycle import Tracking

__all__ = ["configure", "remember_fit", "note_dataset", "prediction", "scored", "metric_called", "forget_all"]

_REOPEN_KEYS = ("system_interval", "flush_interval", "finish_timeout", "sinks")
_fits: weakref.WeakKeyDictionary[Any, Tracking] = weakref.WeakKeyDictionary()  # fitted estimator -> its fit
_names: weakref.WeakKeyDictionary[Tracking, dict[str, Any]] = weakref.WeakKeyDictionary()  # name -> sha256
_predictions: dict[int, tuple[weakref.ref, Tracking, str]] = {}
_lock = threading.RLock()
_reopen_options: dict[str, Any] = {}  # autolog's init arguments that also apply when a run is reopened
_settings: dict[str, Any] = {}


def configure(init: Mapping[str, Any], log_datasets: bool) -> None:
    """Take autolog's ``epochal.init`` arguments (those that matter when reopening a run) and options."""
    _reopen_options.clear()
    _reopen_options.update({k: init[k] for k in _REOPEN_KEYS if k in init})
    _settings["log_datasets"] = log_datasets


def remember_fit(estimator: Any, tracking: Tracking) -> None:
    try:
        _fits[estimator] = tracking
    except TypeError:  # not weak-referenceable: no post-fit metrics for it
        pass


def note_dataset(tracking: Tracking, name: str, facts: Mapping[str, Any]) -> None:
    """A dataset the run already recorded (the training data): its name is taken for that data."""
    with _lock:
        _names.setdefault(tracking, {})[name] = facts.get("sha256")


def prediction(estimator: Any, X: Any, result: Any, frame: FrameType | None) -> None:
    """``estimator`` predicted ``result`` from ``X``: note it for metric calls, record ``X`` as a dataset."""
    tracking = _fits.get(estimator)
    if tracking is None:
        return
    name, new = _dataset(tracking, X, frame)
    if new is not None:
        _record(tracking, None, new)
    for obj in (result, getattr(result, "base", None)):  # proba[:, 1] is a view of proba
        if obj is not None:
            try:
                ref = weakref.ref(obj, functools.partial(_forget, id(obj)))
            except TypeError:  # lists, tuples: not matched later
                continue
            _predictions[id(obj)] = (ref, tracking, name)


def scored(estimator: Any, X: Any, value: float, frame: FrameType | None) -> None:
    """``estimator.score(X, ...)`` returned ``value``."""
    from ._sklearn_metrics import score_name

    tracking = _fits.get(estimator)
    if tracking is not None:
        name, new = _dataset(tracking, X, frame)
        _record(tracking, {score_name(estimator, name): value}, new)


def metric_called(function: str, predicted: Any, call_options: Mapping[str, Any], value: float) -> None:
    """A ``sklearn.metrics`` function was called on ``predicted``; record it if a tracked model made it."""
    from ._sklearn_metrics import metric_name

    for obj in (predicted, getattr(predicted, "base", None)):
        entry = _predictions.get(id(obj)) if obj is not None else None
        if entry is not None and entry[0]() is obj:
            _record(entry[1], {metric_name(function, call_options, entry[2]): value})
            return


def forget_all() -> None:
    with _lock:
        _predictions.clear()
        _fits.clear()
        _names.clear()


def _forget(key: int, ref: weakref.ref) -> None:
    entry = _predictions.get(key)
    if entry is not None and entry[0] is ref:
        _predictions.pop(key, None)


def _dataset(tracking: Tracking, X: Any, frame: FrameType | None) -> tuple[str, tuple[str, Any] | None]:
    """The name of ``X`` in this run, and ``(name, X)`` when it is new there and datasets are logged."""
    sha = fingerprint(X).get("sha256")
    with _lock:
        seen = _names.setdefault(tracking, {})
        known = next((k for k, v in seen.items() if sha is not None and v == sha), None)
        if known is not None:  # data the run has already recorded keeps its name there
            return known, None
        base = _variable(X, frame) or "eval"
        name, n = base, 1
        while name in seen and (sha is None or seen[name] != sha):
            n += 1
            name = f"{base}-{n}"
        new = name not in seen
        seen[name] = sha
    return name, (name, X) if new and _settings.get("log_datasets") else None


def _variable(obj: Any, frame: FrameType | None) -> str | None:
    """The name bound to ``obj`` in the first frame outside scikit-learn and epochal, if any."""
    for _ in range(8):
        if frame is None:
            return None
        module = frame.f_globals.get("__name__", "")
        if not module.startswith(("sklearn.", "epochal.", "joblib.")):
            return next((k for k, v in frame.f_locals.items() if v is obj and not k.startswith("_")), None)
        frame = frame.f_back
    return None


def _record(tracking: Tracking, values: Mapping[str, Any] | None, dataset: tuple[str, Any] | None = None) -> None:
    """Add summary ``values`` (or a dataset) to the fit's run, reopening an own finished run for it."""
    with _lock:
        run = tracking.run
        if run is None or run.disabled or not run.is_owner:
            return
        reopened = not tracking.is_open
        if reopened:
            if not tracking.owns:
                return  # the user's run has ended: not ours to reopen
            run = tracking.reopen(**_reopen_options)
        with tracking.guard("post-fit metrics"):
            if values:
                run.summary.update(values)
            if dataset is not None:
                run.log_dataset(dataset[1], dataset[0])
        if reopened:
            tracking.end()
