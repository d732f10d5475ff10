"""What scikit-learn autologging records, apart from the patching: metrics, searches, models.

- :func:`training_metrics`: accuracy, weighted precision/recall/F1, log loss and ROC AUC
  for classifiers; MSE, RMSE, MAE and R² for regressors (bare names; the caller adds ``train/``).
- :class:`Predictions`: which run made a prediction array, by identity (weak references,
  so a recycled ``id()`` never matches), for ``sklearn.metrics`` calls after fit.
- :func:`metric_name`: the name a post-fit metric call is logged under.
- :func:`update_summary`: add to a run's summary, also once the run is finished.
- :func:`log_search`: ``cv_results_`` as a CSV artifact, best params/score, top-K child runs.
- :func:`log_model`: the fitted estimator as a ``model`` artifact (skops; pickle with a warning).

Imported only by :mod:`epochal.integrations.sklearn`, so scikit-learn is present.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import math
import tempfile
import weakref
from pathlib import Path
from typing import Any, Mapping

from ..names import canonical
from ..run import new_run_id
from ..store import SUMMARY_FILE, write_json_atomic
from ..values import jsonable, to_number

__all__ = [
    "training_metrics", "metric_name", "score_name", "as_number", "Predictions", "update_summary", "log_search", "log_model",
]

log = logging.getLogger("epochal")
_SHORT_NAMES = {
    "accuracy_score": "accuracy", "precision_score": "precision", "recall_score": "recall", "f1_score": "f1",
    "roc_auc_score": "roc_auc", "mean_squared_error": "mse", "root_mean_squared_error": "rmse",
    "mean_absolute_error": "mae", "r2_score": "r2",
}
PICKLE_WARNING = "pickle: load it only from runs you trust (unpickling runs arbitrary code)"


def _put(out: dict[str, float], name: str, compute: Any) -> None:
    try:
        out[name] = float(compute())
    except Exception as exc:  # one metric that does not apply (multi-output, one class...) drops alone
        log.debug("epochal: sklearn training metric %s skipped: %r", name, exc)


def training_metrics(estimator: Any, X: Any, y: Any, sample_weight: Any = None) -> dict[str, float]:
    """Training-set metrics of a fitted classifier or regressor; ``{}`` for anything else."""
    from sklearn import metrics as m
    from sklearn.base import is_classifier, is_regressor

    out: dict[str, float] = {}
    if y is None or not hasattr(estimator, "predict"):
        return out
    sw = {"sample_weight": sample_weight}
    if is_classifier(estimator):
        y_pred = estimator.predict(X)
        _put(out, "accuracy", lambda: m.accuracy_score(y, y_pred, **sw))
        for name in ("precision", "recall", "f1"):
            score = getattr(m, f"{name}_score")
            _put(out, name, lambda score=score: score(y, y_pred, average="weighted", zero_division=0, **sw))
        if hasattr(estimator, "predict_proba"):
            proba = estimator.predict_proba(X)
            labels = getattr(estimator, "classes_", None)
            _put(out, "log_loss", lambda: m.log_loss(y, proba, labels=labels, **sw))
            if getattr(proba, "ndim", 0) == 2 and proba.shape[1] == 2:
                _put(out, "roc_auc", lambda: m.roc_auc_score(y, proba[:, 1], **sw))
            else:
                _put(out, "roc_auc", lambda: m.roc_auc_score(
                    y, proba, multi_class="ovr", average="weighted", labels=labels, **sw))
    elif is_regressor(estimator):
        y_pred = estimator.predict(X)
        _put(out, "mse", lambda: m.mean_squared_error(y, y_pred, **sw))
        if "mse" in out:
            out["rmse"] = math.sqrt(out["mse"])
        _put(out, "mae", lambda: m.mean_absolute_error(y, y_pred, **sw))
        _put(out, "r2", lambda: m.r2_score(y, y_pred, **sw))
    return out


def metric_name(function: str, options: Mapping[str, Any]) -> str:
    """``test/<name>`` for a ``sklearn.metrics`` call: ``f1_score(average="macro")`` -> ``test/f1[average=macro]``."""
    name = _SHORT_NAMES.get(function) or function.removesuffix("_score")
    extras = [f"{k}={v}" for k, v in sorted(options.items())
              if isinstance(v, (str, int, float, bool)) or v is None]
    if extras:
        name += "[" + ",".join(extras).replace("/", "_") + "]"
    return canonical(name, "test")


def score_name(estimator: Any) -> str:
    """``test/<what estimator.score measures>``: accuracy (classifiers), r2 (regressors), a search's scoring."""
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
    return canonical(name, "test")


