"""The canonical name mapping in one table."""

from __future__ import annotations

import pytest

from epochal.names import canonical, canonicalize, epoch_step


@pytest.mark.parametrize("original, expected", [
    ("loss", "train/loss"),
    ("eval_loss", "val/loss"),
    ("eval_accuracy", "val/accuracy"),
    ("val_accuracy", "val/accuracy"),
    ("validation_loss", "val/loss"),
    ("test_acc", "test/acc"),
    ("train_loss", "train/loss"),
    ("metrics/mAP50(B)", "val/mAP50(B)"),
    ("metrics/mAP50-95(B)", "val/mAP50-95(B)"),
    ("train/box_loss", "train/box_loss"),
    ("val/dfl_loss", "val/dfl_loss"),
    ("learning_rate", "lr"),
    ("lr", "lr"),
    ("lr/pg0", "lr/pg0"),
    ("lr-Adam", "lr/Adam"),
    ("grad_norm", "train/grad_norm"),
    ("gan/d_loss", "gan/d_loss"),
    ("epoch", "epoch"),
])
def test_canonical(original, expected):
    assert canonical(original) == expected


def test_lightning_step_suffixes():
    assert canonical("train_loss_step", step_suffixes=True) == "train/loss"
    assert canonical("train_loss_epoch", step_suffixes=True) == "train/loss_epoch"
    assert canonical("train_loss_step") == "train/loss_step"


def test_default_split_for_bare_names():
    assert canonical("accuracy", "val") == "val/accuracy"


def test_canonicalize_returns_originals_and_epoch():
    values, originals, epoch = canonicalize({"loss": 1.0, "val/x": 2.0, "epoch": 3})
    assert values == {"train/loss": 1.0, "val/x": 2.0}
    assert originals == {"train/loss": "loss"} and epoch == 3


def test_epoch_step():
    assert [epoch_step(i) for i in range(3)] == [1, 2, 3]
