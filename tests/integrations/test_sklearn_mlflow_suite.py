"""MLflow's sklearn autolog tests (``tests/sklearn/test_sklearn_autolog.py``), rewritten for epochal.

The behaviours MLflow's suite pins down, checked against epochal's run folders. Where the two
differ by design, the test asserts epochal's documented rule and says so:

- a run the user opened holds each fit's params under the estimator's class name (MLflow:
  flat params, where a second estimator's params collide);
- ``train/score`` also for an unsupervised fit without ``y`` (KMeans has a score without labels);
- post-fit metric keys are ``test/<metric>@<dataset>``; the same metric on the same data keeps
  one key (MLflow adds ``-2``, ``-3``... per call);
- the ``model`` artifact of a search is its best estimator; per-fold scores are child-run steps.

Left out (MLflow-only machinery): signatures, input examples, the model registry, pyfunc,
``pos_label``, parameter truncation limits, MLflow's own logging helpers.
"""

from __future__ import annotations

import doctest
import functools
import inspect
import logging

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn
import sklearn.cluster
import sklearn.metrics
import sklearn.model_selection
from scipy.sparse import csc_matrix, csr_matrix
from scipy.stats import uniform
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.linear_model import Lasso, LinearRegression, LogisticRegression, RANSACRegressor, SGDRegressor
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

import epochal
from epochal.integrations import _sklearn_metrics, _sklearn_patch
from epochal.integrations import sklearn as epochal_sklearn
from epochal.store import read_json, read_metrics

PROJECT = "suite"
FIT_METHODS = ("fit", "fit_transform", "fit_predict")


@pytest.fixture
def autolog():
    def enable(**kwargs):
        epochal_sklearn.autolog(project=PROJECT, system_interval=0, **kwargs)
    enable()
    yield enable
    epochal_sklearn.autolog(disable=True)


def three_classes():
    """Two features, three classes, 150 rows: the shape of MLflow's iris[:, :2]."""
    return make_classification(n_samples=150, n_features=2, n_informative=2, n_redundant=0, n_classes=3,
                               n_clusters_per_class=1, random_state=0)


def two_classes():
    return make_classification(n_samples=200, n_features=8, random_state=3)


def user_run():
    return epochal.init(project="mine", system_interval=0)


def config(run):
    return read_json(run.dir / "config.json") or {}


def summary(run):
    return read_json(run.dir / "summary.json") or {}


def meta(run):
    return read_json(run.dir / "run.json")


def artifacts(run):
    manifest = read_json(run.dir / "artifacts" / "manifest.json") or {}
    return set(manifest.get("artifacts", {}))


def own_runs(root, project=PROJECT):
    folder = root / project
    found = [d for d in folder.iterdir() if (d / "run.json").exists()] if folder.exists() else []
    return {d.name: read_json(d / "run.json") for d in found}


def the_own_run(root):
    runs = [rid for rid, m in own_runs(root).items() if "parent" not in m]
    assert len(runs) == 1, runs
    return epochal.open_run(runs[0], project=PROJECT, dir=root)


def loaded_model(run):
    import skops.io as sio

    path = next((run.dir / "artifacts" / "model").rglob("model.skops"))
    return sio.load(path, trusted=sio.get_untrusted_types(file=path))


def fit_with(model, X, y, method):
    getattr(model, method)(X, y)
    return model


def class_path(model):
    cls = type(model)
    return f"{cls.__module__.split('._')[0]}.{cls.__qualname__}"


# -- patching ---------------------------------------------------------------------------------
def test_patched_methods_keep_name_doc_and_signature():
    def facts(f):
        return f.__name__, f.__doc__, str(inspect.signature(f))

    def snapshot():
        return {(owner, name): facts(getattr(owner, name)) for owner, name, kind in _sklearn_patch.targets()
                if kind != "worker" and callable(getattr(owner, name, None))}

    before = snapshot()
    epochal_sklearn.autolog()
    try:
        after = snapshot()
        assert [key for key in before if after[key] != before[key]] == []
    finally:
        epochal_sklearn.autolog(disable=True)


def test_negative_max_child_runs_is_refused():
    with pytest.raises(ValueError, match="max_child_runs"):
        epochal_sklearn.autolog(max_child_runs=-1)


def test_fit_does_not_end_the_users_run(autolog):
    with user_run() as run:
        KMeans(n_init=1).fit(*three_classes())
        assert epochal.current_run() is run and not run._finished


