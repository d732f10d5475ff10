"""Every naming rule, one dialect per framework, and log_native's memoised path."""

from __future__ import annotations

import json

import numpy as np
import pytest

import epochal
from epochal.names import (
    DIALECTS, GENERIC, KERAS, LIGHTNING, SKLEARN, TRANSFORMERS, ULTRALYTICS, Dialect, canonical, canonicalize,
    dialect, epoch_step,
)
from epochal.store import read_metrics


@pytest.mark.parametrize("original, expected", [
    ("loss", "train/loss"),
    ("eval_loss", "val/loss"),
    ("eval_accuracy", "val/accuracy"),
    ("val_accuracy", "val/accuracy"),
    ("validation_loss", "val/loss"),
    ("test_acc", "test/acc"),
    ("train_loss", "train/loss"),
    ("train/box_loss", "train/box_loss"),
    ("val/dfl_loss", "val/dfl_loss"),
    ("learning_rate", "lr"),
    ("lr", "lr"),
    ("lr/pg0", "lr/pg0"),
    ("lr-Adam", "lr/Adam"),
    ("grad_norm", "train/grad_norm"),
    ("gan/d_loss", "gan/d_loss"),
    ("metrics/mAP50(B)", "metrics/mAP50(B)"),  # a namespace anywhere but in YOLO
    ("epoch", "epoch"),
])
def test_generic_dialect(original, expected):
    assert canonical(original) == expected == GENERIC.canonical(original)


@pytest.mark.parametrize("chosen, original, expected", [
    (LIGHTNING, "train_loss_step", "train/loss"),
    (LIGHTNING, "train_loss_epoch", "train/loss_epoch"),
    (LIGHTNING, "val_acc", "val/acc"),
    (LIGHTNING, "_step", "train/_step"),  # nothing left to strip
    (GENERIC, "train_loss_step", "train/loss_step"),
    (LIGHTNING.with_prefix("fit"), "train_loss_step", "fit/train/loss"),
    (LIGHTNING.with_prefix("fit"), "val_acc", "fit/val/acc"),
    (TRANSFORMERS, "eval_loss", "val/loss"),
    (TRANSFORMERS, "grad_norm", "train/grad_norm"),
    (TRANSFORMERS.with_split("test"), "test_loss", "test/loss"),
    (KERAS, "val_accuracy", "val/accuracy"),
    (KERAS.with_split("test"), "accuracy", "test/accuracy"),
    (ULTRALYTICS, "metrics/mAP50(B)", "val/mAP50(B)"),
    (ULTRALYTICS, "metrics/mAP50-95(B)", "val/mAP50-95(B)"),
    (ULTRALYTICS, "train/box_loss", "train/box_loss"),
    (ULTRALYTICS, "lr/pg0", "lr/pg0"),
    (ULTRALYTICS, "fitness", "val/fitness"),
    (SKLEARN.with_split("test"), "r2", "test/r2"),
])
def test_each_frameworks_dialect(chosen, original, expected):
    assert chosen.canonical(original) == expected


def test_the_compatibility_functions_use_the_dialects():
    assert canonical("train_loss_step", step_suffixes=True) == "train/loss"
    assert canonical("accuracy", "val") == "val/accuracy"
    values, originals, epoch = canonicalize({"loss": 1.0, "val/x": 2.0, "epoch": 3})
    assert values == {"train/loss": 1.0, "val/x": 2.0}
    assert originals == {"train/loss": "loss"} and epoch == 3
    assert canonicalize({"metrics/p": 1.0}, dialect=ULTRALYTICS)[0] == {"val/p": 1.0}


def test_dialects_by_name_and_a_clear_error_for_an_unknown_one():
    assert dialect("lightning") is LIGHTNING and dialect(KERAS) is KERAS
    assert dialect("keras", split="test").default_split == "test"
    assert set(DIALECTS) >= {"generic", "lightning", "transformers", "keras", "ultralytics", "sklearn"}
    with pytest.raises(ValueError, match="choose from"):
        dialect("caffe")
    with pytest.raises(ValueError, match="split 'holdout'"):
        Dialect("x", default_split="holdout")
    with pytest.raises(TypeError, match="prefix must be a str"):
        LIGHTNING.with_prefix(3)


def test_variants_and_plans_are_memoised():
    assert LIGHTNING.with_prefix("fit") is LIGHTNING.with_prefix("fit")
    assert KERAS.with_split("test") is KERAS.with_split("test") and KERAS.with_split("train") is KERAS
    keys = ("loss", "val_loss", "epoch")
    assert KERAS.plan(keys) is KERAS.plan(keys)
    assert KERAS.with_split("test").plan(keys) is not KERAS.plan(keys)


