"""One tracked top-level ``fit``: which run (the core's :class:`~epochal.lifecycle.Tracking`), and what it records.

Which run: inside a run the user opened (``with epochal.init(...):``) the fit logs into it;
otherwise it opens a run of its own, named after the estimator and finished when ``fit``
returns (``failed`` with the traceback when ``fit`` raises). A run another integration
opened for itself (a Keras training still open) is never used.

The config, the rule: in a run autolog opened, the estimator's ``get_params(deep=True)`` plus
``estimator_class``. In a run the user opened, several fits may share the run, so each
top-level fit's params go under a key named after its class (``config["LogisticRegression"]
== {"C": ..., ...}``, a refit of the same class replaces it) and ``estimator_class`` names the
class of the latest top-level fit. Data steps (scalers, imputers...) make no run and write
nothing (see :func:`._sklearn_patch.is_data_step`).

Training metrics are computed on the ``X`` passed to ``fit``. When a step of the estimator
may write into ``X`` (a class from outside scikit-learn, or a ``copy=False`` parameter), a
copy of ``X`` is taken before ``fit``, and each call the metrics make into the estimator gets
a copy of that copy; otherwise no copy is made.
"""

from __future__ import annotations

import inspect
import logging
import time
from concurrent import futures
from typing import Any, Callable, Mapping

from ..lifecycle import Tracking
from . import _sklearn_eval as evaluation
from ._sklearn_metrics import train_name, training_metrics
from ._sklearn_plots import log_training_plots
from ._sklearn_search import log_model, log_search

__all__ = ["tracked_fit"]

log = logging.getLogger("epochal")


def tracked_fit(original: Callable, estimator: Any, args: tuple, kwargs: dict, options: Mapping[str, Any]) -> Any:
    """Call ``original(estimator, *args, **kwargs)`` inside its run; tracking never changes what fit does."""
    try:
        session = _Session(estimator, original, args, kwargs, options)
    except Exception:
        log.warning("epochal: sklearn: could not start tracking %s", type(estimator).__name__, exc_info=True)
        return original(estimator, *args, **kwargs)
    started = time.perf_counter()
    try:
        result = original(estimator, *args, **kwargs)
    except BaseException as exc:
        session.tracking.end(error=exc)
        raise
    session.succeeded(time.perf_counter() - started)
    return result


class _Session:
    def __init__(self, estimator: Any, original: Callable, args: tuple, kwargs: dict,
                 options: Mapping[str, Any]) -> None:
        self.estimator, self.options = estimator, options
        cls = type(estimator)
        init = dict(options.get("init", {}))
        init["tags"] = ["sklearn", *init.get("tags", ())]
        self.tracking = tracking = Tracking("sklearn")
        self.run = run = tracking.start(**{"name": cls.__name__, **init})  # autolog(name=...) wins
        self.active = run.is_owner and not run.disabled
        bound = _bind(original, estimator, args, kwargs)
        self.X, self.y = bound.get("X"), bound.get("y", bound.get("Y"))
        self.sample_weight = bound.get("sample_weight")
        if not self.active:
            return
        with tracking.guard("params"):
            self._log_params(f"{cls.__module__.split('._')[0]}.{cls.__qualname__}")
        if options.get("log_datasets"):
            for name, data in (("X_train", self.X), ("y_train", self.y)):
                if data is not None:
                    with tracking.guard(f"dataset {name}"):
                        evaluation.note_dataset(tracking, name, run.log_dataset(data, name))
        self.data: Callable[[], Any] = lambda: self.X
        if self.X is not None and hasattr(self.X, "copy") and _may_write_into_X(estimator):
            with tracking.guard("copy of X for the training metrics"):
                pristine = self.X.copy()
                self.data = pristine.copy  # each metric's call gets its own copy: a step may write into it

    def _log_params(self, class_path: str) -> None:
        params = self.estimator.get_params(deep=True)
        if self.tracking.owns:
            self.run.config.update({**params, "estimator_class": class_path})
        else:
            self.run.config.update({type(self.estimator).__name__: params, "estimator_class": class_path})

    def succeeded(self, seconds: float) -> None:
        tracking, est = self.tracking, self.estimator
        children = None
        with tracking.guard("fit results"):
            if self.active:
                children = self._log_results(seconds)
            evaluation.remember_fit(est, tracking)
        tracking.end()
        if children is not None:  # every run is finished when fit returns
            futures.wait([children], timeout=getattr(self.run, "finish_timeout", None))

    def _log_results(self, seconds: float) -> Any:
        est, run, tracking = self.estimator, self.run, self.tracking
        searched = hasattr(est, "cv_results_")
        refitted = not searched or getattr(est, "refit", True) is not False
        if refitted:
            made: dict[str, Any] = {}  # predictions the metrics made, reused by the plots
            metrics = training_metrics(est, self.data, self.y, self.sample_weight, tracking.warn, made)
            if metrics:
                run.log({train_name(k): v for k, v in metrics.items()})
            if self.options.get("log_plots", True):
                with tracking.guard("training plots"):  # drawn off this thread, beside the training metrics
                    log_training_plots(run, est, self.data, self.y, self.sample_weight, max(run.step - 1, 0), made)
        run.summary.update(fit_time=seconds)
        children = None
        if searched:
            with tracking.guard("search results"):
                children = log_search(tracking, est, self.options.get("max_child_runs", 5))
        if self.options.get("log_models") and refitted:
            with tracking.guard("model"):
                log_model(run, getattr(est, "best_estimator_", est))
        return children


def _may_write_into_X(estimator: Any) -> bool:
    """True when a step nested in ``estimator`` is not scikit-learn's own or was given ``copy=False``."""
    try:
        nested = [v for v in estimator.get_params(deep=True).values() if hasattr(v, "get_params")]
    except Exception:
        return False
    for step in nested:
        if not type(step).__module__.startswith("sklearn."):
            return True
        if getattr(step, "copy", None) is False:
            return True
    return False


def _bind(original: Callable, estimator: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    try:
        return dict(inspect.signature(original).bind(estimator, *args, **kwargs).arguments)
    except (TypeError, ValueError):
        return {"X": args[0] if args else kwargs.get("X"), "y": args[1] if len(args) > 1 else kwargs.get("y")}
