"""Training plots of a fitted estimator, drawn with scikit-learn's own ``*Display`` classes.

Classifiers: a confusion matrix, and for binary ones the ROC and precision-recall curves;
regressors: a prediction-error plot. All on the training data, as MLflow's autolog draws them.
Only when matplotlib is installed (without it: none, silently). Figures are made without
pyplot (no global figure state, no GUI backend) and closed by going out of scope.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import epochal

__all__ = ["training_plots"]

log = logging.getLogger("epochal")
_WEIGHTED = ("confusion_matrix", "roc_curve", "precision_recall_curve")  # PredictionErrorDisplay takes no weights


def training_plots(estimator: Any, data: Callable[[], Any], y: Any, sample_weight: Any) -> dict[str, epochal.Image]:
    """``{"train/confusion_matrix": Image, ...}``: the plots that apply to ``estimator``; a failing one is left out."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return {}
    from sklearn import metrics as m
    from sklearn.base import is_classifier, is_regressor

    if y is None or len(getattr(y, "shape", ())) > 1:  # multi-output: no single plot fits
        return {}
    plots: dict[str, Callable[..., Any]] = {}
    if is_classifier(estimator):
        plots["confusion_matrix"] = m.ConfusionMatrixDisplay.from_estimator
        if len(getattr(estimator, "classes_", ())) == 2:
            plots["roc_curve"] = m.RocCurveDisplay.from_estimator
            plots["precision_recall_curve"] = m.PrecisionRecallDisplay.from_estimator
    elif is_regressor(estimator):
        plots["prediction_error"] = m.PredictionErrorDisplay.from_estimator
    images = {}
    for name, draw in plots.items():
        figure = Figure(figsize=(5, 4), dpi=80)  # fixed margins: a layout engine costs ~25% more CPU per plot
        figure.subplots_adjust(left=0.16, right=0.96, bottom=0.14, top=0.95)
        try:
            weights = {"sample_weight": sample_weight} if sample_weight is not None and name in _WEIGHTED else {}
            draw(estimator, data(), y, ax=figure.subplots(), **weights)
            images[f"train/{name}"] = epochal.Image(figure)
        except Exception as exc:  # e.g. labels a display cannot handle: that plot is left out
            log.debug("epochal: sklearn %s plot of %s not drawn: %r", name, type(estimator).__name__, exc)
    return images