class Predictions:
    """Prediction arrays (and their base arrays, so ``proba[:, 1]`` matches) -> the run of their model."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[weakref.ref, Any]] = {}

    def remember(self, result: Any, run: Any) -> None:
        for obj in (result, getattr(result, "base", None)):
            if obj is None:
                continue
            try:
                ref = weakref.ref(obj, functools.partial(self._forget, id(obj)))
            except TypeError:  # lists, tuples: not weak-referenceable, not matched
                continue
            self._by_id[id(obj)] = (ref, run)

    def _forget(self, key: int, ref: weakref.ref) -> None:
        entry = self._by_id.get(key)
        if entry is not None and entry[0] is ref:
            self._by_id.pop(key, None)

    def find(self, value: Any) -> Any:
        """The run whose model predicted ``value`` (or the array it is a view of), else None."""
        for obj in (value, getattr(value, "base", None)):
            entry = self._by_id.get(id(obj)) if obj is not None else None
            if entry is not None and entry[0]() is obj:
                return entry[1]
        return None

    def clear(self) -> None:
        self._by_id.clear()


def update_summary(run: Any, values: Mapping[str, Any]) -> None:
    """Merge ``values`` into ``run.summary``; a finished run's ``summary.json`` is rewritten directly.

    After ``finish()`` the writer thread is closed and nothing else writes that file, so
    the atomic rewrite here cannot race with the run's own store sink.
    """
    run.summary.update(values)
    if getattr(run, "_finished", False) and run.is_owner and not run.disabled:
        write_json_atomic(run.dir / SUMMARY_FILE, run.summary.to_dict())


def _cell(value: Any) -> Any:
    from numpy import ma

    if value is None or value is ma.masked:
        return ""
    if isinstance(value, Mapping):
        return json.dumps(jsonable(value), sort_keys=True)
    value = jsonable(value)
    return value if isinstance(value, (int, float, str)) else json.dumps(value)


def _write_cv_results(results: Mapping[str, Any], path: Path) -> None:
    columns = list(results)
    rows = len(results[columns[0]]) if columns else 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for i in range(rows):
            writer.writerow([_cell(results[c][i]) for c in columns])


def _rank_key(search: Any, results: Mapping[str, Any]) -> str | None:
    refit = getattr(search, "refit", True)
    if isinstance(refit, str) and f"rank_test_{refit}" in results:
        return f"rank_test_{refit}"
    return "rank_test_score" if "rank_test_score" in results else next(
        (k for k in results if k.startswith("rank_test_")), None)


def log_search(run: Any, search: Any, max_child_runs: int) -> list[str]:
    """Log a fitted search: CSV of ``cv_results_``, best params/score, top-K candidates as child runs.

    Returns the child run ids (also in the parent's ``children`` metadata).
    """
    results = search.cv_results_
    summary: dict[str, Any] = {"n_candidates": len(results["params"])}
    for attr in ("best_score_", "best_params_", "best_index_"):
        if hasattr(search, attr):
            summary[attr.rstrip("_")] = getattr(search, attr)
    update_summary(run, summary)
    with tempfile.TemporaryDirectory(prefix="epochal-sklearn-") as tmp:
        path = Path(tmp) / "cv_results.csv"
        _write_cv_results(results, path)
        run.log_artifact(path, name="cv_results", type="table", metadata={"rows": summary["n_candidates"]})
    rank_key = _rank_key(search, results)
    if max_child_runs <= 0 or rank_key is None:
        return []
    order = sorted(range(len(results[rank_key])), key=lambda i: (int(results[rank_key][i]), i))
    children = [_child_run(run, results, i, int(results[rank_key][i])) for i in order[:max_child_runs]]
    run.set_metadata(children=children)
    return children


def _child_run(parent: Any, results: Mapping[str, Any], index: int, rank: int) -> str:
    """One search candidate as a run: its params as config, one step per CV fold."""
    import epochal

    folds: dict[int, dict[str, float]] = {}
    means: dict[str, Any] = {}
    for key, column in results.items():
        head, _, metric = key.partition("_")
        if head.startswith("split") and head[5:].isdigit() and metric.startswith(("test_", "train_")):
            split, _, name = metric.partition("_")
            folds.setdefault(int(head[5:]), {})[canonical(name, "val" if split == "test" else "train")] = column[index]
        elif head in ("mean", "std") and metric.startswith(("test_", "train_")):
            split, _, name = metric.partition("_")
            means[canonical(name, "val" if split == "test" else "train") + ("_std" if head == "std" else "")] = column[index]
    child = epochal.init(
        project=parent.project, dir=parent.root, id=new_run_id(), name=f"{parent.name}-rank{rank}",
        config=results["params"][index], tags=["sklearn", "search-candidate"], system_interval=0,
    )
    try:
        child.set_metadata(parent=parent.id)
        for fold in sorted(folds):
            child.log(folds[fold], step=fold)
        fit_time = results["mean_fit_time"][index] if "mean_fit_time" in results else None
        child.summary.update({**means, "rank": rank, "candidate": index, "fit_time": fit_time})
    finally:
        child.finish()
    return child.id


def log_model(run: Any, estimator: Any) -> None:
    """Store the fitted estimator as artifact ``model``: skops when it can, else pickle with a warning."""
    cls = type(estimator)
    metadata: dict[str, Any] = {"class": f"{cls.__module__.split('._')[0]}.{cls.__qualname__}"}
    with tempfile.TemporaryDirectory(prefix="epochal-sklearn-") as tmp:
        try:
            import skops.io as sio

            path = Path(tmp) / "model.skops"
            sio.dump(estimator, path)
            metadata.update(format="skops", load="skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))")
        except Exception as exc:  # skops missing, or a type it cannot persist
            import pickle

            log.warning("epochal: %s model stored as pickle (%s); %s",
                        cls.__name__, "skops is not installed" if isinstance(exc, ImportError) else repr(exc),
                        PICKLE_WARNING)
            path = Path(tmp) / "model.pkl"
            with open(path, "wb") as handle:
                pickle.dump(estimator, handle, protocol=pickle.HIGHEST_PROTOCOL)
            metadata.update(format="pickle", warning=PICKLE_WARNING)
        run.log_artifact(path, name="model", type="model", metadata=metadata)


def as_number(value: Any) -> float | int | None:
    """A metric call's result as one number, or None (arrays, reports, tuples)."""
    try:
        return to_number("metric", value)
    except (TypeError, ValueError):
        return None
