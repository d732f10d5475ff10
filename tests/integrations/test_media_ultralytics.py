"""YOLO's plots as images: a real 2-epoch training with plots=True stores each plot at the epoch it appears."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image

import epochal
from test_ultralytics import TRAIN, _only_run, data_yaml, yolo_offline  # noqa: F401 (fixtures)


def test_every_plot_yolo_draws_is_an_image_at_its_epoch(run_root, data_yaml, tmp_path):  # noqa: F811
    from epochal.integrations import ultralytics as integration
    from ultralytics import YOLO

    integration.autolog()
    try:
        model = YOLO("yolov8n.yaml")
        model.train(data=data_yaml, project=str(tmp_path / "P"), name="N", **{**TRAIN, "plots": True})
    finally:
        integration.autolog(disable=True)
    run_dir = _only_run(run_root, "P")
    media = epochal.open_run(str(run_dir)).media()
    steps = {key: sorted(set(media.loc[media["key"] == key, "step"])) for key in media["key"]}
    save_dir = Path(model.trainer.save_dir)
    drawn = {p.stem for p in save_dir.iterdir() if p.suffix in (".png", ".jpg")}

    assert steps["plots/labels"] == [1]  # label statistics, drawn before training
    assert steps["plots/train_batch0"] == [1]  # mosaics of the first batches
    assert steps["plots/results"] == [2]  # the training curves, drawn after the last epoch
    best = {k[len("best/plots/"):] for k in steps if k.startswith("best/plots/")}
    assert {"confusion_matrix", "confusion_matrix_normalized", "val_batch0_labels", "val_batch0_pred"} <= best
    assert any("PR_curve" in name for name in best)
    assert all(steps[f"best/plots/{name}"] == [2] for name in best)
    assert {k.rpartition("/")[2] for k in steps} == drawn  # every plot file, no other
    assert (media["type"] == "image").all()

    for key in ("plots/results", "best/plots/confusion_matrix"):  # the stored bytes are YOLO's file
        stored = media.loc[media["key"] == key, "path"].iloc[-1]
        source = save_dir / (key.rpartition("/")[2] + ".png")
        assert Path(stored).read_bytes() == source.read_bytes()
        assert np.array(PIL.Image.open(stored)).shape[:2] == PIL.Image.open(source).size[::-1]
