"""scikit-learn autologging: real fits of tiny models on synthetic data."""

from __future__ import annotations

import csv
import json
import logging
import math
import threading

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn.metrics
import sklearn.model_selection
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import RandomForestRegressor
from sklearn.gaussian_process import GaussianProcessClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.metrics import f1_score  # bound before autolog(): an unpatched reference
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.parallel import Parallel, _FuncWrapper

import epochal
import epochal.integrations
from epochal.integrations import _sklearn_fit, _sklearn_patch
from epochal.integrations import sklearn as epochal_sklearn
from epochal.lifecycle import Tracking
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
    assert summary["test/accuracy@X_test"] == pytest.approx(test_accuracy)

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
    before = _class_attributes(_sklearn_patch.targets())
    originals = (LogisticRegression.fit, Pipeline.__dict__["fit_transform"], sklearn.metrics.accuracy_score,
                 KMeans.fit_predict)
    assert len(before) > 100
    parallel_call, worker_call = Parallel.__dict__["__call__"], _FuncWrapper.__dict__["__call__"]
    autolog()
    assert "sklearn" in epochal.integrations.enabled()
    patched = _class_attributes(_sklearn_patch.targets())
    changed = [key for key in before if patched[key] is not before[key]]
    assert len(changed) == len(before)  # every target swapped ...
    assert (sklearn.metrics.accuracy_score.__wrapped__ is originals[2]
            and LogisticRegression.fit is not originals[0])
    KMeans(n_clusters=2, n_init=1, random_state=0).fit_predict(X)  # fit_predict -> fit: one run
    assert len(stored_runs(run_root)) == 1

    epochal_sklearn.autolog(disable=True)
    after = _class_attributes(_sklearn_patch.targets())
    assert all(after[key] is before[key] for key in before)  # ... and every original back, exactly
    assert (LogisticRegression.fit, Pipeline.__dict__["fit_transform"], sklearn.metrics.accuracy_score,
            KMeans.fit_predict) == originals
    assert Parallel.__dict__["__call__"] is parallel_call and _FuncWrapper.__dict__["__call__"] is worker_call
    assert "sklearn" not in epochal.integrations.enabled()
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
    assert clf_summary["test/accuracy@X_test"] == pytest.approx(accuracy)
    assert clf_summary["test/f1[average=macro]@X_test"] == pytest.approx(f1)
    assert clf_summary["test/roc_auc@X_test"] == pytest.approx(auc)
    assert not any(k.startswith(("test/precision", "test/r2")) for k in clf_summary)
    reg_summary = read_json(runs["Ridge"] / "summary.json")
    assert reg_summary["test/r2@X_test"] == pytest.approx(r2)
    assert not any(k.startswith("test/accuracy") for k in reg_summary)
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
    assert config["seed"] == 3 and config["C"] == "user value"  # the user's keys are never touched
    assert config["LogisticRegression"]["C"] == 0.3 and config["LogisticRegression"]["max_iter"] == 100
    assert config["estimator_class"] == "sklearn.linear_model.LogisticRegression"
    summary = read_json(run_dir / "summary.json")
    assert summary["train/accuracy"] == pytest.approx(sklearn.metrics.accuracy_score(y, model.predict(X)))
    assert summary["test/accuracy@X_test"] == pytest.approx(model.score(X_test, y_test))
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

    monkeypatch.setattr(_sklearn_fit, "log_model", broken)
    monkeypatch.setattr(_sklearn_fit, "training_metrics", broken)
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
    with pytest.raises(TypeError, match=r"\['projct'\].*epochal.init"):
        epochal_sklearn.autolog(projct="typo")


# -- which run: other integrations, joblib worker threads, user threads --------------------------
def test_a_run_another_integration_opened_is_not_adopted(autolog, run_root, binary_data):
    X, y, _, _ = binary_data
    autolog(log_models=False)
    keras = Tracking("keras", project="keras")  # what EpochalCallback holds during model.fit
    keras_run = keras.start(name="Sequential")
    keras_run.config.update(optimizer="adam")
    LogisticRegression(C=0.37).fit(X, y)  # the Keras run is still open
    keras.end()

    (keras_dir, _), = stored_runs(run_root, "keras").values()
    assert read_json(keras_dir / "config.json") == {"optimizer": "adam"}
    _, meta = only_run(run_root)
    run_dir = run_root / PROJECT / meta["id"]
    assert meta["name"] == "LogisticRegression" and read_json(run_dir / "config.json")["C"] == 0.37


