"""scikit-learn autologging: real fits of tiny models on synthetic data."""

from __future__ import annotations

import csv
import logging
import math

import numpy as np
import pytest
import sklearn.metrics
import sklearn.model_selection
from sklearn.cluster import KMeans
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import f1_score  # bound before autolog(): an unpatched reference
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import epochal
from epochal.integrations import _sklearn_metrics
from epochal.integrations import sklearn as epochal_sklearn
from epochal.store import read_json, read_metrics

PROJECT = "sk"


@pytest.fixture
def autolog():
    """Turn autolog on (options per test) and always off again."""
    def enable(**kwargs):
        epochal_sklearn.autolog(project=PROJECT, system_interval=0, **kwargs)
    yield enable
    epochal_sklearn.autolog(disable=True)


@pytest.fixture(scope="module")
def clf_data():
    X, y = make_classification(n_samples=120, n_features=6, n_informative=4, n_classes=3, random_state=0)
    return X[:90], y[:90], X[90:], y[90:]


@pytest.fixture(scope="module")
def binary_data():
    X, y = make_classification(n_samples=120, n_features=5, random_state=1)
    return X[:90], y[:90], X[90:], y[90:]


def stored_runs(root, project=PROJECT):
    """run id -> (run dir, run.json) of every run stored under ``project``."""
    folder = root / project
    dirs = sorted(p for p in folder.iterdir() if (p / "run.json").exists()) if folder.exists() else []
    return {d.name: (d, read_json(d / "run.json")) for d in dirs}


def only_run(root):
    runs = stored_runs(root)
    assert len(runs) == 1, f"expected one run, got {sorted(runs)}"
    return next(iter(runs.values()))


def test_logistic_regression_run(autolog, run_root, clf_data):
    X, y, _, _ = clf_data
    autolog()
    model = LogisticRegression(C=0.5, max_iter=300).fit(X, y)

    run_dir, meta = only_run(run_root)
    assert meta["status"] == "finished" and meta["name"] == "LogisticRegression" and "sklearn" in meta["tags"]
    config = read_json(run_dir / "config.json")
    assert config["C"] == 0.5 and config["max_iter"] == 300
    assert config["estimator_class"] == "sklearn.linear_model.LogisticRegression"
    assert meta["datasets"]["X_train"]["shape"] == [90, 6] and meta["datasets"]["y_train"]["sha256"]

    summary = read_json(run_dir / "summary.json")
    pred, proba = model.predict(X), model.predict_proba(X)
    expected = {
        "train/accuracy": sklearn.metrics.accuracy_score(y, pred),
        "train/precision": sklearn.metrics.precision_score(y, pred, average="weighted"),
        "train/recall": sklearn.metrics.recall_score(y, pred, average="weighted"),
        "train/f1": sklearn.metrics.f1_score(y, pred, average="weighted"),
        "train/log_loss": sklearn.metrics.log_loss(y, proba),
        "train/roc_auc": sklearn.metrics.roc_auc_score(y, proba, multi_class="ovr", average="weighted"),
    }
    for key, value in expected.items():
        assert summary[key] == pytest.approx(value, rel=1e-12), key
    assert summary["fit_time"] > 0
    records, _ = read_metrics(run_dir)
    assert records and records[-1]["train/accuracy"] == pytest.approx(expected["train/accuracy"])

    model_version = read_json(run_dir / "artifacts" / "manifest.json")["artifacts"]["model"]["versions"][-1]
    assert model_version["metadata"]["format"] == "skops" and model_version["type"] == "model"
    import skops.io as sio

    model_file = next((run_dir / "artifacts" / "model").rglob("model.skops"))
    loaded = sio.load(model_file, trusted=sio.get_untrusted_types(file=model_file))
    np.testing.assert_array_equal(loaded.predict(X), pred)


def test_random_forest_regressor_metrics(autolog, run_root):
    X, y = make_regression(n_samples=80, n_features=4, noise=5.0, random_state=0)
    autolog(log_models=False)
    model = RandomForestRegressor(n_estimators=5, max_depth=3, random_state=0).fit(X, y)

    run_dir, meta = only_run(run_root)
    summary = read_json(run_dir / "summary.json")
    pred = model.predict(X)
    mse = sklearn.metrics.mean_squared_error(y, pred)
    assert summary["train/mse"] == pytest.approx(mse, rel=1e-12)
    assert summary["train/rmse"] == pytest.approx(math.sqrt(mse), rel=1e-12)
    assert summary["train/mae"] == pytest.approx(sklearn.metrics.mean_absolute_error(y, pred), rel=1e-12)
    assert summary["train/r2"] == pytest.approx(sklearn.metrics.r2_score(y, pred), rel=1e-12)
    assert read_json(run_dir / "config.json")["n_estimators"] == 5
    assert not (run_dir / "artifacts" / "model").exists()  # log_models=False


