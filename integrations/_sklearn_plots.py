"""Training plots of a fitted estimator, as MLflow's autolog draws them, on the training data.

Classifiers: a confusion matrix, and for binary ones the ROC and precision-recall curves (their
AUC and average precision in the legend); regressors: residuals against predictions (at most
1000 points, as ``PredictionErrorDisplay``). Only when Pillow is installed (without it: none,
silently).

The caller's thread only predicts (or reuses the predictions the training metrics made); the
curves are computed and the charts drawn (:mod:`._sklearn_draw`: Pillow, a few ms each, where
matplotlib takes 50-75 ms) on epochal's background thread, and logged into the run at the step
given. The run's ``finish()`` waits for them (:meth:`epochal.Run.in_background`).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

import epochal

__all__ = ["log_training_plots"]

log = logging.getLogger("epochal")
Plot = tuple[Callable[..., Any], dict[str, Any]]  # a chart maker and its arguments
_MAX_POINTS = 1000


def log_training_plots(run: Any, estimator: Any, data: Callable[[], Any], y: Any, sample_weight: Any,
                       step: int, made: Mapping[str, Any] | None = None) -> None:
    """Predict now (``made``: predictions already made, by method); draw off this thread and log at ``step``."""
    plots = _plot_inputs(estimator, data, y, sample_weight, made or {})
    if plots:
        run.in_background(_draw_and_log, run, plots, step, type(estimator).__name__)


def _plot_inputs(estimator: Any, data: Callable[[], Any], y: Any, sample_weight: Any,
                 made: Mapping[str, Any]) -> dict[str, Plot]:
    try:
        import PIL.ImageDraw  # noqa: F401
    except ImportError:
        return {}
    import numpy as np
    from sklearn.base import is_classifier, is_regressor

    if y is None or len(getattr(y, "shape", ())) > 1:  # multi-output: no single plot fits
        return {}
    if not (is_classifier(estimator) or is_regressor(estimator)):
        return {}
    y = np.array(y)
    weights = None if sample_weight is None else np.array(sample_weight)
    try:
        y_pred = np.array(made["predict"] if made.get("predict") is not None else estimator.predict(data()))
    except Exception as exc:  # e.g. a refit=False search: no plots (the training metrics say why)
        log.debug("epochal: sklearn plots of %s not drawn: %r", type(estimator).__name__, exc)
        return {}
    if not is_classifier(estimator):
        return {"prediction_error": (_residuals, {"y": y, "y_pred": y_pred})}
    classes: Any = getattr(estimator, "classes_", ())
    plots: dict[str, Plot] = {"confusion_matrix": (_confusion, {"y": y, "y_pred": y_pred, "weights": weights,
                                                                "classes": classes})}
    if len(classes) == 2:  # the scores the Displays' response_method="auto" takes
        try:
            proba = made.get("predict_proba")
            if proba is None and hasattr(estimator, "predict_proba"):
                proba = estimator.predict_proba(data())
            scores = np.array(proba[:, 1] if proba is not None else estimator.decision_function(data()))
        except Exception as exc:
            log.debug("epochal: sklearn curves of %s not drawn: %r", type(estimator).__name__, exc)
            return plots
        curve = {"y": y, "scores": scores, "positive": classes[1], "weights": weights,
                 "name": type(estimator).__name__}
        plots["roc_curve"] = (_roc, curve)
        plots["precision_recall_curve"] = (_precision_recall, curve)
    return plots


def _draw_and_log(run: Any, plots: dict[str, Plot], step: int, estimator: str) -> None:
    """On the background thread: each plot drawn on its own (a failing one is left out), then one ``log``."""
    images = {}
    for name, (chart, kwargs) in plots.items():
        try:
            images[f"train/{name}"] = epochal.Image(_draw(chart, kwargs))
        except Exception as exc:  # e.g. labels a chart cannot handle: that plot is left out
            log.debug("epochal: sklearn %s plot of %s not drawn: %r", name, estimator, exc)
    try:
        if images:
            run.log(images, step=step)  # beside the training metrics
    except Exception:
        log.warning("epochal: sklearn training plots of %s not logged", estimator, exc_info=True)


def _draw(chart: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """One plot as an RGB Pillow image."""
    return chart(**kwargs)


def _confusion(y: Any, y_pred: Any, weights: Any, classes: Any) -> Any:
    from sklearn.metrics import confusion_matrix

    from ._sklearn_draw import matrix

    labels = list(classes) if len(classes) else sorted(set(y.tolist()) | set(y_pred.tolist()))
    counts = confusion_matrix(y, y_pred, labels=labels, sample_weight=weights)
    return matrix("Confusion matrix (training data)", counts, labels)


def _roc(y: Any, scores: Any, positive: Any, weights: Any, name: str) -> Any:
    from sklearn.metrics import auc, roc_curve

    from ._sklearn_draw import BLUE, INK, curves

    fpr, tpr, _ = roc_curve(y, scores, pos_label=positive, sample_weight=weights)
    return curves("ROC curve (training data)", f"False positive rate (positive label: {positive})",
                  f"True positive rate (positive label: {positive})",
                  [([0, 1], [0, 1], "chance level (AUC = 0.5)", INK, True),
                   (fpr, tpr, f"{name} (AUC = {auc(fpr, tpr):.2f})", BLUE, False)], "lower right")


def _precision_recall(y: Any, scores: Any, positive: Any, weights: Any, name: str) -> Any:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    from ._sklearn_draw import BLUE, curves

    precision, recall, _ = precision_recall_curve(y, scores, pos_label=positive, sample_weight=weights)
    ap = average_precision_score(y, scores, pos_label=positive, sample_weight=weights)
    return curves("Precision-recall curve (training data)", f"Recall (positive label: {positive})",
                  f"Precision (positive label: {positive})",
                  [(recall, precision, f"{name} (AP = {ap:.2f})", BLUE, False)], "lower left")


def _residuals(y: Any, y_pred: Any) -> Any:
    import numpy as np

    from ._sklearn_draw import scatter

    if len(y) > _MAX_POINTS:  # a fixed subsample, as PredictionErrorDisplay(subsample=1000)
        keep = np.random.default_rng(0).choice(len(y), _MAX_POINTS, replace=False)
        y, y_pred = y[keep], y_pred[keep]
    return scatter("Residuals vs predicted (training data)", "Predicted values", "Residuals (actual - predicted)",
                   y_pred, y - y_pred)