@pytest.mark.parametrize("max_child_runs", [0, 2])
def test_threading_backend_search_is_one_run_with_its_children(autolog, run_root, binary_data, max_child_runs):
    X, y, _, _ = binary_data
    autolog(max_child_runs=max_child_runs)
    with joblib.parallel_backend("threading"):
        search = GridSearchCV(SVC(), {"C": [1, 5]}, cv=3, n_jobs=2).fit(X, y)

    runs = stored_runs(run_root)
    parents = {rid: v for rid, v in runs.items() if "parent" not in v[1]}
    assert len(parents) == 1 and len(runs) == 1 + max_child_runs  # the 6 candidate fits + refit make none
    (run_dir, meta), = parents.values()
    assert meta["name"] == "GridSearchCV" and len(meta.get("children", [])) == max_child_runs
    config = read_json(run_dir / "config.json")
    assert config["estimator_class"] == "sklearn.model_selection.GridSearchCV"
    assert "C" not in config and config["estimator__C"] == 1.0  # the search's params, not a candidate's
    records, _ = read_metrics(run_dir)
    assert len(records) == 1  # one row of train/*, from the search itself
    assert records[0]["train/accuracy"] == pytest.approx(sklearn.metrics.accuracy_score(y, search.predict(X)))
    versions = read_json(run_dir / "artifacts" / "manifest.json")["artifacts"]["model"]["versions"]
    assert len(versions) == 1


class _Rendezvous(BaseEstimator, TransformerMixin):
    """A pipeline step whose fit waits until both threads are inside their tracked fits."""

    def __init__(self, barrier=None):
        self.barrier = barrier

    def fit(self, X, y=None):
        self.barrier.wait(timeout=60)
        return self

    def transform(self, X):
        return X


