"""scikit-learn autologging: every ``fit`` becomes a tracked run.

>>> from epochal.integrations import sklearn as epochal_sklearn
>>> epochal_sklearn.autolog(project="iris")
>>> model = LogisticRegression().fit(X, y)        # one run: params, train/* metrics, model
>>> model.score(X_test, y_test)                   # -> test/accuracy in that run's summary

``autolog()`` wraps ``fit``/``fit_transform``/``fit_predict`` (and, for post-fit scoring,
``predict``/``predict_proba``/``predict_log_proba``/``decision_function``/``score`` and the
``sklearn.metrics`` functions) on the class that defines each, for every class of
``sklearn.utils.all_estimators()`` plus ``Pipeline`` and the searches. ``autolog(disable=True)``
puts the original objects back. The outermost fit of a thread owns the run (steps of a
pipeline, candidates of a search do not make runs). Inside ``with epochal.init(...):`` fits
log into that run; otherwise each fit makes its own run and finishes it when fit returns.
Post-fit metrics then go to the summary of the estimator's latest run, rewriting a finished
run's ``summary.json`` (see :func:`~epochal.integrations._sklearn_metrics.update_summary`).
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
import threading
import time
import traceback
import weakref
from typing import Any, Callable

from . import _sklearn_metrics as record

__all__ = ["autolog"]

log = logging.getLogger("epochal")
_FIT = ("fit", "fit_transform", "fit_predict")
_PREDICT = ("predict", "predict_proba", "predict_log_proba", "decision_function")
_INIT_KEYS = frozenset({"project", "tags", "notes", "dir", "mode", "sinks", "system_interval",
                        "flush_interval", "finish_timeout"})
_QUIET = ("cross_validate", "cross_val_score", "cross_val_predict", "learning_curve", "validation_curve",
          "permutation_test_score")
_PRED_PARAMS = ("y_pred", "y_score", "y_proba", "y_prob", "probas_pred", "pred_decision")


class _Depth(threading.local):
    value = 0  # > 0 while inside a tracked call of this thread: nested calls pass straight through


_depth = _Depth()
_lock = threading.Lock()
_patches: list[tuple[Any, str, Any]] = []  # (class or module, attribute, original object)
_options: dict[str, Any] = {}
_runs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # fitted estimator -> its latest run
_predictions = record.Predictions()
_target_cache: list[tuple[Any, str, Callable[[Callable], Callable]]] | None = None


def autolog(disable: bool = False, log_models: bool = True, max_child_runs: int = 5,
            log_datasets: bool = True, log_post_training_metrics: bool = True, **init_kwargs: Any) -> None:
    """Track every scikit-learn ``fit`` (``disable=True`` restores the original methods).

    ``init_kwargs`` (``project``, ``tags``, ``dir``, ...) go to :func:`epochal.init` for
    the runs autolog makes; ``max_child_runs`` top search candidates become child runs.
    """
    if disable:
        with _lock:
            for owner, name, original in reversed(_patches):
                setattr(owner, name, original)
            _patches.clear()
            _predictions.clear()
        return
    unknown = sorted(set(init_kwargs) - _INIT_KEYS)
    if unknown:
        raise TypeError(f"sklearn autolog() got unknown arguments {unknown}; init arguments are {sorted(_INIT_KEYS)}")
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ImportError("sklearn autolog needs scikit-learn: pip install 'epochal[sklearn]'") from None
    _options.update(log_models=log_models, max_child_runs=int(max_child_runs), log_datasets=log_datasets,
                    log_post_training_metrics=log_post_training_metrics, init=dict(init_kwargs))
    with _lock:
        if not _patches:
            _patch()


# -- patching ---------------------------------------------------------------------------------
def _targets() -> list[tuple[Any, str, Callable[[Callable], Callable]]]:
    """(defining class or ``sklearn.metrics``, attribute, wrapper) for everything autolog wraps; computed once."""
    global _target_cache
    if _target_cache is not None:
        return _target_cache
    import sklearn.metrics
    import sklearn.model_selection
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import LabelBinarizer, LabelEncoder, MultiLabelBinarizer
    from sklearn.utils import all_estimators

    label_helpers = (LabelEncoder, LabelBinarizer, MultiLabelBinarizer)  # fitted inside metrics, class weights...

    wrappers = {**dict.fromkeys(_FIT, _wrap_fit), **dict.fromkeys(_PREDICT, _wrap_predict), "score": _wrap_score}
    found: dict[tuple[Any, str], Callable] = {}
    for cls in [c for _, c in all_estimators()] + [Pipeline, GridSearchCV, RandomizedSearchCV]:
        for name, wrap in wrappers.items():
            owner = next((k for k in cls.__mro__ if name in k.__dict__), None)
            if owner is None or owner is object or (owner in label_helpers and name in _FIT):
                continue
            if _wrappable(owner.__dict__[name]):
                found.setdefault((owner, name), wrap)
    for name in sklearn.metrics.__all__:
        function = getattr(sklearn.metrics, name, None)
        if inspect.isfunction(function):
            params = list(inspect.signature(function).parameters)
            if len(params) >= 2 and params[0] == "y_true" and params[1] in _PRED_PARAMS:
                found[(sklearn.metrics, name)] = _wrap_metric
    for name in _QUIET:  # their per-fold fits are nested fits: no run each
        if inspect.isfunction(getattr(sklearn.model_selection, name, None)):
            found[(sklearn.model_selection, name)] = _wrap_quiet
    _target_cache = [(owner, name, wrap) for (owner, name), wrap in found.items()]
    return _target_cache


def _patch() -> None:
    for owner, name, wrap in _targets():
        _replace(owner, name, wrap)


def _wrappable(attribute: Any) -> bool:
    """A plain function, or an ``available_if`` descriptor (its ``fn`` gets wrapped); not a property."""
    return inspect.isfunction(attribute) or (
        callable(getattr(attribute, "fn", None)) and hasattr(type(attribute), "__get__"))


def _replace(owner: Any, name: str, wrap: Callable[[Callable], Callable]) -> None:
    """Swap ``owner.name`` for its wrapped form; a conditional ``available_if`` method stays conditional."""
    original = owner.__dict__[name]
    if inspect.isfunction(original):
        patched = wrap(original)
    else:
        patched = copy.copy(original)
        patched.fn = wrap(original.fn)
    setattr(owner, name, patched)
    _patches.append((owner, name, original))


def _passthrough(original: Callable, args: tuple, kwargs: dict) -> Any:
    _depth.value += 1
    try:
        return original(*args, **kwargs)
    finally:
        _depth.value -= 1


def _wrap_quiet(original: Callable) -> Callable:
    @functools.wraps(original)
    def quiet(*args, **kwargs):
        return _passthrough(original, args, kwargs)
    return quiet


def _wrap_fit(original: Callable) -> Callable:
    @functools.wraps(original)
    def fit(self, *args, **kwargs):
        if _depth.value or not _patches:
            return original(self, *args, **kwargs)
        _depth.value += 1
        try:
            return _tracked_fit(original, self, args, kwargs)
        finally:
            _depth.value -= 1
    return fit


def _wrap_predict(original: Callable) -> Callable:
    @functools.wraps(original)
    def predict(self, *args, **kwargs):
        if _depth.value:
            return original(self, *args, **kwargs)
        result = _passthrough(original, (self, *args), kwargs)
        try:
            run = _run_of(self)
            if run is not None and _options.get("log_post_training_metrics"):
                _predictions.remember(result, run)
        except Exception:
            log.warning("epochal: sklearn autolog could not note a prediction", exc_info=True)
        return result
    return predict


def _wrap_score(original: Callable) -> Callable:
    @functools.wraps(original)
    def score(self, *args, **kwargs):
        if _depth.value:
            return original(self, *args, **kwargs)
        result = _passthrough(original, (self, *args), kwargs)
        try:
            run = _run_of(self)
            value = record.as_number(result)
            if run is not None and value is not None and _options.get("log_post_training_metrics"):
                record.update_summary(run, {record.score_name(self): value})
        except Exception:
            log.warning("epochal: sklearn autolog could not record a score", exc_info=True)
        return result
    return score


def _wrap_metric(original: Callable) -> Callable:
    signature = inspect.signature(original)
    prediction = list(signature.parameters)[1]

    @functools.wraps(original)
    def metric(*args, **kwargs):
        if _depth.value:
            return original(*args, **kwargs)
        result = _passthrough(original, args, kwargs)
        try:
            if _options.get("log_post_training_metrics"):
                bound = signature.bind(*args, **kwargs).arguments
                run = _predictions.find(bound.get(prediction))
                value = record.as_number(result)
                if run is not None and value is not None:
                    options = {k: v for k, v in bound.items() if k not in ("y_true", prediction, "sample_weight")}
                    record.update_summary(run, {record.metric_name(original.__name__, options): value})
        except Exception:
            log.warning("epochal: sklearn autolog could not record %s", original.__name__, exc_info=True)
        return result
    return metric


def _run_of(estimator: Any) -> Any:
    try:
        return _runs.get(estimator)
    except TypeError:  # an estimator that is not hashable
        return None


# -- one tracked fit --------------------------------------------------------------------------
def _tracked_fit(original: Callable, estimator: Any, args: tuple, kwargs: dict) -> Any:
    try:
        session = _Session(estimator, original, args, kwargs)
    except Exception:
        log.warning("epochal: sklearn autolog could not start tracking %s", type(estimator).__name__, exc_info=True)
        return original(estimator, *args, **kwargs)
    started = time.perf_counter()
    try:
        result = original(estimator, *args, **kwargs)
    except BaseException as exc:
        session.failed(exc)
        raise
    session.succeeded(time.perf_counter() - started)
    return result


class _Session:
    """The run of one outermost fit: the current run (``epochal.init`` block) or one of its own."""

    def __init__(self, estimator: Any, original: Callable, args: tuple, kwargs: dict) -> None:
        import epochal

        self.estimator = estimator
        cls = type(estimator)
        self.run = epochal.current_run()
        self.owned = self.run is None
        if self.owned:
            init = dict(_options.get("init", {}))
            init["tags"] = ["sklearn", *init.get("tags", ())]
            self.run = epochal.init(name=cls.__name__, **init)
        self.active = self.run.is_owner and not self.run.disabled
        bound = _bind(original, estimator, args, kwargs)
        self.X, self.y, self.sample_weight = bound.get("X"), bound.get("y", bound.get("Y")), bound.get("sample_weight")
        if not self.active:
            return
        self._guard("params", self._log_params, f"{cls.__module__.split('._')[0]}.{cls.__qualname__}")
        if _options.get("log_datasets"):
            for name, data in (("X_train", self.X), ("y_train", self.y)):
                if data is not None:
                    self._guard(f"dataset {name}", self.run.log_dataset, data, name)

    def _guard(self, what: str, fn: Callable, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:
            log.warning("epochal: sklearn autolog could not log %s for run %s", what, self.run.id, exc_info=True)
            return None

    def _log_params(self, class_name: str) -> None:
        values = {**self.estimator.get_params(deep=True), "estimator_class": class_name}
        (self.run.config.update if self.owned else self.run.config.setdefaults)(values)

    def failed(self, exc: BaseException) -> None:
        if self.owned:
            self.run.finish("failed", error="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))

    def succeeded(self, seconds: float) -> None:
        try:
            if self.active:
                self._log_results(seconds)
            _runs[self.estimator] = self.run
        except Exception:
            log.warning("epochal: sklearn autolog could not log a fit", exc_info=True)
        finally:
            if self.owned:
                self.run.finish()

    def _log_results(self, seconds: float) -> None:
        est, run = self.estimator, self.run
        metrics = self._guard("training metrics", record.training_metrics, est, self.X, self.y, self.sample_weight)
        if metrics:
            run.log_native(metrics, split="train")
        run.summary.update(fit_time=seconds)
        if hasattr(est, "cv_results_"):
            self._guard("search results", record.log_search, run, est, _options.get("max_child_runs", 5))
        if _options.get("log_models"):
            self._guard("model", record.log_model, run, getattr(est, "best_estimator_", est))


def _bind(original: Callable, estimator: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    try:
        return dict(inspect.signature(original).bind(estimator, *args, **kwargs).arguments)
    except (TypeError, ValueError):
        return {"X": args[0] if args else kwargs.get("X"), "y": args[1] if len(args) > 1 else kwargs.get("y")}
