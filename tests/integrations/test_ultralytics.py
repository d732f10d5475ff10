"""Ultralytics integration: YOLOv8n built from its yaml, 2 epochs at imgsz 64 on a synthetic detection set."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from epochal.query import RunReader
from epochal.store import read_json

TRAIN = {"epochs": 2, "imgsz": 64, "batch": 4, "plots": False, "amp": False, "workers": 0, "device": "cpu", "seed": 0,
         "verbose": False}
LOSSES = ("train/box_loss", "train/cls_loss", "train/dfl_loss")
VAL = ("val/precision(B)", "val/recall(B)", "val/mAP50(B)", "val/mAP50-95(B)", "val/box_loss")


@pytest.fixture(scope="module", autouse=True)
def yolo_offline(tmp_path_factory):
    """Ultralytics offline, its settings (and any font download) in a folder of this module."""
    config = tmp_path_factory.mktemp("yolo-config")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YOLO_OFFLINE", "1")
        patch.setenv("YOLO_CONFIG_DIR", str(config))
        yield config


@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory, yolo_offline) -> str:
    """8 train and 4 val images (64x64, one red box each) with YOLO labels, and their data yaml."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("boxes")
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 4)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(count):
            image = np.full((64, 64, 3), 40, np.uint8)
            x, y = rng.integers(4, 30, 2)
            w, h = rng.integers(16, 30, 2)
            image[y:y + h, x:x + w] = (220, 60, 60)
            Image.fromarray(image).save(root / "images" / split / f"{i}.png")
            box = f"0 {(x + w / 2) / 64:.4f} {(y + h / 2) / 64:.4f} {w / 64:.4f} {h / 64:.4f}\n"
            (root / "labels" / split / f"{i}.txt").write_text(box)
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: box\n")
    return str(data)


def _only_run(root: Path, project: str) -> Path:
    runs = [p for p in (root / project).iterdir() if (p / "run.json").exists()]
    assert len(runs) == 1, runs
    return runs[0]


def _check_artifacts_intact(run_dir: Path) -> dict:
    """Every stored version still has the bytes its manifest says (Ultralytics rewrites last.pt in place)."""
    manifest = read_json(run_dir / "artifacts" / "manifest.json")
    for item in manifest["artifacts"].values():
        for entry in item["versions"]:
            path = run_dir / entry["path"]
            if entry["kind"] == "file":
                assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], entry["path"]
    return manifest["artifacts"]


def test_autolog_tracks_a_training(run_root, data_yaml, tmp_path, yolo_offline):
    from epochal.integrations import ultralytics as integration
    from ultralytics import YOLO
    from ultralytics.utils import callbacks

    original = callbacks.add_integration_callbacks
    integration.autolog()
    integration.autolog()  # twice: still one set of callbacks
    try:
        model = YOLO("yolov8n.yaml")  # built from config: no weights download
        model.train(data=data_yaml, project=str(tmp_path / "P"), name="N", **TRAIN)
    finally:
        integration.autolog(disable=True)
    assert callbacks.add_integration_callbacks is original

    run_dir = _only_run(run_root, "P")
    meta = read_json(run_dir / "run.json")
    assert (meta["name"], meta["project"], meta["status"]) == ("N", "P", "finished")
    records = RunReader(run_dir).records()
    assert [r["step"] for r in records] == [1, 2]  # the final validation of best.pt is no third point
    assert [r["epoch"] for r in records] == [1, 2]
    for record in records:
        assert set(LOSSES + VAL + ("lr/pg0", "lr/pg1", "lr/pg2")) <= set(record), sorted(record)
        assert not any(k.startswith("metrics/") for k in record)
    assert meta["name_map"]["val/mAP50(B)"] == "metrics/mAP50(B)"
    assert meta["name_map"]["best/val/mAP50-95(B)"] == "metrics/mAP50-95(B)"

    summary = read_json(run_dir / "summary.json")
    trainer = model.trainer
    for name in ("precision(B)", "recall(B)", "mAP50(B)", "mAP50-95(B)"):
        assert summary[f"best/val/{name}"] == pytest.approx(trainer.metrics[f"metrics/{name}"])
    assert summary["best/epoch"] in (1, 2)
    assert summary["train/box_loss"] == records[-1]["train/box_loss"]

    config = read_json(run_dir / "config.json")
    assert (config["epochs"], config["imgsz"], config["name"]) == (2, 64, "N")
    assert config["model/parameters"] > 1_000_000 and config["model/GFLOPs"] > 0
    assert config["dataset"]["names"] == {"0": "box"} or config["dataset"]["names"] == {0: "box"}
    datasets = meta["datasets"]
    assert datasets["train"]["files"] == 8 and datasets["train-labels"]["files"] == 8
    assert datasets["val"]["files"] == 4 and datasets["val"]["sha256"] != datasets["train"]["sha256"]

    artifacts = _check_artifacts_intact(run_dir)
    model_artifact = artifacts["model"]  # checkpoints="best" by default: best.pt, recorded at the end
    assert len(model_artifact["versions"]) == 1 and model_artifact["aliases"] == {"best": "v0", "latest": "v0"}
    save_dir = Path(trainer.save_dir)
    stored = model_artifact["versions"][0]
    assert stored["metadata"]["filename"] == "best.pt"
    assert stored["sha256"] == hashlib.sha256((save_dir / "weights" / "best.pt").read_bytes()).hexdigest()
    assert "results.csv" in artifacts
    assert json.loads((save_dir / "epochal.json").read_text())["id"] == run_dir.name
    # nothing went online: no font, no AMP-check weights
    assert not list(yolo_offline.rglob("*.ttf"))
    assert not list(Path.cwd().glob("yolo*.pt"))


