"""What the Ultralytics callbacks read from a trainer and its folder: config facts, datasets, outputs."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from epochal.media import Image
from epochal.run import check_segment

__all__ = ["project_name", "setup_facts", "log_datasets", "log_plots", "store_outputs"]

log = logging.getLogger("epochal")
_PLOTS = (".png", ".jpg", ".jpeg", ".svg")


def project_name(trainer: Any) -> str | None:
    """The last folder of ``train(project=...)`` as the epochal project, or None (the default project)."""
    if not trainer.args.project:
        return None
    name = Path(str(trainer.args.project)).name
    try:
        return check_segment(name, "project")
    except ValueError:
        log.info("epochal: YOLO project folder %r is no usable project name; the default project is used", name)
        return None


def setup_facts(trainer: Any) -> dict[str, Any]:
    """Config of a training: its arguments, parameter count, GFLOPs at its ``imgsz``, the data YAML."""
    from ultralytics.utils.torch_utils import get_flops, get_num_params

    facts = {**vars(trainer.args), "model/parameters": get_num_params(trainer.model),
             "model/GFLOPs": round(get_flops(trainer.model, trainer.args.imgsz), 3)}
    yaml_file = str((trainer.data or {}).get("yaml_file") or trainer.args.data or "")
    if yaml_file.endswith((".yaml", ".yml")) and Path(yaml_file).is_file():
        from ultralytics.utils import YAML

        facts["dataset"] = YAML.load(yaml_file)
    return facts


def log_datasets(run: Any, trainer: Any) -> None:
    """Fingerprint each split's images folder and its labels folder."""
    for split in ("train", "val", "test"):
        images = (trainer.data or {}).get(split)
        if isinstance(images, (str, Path)) and Path(images).exists():
            run.log_dataset(str(images), split)
            labels = Path(str(Path(images)).replace(f"{os.sep}images", f"{os.sep}labels"))
            if labels != Path(images) and labels.exists():
                run.log_dataset(str(labels), f"{split}-labels")


def log_plots(run: Any, plotted: dict[Any, Any], plots: list[dict[Any, Any]], step: int, prefix: str = "") -> None:
    """Each plot Ultralytics drew since the last call as an image ``[best/]plots/<file stem>`` at ``step``."""
    for path, facts in [item for found in plots for item in list(found.items())]:
        path = Path(path)
        if plotted.get(path) == facts.get("timestamp") or path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            continue
        key = f"{prefix}plots/" + re.sub(r"[^A-Za-z0-9._=+-]", "_", path.stem)
        try:
            run.log({key: Image(path)}, step=step)
            plotted[path] = facts.get("timestamp")
        except (OSError, ValueError) as exc:  # not written yet, or unreadable: tried again next time
            log.debug("epochal: plot %s not logged: %r", path, exc)


def store_outputs(run: Any, trainer: Any) -> None:
    """The plots and ``results.csv`` of a finished training, as artifacts ``plots`` and ``results.csv``."""
    save_dir = Path(trainer.save_dir)
    plots = sorted(p for p in save_dir.iterdir() if p.suffix.lower() in _PLOTS and p.is_file())
    with tempfile.TemporaryDirectory(dir=save_dir, prefix=".epochal-") as tmp:
        # copies: Ultralytics rewrites these files in place when training continues in this folder
        if plots:
            (Path(tmp) / "plots").mkdir()
            for path in plots:
                shutil.copyfile(path, Path(tmp) / "plots" / path.name)
            run.log_artifact(Path(tmp) / "plots", name="plots", type="plots")
        if Path(trainer.csv).is_file():
            shutil.copyfile(trainer.csv, Path(tmp) / "results.csv")
            run.log_artifact(Path(tmp) / "results.csv", name="results.csv", type="table")
