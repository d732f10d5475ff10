"""sklearn autolog draws its training plots (Pillow charts, off the fitting thread) and logs them as images."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import PIL.Image
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Ridge

import epochal
from epochal.integrations import sklearn as epochal_sklearn

PROJECT = "skmedia"


@pytest.fixture
def autolog():
    epochal_sklearn.autolog(project=PROJECT, system_interval=0, log_models=False)
    yield
    epochal_sklearn.autolog(disable=True)


def fitted_run(estimator, X, y) -> epochal.query.RunReader:
    estimator.fit(X, y)
    runs = epochal.runs(project=PROJECT)
    assert len(runs) == 1
    return epochal.open_run(runs["id"][0], project=PROJECT)


def plots(reader) -> dict[str, np.ndarray]:
    media = reader.media()
    assert (media["type"] == "image").all()
    return {key: np.array(PIL.Image.open(path)) for key, path in zip(media["key"], media["path"])}


def test_binary_classifier_gets_confusion_matrix_roc_and_pr(autolog):
    X, y = make_classification(n_samples=80, n_features=5, random_state=1)
    reader = fitted_run(LogisticRegression(), X, y)
    images = plots(reader)
    assert sorted(images) == ["train/confusion_matrix", "train/precision_recall_curve", "train/roc_curve"]
    for image in images.values():
        assert image.shape == (320, 400, 3) and image.std() > 0  # drawn, not blank
    steps = set(reader.media()["step"])
    assert steps == {r["step"] for r in reader.records("train/accuracy")}  # beside the training metrics


def test_multiclass_gets_the_confusion_matrix_only_and_regressor_prediction_error(autolog, run_root):
    X, y = make_classification(n_samples=90, n_features=6, n_informative=4, n_classes=3, random_state=0)
    assert list(plots(fitted_run(LogisticRegression(), X, y))) == ["train/confusion_matrix"]
    for run_dir in (run_root / PROJECT).iterdir():
        import shutil

        shutil.rmtree(run_dir)
    X, y = make_regression(n_samples=60, n_features=3, random_state=0)
    assert list(plots(fitted_run(Ridge(), X, y))) == ["train/prediction_error"]


def test_without_pillow_no_plots_and_no_warning(run_root):
    code = ("import sys; sys.modules['PIL'] = None\n"
            "import logging; logging.basicConfig()\n"
            "from sklearn.datasets import make_classification; from sklearn.linear_model import LogisticRegression\n"
            "import epochal; from epochal.integrations import sklearn as s\n"
            "s.autolog(project='nompl', system_interval=0, log_models=False)\n"
            "X, y = make_classification(n_samples=40, random_state=0); LogisticRegression().fit(X, y)\n"
            "r = epochal.open_run(epochal.runs(project='nompl')['id'][0], project='nompl')\n"
            "print(len(r.media()), len(r.records('train/accuracy')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "EPOCHAL_DIR": str(run_root)})
    assert done.stdout.split() == ["0", "1"]
    assert "epochal" not in done.stderr


def test_plots_are_drawn_off_the_fitting_thread_and_the_run_waits_for_them(autolog, monkeypatch):
    from epochal.integrations import _sklearn_plots

    release, drawing_threads = threading.Event(), set()
    draw = _sklearn_plots._draw

    def held_draw(chart, kwargs):
        drawing_threads.add(threading.get_ident())
        assert release.wait(60), "the fit never returned while its plots were being drawn"
        return draw(chart, kwargs)

    monkeypatch.setattr(_sklearn_plots, "_draw", held_draw)
    X, y = make_classification(n_samples=80, n_features=5, random_state=1)
    with epochal.init(project=PROJECT, system_interval=0) as run:
        LogisticRegression().fit(X, y)  # returns while its first plot is held: the drawing is elsewhere
        assert len(epochal.open_run(run.id, project=PROJECT).media()) == 0
        release.set()
    assert drawing_threads and threading.get_ident() not in drawing_threads
    images = plots(epochal.open_run(run.id, project=PROJECT))  # finish() waited for every plot
    assert sorted(images) == ["train/confusion_matrix", "train/precision_recall_curve", "train/roc_curve"]
    assert all(image.shape == (320, 400, 3) and image.std() > 0 for image in images.values())


def test_charts_show_their_data():
    from epochal.integrations import _sklearn_draw as draw

    left, top, right, bottom = draw._BOX
    side = min(right - left, bottom - top)
    x0 = left + (right - left - side) // 2
    cell = side // 2
    counts = np.array([[40.0, 0.0], [2.5, 37.5]])  # weighted counts: floats
    pixels = np.array(draw.matrix("cm", counts, ["no", "yes"]))
    assert pixels.shape == (320, 400, 3)
    corner = lambda i, j: pixels[top + i * cell + 8, x0 + j * cell + 8].astype(int)  # noqa: E731
    assert corner(0, 0).sum() < 250 and corner(1, 1).sum() < 250  # the largest counts: dark
    assert corner(0, 1).sum() > 700 and corner(1, 0).sum() > 600  # none or few: near white
    perfect = np.array(draw.curves("roc", "fpr", "tpr", [([0, 0, 1], [0, 1, 1], "perfect", draw.BLUE, False)],
                                   "lower right")).astype(int)
    near_top_left = perfect[top + 2:top + 12, left + 2:left + 12]
    assert (np.abs(near_top_left - np.array(draw.BLUE)).sum(axis=2) < 60).any()  # the curve reaches (0, 1)
    middle = perfect[(top + bottom) // 2 - 5:(top + bottom) // 2 + 5, (left + right) // 2 - 5:(left + right) // 2 + 5]
    assert not (np.abs(middle - np.array(draw.BLUE)).sum(axis=2) < 60).any()  # and never crosses the middle
    assert draw._ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