def test_fits_on_two_threads_make_two_runs(autolog, run_root, binary_data):
    X, y, _, _ = binary_data
    autolog(log_models=False, log_datasets=False)
    barrier = threading.Barrier(2)
    errors = []

    def train(C):
        try:
            Pipeline([("wait", _Rendezvous(barrier)), ("clf", LogisticRegression(C=C))]).fit(X, y)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=train, args=(C,)) for C in (0.5, 2.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    runs = stored_runs(run_root)
    assert len(runs) == 2
    assert sorted(read_json(d / "config.json")["clf__C"] for d, _ in runs.values()) == [0.5, 2.0]
    assert all(meta["status"] == "finished" for _, meta in runs.values())


def test_the_config_describes_the_model_not_the_first_transformer(autolog, run_root, binary_data):
    X, y, _, _ = binary_data
    autolog(log_models=False)
    StandardScaler().fit_transform(X)  # a data step alone: no run of its own
    assert stored_runs(run_root) == {}
    with epochal.init(project="mine") as run:
        Xs = StandardScaler().fit_transform(X)
        LogisticRegression(C=0.7).fit(Xs, y)
        Ridge(alpha=3.0).fit(Xs, y)
    config = read_json(run.dir / "config.json")
    assert config["estimator_class"] == "sklearn.linear_model.Ridge"  # the latest top-level fit
    assert config["LogisticRegression"]["C"] == 0.7 and config["Ridge"]["alpha"] == 3.0
    assert "StandardScaler" not in config and "with_mean" not in json.dumps(config)


# -- MLflow's contract --------------------------------------------------------------------------
def test_a_failing_predict_proba_loses_only_its_metrics(autolog, run_root, clf_data, caplog):
    X, y, _, _ = clf_data
    autolog(log_models=False)
    model = GaussianProcessClassifier(multi_class="one_vs_one", random_state=0)
    with pytest.raises(ValueError):
        model.fit(X[:30], y[:30]).predict_proba(X[:2])  # sklearn refuses one_vs_one probabilities
    run_dir = run_root / PROJECT / next(iter(stored_runs(run_root)))
    summary = read_json(run_dir / "summary.json")
    assert summary["train/accuracy"] == pytest.approx(sklearn.metrics.accuracy_score(y[:30], model.predict(X[:30])))
    assert {"train/precision", "train/recall", "train/f1", "train/score"} <= set(summary)
    assert "train/log_loss" not in summary and "train/roc_auc" not in summary
    assert "GaussianProcessClassifier.predict_proba for the training metrics" in caplog.text


def test_a_failing_metric_is_named_in_a_warning_and_the_others_stay(autolog, run_root, binary_data, monkeypatch,
                                                                     caplog):
    X, y, _, _ = binary_data
    autolog(log_models=False)

    def refuse(*args, **kwargs):
        raise RuntimeError("no recall today")

    monkeypatch.setattr(sklearn.metrics, "recall_score", refuse)
    LogisticRegression().fit(X, y)
    _, meta = only_run(run_root)
    summary = read_json(run_root / PROJECT / meta["id"] / "summary.json")
    assert "train/recall" not in summary and {"train/accuracy", "train/precision", "train/roc_auc"} <= set(summary)
    assert "training metric train/recall failed" in caplog.text and "no recall today" in caplog.text


class _AddsAColumn(BaseEstimator, TransformerMixin):
    """A user's step that writes into the DataFrame it is given (as MLflow's test does)."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        if "extra" in X.columns:
            raise ValueError("extra is already there: X was changed in place before")
        X["extra"] = X["a"] + 1
        return X


def test_training_metrics_use_X_as_passed_even_when_a_step_mutates_it(autolog, run_root):
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40)})
    y = 2 * X["a"] - X["b"] + rng.normal(scale=0.1, size=40)
    autolog(log_models=False)
    model = Pipeline([("add", _AddsAColumn()), ("reg", LinearRegression())]).fit(X, y)
    assert "extra" in X.columns  # the step did mutate the caller's frame
    _, meta = only_run(run_root)
    summary = read_json(run_root / PROJECT / meta["id"] / "summary.json")
    clean = X.drop(columns="extra")
    assert summary["train/r2"] == pytest.approx(sklearn.metrics.r2_score(y, model.predict(clean)), rel=1e-12)
    assert "train/rmse" in summary and meta["datasets"]["X_train"]["shape"] == [40, 2]


def test_an_estimator_that_is_neither_classifier_nor_regressor_gets_its_score(autolog, run_root, binary_data):
    X, _, _, _ = binary_data
    autolog(log_models=False)
    model = KMeans(n_clusters=3, n_init=2, random_state=0).fit(X)
    _, meta = only_run(run_root)
    summary = read_json(run_root / PROJECT / meta["id"] / "summary.json")
    assert summary["train/score"] == pytest.approx(model.score(X))
    assert "train/accuracy" not in summary


def test_post_fit_metrics_carry_the_dataset_name_and_predict_inputs_are_recorded(autolog, run_root):
    X, y = make_regression(n_samples=90, n_features=4, noise=3.0, random_state=2)
    X_train, y_train, X_val, y_val, X_test, y_test = X[:50], y[:50], X[50:70], y[50:70], X[70:], y[70:]
    autolog(log_models=False)
    model = Ridge().fit(X_train, y_train)
    r2_val = sklearn.metrics.r2_score(y_val, model.predict(X_val))
    r2_test = sklearn.metrics.r2_score(y_test, model.predict(X_test))  # must not replace r2 on X_val
    score_test = model.score(X_test, y_test)
    model.predict(X_test.copy())  # the same data under another object: the same name
    X_test = X_test + 1.0  # other data bound to a name already used: X_test-2
    model.predict(X_test)

    (run_dir, meta), = stored_runs(run_root).values()
    assert meta["status"] == "finished"  # reopened for each write, finished again
    summary = read_json(run_dir / "summary.json")
    assert summary["test/r2@X_val"] == pytest.approx(r2_val)
    assert summary["test/r2@X_test"] == pytest.approx(score_test) == pytest.approx(r2_test)
    datasets = meta["datasets"]
    assert set(datasets) == {"X_train", "y_train", "X_val", "X_test", "X_test-2"}
    assert datasets["X_val"]["shape"] == [20, 4] and datasets["X_test"]["sha256"] != datasets["X_test-2"]["sha256"]


def test_a_search_without_refit_warns(autolog, run_root, binary_data, caplog):
    X, y, _, _ = binary_data
    autolog()
    GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=2, refit=False).fit(X, y)
    assert "GridSearchCV(refit=False)" in caplog.text and "pass refit=True" in caplog.text
    parent = next(d for d, meta in stored_runs(run_root).values() if "parent" not in meta)
    assert not (parent / "artifacts" / "model").exists() and (parent / "artifacts" / "cv_results").exists()


def test_autolog_init_arguments_reach_every_run(run_root, binary_data):
    X, y, _, _ = binary_data
    epochal_sklearn.autolog(project=PROJECT, name="nightly", tags=["ci"], notes="n", system_interval=0,
                            log_models=False)
    try:
        LogisticRegression().fit(X, y)
    finally:
        epochal_sklearn.autolog(disable=True)
    _, meta = only_run(run_root)
    assert meta["name"] == "nightly" and set(meta["tags"]) == {"sklearn", "ci"} and meta["notes"] == "n"
    with pytest.raises(TypeError, match=r"takes no \['id'\].*epochal.init\(id=..."):
        epochal_sklearn.autolog(id="fixed")


def test_autolog_validates_its_arguments():
    with pytest.raises(ValueError, match="max_child_runs must be an int >= 0.*got -1"):
        epochal_sklearn.autolog(max_child_runs=-1)
    with pytest.raises(TypeError, match="log_models must be True or False"):
        epochal_sklearn.autolog(log_models="yes")
    assert "sklearn" not in epochal.integrations.enabled()


@pytest.mark.parametrize("log_plots", [True, False])
def test_training_plots_can_be_switched_off(autolog, run_root, binary_data, log_plots):
    X, y, _, _ = binary_data
    autolog(log_models=False, log_plots=log_plots)
    LogisticRegression().fit(X, y)
    (run_dir, meta), = stored_runs(run_root).values()
    reader = epochal.open_run(meta["id"], project=PROJECT)
    assert len(reader.media()) == (3 if log_plots else 0)  # confusion matrix, ROC, PR
    assert "train/accuracy" in read_json(run_dir / "summary.json")