def test_autolog_tags_join_the_sklearn_tag(run_root):
    epochal_sklearn.autolog(project=PROJECT, tags=["nightly"], system_interval=0)
    try:
        KMeans(n_init=1).fit(*three_classes())
    finally:
        epochal_sklearn.autolog(disable=True)
    assert epochal.current_run() is None
    assert {"sklearn", "nightly"} <= set(meta(the_own_run(run_root))["tags"])


@pytest.mark.parametrize("method", FIT_METHODS)
def test_estimator(autolog, method):
    X, y = three_classes()
    with user_run() as run:
        model = fit_with(KMeans(n_init=2, random_state=0), X, y, method)
    assert config(run)["KMeans"] == model.get_params(deep=True)
    assert config(run)["estimator_class"] == class_path(model)
    assert summary(run)["train/score"] == pytest.approx(model.score(X, y), abs=1e-6)
    np.testing.assert_array_equal(loaded_model(run).predict(X), model.predict(X))


def _classifier_expectations(model, X, y, proba_for_auc, auc_kwargs):
    pred, proba = model.predict(X), model.predict_proba(X)
    return {
        "train/score": model.score(X, y),
        "train/accuracy": sklearn.metrics.accuracy_score(y, pred),
        "train/precision": sklearn.metrics.precision_score(y, pred, average="weighted"),
        "train/recall": sklearn.metrics.recall_score(y, pred, average="weighted"),
        "train/f1": sklearn.metrics.f1_score(y, pred, average="weighted"),
        "train/log_loss": sklearn.metrics.log_loss(y, proba),
        "train/roc_auc": sklearn.metrics.roc_auc_score(y, proba_for_auc(proba), **auc_kwargs),
    }


def _train_metrics(run):
    return {k: v for k, v in summary(run).items() if k.startswith("train/")}


def test_classifier_binary(autolog):
    X, y = two_classes()
    with user_run() as run:
        model = RandomForestClassifier(max_depth=2, random_state=0, n_estimators=10).fit(X, y)
    expected = _classifier_expectations(model, X, y, lambda p: p[:, 1], {})
    assert _train_metrics(run) == pytest.approx(expected)
    assert "model" in artifacts(run)
    np.testing.assert_array_equal(loaded_model(run).predict(X), model.predict(X))


def test_classifier_multi_class(autolog):
    X, y = three_classes()
    with user_run() as run:
        model = RandomForestClassifier(max_depth=2, random_state=0, n_estimators=10).fit(X, y)
    expected = _classifier_expectations(model, X, y, lambda p: p, {"multi_class": "ovr", "average": "weighted"})
    assert _train_metrics(run) == pytest.approx(expected)


def test_regressor(autolog):
    X, y = three_classes()
    with user_run() as run:
        model = LinearRegression().fit(X, y)
    pred = model.predict(X)
    mse = sklearn.metrics.mean_squared_error(y, pred)
    assert _train_metrics(run) == pytest.approx({
        "train/score": model.score(X, y), "train/mse": mse, "train/rmse": np.sqrt(mse),
        "train/mae": sklearn.metrics.mean_absolute_error(y, pred), "train/r2": sklearn.metrics.r2_score(y, pred),
    })
    assert config(run)["LinearRegression"] == model.get_params(deep=True)


def test_meta_estimator(autolog):
    X, y = three_classes()
    with user_run() as run:
        model = Pipeline([("std_scaler", StandardScaler()), ("svc", SVC())]).fit(X, y)
    assert config(run)["Pipeline"]["svc__C"] == 1.0 and config(run)["estimator_class"] == "sklearn.pipeline.Pipeline"
    assert summary(run)["train/score"] == pytest.approx(model.score(X, y), abs=1e-6)
    np.testing.assert_array_equal(loaded_model(run).predict(X), model.predict(X))


def test_many_params_are_all_kept(autolog, monkeypatch):
    many = {f"p{i}": i for i in range(150)}
    monkeypatch.setattr(KMeans, "get_params", lambda self, deep=True: dict(many))
    monkeypatch.setattr(KMeans, "_validate_params", lambda self: None)
    with user_run() as run:
        KMeans(n_init=1).fit(*three_classes())
    assert config(run)["KMeans"] == many


