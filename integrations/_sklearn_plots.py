"""Training plots of a fitted estimator, drawn with scikit-learn's own ``*Display`` classes.

Classifiers: a confusion matrix, and for binary ones the ROC and precision-recall curves;
regressors: a prediction-error plot. All on the training data, as MLflow's autolog draws them.
Only when matplotlib is installed (without it: none, silently).

The caller's thread only predicts (copies of ``y``, the predictions and the scores: what the
Displays' ``from_predictions`` take); drawing happens on epochal's background thread, on a
``matplotlib.figure.Figure`` with an Agg canvas (never pyplot: no global figure state, no GUI
backend), and the pixels are logged into the run at the step given. The run's ``finish()``
waits for them (:meth:`epochal.Run.in_background`).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import epochal

__all__ = ["log_training_plots"]

log = logging.getLogger("epochal")
Plot = tuple[Callable[..., Any], dict[str, Any]]  # a Display's from_predictions and its arguments


def log_training_plots(run: Any, estimator: Any, data: Callable[[], Any], y: Any, sample_weight: Any,
                       step: int) -> None:
    """Predict now; draw the plots that apply to ``estimator`` off this thread and log them at ``step``."""
    plots = _plot_inputs(estimator, data, y, sample_weight)
    if plots:
        run.in_background(_draw_and_log, run, plots, step, type(estimator).__name__)


def _plot_inputs(estimator: Any, data: Callable[[], Any], y: Any, sample_weight: Any) -> dict[str, Plot]:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return {}
    import numpy as np
    from sklearn import metrics as m
    from sklearn.base import is_classifier, is_regressor

    if y is None or len(getattr(y, "shape", ())) > 1:  # multi-output: no single plot fits
        return {}
    if not (is_classifier(estimator) or is_regressor(estimator)):
        return {}
    y = np.array(y)
    weights = {} if sample_weight is None else {"sample_weight": np.array(sample_weight)}
    try:
        y_pred = np.array(estimator.predict(data()))
    except Exception as exc:  # e.g. a refit=False search: no plots (the training metrics say why)
        log.debug("epochal: sklearn plots of %s not drawn: %r", type(estimator).__name__, exc)
        return {}
    if not is_classifier(estimator):  # PredictionErrorDisplay takes no weights
        return {"prediction_error": (m.PredictionErrorDisplay.from_predictions, {"y_true": y, "y_pred": y_pred})}
    plots: dict[str, Plot] = {
        "confusion_matrix": (m.ConfusionMatrixDisplay.from_predictions, {"y_true": y, "y_pred": y_pred, **weights}),
    }
    classes: Any = getattr(estimator, "classes_", ())
    if len(classes) == 2:  # the scores the Displays' response_method="auto" takes
        try:
            if hasattr(estimator, "predict_proba"):
                scores = np.array(estimator.predict_proba(data())[:, 1])
            else:
                scores = np.array(estimator.decision_function(data()))
        except Exception as exc:
            log.debug("epochal: sklearn curves of %s not drawn: %r", type(estimator).__name__, exc)
            return plots
        curve = {"y_true": y, "y_score": scores, "pos_label": classes[1], "name": type(estimator).__name__,
                 **weights}
        plots["roc_curve"] = (m.RocCurveDisplay.from_predictions, curve)
        plots["precision_recall_curve"] = (m.PrecisionRecallDisplay.from_predictions, curve)
    return plots


def _draw_and_log(run: Any, plots: dict[str, Plot], step: int, estimator: str) -> None:
    """On the plot thread: each plot drawn on its own (a failing one is left out), then one ``log``."""
    images = {}
    for name, (display, kwargs) in plots.items():
        try:
            images[f"train/{name}"] = epochal.Image(_draw(display, kwargs))
        except Exception as exc:  # e.g. labels a display cannot handle: that plot is left out
            log.debug("epochal: sklearn %s plot of %s not drawn: %r", name, estimator, exc)
    try:
        if images:
            run.log(images, step=step)  # beside the training metrics
    except Exception:
        log.warning("epochal: sklearn training plots of %s not logged", estimator, exc_info=True)


def _draw(display: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """One plot as RGBA pixels, drawn on a Figure of its own."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 4), dpi=80)  # fixed margins: a layout engine costs ~25% more CPU per plot
    figure.subplots_adjust(left=0.16, right=0.96, bottom=0.14, top=0.95)
    canvas = FigureCanvasAgg(figure)
    display(ax=figure.subplots(), **kwargs)
    canvas.draw()
    return np.array(canvas.buffer_rgba())  # a copy: the figure goes out of scope