def test_summary_only_keys_of_hugging_face():
    mapped = TRANSFORMERS.map({"train_runtime": 3.2, "train_loss": 0.5, "total_flos": 9.0, "epoch": 1.0,
                               "train_mem_cpu_alloc_delta": 10, "loss": 0.4})
    assert mapped.values == {"train/loss": 0.4}
    assert mapped.summary == {"train_runtime": 3.2, "train_loss": 0.5, "total_flos": 9.0,
                              "train_mem_cpu_alloc_delta": 10}
    assert mapped.epoch == 1.0


def test_lightning_prefix_keeps_lightnings_joined_key_as_the_original():
    mapped = LIGHTNING.with_prefix("fit").map({"train_loss_step": 1.0, "epoch": 0})
    assert mapped.values == {"fit/train/loss": 1.0}
    assert mapped.originals == {"fit/train/loss": "fit-train_loss_step"} and mapped.epoch == 0


def test_a_clash_keeps_the_later_keys_own_name():
    assert GENERIC.map({"loss": 1.0, "train_loss": 2.0}).values == {"train/loss": 1.0, "train_loss": 2.0}


def test_sklearn_cv_results_columns():
    assert SKLEARN.cv_result("split0_test_score") == (0, "val/score")
    assert SKLEARN.cv_result("split12_train_r2") == (12, "train/r2")
    assert SKLEARN.cv_result("mean_test_neg_mean_squared_error") == ("mean", "val/neg_mean_squared_error")
    assert SKLEARN.cv_result("std_test_score") == ("std", "val/score_std")
    for other in ("mean_fit_time", "rank_test_score", "params", "param_C", "std_score_time"):
        assert SKLEARN.cv_result(other) is None


def test_epoch_step():
    assert [epoch_step(i) for i in range(3)] == [1, 2, 3]


# -- log_native through the memoised plan ------------------------------------------------------------
def _stored(run):
    return read_metrics(run.dir)[0]


def test_log_native_stores_the_same_rows_on_its_first_and_later_calls(tmp_path):
    run = epochal.init(project="p", dir=tmp_path, system_interval=0)
    for i in range(5):
        names = run.log_native({"train_acc_step": i / 10, "loss_step": i, "epoch": i // 2}, step=i, dialect=LIGHTNING)
    run.log_native({"accuracy": np.float32(0.5), "loss": 7}, step=9, dialect=KERAS.with_split("test"))
    run.log_native({"accuracy": 0.25, "loss": np.int64(3)}, dialect=KERAS.with_split("test"))  # unusual values
    run.finish()
    assert names == ("train/acc", "train/loss")
    rows = _stored(run)
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4, 9, 10]
    assert [r["train/acc"] for r in rows[:5]] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert [r["epoch"] for r in rows[:5]] == [0, 0, 1, 1, 2]
    assert rows[5]["test/accuracy"] == 0.5 and rows[6]["test/loss"] == 3 and rows[6]["epoch"] == 2
    name_map = json.loads((run.dir / "run.json").read_text())["name_map"]
    assert name_map == {"train/acc": "train_acc_step", "train/loss": "loss_step", "test/accuracy": "accuracy",
                        "test/loss": "loss"}


def test_log_native_bad_values_raise_before_anything_is_recorded(tmp_path):
    run = epochal.init(project="p", dir=tmp_path, system_interval=0)
    run.log_native({"loss": 1.0}, step=0)
    with pytest.raises(TypeError):
        run.log_native({"loss": "high"}, step=1)
    run.finish()
    assert [r["step"] for r in _stored(run)] == [0]


def test_log_native_summary_keys_and_non_numbers_in_the_transformers_dialect(tmp_path):
    run = epochal.init(project="p", dir=tmp_path, system_interval=0)
    run.log_native({"loss": 0.5, "note": "text", "epoch": 1.0}, step=3, dialect=TRANSFORMERS)
    run.log_native({"train_runtime": 1.5, "train_loss": 0.4, "epoch": 2.0}, step=4, dialect=TRANSFORMERS)
    run.finish()
    assert [(r["step"], r.get("train/loss")) for r in _stored(run)] == [(3, 0.5)]
    assert run.summary["train_runtime"] == 1.5 and run.summary["train_loss"] == 0.4