def test_resume_continues_the_run_after_a_crash(run_root, data_yaml, tmp_path, monkeypatch, caplog):
    """Also in hardlink mode, where Ultralytics' in-place rewrites of last.pt/best.pt would reach the store."""
    from epochal.integrations.ultralytics import add_epochal_callbacks
    from ultralytics import YOLO

    monkeypatch.setenv("EPOCHAL_ARTIFACT_LINK", "hardlink")
    project = tmp_path / "Q"
    (project / "R").mkdir(parents=True)  # taken: Ultralytics trains into R2 (R-2 in 8.4)

    def crash(trainer):
        if trainer.epoch == 1:
            raise RuntimeError("simulated crash")

    model = YOLO("yolov8n.yaml")
    add_epochal_callbacks(model, tags=["yolo"])
    model.add_callback("on_train_epoch_start", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        model.train(data=data_yaml, project=str(project), name="R", **TRAIN)
    save_dir = Path(model.trainer.save_dir)
    assert save_dir.name in ("R2", "R-2")
    run_dir = _only_run(run_root, "Q")
    meta = read_json(run_dir / "run.json")
    assert (meta["name"], meta["status"], meta["tags"]) == (save_dir.name, "failed", ["yolo"])
    assert "simulated crash" in meta["error"]
    assert [r["step"] for r in RunReader(run_dir).records()] == [1]

    last = save_dir / "weights" / "last.pt"
    resumed = YOLO(str(last))
    add_epochal_callbacks(resumed)
    resumed.train(resume=True)

    assert _only_run(run_root, "Q") == run_dir  # the same run continued
    meta = read_json(run_dir / "run.json")
    assert (meta["name"], meta["status"], meta["resumed"]) == (save_dir.name, "finished", 1)
    records = RunReader(run_dir).records()
    assert [r["step"] for r in records] == [1, 2]
    assert all(set(LOSSES + VAL) <= set(r) for r in records)
    assert "best/val/mAP50(B)" in read_json(run_dir / "summary.json")
    versions = _check_artifacts_intact(run_dir)["model"]
    assert {"latest", "best"} <= set(versions["aliases"])
    assert "changed after it was stored" not in caplog.text
    # no bytes copied: the final best.pt in weights/ is the stored file itself
    stored = {(run_dir / e["path"]).stat().st_ino for e in versions["versions"]}
    assert (save_dir / "weights" / "best.pt").stat().st_ino in stored


def test_checkpoints_all_records_every_epoch_and_false_none(run_root, data_yaml, tmp_path):
    from epochal.integrations.ultralytics import add_epochal_callbacks
    from ultralytics import YOLO

    for mode in ("all", False):
        model = YOLO("yolov8n.yaml")
        add_epochal_callbacks(model, checkpoints=mode, project=f"ckpt-{mode}")
        model.train(data=data_yaml, project=str(tmp_path / str(mode)), name="A", **TRAIN)
    artifacts = _check_artifacts_intact(_only_run(run_root, "ckpt-all"))
    versions = artifacts["model"]["versions"]
    assert [v["metadata"]["epoch"] for v in versions] == [1, 2]  # last.pt as each epoch saved it
    assert [v["metadata"]["filename"] for v in versions] == ["last.pt", "last.pt"]
    assert "best" in artifacts["model"]["aliases"]
    assert "model" not in _check_artifacts_intact(_only_run(run_root, "ckpt-False"))


@pytest.mark.parametrize("how", ["given", "current"])
def test_add_epochal_callbacks_logs_into_a_given_or_the_users_run(run_root, data_yaml, tmp_path, how):
    """A run passed in, or else the run the user opened, is used as is (its name and project) and left open."""
    import epochal
    from epochal.integrations.ultralytics import add_epochal_callbacks
    from ultralytics import YOLO

    with epochal.init(project="mine", name="outer", config={"epochs": "user value"}) as run:
        model = YOLO("yolov8n.yaml")
        add_epochal_callbacks(model, **({"run": run} if how == "given" else {}))
        model.train(data=data_yaml, project=str(tmp_path / "S"), name="T", **{**TRAIN, "epochs": 1})
        assert epochal.current_run() is run  # still open
        run.log({"extra": 1.0}, step=5)
    meta = read_json(run.dir / "run.json")
    assert (meta["name"], meta["project"], meta["status"]) == ("outer", "mine", "finished")
    assert read_json(run.dir / "config.json")["epochs"] == "user value"  # the user's value wins
    assert [r["step"] for r in RunReader(run.dir).records()] == [1, 5]
    assert [p.name for p in (run_root / "mine").iterdir()] == [run.id] and not (run_root / "S").exists()


def test_classification_training(run_root, tmp_path):
    """The classify task: its own loss and accuracy names, a folder dataset instead of a yaml."""
    import numpy as np
    from epochal.integrations.ultralytics import add_epochal_callbacks
    from PIL import Image
    from ultralytics import YOLO

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label, color in (("red", (220, 40, 40)), ("blue", (40, 40, 220))):
            (tmp_path / "colors" / split / label).mkdir(parents=True)
            for i in range(4):
                image = (rng.random((32, 32, 3)) * 60 + np.array(color) * 0.7).astype(np.uint8)
                Image.fromarray(image).save(tmp_path / "colors" / split / label / f"{i}.png")
    model = YOLO("yolov8n-cls.yaml")
    add_epochal_callbacks(model)
    model.train(data=str(tmp_path / "colors"), project=str(tmp_path / "C"), name="colors", **{**TRAIN, "imgsz": 32})

    run = RunReader(_only_run(run_root, "C"))
    assert (run.name, run.status) == ("colors", "finished")
    records = run.records()
    assert [r["step"] for r in records] == [1, 2]
    expected = {"train/loss", "val/loss", "val/accuracy_top1", "val/accuracy_top5", "lr/pg0"}
    assert all(expected <= set(r) for r in records)
    assert run.metadata["name_map"]["val/accuracy_top1"] == "metrics/accuracy_top1"
    assert 0.0 <= run.summary["best/val/accuracy_top1"] <= 1.0
    assert run.datasets["train"]["files"] == 8 and run.datasets["val"]["files"] == 8
    assert {"latest", "best"} <= {a for v in run.artifacts() if v.name == "model" for a in v.aliases}


def test_wrong_arguments_fail_at_once_and_callback_errors_never_reach_training(caplog):
    from epochal.integrations import ultralytics as integration

    with pytest.raises(TypeError):
        integration.EpochalCallbacks(projekt="typo")
    with pytest.raises(ValueError, match="checkpoints="):
        integration.EpochalCallbacks(checkpoints="sometimes")

    class BrokenRun:
        def log_native(self, *args, **kwargs):
            raise RuntimeError("disk full")

    class Trainer:  # just what on_fit_epoch_end reads
        epoch, tloss, lr, metrics, stop = 0, None, {"lr/pg0": 0.1}, {}, False

        def label_loss_items(self, *args, **kwargs):
            return {}

    from epochal.checkpoints import CheckpointPolicy
    from epochal.lifecycle import Tracking

    tracker, trainer = integration.EpochalCallbacks(), Trainer()
    training = integration._Training(tracker, Tracking("ultralytics", run=BrokenRun()), CheckpointPolicy())
    training.pending = 0
    integration._trainings[trainer] = training
    tracker.callbacks["on_fit_epoch_end"](trainer)  # does not raise
    assert "on_fit_epoch_end failed" in caplog.text and "disk full" in caplog.text


def test_the_example_learns(run_root, tmp_path, yolo_offline):
    """examples/ultralytics_example.py (the demo's YOLO run): best.pt finds the boxes, recorded as the model."""
    example = Path(__file__).resolve().parents[2] / "examples" / "ultralytics_example.py"
    done = subprocess.run([sys.executable, str(example), "--dir", str(run_root), "--project", "example"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = RunReader(_only_run(run_root, "example"))
    assert run.status == "finished"
    maps = [r["val/mAP50(B)"] for r in run.records()]
    assert maps[0] < 0.1 and run.summary["best/val/mAP50(B)"] > 0.5, maps
    assert {"latest", "best"} <= {a for v in run.artifacts() if v.name == "model" for a in v.aliases}