def test_pipeline_is_one_run(autolog, run_root, binary_data):
    X, y, _, _ = binary_data
    autolog(log_models=False)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=2.0))]).fit(X, y)

    run_dir, meta = only_run(run_root)  # not one per step
    assert meta["name"] == "Pipeline"
    config = read_json(run_dir / "config.json")
    assert config["clf__C"] == 2.0 and config["scale__with_mean"] is True
    summary = read_json(run_dir / "summary.json")
    proba = pipe.predict_proba(X)[:, 1]
    assert summary["train/roc_auc"] == pytest.approx(sklearn.metrics.roc_auc_score(y, proba), rel=1e-12)
    assert summary["train/accuracy"] == pytest.approx(sklearn.metrics.accuracy_score(y, pipe.predict(X)))


def test_grid_search_parent_and_child_runs(autolog, run_root, binary_data):
    X, y, X_test, y_test = binary_data
    autolog(max_child_runs=2)
    search = GridSearchCV(LogisticRegression(), {"C": [0.001, 0.1, 10.0]}, cv=3, return_train_score=True).fit(X, y)
    test_accuracy = search.score(X_test, y_test)

    runs = stored_runs(run_root)
    assert len(runs) == 3  # the search + 2 children; the 9 candidate fits + refit make none
    parents = [rid for rid, (_, meta) in runs.items() if "parent" not in meta]
    assert len(parents) == 1
    parent_dir, parent_meta = runs[parents[0]]
    summary = read_json(parent_dir / "summary.json")
    assert summary["best_score"] == pytest.approx(search.best_score_)
    assert summary["best_params"] == search.best_params_ and summary["n_candidates"] == 3
    assert summary["train/accuracy"] == pytest.approx(sklearn.metrics.accuracy_score(y, search.predict(X)))
    assert summary["test/accuracy"] == pytest.approx(test_accuracy)

    with open(next((parent_dir / "artifacts" / "cv_results").rglob("cv_results.csv")), newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 3 and float(table[0]["mean_test_score"]) == pytest.approx(search.cv_results_["mean_test_score"][0])
    assert (parent_dir / "artifacts" / "model").exists()

    results = search.cv_results_
    children = parent_meta["children"]
    assert sorted(children) == sorted(rid for rid in runs if rid != parents[0])
    ranks = []
    for child_id in children:
        child_dir, child_meta = runs[child_id]
        assert child_meta["parent"] == parents[0] and child_meta["status"] == "finished"
        child_summary = read_json(child_dir / "summary.json")
        index = child_summary["candidate"]
        ranks.append(child_summary["rank"])
        assert read_json(child_dir / "config.json") == results["params"][index]
        records, _ = read_metrics(child_dir)
        assert [r["step"] for r in records] == [0, 1, 2]
        assert [r["val/score"] for r in records] == pytest.approx(
            [results[f"split{i}_test_score"][index] for i in range(3)])
        assert child_summary["val/score"] == pytest.approx(results["mean_test_score"][index])
        assert child_summary["train/score"] == pytest.approx(results["mean_train_score"][index])  # not the last fold
    assert sorted(ranks) == sorted(results["rank_test_score"])[:2]


def _class_attributes(targets):
    return {(owner, name): owner.__dict__[name] for owner, name, _ in targets}


def test_disable_restores_the_original_functions(autolog, run_root, binary_data):
    X, y, _, _ = binary_data
    before = _class_attributes(epochal_sklearn._targets())
    originals = (LogisticRegression.fit, Pipeline.__dict__["fit_transform"], sklearn.metrics.accuracy_score,
                 KMeans.fit_predict)
    assert len(before) > 100
    autolog()
    patched = _class_attributes(epochal_sklearn._targets())
    changed = [key for key in before if patched[key] is not before[key]]
    assert len(changed) == len(before)  # every target swapped ...
    assert (sklearn.metrics.accuracy_score.__wrapped__ is originals[2]
            and LogisticRegression.fit is not originals[0])
    KMeans(n_clusters=2, n_init=1, random_state=0).fit_predict(X)  # fit_predict -> fit: one run
    assert len(stored_runs(run_root)) == 1

    epochal_sklearn.autolog(disable=True)
    after = _class_attributes(epochal_sklearn._targets())
    assert all(after[key] is before[key] for key in before)  # ... and every original back, exactly
    assert (LogisticRegression.fit, Pipeline.__dict__["fit_transform"], sklearn.metrics.accuracy_score,
            KMeans.fit_predict) == originals
    assert not hasattr(LogisticRegression(), "fit_transform")  # nothing added
    LogisticRegression().fit(X, y)
    assert len(stored_runs(run_root)) == 1  # off: no new run


def test_post_fit_score_and_metric_calls(autolog, run_root, binary_data):
    X, y, X_test, y_test = binary_data
    autolog(log_models=False)
    first = LogisticRegression().fit(X, y)
    second = Ridge().fit(X, y)  # a later fit must not take the first model's test metrics
    accuracy = first.score(X_test, y_test)
    r2 = second.score(X_test, y_test)
    pred = first.predict(X_test)
    f1 = sklearn.metrics.f1_score(y_test, pred, average="macro")
    auc = sklearn.metrics.roc_auc_score(y_test, first.predict_proba(X_test)[:, 1])
    sklearn.metrics.accuracy_score(y_test, np.array(pred))  # a copy: not a prediction, not logged
    sklearn.metrics.precision_score(y_test, y_test)  # not a prediction either

    runs = {meta["name"]: d for d, meta in stored_runs(run_root).values()}
    clf_summary = read_json(runs["LogisticRegression"] / "summary.json")
    assert clf_summary["test/accuracy"] == pytest.approx(accuracy)
    assert clf_summary["test/f1[average=macro]"] == pytest.approx(f1)
    assert clf_summary["test/roc_auc"] == pytest.approx(auc)
    assert "test/precision" not in clf_summary and "test/r2" not in clf_summary
    reg_summary = read_json(runs["Ridge"] / "summary.json")
    assert reg_summary["test/r2"] == pytest.approx(r2) and "test/accuracy" not in reg_summary
    assert clf_summary["train/accuracy"] > 0  # the earlier summary is kept, test/* added


def test_helpers_outside_fit_make_no_runs(autolog, run_root, binary_data):
    X, y, _, _ = binary_data
    autolog(log_models=False)
    f1_score(y, y, average="macro")  # fits a LabelEncoder inside, with no tracked call around it
    scores = sklearn.model_selection.cross_val_score(LogisticRegression(), X, y, cv=3)  # 3 fits, no runs
    assert len(scores) == 3
    assert stored_runs(run_root) == {}


def test_explicit_run_receives_the_fit(autolog, run_root, binary_data):
    X, y, X_test, y_test = binary_data
    autolog(log_models=False)
    with epochal.init(project="mine", config={"C": "user value", "seed": 3}) as run:
        model = LogisticRegression(C=0.3).fit(X, y)
        model.score(X_test, y_test)
        assert epochal.current_run() is run
    assert stored_runs(run_root) == {}  # no autolog run of its own
    (run_dir, meta), = stored_runs(run_root, "mine").values()
    config = read_json(run_dir / "config.json")
    assert config["seed"] == 3 and config["C"] == "user value" and config["max_iter"] == 100  # user's keys win
    summary = read_json(run_dir / "summary.json")
    assert summary["train/accuracy"] == pytest.approx(sklearn.metrics.accuracy_score(y, model.predict(X)))
    assert summary["test/accuracy"] == pytest.approx(model.score(X_test, y_test))
    assert meta["status"] == "finished" and "X_train" in meta["datasets"]


def test_failing_fit_marks_the_run_failed(autolog, run_root, binary_data):
    X, y, _, _ = binary_data
    autolog()
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN") as caught:
        LogisticRegression().fit(bad, y)
    assert type(caught.value) is ValueError  # the user's exception, unchanged
    _, meta = only_run(run_root)
    assert meta["status"] == "failed" and "ValueError" in meta["error"]
    assert epochal.current_run() is None


def test_tracking_errors_never_break_fit(autolog, run_root, binary_data, monkeypatch, caplog):
    X, y, _, _ = binary_data
    autolog()

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(_sklearn_metrics, "log_model", broken)
    monkeypatch.setattr(_sklearn_metrics, "training_metrics", broken)
    with caplog.at_level(logging.WARNING, logger="epochal"):
        model = LogisticRegression().fit(X, y)
    assert model.predict(X).shape == (90,)
    _, meta = only_run(run_root)
    assert meta["status"] == "finished"
    assert "disk on fire" in caplog.text


def test_model_falls_back_to_pickle_with_a_warning(autolog, run_root, binary_data, monkeypatch, caplog):
    X, y, _, _ = binary_data
    import skops.io

    def refuse(*args, **kwargs):
        raise TypeError("cannot persist this type")

    monkeypatch.setattr(skops.io, "dump", refuse)
    autolog()
    with caplog.at_level(logging.WARNING, logger="epochal"):
        RandomizedSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, n_iter=2, cv=2, random_state=0).fit(X, y)
    run_dir = next(d for d, meta in stored_runs(run_root).values() if "parent" not in meta)
    assert next((run_dir / "artifacts" / "model").rglob("model.pkl")).stat().st_size > 0
    manifest_text = (run_dir / "artifacts" / "manifest.json").read_text()
    assert '"pickle"' in manifest_text and "trust" in manifest_text
    assert "load it only from runs you trust" in caplog.text


def test_autolog_rejects_unknown_arguments():
    with pytest.raises(TypeError, match="unknown arguments"):
        epochal_sklearn.autolog(projct="typo")
