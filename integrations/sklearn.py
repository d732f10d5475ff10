"""scikit-learn autologging: every top-level ``fit`` becomes a tracked run.

>>> from epochal.integrations import sklearn as epochal_sklearn
>>> epochal_sklearn.autolog(project="iris")
>>> model = LogisticRegression().fit(X, y)        # one run: params, train/* metrics, model
>>> model.score(X_test, y_test)                   # -> test/accuracy@X_test in that run's summary

What is a run: the outermost ``fit`` of a thread (steps of a pipeline, candidates of a search,
folds of ``cross_validate`` make none, also when joblib runs them in worker threads: "inside a
tracked fit" travels with sklearn's own ``Parallel``/``delayed`` into the workers, as sklearn's
config does). Which run it logs into, what it records and the config rule: see
:mod:`._sklearn_fit`; post-fit metrics and dataset names: :mod:`._sklearn_eval`; metric
names: :mod:`._sklearn_metrics`; searches and models: :mod:`._sklearn_search`.
``autolog(disable=True)`` puts every original object back.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import sys
import threading
from typing import Any, Callable

from ..lifecycle import check_init_args
from . import _sklearn_eval as evaluation
from . import _sklearn_patch as patching
from ._sklearn_fit import tracked_fit
from ._sklearn_metrics import as_number

__all__ = ["autolog"]

log = logging.getLogger("epochal")
_inside: contextvars.ContextVar[bool] = contextvars.ContextVar("epochal_sklearn_inside", default=False)
_CARRY = "_epochal_inside"  # set on sklearn's _FuncWrapper: the task runs inside a tracked fit
_lock = threading.Lock()
_patched: list[tuple[Any, str, Any]] = []
_options: dict[str, Any] = {}


def autolog(disable: bool = False, log_models: bool = True, max_child_runs: int = 5, log_datasets: bool = True,
            log_post_training_metrics: bool = True, log_plots: bool = True, **init_kwargs: Any) -> None:
    """Track every scikit-learn ``fit``; ``disable=True`` restores the original methods.

    ``init_kwargs`` (``project``, ``tags``, ``dir``, ...) go to :func:`epochal.init` for the runs
    autolog opens; ``max_child_runs`` best search candidates become child runs (0: none);
    ``log_plots=False`` skips the training plots of the top-level fit (confusion matrix, ROC and PR curves;
    residuals for regressors: Pillow charts drawn off the training thread, some 10 ms of CPU each with the logging).
    """
    from . import _switched

    if disable:
        with _lock:
            patching.restore(_patched)
            evaluation.forget_all()
        _switched("sklearn", False)
        return
    for name, flag in (("log_models", log_models), ("log_datasets", log_datasets), ("log_plots", log_plots),
                       ("log_post_training_metrics", log_post_training_metrics)):
        if not isinstance(flag, bool):
            raise TypeError(f"sklearn autolog(): {name} must be True or False, got {flag!r}")
    if type(max_child_runs) is not int or max_child_runs < 0:
        raise ValueError(f"sklearn autolog(): max_child_runs must be an int >= 0 (0 logs no candidate runs), "
                         f"got {max_child_runs!r}")
    init = check_init_args("sklearn autolog()", init_kwargs)
    fixed = sorted({"id", "resume"} & set(init))
    if fixed:
        raise TypeError(f"sklearn autolog() opens a new run for each fit, so it takes no {fixed}; to log fits into "
                        "one run, open it yourself (with epochal.init(id=..., resume=...):) and fit inside it")
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ImportError("sklearn autolog needs scikit-learn: pip install 'epochal[sklearn]'") from None
    _options.update(log_models=log_models, max_child_runs=max_child_runs, log_datasets=log_datasets,
                    log_post_training_metrics=log_post_training_metrics, log_plots=log_plots, init=init)
    evaluation.configure(init, log_datasets)
    with _lock:
        if not _patched:
            _patched.extend(patching.patch(_WRAPPERS))
    _switched("sklearn", True)


def _quietly(original: Callable, args: tuple, kwargs: dict) -> Any:
    """Call ``original`` marked "inside": fits, predictions and metrics it makes are not tracked."""
    token = _inside.set(True)
    try:
        return original(*args, **kwargs)
    finally:
        _inside.reset(token)


def _wrap_fit(original: Callable) -> Callable:
    @functools.wraps(original)
    def fit(self, *args, **kwargs):
        if _inside.get() or not _patched:
            return original(self, *args, **kwargs)
        if patching.is_data_step(type(self)):
            return _quietly(original, (self, *args), kwargs)
        token = _inside.set(True)
        try:
            return tracked_fit(original, self, args, kwargs, _options)
        finally:
            _inside.reset(token)
    return fit


def _after(where: str, note: Callable[..., None], *args: Any) -> None:
    """Post-fit tracking, after the user's call returned: never raises."""
    try:
        note(*args)
    except Exception:
        log.warning("epochal: sklearn: %s could not be recorded (the call itself succeeded)", where, exc_info=True)


