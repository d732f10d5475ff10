"""Ultralytics YOLO with epochal: one ``autolog()`` call, then a plain ``model.train()``.

    python examples/ultralytics_example.py [--dir ./epochal-runs] [--project yolo-example] [--epochs 12]

A YOLOv8n built from its yaml (nothing downloaded) learns to find large white boxes on black
64x64 synthetic images in 12 short epochs on the CPU (~10 s of CPU time): mAP50 climbs from 0
to near 1, given what a set this small needs (one optimizer step per batch, ``nbs=8``; AdamW
at a small learning rate; no warm-up, no mosaic). The run is named after Ultralytics' run
folder; it holds per-epoch losses, learning rates and validation mAP, the final validation of
best.pt in the summary (``best/...``), best.pt as a version of the ``model`` artifact
(``latest``/``best``), the plots and results.csv.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import epochal
from epochal.integrations.ultralytics import autolog


def make_dataset(root: Path, train: int = 32, val: int = 8) -> Path:
    """Images with one large white box each on black, and their YOLO labels; returns the data yaml."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = np.zeros((64, 64, 3), np.uint8)
            w, h = rng.integers(28, 56, 2)
            x, y = rng.integers(1, 63 - w), rng.integers(1, 63 - h)
            image[y:y + h, x:x + w] = 255
            Image.fromarray(image).save(root / "images" / split / f"{i}.png")
            box = f"0 {(x + w / 2) / 64:.4f} {(y + h / 2) / 64:.4f} {w / 64:.4f} {h / 64:.4f}\n"
            (root / "labels" / split / f"{i}.txt").write_text(box)
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: box\n")
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="run root (default: $EPOCHAL_DIR or ./epochal-runs)")
    parser.add_argument("--project", default=os.environ.get("EPOCHAL_PROJECT") or "yolo-example")
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")  # no update checks; set before importing ultralytics

    from ultralytics import YOLO

    autolog(dir=args.dir)  # every YOLO training from here on is a run
    with tempfile.TemporaryDirectory(prefix="epochal-yolo-") as tmp:
        data = make_dataset(Path(tmp) / "boxes")
        model = YOLO("yolov8n.yaml")
        # project= names the epochal project (its last folder), name= the run (Ultralytics' folder name)
        model.train(data=str(data), epochs=args.epochs, imgsz=64, batch=8, nbs=8, optimizer="AdamW", lr0=0.004,
                    warmup_epochs=0, mosaic=0.0, close_mosaic=0, device="cpu", workers=0, amp=False,
                    project=str(Path(tmp) / args.project), name="boxes", verbose=False)
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