def test_long_param_names_and_values_are_kept_whole(autolog, monkeypatch):
    long = {"k" * 300: "v" * 7000}
    monkeypatch.setattr(KMeans, "get_params", lambda self, deep=True: dict(long))
    monkeypatch.setattr(KMeans, "_validate_params", lambda self: None)
    with user_run() as run:
        KMeans(n_init=1).fit(*three_classes())
    assert config(run)["KMeans"] == long


@pytest.mark.parametrize("passed_as", ["only_y_kwarg", "both_kwargs", "both_kwargs_swapped"])
def test_fit_takes_X_and_y_as_keywords(autolog, passed_as):
    X, y = three_classes()
    model = KMeans(n_init=2, random_state=0)
    with user_run() as run:
        {"only_y_kwarg": lambda: model.fit(X, y=y), "both_kwargs": lambda: model.fit(X=X, y=y),
         "both_kwargs_swapped": lambda: model.fit(y=y, X=X)}[passed_as]()
    assert summary(run)["train/score"] == pytest.approx(model.score(X, y), abs=1e-6)
    assert meta(run)["datasets"]["X_train"]["shape"] == [150, 2]


class _ScoreSpy:
    def __init__(self):
        self.calls = []

    def __call__(self, X, y, sample_weight=None):
        self.calls.append((X, y, sample_weight))
        return 0.0


def _spy_on_score(monkeypatch, cls, takes_weight=True):
    spy = _ScoreSpy()
    if takes_weight:
        def score(self, X, y, sample_weight=None):
            return spy(X, y, sample_weight)
    else:
        def score(self, X, y, **kwargs):
            assert kwargs == {}
            return spy(X, y)
    monkeypatch.setattr(cls, "score", score)
    return spy


def test_fit_arguments_that_score_does_not_take_are_not_passed(autolog, monkeypatch):
    spy = _spy_on_score(monkeypatch, SGDRegressor)
    X, y = three_classes()
    with user_run():
        SGDRegressor().fit(X, y, intercept_init=0)
    (sX, sy, sw), = spy.calls
    np.testing.assert_array_equal(sX, X)
    np.testing.assert_array_equal(sy, y)
    assert sw is None


@pytest.mark.parametrize("passed_as", ["positional", "keyword"])
def test_sample_weight_reaches_score(autolog, monkeypatch, passed_as):
    spy = _spy_on_score(monkeypatch, SGDRegressor)
    X, y = three_classes()
    weight = np.abs(np.random.default_rng(0).normal(size=len(X)))
    with user_run():
        if passed_as == "positional":
            SGDRegressor().fit(X, y, None, None, weight)
        else:
            SGDRegressor().fit(X, y, sample_weight=weight)
    (_, _, sw), = spy.calls
    np.testing.assert_array_equal(sw, weight)


def test_score_without_sample_weight_is_called_without_it(autolog, monkeypatch):
    spy = _spy_on_score(monkeypatch, RANSACRegressor, takes_weight=False)
    X, y = three_classes()
    with user_run():
        RANSACRegressor(random_state=0).fit(X, y)
    assert len(spy.calls) == 1


def test_score_taking_sample_weight_when_fit_does_not(autolog, monkeypatch):
    spy = _spy_on_score(monkeypatch, GaussianProcessRegressor)
    X, y = three_classes()
    with user_run():
        GaussianProcessRegressor().fit(X, y)
    (_, _, sw), = spy.calls
    assert sw is None


def test_a_failing_fit_fails_the_own_run(autolog, run_root):
    with pytest.raises(ValueError, match="C"):
        LinearSVC(C=-1).fit(*three_classes())
    assert epochal.current_run() is None
    assert meta(the_own_run(run_root))["status"] == "failed"


def test_a_failing_fit_leaves_the_users_run_open(autolog):
    run = user_run()
    with pytest.raises(ValueError):
        LinearSVC(C=-1).fit(*three_classes())
    assert epochal.current_run() is run and not run._finished
    run.finish()


def test_a_failing_score_warns(autolog, caplog):
    model = KMeans(n_init=1)

    @functools.wraps(model.score)
    def broken(X, y=None, sample_weight=None):
        raise RuntimeError("EXCEPTION")

    model.score = broken
    with user_run() as run, caplog.at_level(logging.WARNING, logger="epochal"):
        model.fit(*three_classes())
    assert "training metric train/score failed" in caplog.text and "EXCEPTION" in caplog.text
    assert "train/score" not in summary(run)


