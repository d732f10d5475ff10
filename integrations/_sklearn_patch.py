"""Which scikit-learn objects autolog wraps, and putting every original back exactly.

:func:`targets` lists ``(owner, attribute, kind)`` once per process: ``fit``-like methods,
prediction methods and ``score`` on the class that *defines* each (for every class of
``sklearn.utils.all_estimators()`` plus ``Pipeline`` and the searches), the ``sklearn.metrics``
functions that take ``(y_true, y_pred|y_score|...)``, the ``cross_validate`` family (their
inner fits are quiet), and sklearn's joblib helpers (``Parallel.__call__``,
``_FuncWrapper.__call__``) that carry "inside a tracked fit" into worker threads.

:func:`patch` swaps each for ``wrappers[kind](original)``; :func:`restore` puts the very
objects back. An ``available_if`` descriptor stays a descriptor (its ``fn`` is wrapped).

:func:`is_data_step` is the rule for estimators that never make a run of their own: scalers,
imputers, encoders, feature extraction and selection, ``ColumnTransformer`` (as MLflow: data
manipulation, not a model). Their ``fit`` still counts as "inside a fit" for what they call.
"""

from __future__ import annotations

import copy
import functools
import inspect
from typing import Any, Callable

__all__ = ["FIT", "PREDICT", "targets", "patch", "restore", "is_data_step"]

FIT = ("fit", "fit_transform", "fit_predict")
PREDICT = ("predict", "predict_proba", "predict_log_proba", "decision_function", "transform")
_QUIET = ("cross_validate", "cross_val_score", "cross_val_predict", "learning_curve", "validation_curve",
          "permutation_test_score")
_PRED_PARAMS = ("y_pred", "y_score", "y_proba", "y_prob", "probas_pred", "pred_decision")
_DATA_MODULES = ("sklearn.preprocessing", "sklearn.impute", "sklearn.feature_extraction",
                 "sklearn.feature_selection", "sklearn.compose")


@functools.lru_cache(maxsize=1)
def targets() -> tuple[tuple[Any, str, str], ...]:
    """``(class or module, attribute, kind)`` for everything autolog wraps; kind is
    ``fit | predict | score | metric | quiet | parallel | worker``."""
    import sklearn.metrics
    import sklearn.model_selection
    import sklearn.utils.parallel as parallel
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.utils import all_estimators

    kinds = {**dict.fromkeys(FIT, "fit"), **dict.fromkeys(PREDICT, "predict"), "score": "score"}
    found: dict[tuple[Any, str], str] = {}
    for cls in [c for _, c in all_estimators()] + [Pipeline, GridSearchCV, RandomizedSearchCV]:
        for name, kind in kinds.items():
            owner = next((k for k in cls.__mro__ if name in k.__dict__), None)
            if owner is None or owner is object:
                continue
            if kind == "predict" and name == "transform" and is_data_step(owner):
                continue  # a scaler's transform is no prediction worth noting
            if _wrappable(owner.__dict__[name]):
                found.setdefault((owner, name), kind)
    for name in sklearn.metrics.__all__:
        function = getattr(sklearn.metrics, name, None)
        if inspect.isfunction(function):
            params = list(inspect.signature(function).parameters)
            if len(params) >= 2 and params[0] == "y_true" and params[1] in _PRED_PARAMS:
                found[(sklearn.metrics, name)] = "metric"
    for name in _QUIET:
        if inspect.isfunction(getattr(sklearn.model_selection, name, None)):
            found[(sklearn.model_selection, name)] = "quiet"
    found[(parallel.Parallel, "__call__")] = "parallel"
    found[(parallel._FuncWrapper, "__call__")] = "worker"
    return tuple((owner, name, kind) for (owner, name), kind in found.items())


@functools.lru_cache(maxsize=None)
def is_data_step(cls: type) -> bool:
    """True for classes of sklearn's data-manipulation modules (no run of their own)."""
    return cls.__module__.startswith(_DATA_MODULES)


def _wrappable(attribute: Any) -> bool:
    """A plain function, or an ``available_if`` descriptor (its ``fn`` gets wrapped); not a property."""
    return inspect.isfunction(attribute) or (
        callable(getattr(attribute, "fn", None)) and hasattr(type(attribute), "__get__"))


def patch(wrappers: dict[str, Callable[[Callable], Callable]]) -> list[tuple[Any, str, Any]]:
    """Wrap every target; returns ``(owner, attribute, original)`` for :func:`restore`."""
    done: list[tuple[Any, str, Any]] = []
    for owner, name, kind in targets():
        original = owner.__dict__[name]
        if inspect.isfunction(original):
            patched = wrappers[kind](original)
        else:
            patched = copy.copy(original)
            patched.fn = wrappers[kind](original.fn)
        setattr(owner, name, patched)
        done.append((owner, name, original))
    return done


def restore(patched: list[tuple[Any, str, Any]]) -> None:
    """Put back the very objects :func:`patch` replaced, newest first."""
    for owner, name, original in reversed(patched):
        setattr(owner, name, original)
    patched.clear()