def _wrap_predict(original: Callable) -> Callable:
    @functools.wraps(original)
    def predict(self, *args, **kwargs):
        if _inside.get() or not _patched:
            return original(self, *args, **kwargs)
        result = _quietly(original, (self, *args), kwargs)
        if _options.get("log_post_training_metrics"):
            X = args[0] if args else kwargs.get("X")
            _after(f"{type(self).__name__}.{original.__name__}", evaluation.prediction, self, X, result,
                   sys._getframe(1))
        return result
    return predict


def _wrap_score(original: Callable) -> Callable:
    @functools.wraps(original)
    def score(self, *args, **kwargs):
        if _inside.get() or not _patched:
            return original(self, *args, **kwargs)
        result = _quietly(original, (self, *args), kwargs)
        value = as_number(result)
        if value is not None and _options.get("log_post_training_metrics"):
            X = args[0] if args else kwargs.get("X")
            _after(f"{type(self).__name__}.score", evaluation.scored, self, X, value, sys._getframe(1))
        return result
    return score


def _wrap_metric(original: Callable) -> Callable:
    signature = inspect.signature(original)
    predicted = list(signature.parameters)[1]

    @functools.wraps(original)
    def metric(*args, **kwargs):
        if _inside.get() or not _patched:
            return original(*args, **kwargs)
        result = _quietly(original, args, kwargs)
        value = as_number(result)
        if value is not None and _options.get("log_post_training_metrics"):
            def note() -> None:
                bound = signature.bind(*args, **kwargs).arguments
                options = {k: v for k, v in bound.items() if k not in ("y_true", predicted, "sample_weight")}
                evaluation.metric_called(original.__name__, bound.get(predicted), options, value)
            _after(original.__name__, note)
        return result
    return metric


def _wrap_quiet(original: Callable) -> Callable:
    @functools.wraps(original)
    def quiet(*args, **kwargs):
        return _quietly(original, args, kwargs)
    return quiet


def _wrap_parallel(original: Callable) -> Callable:
    """sklearn's ``Parallel.__call__``: tasks dispatched from inside a tracked fit carry that with them."""
    @functools.wraps(original)
    def call(self, iterable):
        if not _inside.get():
            return original(self, iterable)
        return original(self, ((_carry(task), args, kwargs) for task, args, kwargs in iterable))
    return call


def _carry(task: Any) -> Any:
    from sklearn.utils.parallel import _FuncWrapper

    if isinstance(task, _FuncWrapper):  # a plain joblib.delayed function is shared: never marked
        setattr(task, _CARRY, True)
    return task


def _wrap_worker(original: Callable) -> Callable:
    """sklearn's ``_FuncWrapper.__call__`` (in the worker): run the task "inside" when it was dispatched so."""
    @functools.wraps(original)
    def call(self, *args, **kwargs):
        if getattr(self, _CARRY, False) and not _inside.get():
            return _quietly(original, (self, *args), kwargs)
        return original(self, *args, **kwargs)
    return call


_WRAPPERS: dict[str, Callable[[Callable], Callable]] = {
    "fit": _wrap_fit, "predict": _wrap_predict, "score": _wrap_score, "metric": _wrap_metric,
    "quiet": _wrap_quiet, "parallel": _wrap_parallel, "worker": _wrap_worker,
}
