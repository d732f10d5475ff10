"""What scikit-learn autologging measures, and every name it logs under (the one place for names).

Training metrics (:func:`training_metrics`), computed on the ``X`` given to ``fit``:

- every estimator with ``score()``: ``train/score`` (its own score: accuracy, R², KMeans'
  negative inertia...; ``sample_weight`` passed when ``score`` takes it);
- classifiers: ``train/accuracy``, weighted ``precision``/``recall``/``f1``, and from
  ``predict_proba`` ``log_loss`` and ``roc_auc`` (one-vs-rest, weighted, for more than 2 classes);
- regressors: ``train/mse``, ``rmse``, ``mae``, ``r2``.

Each metric stands alone: one that fails (a ``predict_proba`` that raises, a target it does not
apply to) is left out with a warning that names it, and the others are kept.

Post-fit names: ``test/<metric>@<dataset>``, e.g. ``test/r2@X_test`` for ``model.score(X_test, y)``
and ``test/f1[average=macro]@X_val`` for ``f1_score(y_val, model.predict(X_val), average="macro")``.
``<metric>`` is the short name (``accuracy``, ``r2``... as in training) plus the call's plain
options in brackets; ``<dataset>`` is named by :mod:`._sklearn_eval`.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, Callable, Mapping

from ..names import SKLEARN
from ..values import to_number

__all__ = ["training_metrics", "train_name", "metric_name", "score_name", "as_number"]

_SHORT = {
    "accuracy_score": "accuracy", "precision_score": "precision", "recall_score": "recall", "f1_score": "f1",
    "roc_auc_score": "roc_auc", "mean_squared_error": "mse", "root_mean_squared_error": "rmse",
    "mean_absolute_error": "mae", "r2_score": "r2",
}
Warn = Callable[[str, BaseException], None]
_TEST = SKLEARN.with_split("test")


def training_metrics(estimator: Any, data: Callable[[], Any], y: Any, sample_weight: Any,
                     warn: Warn, made: dict[str, Any] | None = None) -> dict[str, float]:
    """Training metrics of a fitted estimator (bare names), each computed and guarded on its own.

    ``data()`` returns the training ``X`` for each call into the estimator (a fresh copy each
    time where a step may write into it). ``made`` receives the predictions made, by method
    name (the training plots reuse them).
    """
    from sklearn import metrics as m
    from sklearn.base import is_classifier, is_regressor

    out: dict[str, float] = {}
    sw = {"sample_weight": sample_weight}

    def put(name: str, compute: Callable[[], Any]) -> None:
        try:
            out[name] = float(compute())
        except Exception as exc:
            warn(f"training metric {train_name(name)}", exc)

    if hasattr(estimator, "score") and (y is not None or _optional_y(estimator.score)):
        score_kw = sw if sample_weight is not None and _takes(estimator.score, "sample_weight") else {}
        put("score", lambda: estimator.score(data(), y, **score_kw))
    if y is None or not (is_classifier(estimator) or is_regressor(estimator)):
        return out
    made = {} if made is None else made
    y_pred = made["predict"] = _call(estimator, "predict", data, warn)
    if is_classifier(estimator):
        if y_pred is not None:
            put("accuracy", lambda: m.accuracy_score(y, y_pred, **sw))
            for name in ("precision", "recall", "f1"):
                score = getattr(m, f"{name}_score")
                put(name, functools.partial(score, y, y_pred, average="weighted", zero_division=0, **sw))
        proba = _call(estimator, "predict_proba", data, warn) if hasattr(estimator, "predict_proba") else None
        made["predict_proba"] = proba
        if proba is not None:
            labels = getattr(estimator, "classes_", None)
            put("log_loss", lambda: m.log_loss(y, proba, labels=labels, **sw))
            if getattr(proba, "ndim", 0) == 2 and proba.shape[1] == 2:
                put("roc_auc", lambda: m.roc_auc_score(y, proba[:, 1], **sw))
            else:
                put("roc_auc", lambda: m.roc_auc_score(y, proba, multi_class="ovr", average="weighted",
                                                       labels=labels, **sw))
    elif y_pred is not None:
        put("mse", lambda: m.mean_squared_error(y, y_pred, **sw))
        if "mse" in out:
            out["rmse"] = math.sqrt(out["mse"])
        put("mae", lambda: m.mean_absolute_error(y, y_pred, **sw))
        put("r2", lambda: m.r2_score(y, y_pred, **sw))
    return out


def _call(estimator: Any, method: str, data: Callable[[], Any], warn: Warn) -> Any:
    try:
        return getattr(estimator, method)(data())
    except Exception as exc:  # e.g. a refit=False search has no predict: its metrics are left out
        warn(f"{type(estimator).__name__}.{method} for the training metrics", exc)
        return None


def _takes(function: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _optional_y(function: Callable) -> bool:
    try:
        param = inspect.signature(function).parameters.get("y")
    except (TypeError, ValueError):
        return False
    return param is not None and param.default is None


def train_name(name: str) -> str:
    """``train/<name>`` for a training metric."""
    return SKLEARN.canonical(name)


def metric_name(function: str, options: Mapping[str, Any], dataset: str) -> str:
    """``f1_score(average="macro")`` on dataset ``X_val`` -> ``test/f1[average=macro]@X_val``."""
    name = _SHORT.get(function) or function.removesuffix("_score")
    extras = [f"{k}={v}" for k, v in sorted(options.items()) if isinstance(v, (str, int, float, bool)) or v is None]
    if extras:
        name += "[" + ",".join(extras).replace("/", "_") + "]"
    return _TEST.canonical(f"{name}@{dataset}")


def score_name(estimator: Any, dataset: str) -> str:
    """``test/<what estimator.score measures>@<dataset>``: accuracy, r2, a search's scoring, or score."""
    from sklearn.base import ClassifierMixin, RegressorMixin
    from sklearn.pipeline import Pipeline

    name = None
    if hasattr(estimator, "cv_results_") and getattr(estimator, "scoring", None) is not None:
        scoring, refit = estimator.scoring, getattr(estimator, "refit", None)
        name = scoring if isinstance(scoring, str) else refit if isinstance(refit, str) else "score"
    elif hasattr(estimator, "cv_results_"):
        estimator = getattr(estimator, "best_estimator_", estimator)
    while name is None and isinstance(estimator, Pipeline):
        estimator = estimator.steps[-1][1]
    if name is None:
        owner = next((k for k in type(estimator).__mro__ if "score" in k.__dict__), None)
        name = {ClassifierMixin: "accuracy", RegressorMixin: "r2"}.get(owner, "score")
    return _TEST.canonical(f"{name}@{dataset}")


def as_number(value: Any) -> float | int | None:
    """A metric call's result as one number, or None (arrays, reports, tuples, bools)."""
    if isinstance(value, bool):
        return None
    try:
        return to_number("metric", value)
    except (TypeError, ValueError):
        return None