def test_a_failing_metric_warns(autolog, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("EXCEPTION")

    monkeypatch.setattr(sklearn.metrics, "precision_score", broken)
    with user_run() as run, caplog.at_level(logging.WARNING, logger="epochal"):
        SVC().fit(*three_classes())
    assert "training metric train/precision failed" in caplog.text
    assert "train/precision" not in summary(run) and "train/accuracy" in summary(run)


def test_a_search_without_refit_warns_that_it_cannot_predict(autolog, caplog):
    scorers = {f"score_{i}": sklearn.metrics.make_scorer(lambda y, y_pred, **kw: 10) for i in range(2)}
    with user_run(), caplog.at_level(logging.WARNING, logger="epochal"):
        search = GridSearchCV(SVC(), {"C": [1]}, n_jobs=1, scoring=scorers, refit=False).fit(*three_classes())
        with pytest.raises(AttributeError, match=r"GridSearchCV.+predict"):
            search.predict([[0, 0]])
    assert "GridSearchCV(refit=False)" in caplog.text


@pytest.mark.parametrize("search_class, space", [
    (GridSearchCV, {"kernel": ("linear", "rbf"), "C": [1, 5, 10]}),
    (RandomizedSearchCV, {"C": uniform(loc=0, scale=4)}),
])
@pytest.mark.parametrize("backend", [None, "threading", "loky"])
@pytest.mark.parametrize("max_child_runs", ["all", 3])
def test_parameter_search(run_root, search_class, space, backend, max_child_runs):
    X, y = three_classes()
    search = search_class(SVC(), space, n_jobs=2, cv=3, return_train_score=True)
    candidates = 6 if search_class is GridSearchCV else 10
    keep = candidates if max_child_runs == "all" else max_child_runs
    epochal_sklearn.autolog(project=PROJECT, system_interval=0, max_child_runs=keep)
    try:
        with user_run() as run:
            if backend is None:
                search.fit(X, y)
            else:
                with joblib.parallel_backend(backend):
                    search.fit(X, y)
    finally:
        epochal_sklearn.autolog(disable=True)

    assert config(run)["estimator_class"] == class_path(search)
    assert summary(run)["train/score"] == pytest.approx(search.score(X, y))
    assert summary(run)["best_score"] == pytest.approx(search.best_score_)
    assert summary(run)["best_params"] == pytest.approx(search.best_params_)
    assert {"model", "cv_results"} <= artifacts(run)
    assert isinstance(loaded_model(run), SVC)  # the best estimator
    children = {rid: m for rid, m in own_runs(run_root, "mine").items() if m.get("parent")}  # beside the parent
    assert len(children) == keep and sorted(meta(run)["children"]) == sorted(children)
    results = search.cv_results_
    best = sorted(range(candidates), key=lambda i: (results["rank_test_score"][i], i))[:keep]
    seen = []
    for child_id, child_meta in children.items():
        child = epochal.open_run(child_id, project="mine", dir=run_root)
        assert child_meta["status"] == "finished" and child_meta["parent"] == run.id
        child_summary = summary(child)
        index = child_summary["candidate"]
        seen.append(index)
        assert config(child) == pytest.approx(results["params"][index])
        assert child_summary["val/score"] == pytest.approx(results["mean_test_score"][index])
        assert child_summary["val/score_std"] == pytest.approx(results["std_test_score"][index])
        assert len(read_metrics(child.dir)[0]) == 3  # one step per fold, not one run per fold
    assert sorted(seen) == sorted(best)


def test_parameter_search_with_many_scorers(autolog):
    count = 1010
    scorers = {f"score_{i}": sklearn.metrics.make_scorer(lambda y, y_pred, **kw: 10) for i in range(count)}
    with user_run() as run:
        GridSearchCV(SVC(), {"C": [1]}, n_jobs=1, cv=2, scoring=scorers, refit=False).fit(*three_classes())
    child = epochal.open_run(meta(run)["children"][0], project="mine")
    assert len([k for k in summary(child) if k.startswith("val/score_") and not k.endswith("_std")]) >= count


@pytest.mark.parametrize("kind", [pd.DataFrame, np.array, csr_matrix, csc_matrix])
def test_data_types(autolog, kind):
    X, y = three_classes()
    X = kind(X)
    y = np.array(y) if kind in (csr_matrix, csc_matrix) else (pd.Series(y) if kind is pd.DataFrame else kind(y))
    with user_run() as run:
        model = LinearRegression().fit(X, y)
    assert meta(run)["datasets"]["X_train"]  # sparse matrices: type and size (core/datasets.py)
    np.testing.assert_array_almost_equal(loaded_model(run).predict(X[:5]), model.predict(X[:5]))
    assert "train/r2" in summary(run)


class _AddsAColumn(BaseEstimator, TransformerMixin):
    def fit(self, X, y=None):
        return self

    def transform(self, X, y=None):
        if "XXLarge Bags" in X.columns:
            raise ValueError("Found unexpected 'XXLarge Bags' column!")
        X["XXLarge Bags"] = X["XLarge Bags"] + 1
        return X


def test_training_metrics_do_not_see_mutations_made_by_fit(autolog, run_root):
    X = pd.DataFrame({"Total Volume": [64236.62, 54876.98, 118220.22], "Total Bags": [8696.87, 9505.56, 8145.35],
                      "Small Bags": [8603.62, 9408.07, 8042.21], "Large Bags": [93.25, 97.49, 103.14],
                      "XLarge Bags": [0.0, 0.0, 0.0]})
    y = pd.Series([1.33, 1.35, 0.93])
    make_pipeline(_AddsAColumn(), LinearRegression()).fit(X, y)
    found = summary(the_own_run(run_root))
    assert "train/r2" in found and "train/rmse" in found


def test_X_that_refuses_slicing_is_fine(autolog):
    class NoSlices(np.ndarray):
        def __getitem__(self, key):
            if isinstance(key, slice):
                raise IndexError("DO NOT SLICE ME")
            return super().__getitem__(key)

    X, y = three_classes()
    with user_run() as run:
        LinearRegression().fit(np.asarray(X).view(NoSlices), y)
    assert meta(run)["status"] == "finished" and "train/r2" in summary(run)


def test_an_estimator_without_predict(autolog):
    X, y = three_classes()
    assert not hasattr(AgglomerativeClustering(), "predict")
    with user_run() as run:
        AgglomerativeClustering().fit(X, y)
    assert config(run)["AgglomerativeClustering"]["n_clusters"] == 2 and "model" in artifacts(run)
    assert not _train_metrics(run)


def test_a_failing_predict_never_breaks_fit(autolog, monkeypatch, caplog):
    def broken(self, X):
        raise RuntimeError("Failed")

    monkeypatch.setattr(LinearRegression, "predict", broken)
    with user_run() as run, caplog.at_level(logging.WARNING, logger="epochal"):
        LinearRegression().fit(*three_classes())
    assert "Failed" in caplog.text and "model" in artifacts(run)
    assert "train/r2" not in summary(run)


def test_a_transform_only_pipeline_warns_about_nothing(autolog, caplog):
    with user_run() as run, caplog.at_level(logging.WARNING, logger="epochal"):
        Pipeline([("std_scaler", StandardScaler())]).fit(*three_classes())
    assert "epochal" not in caplog.text and "model" in artifacts(run)


@pytest.mark.parametrize("log_models", [True, False])
def test_log_models_option(autolog, log_models):
    autolog(log_models=log_models)
    with user_run() as run:
        LinearRegression().fit(*three_classes())
    assert ("model" in artifacts(run)) is log_models


@pytest.mark.parametrize("log_datasets", [True, False])
def test_log_datasets_option(autolog, log_datasets):
    autolog(log_datasets=log_datasets)
    X, y = three_classes()
    with user_run() as run:
        LinearRegression().fit(X, y)
    datasets = meta(run)["datasets"]
    if log_datasets:
        assert datasets["X_train"]["shape"] == [150, 2] and datasets["y_train"]["shape"] == [150]
    else:
        assert datasets == {}


def test_predict_inputs_are_recorded_in_the_users_run(autolog):
    X, y = three_classes()
    with user_run() as run:
        model = LinearRegression().fit(X, y)
        model.predict(X + 1)
    assert set(meta(run)["datasets"]) == {"X_train", "y_train", "eval"}


def test_predict_inputs_are_recorded_in_the_own_run(autolog, run_root):
    X, y = three_classes()
    model = LinearRegression().fit(X, y)
    X_eval = X[::2]
    model.predict(X_eval)
    found = meta(the_own_run(run_root))
    assert found["datasets"]["X_eval"]["shape"] == [75, 2] and found["status"] == "finished"


def test_data_steps_alone_leave_no_trace(autolog):
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.feature_selection import VarianceThreshold
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import LabelEncoder, MinMaxScaler, Normalizer

    rng = np.random.default_rng(0)
    with user_run() as run:
        Normalizer().fit_transform(rng.random((5, 5)))
        LabelEncoder().fit([1, 2, 2, 6])
        MinMaxScaler().fit_transform(50 * rng.random((10, 10)))
        SimpleImputer().fit_transform([[1, 2], [np.nan, 3], [7, 6]])
        TfidfVectorizer().fit_transform(["epochal tracks runs.", "scikit-learn fits models"])
        VarianceThreshold().fit_transform([[0, 2, 0, 3], [0, 1, 4, 3], [0, 1, 1, 3]])
        ColumnTransformer([("norm", Normalizer(), [0])]).fit_transform([[0]])
    assert config(run) == {} and summary(run) == {} and artifacts(run) == set() and meta(run)["datasets"] == {}


def test_a_subclass_whose_fit_calls_the_parents_fit(autolog, run_root):
    class Shifted(LinearRegression):
        def fit(self, X, y):
            super().fit(X, y)
            self.intercept_ = self.intercept_ + 7
            return self

    X, y = three_classes()
    model = Shifted().fit(X, y)
    plain = LinearRegression().fit(X, y)
    np.testing.assert_allclose(model.predict(X), plain.predict(X) + 7)
    names = sorted(m["name"] for m in own_runs(run_root).values())
    assert names == ["LinearRegression", "Shifted"]  # one run each, no recursion


def test_fit_without_labels(autolog):
    X, _ = three_classes()
    with user_run() as run:
        model = KMeans(n_init=2, random_state=0).fit(X=X)
    assert config(run)["KMeans"] == model.get_params(deep=True)
    assert _train_metrics(run) == pytest.approx({"train/score": model.score(X)})  # epochal: score needs no y
    assert "model" in artifacts(run)


@pytest.mark.parametrize("function", ["cross_validate", "cross_val_score", "cross_val_predict", "learning_curve",
                                      "validation_curve", "permutation_test_score"])
def test_cross_validation_helpers_make_no_runs(autolog, run_root, function):
    X, y = make_classification(n_samples=90, n_features=5, random_state=0)
    extra = {"param_name": "max_iter", "param_range": [10, 100]} if function == "validation_curve" else {}
    if function == "permutation_test_score":
        extra = {"n_permutations": 3}
    call = getattr(sklearn.model_selection, function)
    with user_run() as run:
        call(Lasso(), X, y, cv=3, **extra)
    assert config(run) == {} and summary(run) == {} and artifacts(run) == set()
    call(Lasso(), X, y, cv=3, **extra)
    assert own_runs(run_root) == {}


# -- post-training metrics ----------------------------------------------------------------------
def test_post_training_metrics(autolog):
    from sklearn import metrics

    X, y = three_classes()
    model = LogisticRegression(solver="saga", max_iter=100, random_state=0)
    with user_run() as run:
        model.fit(X, y)
        eval1_X, eval1_y = X[0::3], y[0::3]
        eval2_X, eval2_y = X[1::3], y[1::3]
        pred1_y = model.predict(X=eval1_X)
        pred2_y = model.predict(eval2_X)
        r2_1 = metrics.r2_score(eval1_y, pred1_y)
        recall_1 = metrics.recall_score(eval1_y, pred1_y, average="macro")
        r2_2 = metrics.r2_score(eval2_y, pred2_y)
        score_1 = model.score(eval1_X, eval1_y)
        recall_2 = metrics.recall_score(eval2_y, pred2_y, average="micro")
        scored_recall = metrics.make_scorer(metrics.recall_score, average="macro")(model, eval2_X, eval2_y)
        copied = model.score(eval1_X.copy(), eval1_y.copy())  # the same data: the same name
    post = {k: v for k, v in summary(run).items() if k.startswith("test/")}
    assert post == pytest.approx({
        "test/r2@eval1_X": r2_1, "test/recall[average=macro]@eval1_X": recall_1, "test/r2@eval2_X": r2_2,
        "test/accuracy@eval1_X": copied, "test/recall[average=micro]@eval2_X": recall_2,
        "test/recall[average=macro]@eval2_X": scored_recall,
    })
    assert copied == score_1
    epochal_sklearn.autolog(disable=True)
    assert metrics.recall_score(eval1_y, pred1_y, average="macro") == pytest.approx(recall_1)
    assert model.score(eval1_X, eval1_y) == pytest.approx(score_1)
    np.testing.assert_allclose(model.predict(eval1_X), pred1_y)


def _metric_functions():
    return sorted(name for owner, name, kind in _sklearn_patch.targets() if kind == "metric")


@pytest.mark.parametrize("name", _metric_functions())
def test_metric_docstring_examples_run_the_same_under_autolog(name):
    def failures():
        runner = doctest.DocTestRunner(verbose=False)
        for test in doctest.DocTestFinder().find(getattr(sklearn.metrics, name), name, globs={}):
            runner.run(test, out=lambda text: None)
        return runner.summarize(verbose=False)

    plain = failures()
    epochal_sklearn.autolog(project=PROJECT, system_interval=0)
    try:
        assert failures() == plain
    finally:
        epochal_sklearn.autolog(disable=True)


def test_roc_auc_on_predict_proba(autolog):
    X, y = three_classes()
    with user_run() as run:
        model = LogisticRegression(max_iter=200).fit(X, y)
        value = sklearn.metrics.roc_auc_score(np.eye(3)[y], model.predict_proba(X))
    assert summary(run)["test/roc_auc@X_train"] == value  # the training data keeps its name


def test_transform_inputs_are_recorded(autolog):
    X, y = three_classes()
    with user_run() as run:
        model = KMeans(n_init=1).fit(X, y)
        model.transform(X[:30])
    assert "eval" in meta(run)["datasets"]


def test_nothing_post_training_is_recorded_inside_fit(autolog):
    X, y = three_classes()
    eval1_X, eval1_y = X[0::3], y[0::3]
    with user_run() as run:
        model = LinearRegression().fit(X, y)
        assert not [k for k in summary(run) if k.startswith("test/")]
        model.score(eval1_X, eval1_y)
    assert [k for k in summary(run) if k.startswith("test/")] == ["test/r2@eval1_X"]


def test_interleaved_models_keep_their_own_metrics(autolog):
    X, y = three_classes()
    eval1_X, eval1_y = X[0::3], y[0::3]
    eval2_X, eval2_y = X[1::3], y[1::3]
    model1, model2 = LinearRegression(fit_intercept=True), LinearRegression(fit_intercept=False)
    with user_run() as run1:
        model1.fit(X, y)
    with user_run() as run2:
        model2.fit(X, y)
    r2_1, r2_2 = model1.score(eval1_X, eval1_y), model2.score(eval2_X, eval2_y)
    pred1_y, pred2_y = model1.predict(eval1_X), model2.predict(eval2_X)
    mse_1 = sklearn.metrics.mean_squared_error(eval1_y, pred1_y)
    mse_2 = sklearn.metrics.mean_squared_error(eval2_y, pred2_y)
    # The user's runs have ended: post-fit figures are not reopened into them (only own runs are).
    assert not [k for k in summary(run1) if k.startswith("test/")] and r2_1 and mse_1
    assert not [k for k in summary(run2) if k.startswith("test/")] and r2_2 and mse_2


def test_interleaved_models_in_own_runs(autolog, run_root):
    X, y = three_classes()
    eval1_X, eval1_y = X[0::3], y[0::3]
    eval2_X, eval2_y = X[1::3], y[1::3]
    model1 = LinearRegression(fit_intercept=True).fit(X, y)
    model2 = Lasso().fit(X, y)
    r2_1, r2_2 = model1.score(eval1_X, eval1_y), model2.score(eval2_X, eval2_y)
    mse_1 = sklearn.metrics.mean_squared_error(eval1_y, model1.predict(eval1_X))
    mse_2 = sklearn.metrics.mean_squared_error(eval2_y, model2.predict(eval2_X))
    runs = {m["name"]: epochal.open_run(rid, project=PROJECT) for rid, m in own_runs(run_root).items()}
    assert summary(runs["LinearRegression"])["test/r2@eval1_X"] == r2_1
    assert summary(runs["LinearRegression"])["test/mse@eval1_X"] == mse_1
    assert summary(runs["Lasso"])["test/r2@eval2_X"] == r2_2 and summary(runs["Lasso"])["test/mse@eval2_X"] == mse_2
    assert not any("eval2" in k for k in summary(runs["LinearRegression"]))


@pytest.mark.parametrize("scoring", [None, sklearn.metrics.make_scorer(sklearn.metrics.accuracy_score)])
def test_search_predict_and_score_are_recorded_once(autolog, scoring):
    X, y = three_classes()
    with user_run() as run:
        search = GridSearchCV(SVC(), {"C": [1, 0.5]}, n_jobs=1, scoring=scoring).fit(X, y)
        search.predict(X)
        search.score(X, y)
    post = [k for k in summary(run) if k.startswith("test/")]
    assert post == ["test/accuracy@X_train" if scoring is None else "test/score@X_train"]  # X is the training data
    assert set(meta(run)["datasets"]) == {"X_train", "y_train"}


@pytest.mark.parametrize("scoring", [None, sklearn.metrics.make_scorer(sklearn.metrics.accuracy_score)])
def test_search_post_training_metrics(autolog, scoring):
    X, y = three_classes()
    eval1_X, eval1_y = X[0::3], y[0::3]
    with user_run() as run:
        search = GridSearchCV(LogisticRegression(solver="saga", random_state=0), {"max_iter": [5, 10, 15]},
                              n_jobs=1, scoring=scoring).fit(X, y)
        pred1_y = search.predict(eval1_X)
        correct = sklearn.metrics.accuracy_score(eval1_y, pred1_y, normalize=False)
        cv_score = search.score(eval1_X, eval1_y)
    found = summary(run)
    assert found["test/accuracy[normalize=False]@eval1_X"] == correct
    assert found["test/accuracy@eval1_X" if scoring is None else "test/score@eval1_X"] == cv_score


def test_delegated_pipeline_predict(autolog):
    epochal_sklearn.autolog(disable=True)
    original = sklearn.pipeline.Pipeline.__dict__["predict"]  # an available_if descriptor
    autolog()
    assert sklearn.pipeline.Pipeline.__dict__["predict"] is not original
    X, y = three_classes()
    with user_run() as run:
        model = Pipeline([("svc", SVC())]).fit(X, y)
        eval1_X = X[0::3]
        predicted = model.predict(eval1_X)  # Pipeline.predict calls SVC.predict: one dataset noted
    assert set(meta(run)["datasets"]) == {"X_train", "y_train", "eval1_X"}
    epochal_sklearn.autolog(disable=True)
    assert sklearn.pipeline.Pipeline.__dict__["predict"] is original
    np.testing.assert_allclose(model.predict(eval1_X), predicted)


def test_available_if_pipeline_transform(autolog):
    X, y = three_classes()
    with user_run():
        model = Pipeline([("kmeans", KMeans(n_init=1, random_state=0))]).fit(X, y)
    transformed = model.transform(X[0::3])
    epochal_sklearn.autolog(disable=True)
    np.testing.assert_allclose(model.transform(X[0::3]), transformed)


def test_which_metric_values_are_numbers():
    as_number = _sklearn_metrics.as_number
    assert as_number(3) == 3 and as_number(3.5) == 3.5 and as_number(np.float32(3.5)) == 3.5
    assert as_number(True) is None and as_number([1, 2]) is None and as_number(np.array([1, 2])) is None


def test_post_training_metrics_option():
    X, y = three_classes()
    model = LogisticRegression()
    try:
        for enabled in (True, False, True):
            epochal_sklearn.autolog(project=PROJECT, system_interval=0, log_post_training_metrics=enabled)
            with user_run() as run:
                model.fit(X, y)
                sklearn.metrics.r2_score(y, model.predict(X))
            assert any(k.startswith("test/r2") for k in summary(run)) is enabled
    finally:
        epochal_sklearn.autolog(disable=True)


class _Unpicklable(KMeans):
    def __init__(self, n_clusters=8):
        super().__init__(n_clusters)
        self.generator = (i for i in range(3))

    def _validate_params(self):
        pass


def test_an_unpicklable_estimator_warns_and_keeps_the_rest(autolog, caplog):
    with user_run() as run, caplog.at_level(logging.WARNING, logger="epochal"):
        _Unpicklable().fit(*three_classes())
    assert "model failed" in caplog.text
    assert config(run)["_Unpicklable"] and "train/score" in summary(run) and "model" not in artifacts(run)
