"""Ultralytics YOLO with epochal: one ``autolog()`` call, then a plain ``model.train()``.

    python examples/ultralytics_example.py [--dir ./epochal-runs] [--project yolo-example] [--epochs 3]

A YOLOv8n built from its yaml (nothing downloaded) learns to find red boxes on 64x64
synthetic images for a few epochs on the CPU (~20 s). The run is named after Ultralytics'
run folder; it holds per-epoch losses, learning rates and validation mAP, the final
validation of best.pt in the summary (``best/...``), best.pt as a version of the
``model`` artifact (``latest``/``best``), the plots and results.csv.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import epochal
from epochal.integrations.ultralytics import autolog


def make_dataset(root: Path, train: int = 16, val: int = 8) -> Path:
    """Images with one red box each and their YOLO labels; returns the data yaml."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = np.full((64, 64, 3), 40, np.uint8)
            x, y = rng.integers(2, 30, 2)
            w, h = rng.integers(14, 32, 2)
            image[y:y + h, x:x + w] = (220, 60, 60)
            Image.fromarray(image).save(root / "images" / split / f"{i}.png")
            box = f"0 {(x + w / 2) / 64:.4f} {(y + h / 2) / 64:.4f} {w / 64:.4f} {h / 64:.4f}\n"
            (root / "labels" / split / f"{i}.txt").write_text(box)
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: red-box\n")
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="run root (default: $EPOCHAL_DIR or ./epochal-runs)")
    parser.add_argument("--project", default=os.environ.get("EPOCHAL_PROJECT") or "yolo-example")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")  # no update checks; set before importing ultralytics

    from ultralytics import YOLO

    autolog(dir=args.dir)  # every YOLO training from here on is a run
    with tempfile.TemporaryDirectory(prefix="epochal-yolo-") as tmp:
        data = make_dataset(Path(tmp) / "boxes")
        model = YOLO("yolov8n.yaml")
        # project= names the epochal project (its last folder), name= the run (Ultralytics' folder name)
        model.train(data=str(data), epochs=args.epochs, imgsz=64, batch=8, device="cpu", workers=0, amp=False,
                    mosaic=0.0, warmup_epochs=1, project=str(Path(tmp) / args.project), name="red-boxes",
                    verbose=False)
        run_id = model.trainer.save_dir.joinpath("epochal.json").read_text()
    autolog(disable=True)

    import json

    stored = epochal.open_run(json.loads(run_id)["id"], dir=args.dir, project=args.project)
    print(f"\nrun {stored.name!r} ({stored.status}) in {stored.dir}")
    print(stored.history(["train/box_loss", "val/mAP50(B)", "lr/pg0"]).to_string(index=False))
    print("best.pt on validation:", {k: v for k, v in stored.summary.items() if k.startswith("best/")})
    print("artifacts:", [(a.name, a.version, a.aliases) for a in stored.artifacts()])


if __name__ == "__main__":
    main()
