"""What a fitted search and a fitted model leave in their run.

- :func:`log_search`: ``cv_results_`` as the ``cv_results`` table artifact (CSV), best
  params/score in the summary, and the ``max_child_runs`` best candidates as child runs
  (config = the candidate's params, one step per CV fold, means in the summary). A search
  fitted with ``refit=False`` has no model to score or store: a warning says so.
- :func:`log_model`: the fitted estimator as artifact ``model``: skops when it can, else
  pickle with a warning (loading a pickle runs code: only from runs you trust).
"""

from __future__ import annotations

import csv
import json
import logging
import tempfile
from pathlib import Path
from concurrent.futures import Future
from typing import Any, Mapping

from ..lifecycle import Tracking
from ..names import SKLEARN
from ..run import new_run_id
from ..values import jsonable

__all__ = ["log_search", "log_model", "PICKLE_WARNING"]

log = logging.getLogger("epochal")
PICKLE_WARNING = "pickle: load it only from runs you trust (unpickling runs arbitrary code)"


def log_search(tracking: Tracking, search: Any, max_child_runs: int) -> Future | None:
    """Log a fitted search into ``tracking.run``; the child runs are written off the fitting thread.

    Their ids are in the parent's ``children`` metadata at once. The children are written one
    after the other on epochal's background thread (:meth:`epochal.Run.in_background`: the
    parent's ``finish()`` waits for them; one thread, as five concurrent ones cost a third more
    CPU in switches). Returns that task's ``Future`` (the caller waits for it, so every run is
    finished when ``fit`` returns), or None when there are none.
    """
    run, results = tracking.run, search.cv_results_
    if run is None:
        return None
    summary: dict[str, Any] = {"n_candidates": len(results["params"])}
    for attr in ("best_score_", "best_params_", "best_index_"):
        if hasattr(search, attr):
            summary[attr.rstrip("_")] = getattr(search, attr)
    run.summary.update(summary)
    if getattr(search, "refit", True) is False:
        tracking.warn(f"{type(search).__name__}(refit=False)",
                      "the search kept no refitted model, so it has no training metrics and no model artifact; "
                      "pass refit=True (or the name of a scorer) to get them")
    with tempfile.TemporaryDirectory(prefix="epochal-sklearn-") as tmp:
        path = Path(tmp) / "cv_results.csv"
        _write_table(results, path)
        run.log_artifact(path, name="cv_results", type="table", metadata={"rows": summary["n_candidates"]}, link=True)
    rank_key = _rank_key(search, results)
    if max_child_runs <= 0 or rank_key is None:
        return None
    order = sorted(range(len(results[rank_key])), key=lambda i: (int(results[rank_key][i]), i))[:max_child_runs]
    ids = [new_run_id() for _ in order]
    run.set_metadata(children=ids)
    return run.in_background(_children, tracking, results, [(i, int(results[rank_key][i])) for i in order], ids)


def _children(parent: Tracking, results: Mapping[str, Any], ranked: list[tuple[int, int]], ids: list[str]) -> None:
    for (index, rank), child_id in zip(ranked, ids):
        _child(parent, results, index, rank, child_id)


def _child(parent: Tracking, results: Mapping[str, Any], index: int, rank: int, child_id: str) -> None:
    """One candidate as a finished run of its own: its params, one step per CV fold."""
    folds: dict[int, dict[str, Any]] = {}
    means: dict[str, Any] = {}
    for key, column in results.items():
        named = SKLEARN.cv_result(key)  # (fold or "mean"/"std", canonical name)
        if named is not None:
            fold, name = named
            (folds.setdefault(fold, {}) if isinstance(fold, int) else means)[name] = column[index]
    run = parent.run
    if run is None:
        return
    child = Tracking(parent.integration, project=run.project, dir=str(run.root), id=child_id,
                     name=f"{run.name}-rank{rank}", config=results["params"][index],
                     tags=["sklearn", "search-candidate"], system_interval=0, parent=run)
    with child.guard("search candidate run"):
        started = child.start()
        for fold in sorted(folds):
            started.log(folds[fold], step=fold)
        fit_time = results["mean_fit_time"][index] if "mean_fit_time" in results else None
        started.summary.update({**means, "rank": rank, "candidate": index, "fit_time": fit_time})
    child.end()


def _rank_key(search: Any, results: Mapping[str, Any]) -> str | None:
    refit = getattr(search, "refit", True)
    if isinstance(refit, str) and f"rank_test_{refit}" in results:
        return f"rank_test_{refit}"
    return "rank_test_score" if "rank_test_score" in results else next(
        (k for k in results if k.startswith("rank_test_")), None)


def _cell(value: Any) -> Any:
    from numpy import ma

    if value is None or value is ma.masked:
        return ""
    if isinstance(value, Mapping):
        return json.dumps(jsonable(value), sort_keys=True)
    value = jsonable(value)
    return value if isinstance(value, (int, float, str)) else json.dumps(value)


def _write_table(results: Mapping[str, Any], path: Path) -> None:
    columns = list(results)
    rows = len(results[columns[0]]) if columns else 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for i in range(rows):
            writer.writerow([_cell(results[c][i]) for c in columns])


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
        run.log_artifact(path, name="model", type="model", metadata=metadata, link=True)
