"""EpochalCallback and autolog() on real Keras 3 fits, on each backend in EPOCHAL_KERAS_BACKENDS.

KERAS_BACKEND is fixed when keras is first imported, so each backend's fits run in one
subprocess: this file run as a script (``python test_keras.py ROOT``) plays every scenario
and writes ``ROOT/result.json``; the tests read the stored runs back from the parent.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from epochal.artifacts import read_manifest
from epochal.store import read_json, read_metrics

BACKENDS = [b.strip() for b in os.environ.get("EPOCHAL_KERAS_BACKENDS", "torch,jax").split(",") if b.strip()]
LR0, DECAY_STEPS, DECAY_RATE = 0.05, 4, 0.5  # ExponentialDecay of the plain scenario
STEPS_PER_EPOCH = 4  # 64 samples, batch 16


# -- the scenarios (run in the subprocess) ----------------------------------------------------------
def _scenarios(root: Path) -> dict:
    import numpy as np
    import keras

    from epochal.integrations import keras as ek
    from epochal.integrations.keras import EpochalCallback

    out: dict = {"backend": keras.backend.backend()}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int32")
    xt = rng.normal(size=(32, 8)).astype("float32")
    yt = (xt[:, 0] + 0.5 * xt[:, 1] > 0).astype("int32")

    def model(lr=None):
        keras.utils.set_random_seed(0)
        net = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"),
                                keras.layers.Dense(2, activation="softmax")])
        net.compile(optimizer=keras.optimizers.Adam(lr or 0.01), loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"])
        return net

    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("boom in epoch 2")

    class Stop(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("interrupted in epoch 3")

    errors = {}
    for label, kwargs in {"every": {"log_every_n_batches": 0}, "init": {"bogus": 1},
                          "ckpt": {"checkpoints": "sometimes"}}.items():
        try:
            EpochalCallback(**kwargs)
        except (TypeError, ValueError) as exc:
            errors[label] = type(exc).__name__
    out["errors"] = errors
    fit, evaluate = keras.Model.fit, keras.Model.evaluate

    import epochal
    from epochal.lifecycle import Tracking

    def status(run):
        return read_json(run.dir / "run.json")["status"]

    # plain callback: schedule, batch points, two ModelCheckpoints (one before, one after it), evaluate
    net = model(keras.optimizers.schedules.ExponentialDecay(LR0, decay_steps=DECAY_STEPS, decay_rate=DECAY_RATE))
    cb = EpochalCallback(project="plain", name="plain", log_every_n_batches=2)
    best = keras.callbacks.ModelCheckpoint(str(root / "ckpt" / "best.keras"), monitor="val_loss", save_best_only=True)
    last = keras.callbacks.ModelCheckpoint(str(root / "ckpt" / "last.weights.h5"), save_weights_only=True)
    history = net.fit(x, y, batch_size=16, epochs=3, validation_data=(xt, yt), callbacks=[best, cb, last], verbose=0)
    plain = cb.run
    out["plain"] = {"id": plain.id, "history": history.history, "status_after_fit": status(plain),
                    "current_after_fit": epochal.current_run() is not None,
                    "best_sha": hashlib.sha256((root / "ckpt" / "best.keras").read_bytes()).hexdigest(),
                    "followers_left": ["_save_model" in vars(c) for c in (best, last)]}
    # another integration's training after the Keras fit gets a run of its own
    other = Tracking("lightning")
    out["plain"]["other_is_new"] = other.start().id != plain.id
    other.end()
    from sklearn.linear_model import LogisticRegression

    from epochal.integrations import sklearn as esk

    esk.autolog(project="sk-after-keras")
    LogisticRegression(C=0.37).fit(x, y)
    esk.autolog(disable=True)
    out["plain"]["test"] = net.evaluate(xt, yt, callbacks=[cb], verbose=0, return_dict=True)
    out["plain"]["status_after_evaluate"] = status(plain)
    # a later fit saving to the same path: Keras rewrites best.keras in place, the stored version keeps its bytes
    model().fit(x, y, batch_size=16, epochs=1, validation_data=(xt, yt), verbose=0, callbacks=[
        keras.callbacks.ModelCheckpoint(str(root / "ckpt" / "best.keras")), EpochalCallback(project="again")])
    out["plain"]["rewritten"] = hashlib.sha256((root / "ckpt" / "best.keras").read_bytes()).hexdigest()

    # checkpoints="all" with an epoch-templated ModelCheckpoint: every save, best by its monitor and mode
    cb = EpochalCallback(project="all", name="all", checkpoints="all")
    each = keras.callbacks.ModelCheckpoint(str(root / "each" / "m-{epoch:02d}.weights.h5"), monitor="val_accuracy",
                                           mode="max", save_weights_only=True)
    out["all"] = model().fit(x, y, batch_size=16, epochs=3, validation_data=(xt, yt), callbacks=[each, cb],
                             verbose=0).history

    # a second fit of the same model with the same callback continues its run
    net, cb = model(), EpochalCallback(project="twice", name="twice", checkpoints=False)
    for _ in range(2):
        net.fit(x, y, batch_size=32, epochs=1, callbacks=[cb], verbose=0)
        out.setdefault("twice", []).append(status(cb.run))

    # inside an explicit run, a bare callback logs into it and leaves ending it to the owner
    with epochal.init(project="explicit", name="explicit", config={"mine": 1}) as run:
        model().fit(x, y, batch_size=32, epochs=1, callbacks=[EpochalCallback()], verbose=0)
        out["explicit_status_in_block"] = status(run)

    # autolog: early stopping, evaluate without callbacks, no ModelCheckpoint (the model saved at the end)
    ek.autolog(project="auto", name="auto")
    net = model()
    stop = keras.callbacks.EarlyStopping(monitor="loss", min_delta=10.0, patience=1)
    history = net.fit(x, y, batch_size=16, epochs=3, validation_split=0.25, callbacks=[stop], verbose=0)
    out["auto"] = {"epochs_run": len(history.history["loss"]),
                   "test": net.evaluate(xt, yt, verbose=0, return_dict=True)}
    ek.autolog(disable=True)
    out["restored"] = {"fit": keras.Model.fit is fit and "fit" not in keras.Model.__dict__,
                       "evaluate": keras.Model.evaluate is evaluate and "evaluate" not in keras.Model.__dict__}
    model().fit(x, y, epochs=1, verbose=0)

    # an exception inside fit: autolog marks the run failed at once, a plain callback's run at exit
    ek.autolog(project="failed", name="auto")
    try:
        model().fit(x, y, batch_size=16, epochs=3, callbacks=[Boom()], verbose=0)
    except RuntimeError:
        pass
    ek.autolog(disable=True)
    runs = list((root / "runs" / "failed").iterdir())
    out["auto_failed_now"] = [read_json(r / "run.json")["status"] for r in runs]
    try:
        model().fit(x, y, batch_size=16, epochs=3, callbacks=[EpochalCallback(project="failed", name="plain"),
                                                              Boom()], verbose=0)
    except RuntimeError:
        pass

    # BackupAndRestore: a fit interrupted in epoch 3, restarted in a fresh model, continues the same run
    backup = keras.callbacks.BackupAndRestore(str(root / "backup"))
    ek.autolog(project="resume", name="resume")
    try:
        model().fit(x, y, batch_size=16, epochs=4, callbacks=[backup, Stop()], verbose=0)
    except RuntimeError:
        pass
    ek.autolog(disable=True)
    out["resume_marker"] = json.loads((root / "backup" / "epochal.json").read_text())
    cb = EpochalCallback(project="resume")
    model().fit(x, y, batch_size=16, epochs=4, callbacks=[cb, backup], verbose=0)
    out["resume_id"] = cb.run.id
    out["tensorflow"] = "tensorflow" in sys.modules
    return out


# -- the parent's view --------------------------------------------------------------------------
@pytest.fixture(scope="module", params=BACKENDS)
def scenario(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"keras-{request.param}")
    env = {**os.environ, "KERAS_BACKEND": request.param, "EPOCHAL_DIR": str(root / "runs"), "JAX_PLATFORMS": "cpu",
           "EPOCHAL_DISABLE_PLUGIN_AUTOLOAD": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, __file__, str(root)], env=env, cwd=root, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    result = json.loads((root / "result.json").read_text())
    assert result["backend"] == request.param
    return root / "runs", result


def _run(runs: Path, project: str, name: str) -> Path:
    found = [d for d in (runs / project).iterdir() if (read_json(d / "run.json") or {}).get("name") == name]
    assert len(found) == 1, f"expected one run {project}/{name}, found {found}"
    return found[0]


def _epoch_records(run_dir: Path, key: str = "val/loss") -> list[dict]:
    return [r for r in read_metrics(run_dir)[0] if key in r]


def test_epoch_metrics_use_canonical_names_at_optimizer_steps(scenario):
    runs, result = scenario
    run_dir, history = _run(runs, "plain", "plain"), result["plain"]["history"]
    epochs = _epoch_records(run_dir)
    assert [r["step"] for r in epochs] == [4, 8, 12]
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    for native, canonical in {"loss": "train/loss", "accuracy": "train/accuracy", "val_loss": "val/loss",
                              "val_accuracy": "val/accuracy"}.items():
        assert [r[canonical] for r in epochs] == pytest.approx(history[native], rel=1e-6)
    assert read_json(run_dir / "run.json")["name_map"]["val/accuracy"] == "val_accuracy"


def test_batch_points_every_n_steps_with_fractional_epoch(scenario):
    run_dir = _run(scenario[0], "plain", "plain")
    batches = [r for r in read_metrics(run_dir)[0] if "train/loss" in r and "val/loss" not in r]
    assert [r["step"] for r in batches] == [2, 4, 6, 8, 10, 12]
    assert [r["epoch"] for r in batches] == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    assert all(r["epoch"] is not None for r in read_metrics(run_dir)[0])


def test_lr_of_a_schedule_is_read_at_the_iteration_count(scenario):
    epochs = _epoch_records(_run(scenario[0], "plain", "plain"))
    assert [r["lr"] for r in epochs] == pytest.approx([LR0 * DECAY_RATE ** (r["step"] / DECAY_STEPS) for r in epochs],
                                                      rel=1e-5)


def test_config_holds_fit_optimizer_and_model_facts(scenario):
    run_dir = _run(scenario[0], "plain", "plain")
    config = read_json(run_dir / "config.json")
    assert (config["epochs"], config["steps_per_epoch"]) == (3, STEPS_PER_EPOCH)
    assert config["optimizer"]["class"] == "Adam" and config["optimizer"]["beta_1"] == pytest.approx(0.9)
    assert config["optimizer"]["learning_rate"]["class"] == "ExponentialDecay"
    assert config["optimizer"]["learning_rate"]["initial_learning_rate"] == pytest.approx(LR0)
    assert config["model"]["params"] == {"trainable": 8 * 8 + 8 + 8 * 2 + 2, "non_trainable": 0, "total": 90}
    assert config["loss"] == "sparse_categorical_crossentropy"
    meta = read_json(run_dir / "run.json")
    assert meta["keras"]["backend"] == scenario[1]["backend"]
    summary = read_manifest(run_dir)["artifacts"]["model-summary"]
    text = (run_dir / summary["versions"][0]["path"]).read_text()
    assert "Total params" in text and "dense" in text


def _model_versions(run_dir: Path) -> tuple[list[dict], dict]:
    item = read_manifest(run_dir)["artifacts"]["model"]
    for version in item["versions"]:  # Keras rewrites its files in place: what is stored stays intact
        assert hashlib.sha256((run_dir / version["path"]).read_bytes()).hexdigest() == version["sha256"]
    return item["versions"], item["aliases"]


def test_the_best_checkpoint_by_its_monitor_is_the_model_artifact(scenario):
    runs, result = scenario
    run_dir, val_loss = _run(runs, "plain", "plain"), result["plain"]["history"]["val_loss"]
    versions, aliases = _model_versions(run_dir)
    assert len(versions) == 1 and aliases == {"best": "v0", "latest": "v0"}
    best_epoch = val_loss.index(min(val_loss)) + 1
    meta = versions[0]["metadata"]
    assert (meta["filename"], meta["epoch"], meta["monitor"]) == ("best.keras", best_epoch, "val_loss")
    assert meta["value"] == pytest.approx(min(val_loss), rel=1e-6)
    assert versions[0]["sha256"] == result["plain"]["best_sha"] != result["plain"]["rewritten"]
    assert result["plain"]["followers_left"] == [False, False]  # the ModelCheckpoints are Keras' own again


def test_checkpoints_all_records_every_save_with_best_by_mode_max(scenario):
    runs, result = scenario
    accuracy = result["all"]["val_accuracy"]
    versions, aliases = _model_versions(_run(runs, "all", "all"))
    assert [v["metadata"]["epoch"] for v in versions] == [1, 2, 3]
    assert [v["metadata"]["filename"] for v in versions] == ["m-01.weights.h5", "m-02.weights.h5", "m-03.weights.h5"]
    best = next(v for v in versions if v["version"] == aliases["best"])
    assert best["metadata"]["value"] == pytest.approx(max(accuracy), rel=1e-6)
    assert best["metadata"]["epoch"] == accuracy.index(max(accuracy)) + 1


def test_a_default_fit_records_the_model_at_its_end(scenario):
    versions, aliases = _model_versions(_run(scenario[0], "auto", "auto"))
    assert [v["metadata"]["filename"] for v in versions] == ["model.keras"]
    assert aliases == {"best": "v0", "latest": "v0"} and versions[0]["metadata"]["epoch"] == 2


def test_the_run_ends_with_the_fit_and_evaluate_reopens_it(scenario):
    runs, result = scenario
    run_dir, plain = _run(runs, "plain", "plain"), result["plain"]
    assert plain["status_after_fit"] == "finished" and plain["current_after_fit"] is False
    assert plain["other_is_new"] is True  # another integration never logs into the Keras run
    sk_run = _run(runs, "sk-after-keras", read_json(next((runs / "sk-after-keras").iterdir()) / "run.json")["name"])
    assert read_json(sk_run / "config.json")["C"] == 0.37  # Keras, then sklearn: two runs
    assert "C" not in read_json(run_dir / "config.json") and "estimator_class" not in read_json(run_dir / "config.json")
    assert plain["status_after_evaluate"] == "finished"
    summary = read_json(run_dir / "summary.json")
    assert summary["test/loss"] == pytest.approx(plain["test"]["loss"], rel=1e-6)
    assert summary["test/accuracy"] == pytest.approx(plain["test"]["accuracy"], rel=1e-6)
    assert [r["step"] for r in read_metrics(run_dir)[0] if "test/loss" in r] == [12]
    meta = read_json(run_dir / "run.json")
    assert (meta["status"], meta["resumed"]) == ("finished", 1)
    assert len(list((runs / "plain").iterdir())) == 1


def test_another_fit_of_the_same_model_continues_its_run(scenario):
    runs, result = scenario
    run_dir = _run(runs, "twice", "twice")
    assert result["twice"] == ["finished", "finished"] and len(list((runs / "twice").iterdir())) == 1
    assert [r["step"] for r in _epoch_records(run_dir, "train/loss")] == [2, 4]
    assert read_json(run_dir / "run.json")["resumed"] == 1
    assert "model" not in read_manifest(run_dir).get("artifacts", {})  # checkpoints=False


def test_autolog_records_early_stopping_and_evaluate_then_restores(scenario):
    runs, result = scenario
    assert result["auto"]["epochs_run"] == 2
    assert len(list((runs / "auto").iterdir())) == 1  # the fit after disable made no run
    run_dir = _run(runs, "auto", "auto")
    assert [r["step"] for r in _epoch_records(run_dir)] == [3, 6]  # 48 training samples after the split
    config, summary = read_json(run_dir / "config.json"), read_json(run_dir / "summary.json")
    assert (config["batch_size"], config["epochs"], config["validation_split"]) == (16, 3, 0.25)
    assert summary["stopped_early"] is True and summary["stopped_epoch"] == 2
    assert summary["test/loss"] == pytest.approx(result["auto"]["test"]["loss"], rel=1e-6)
    meta = read_json(run_dir / "run.json")
    assert meta["status"] == "finished" and meta["stopped_early"] is True
    assert "train" in meta["datasets"]  # the x given to fit, fingerprinted
    assert result["restored"] == {"fit": True, "evaluate": True}


def test_backup_and_restore_continues_the_same_run(scenario):
    runs, result = scenario
    run_dir = _run(runs, "resume", "resume")
    assert result["resume_id"] == run_dir.name == result["resume_marker"]["id"]
    meta = read_json(run_dir / "run.json")
    assert (meta["status"], meta["resumed"]) == ("finished", 1)
    records = [r for r in read_metrics(run_dir)[0] if "train/loss" in r]
    assert [r["step"] for r in records] == [4, 8, 12, 16]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert len(list((runs / "resume").iterdir())) == 1


def test_an_exception_in_fit_marks_the_run_failed(scenario):
    runs, result = scenario
    assert result["auto_failed_now"] == ["failed"]  # autolog: at once
    auto = read_json(_run(runs, "failed", "auto") / "run.json")
    assert auto["status"] == "failed" and "boom in epoch 2" in auto["error"]
    plain = read_json(_run(runs, "failed", "plain") / "run.json")  # plain callback: at exit
    assert plain["status"] == "failed" and "training did not end" in plain["error"]
    assert [r["epoch"] for r in _epoch_records(_run(runs, "failed", "plain"), "train/loss")] == [1, 2]


def test_a_bare_callback_logs_into_the_current_run(scenario):
    runs, result = scenario
    assert len(list((runs / "explicit").iterdir())) == 1
    run_dir = _run(runs, "explicit", "explicit")
    assert [r["step"] for r in _epoch_records(run_dir, "train/loss")] == [2]
    config = read_json(run_dir / "config.json")
    assert config["mine"] == 1 and config["epochs"] == 1 and config["steps_per_epoch"] == 2
    assert result["explicit_status_in_block"] == "running"
    assert read_json(run_dir / "run.json")["status"] == "finished"


def test_user_errors_surface_at_construction_and_tensorflow_is_never_imported(scenario):
    result = scenario[1]
    assert result["errors"] == {"every": "ValueError", "init": "TypeError", "ckpt": "ValueError"}
    assert result["tensorflow"] is False


if __name__ == "__main__":
    _root = Path(sys.argv[1])
    (_root / "result.json").write_text(json.dumps(_scenarios(_root)))
