"""scikit-learn autologging in one call: every fit below becomes a tracked run.

    python examples/sklearn_example.py [--dir ./epochal-runs]

Synthetic data, tiny models, a few seconds on a laptop CPU. Prints where the runs went.
"""

from __future__ import annotations

import os
import argparse

import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
import sklearn.metrics
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import epochal
from epochal.integrations import sklearn as epochal_sklearn
from epochal.store import read_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="run root (default: $EPOCHAL_DIR or ./epochal-runs)")
    args = parser.parse_args()

    epochal_sklearn.autolog(project=os.environ.get("EPOCHAL_PROJECT", "sklearn-example"), dir=args.dir, max_child_runs=3)
    X, y = make_classification(n_samples=400, n_features=8, n_informative=5, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)

    # 1. A pipeline: one run (not one per step) with params, train/* metrics, dataset fingerprint, model.
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(X_train, y_train)
    print("pipeline test accuracy:", pipe.score(X_test, y_test))                 # -> test/accuracy@X_test
    # sklearn.metrics.* called on a prediction of a tracked model -> test/<metric>@<dataset> (look the function up
    # through the module: a `from sklearn.metrics import f1_score` done before autolog() is not patched).
    print("pipeline test f1:", sklearn.metrics.f1_score(y_test, pipe.predict(X_test)))   # -> test/f1@X_test

    # 2. A grid search: one parent run (cv_results table, best params) + the top 3 candidates as child runs.
    search = GridSearchCV(pipe, {"clf__C": [float(c) for c in np.logspace(-3, 2, 6)]}, cv=3).fit(X_train, y_train)
    print("search best params:", search.best_params_, "best cv score:", round(search.best_score_, 4))

    # 3. Inside an explicit run, fits log into it instead of making their own.
    with epochal.init(project=os.environ.get("EPOCHAL_PROJECT", "sklearn-example"), name="explicit", dir=args.dir, config={"note": "mine"}) as run:
        LogisticRegression(C=0.5).fit(X_train, y_train).score(X_test, y_test)
    epochal_sklearn.autolog(disable=True)

    root = run.dir.parent
    print(f"\nruns stored in {root}:")
    for folder in sorted(p for p in root.iterdir() if (p / "run.json").exists()):
        meta = read_json(folder / "run.json")
        summary = read_json(folder / "summary.json", {})
        shown = {k: round(v, 4) for k, v in summary.items() if k.startswith(("train/acc", "test/", "val/score"))}
        kind = f"child of {meta['parent']}" if meta.get("parent") else meta["status"]
        print(f"  {folder.name}  {meta['name']:<28} {kind:<32} {shown}")


if __name__ == "__main__":
    main()
