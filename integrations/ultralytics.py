"""Ultralytics YOLO: every ``model.train()`` becomes an epochal run.

>>> from epochal.integrations.ultralytics import autolog, add_epochal_callbacks
>>> autolog()                     # every YOLO training of this process from now on
>>> add_epochal_callbacks(model)  # or only this model (run=, project=, tags=... optional)

What a training records:

- the run: project = the last folder of ``train(project=...)``, name = the trainer's
  ``save_dir`` name (``N``, or ``N2``, ``N3`` after Ultralytics' rename on a collision);
- config: ``vars(trainer.args)``, ``model/parameters``, ``model/GFLOPs`` (at the training
  ``imgsz``) and ``dataset`` (the data YAML's content); run.json ``datasets`` holds
  fingerprints of each split's images and labels folders;
- metrics once per epoch at ``step = epoch index + 1`` (:func:`epochal.names.epoch_step`)
  with ``epoch`` = epochs completed: ``train/box_loss``..., ``lr/pg0``..., ``val/mAP50(B)``...
  (canonical names; Ultralytics' own in the name map);
- the final validation of ``best.pt`` goes to the summary under ``best/`` (``best/val/mAP50(B)``,
  ``best/epoch``), never as another point;
- artifact ``weights``: ``last.pt`` of every epoch (``latest``; ``best`` when it is the best
  so far; ``keep_last`` older versions kept), the stripped ``best.pt``/``last.pt`` at the end;
  ``plots`` and ``results.csv`` at the end;
- ``resume=True`` continues the same run (its id is kept in ``<save_dir>/epochal.json``).

Checkpoints are stored as the core stores artifacts: copies by default. Under
``EPOCHAL_ARTIFACT_LINK=hardlink`` they are hardlinked, and since Ultralytics rewrites
``last.pt`` in place, the file in ``weights/`` first gets its own copy (the stored version keeps its bytes).
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import shutil
import sys
import tempfile
import traceback
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import epochal
from epochal.names import ULTRALYTICS, canonicalize, epoch_step
from epochal.store import read_json, write_json_atomic

__all__ = ["STATE_FILE", "EpochalCallbacks", "add_epochal_callbacks", "autolog"]

log = logging.getLogger("epochal")
STATE_FILE = "epochal.json"
_EVENTS = ("on_pretrain_routine_end", "on_train_epoch_end", "on_model_save", "on_fit_epoch_end", "on_train_end",
           "teardown")
_PLOTS = (".png", ".jpg", ".jpeg", ".svg")
_trainings: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # trainer -> _Training
_autolog: dict[str, Any] = {}


class _Training:
    """What one tracker knows about one trainer."""

    def __init__(self, owner: EpochalCallbacks, run: Any, own_run: bool) -> None:
        self.owner, self.run, self.own_run = owner, run, own_run
        self.pending: int | None = None  # epoch trained but not yet logged
        self.seen: Any = None  # the trainer.metrics dict already logged (a skipped validation keeps it)


class EpochalCallbacks:
    """Trainer callbacks that track each Ultralytics training as an epochal run.

    ``run``: log into this run and leave it open; otherwise every training opens (and
    finishes) its own run with ``init_kwargs`` (``project=``, ``dir=``, ``tags=``...), which
    win over the trainer's project and name. ``keep_last``: unaliased checkpoint versions kept.
    """

    def __init__(self, run: Any = None, *, keep_last: int | None = 1, **init_kwargs: Any) -> None:
        inspect.signature(epochal.init).bind(**init_kwargs)  # a wrong argument fails here, not mid-training
        self.run, self.keep_last, self.init_kwargs = run, keep_last, init_kwargs
        self.callbacks: dict[str, Callable[[Any], None]] = {event: self._guard(event) for event in _EVENTS}

    def _guard(self, event: str) -> Callable[[Any], None]:
        handler = getattr(self, "_" + event)

        def callback(trainer: Any) -> None:
            try:
                training = _trainings.get(trainer)
                if event == "on_pretrain_routine_end" and training is None:
                    handler(trainer)
                elif training is not None and training.owner is self:
                    handler(trainer, training)
            except Exception:  # tracking never kills training
                log.exception("epochal: Ultralytics callback %s failed", event)

        callback.__qualname__ = callback.__name__ = f"epochal_{event}"
        return callback

    def _on_pretrain_routine_end(self, trainer: Any) -> None:
        """Data and model are ready, training starts next: open the run, record config and data."""
        from ultralytics.utils.torch_utils import get_flops, get_num_params

        run, own = self._open(trainer)
        _trainings[trainer] = training = _Training(self, run, own)
        training.seen = trainer.metrics  # the placeholder zeros, never logged
        data = trainer.data or {}
        facts = {
            **vars(trainer.args),
            "model/parameters": get_num_params(trainer.model),
            "model/GFLOPs": round(get_flops(trainer.model, trainer.args.imgsz), 3),
        }
        yaml_file = str(data.get("yaml_file") or trainer.args.data or "")
        if yaml_file.endswith((".yaml", ".yml")) and Path(yaml_file).is_file():
            from ultralytics.utils import YAML

            facts["dataset"] = YAML.load(yaml_file)
        run.config.setdefaults(facts)
        for split in ("train", "val", "test"):
            images = data.get(split)
            if isinstance(images, (str, Path)) and Path(images).exists():
                run.log_dataset(str(images), split)
                labels = Path(str(Path(images)).replace(f"{os.sep}images", f"{os.sep}labels"))
                if labels != Path(images) and labels.exists():
                    run.log_dataset(str(labels), f"{split}-labels")

    def _open(self, trainer: Any) -> tuple[Any, bool]:
        """The run of this training (the given one, the resumed one, or a new one) and whether we own it."""
        save_dir = Path(trainer.save_dir)
        for path in [*save_dir.glob("*"), *save_dir.glob("weights/*")]:
            _unshare(path)  # files of an earlier run's artifacts, about to be rewritten
        if self.run is not None:
            return self.run, False
        kwargs = dict(self.init_kwargs)
        previous = read_json(save_dir / STATE_FILE) if trainer.args.resume else None
        if isinstance(previous, dict) and previous.get("id"):
            kwargs.setdefault("id", previous["id"])
            kwargs.setdefault("resume", "allow")
            kwargs.setdefault("project", previous.get("project"))
            kwargs.setdefault("dir", previous.get("dir"))
        if trainer.args.project:
            kwargs.setdefault("project", _segment(Path(str(trainer.args.project)).name))
        kwargs.setdefault("name", save_dir.name)
        run = epochal.init(**kwargs)
        if not run.disabled:
            write_json_atomic(save_dir / STATE_FILE, {"id": run.id, "project": run.project, "dir": str(run.root)})
        return run, True

    def _on_train_epoch_end(self, trainer: Any, training: _Training) -> None:
        training.pending = trainer.epoch
        _unshare(Path(trainer.last))  # save_model rewrites last.pt in place

    def _on_model_save(self, trainer: Any, training: _Training) -> None:
        best = trainer.best_fitness == trainer.fitness and Path(trainer.best).exists()
        fitness = float(trainer.fitness) if trainer.fitness is not None else None
        training.run.log_artifact(
            trainer.last, name="weights", type="model", aliases=("best",) if best else (),
            metadata={"epoch": trainer.epoch + 1, "fitness": fitness}, keep_last=self.keep_last,
        )

    def _on_fit_epoch_end(self, trainer: Any, training: _Training) -> None:
        if training.pending is None:  # Ultralytics re-fires this for the final validation of best.pt
            self._log_best(trainer, training)
            return
        epoch, training.pending = training.pending, None
        metrics = {**(trainer.label_loss_items(trainer.tloss, prefix="train") if trainer.tloss else {}), **trainer.lr}
        if trainer.metrics is not training.seen:
            metrics.update(trainer.metrics)
            training.seen = trainer.metrics
        training.run.log_native(metrics, step=epoch_step(epoch), epoch=epoch + 1, dialect=ULTRALYTICS)
        if trainer.stop:  # final_eval strips the optimizer from last.pt/best.pt in place
            _unshare(Path(trainer.last))

    def _log_best(self, trainer: Any, training: _Training) -> None:
        values, originals, _ = canonicalize(trainer.metrics or {}, dialect=ULTRALYTICS)
        run = training.run
        summary = {f"best/{name}": value for name, value in values.items()}
        summary["best/epoch"] = getattr(trainer.stopper, "best_epoch", None)
        run.summary.update(summary)
        name_map = run.metadata.get("name_map", {})
        run.set_metadata(name_map={**name_map, **{f"best/{k}": v for k, v in originals.items()}})

    def _on_train_end(self, trainer: Any, training: _Training) -> None:
        run = training.run
        if run.disabled:
            return
        for path, aliases in ((Path(trainer.best), ("best",)), (Path(trainer.last), ())):
            if path.is_file():
                run.log_artifact(path, name="weights", type="model", aliases=aliases,
                                 metadata={"final": True}, keep_last=self.keep_last)
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

    def _teardown(self, trainer: Any, training: _Training) -> None:
        _trainings.pop(trainer, None)
        if training.own_run:
            exc = sys.exc_info()  # teardown runs in Ultralytics' `finally`: a failure is in flight here
            if exc[0] is None:
                training.run.finish()
            else:
                training.run.finish("failed", error="".join(traceback.format_exception(*exc)))


def _segment(name: str) -> str | None:
    """A project name usable as a folder: unsafe characters become '-'."""
    cleaned = re.sub(r"[^A-Za-z0-9._=+-]", "-", name).lstrip("._=+-").replace("..", ".")[:128]
    return cleaned or None


def _unshare(path: Path) -> None:
    """Give ``path`` its own inode when it shares one (a stored artifact) before it is rewritten in place."""
    try:
        if path.is_file() and path.stat().st_nlink > 1:
            tmp = path.with_name(f".{path.name}.epochal.tmp")
            shutil.copyfile(path, tmp)
            os.replace(tmp, path)
    except OSError as exc:
        log.warning("epochal: could not detach %s from the stored artifact: %r", path, exc)


def add_epochal_callbacks(model: Any, run: Any = None, **kwargs: Any) -> EpochalCallbacks:
    """Track every training of this YOLO ``model`` (see :class:`EpochalCallbacks` for the arguments)."""
    tracker = EpochalCallbacks(run, **kwargs)
    for event, callback in tracker.callbacks.items():
        model.add_callback(event, callback)
    return tracker


def autolog(disable: bool = False, **kwargs: Any) -> None:
    """Track every Ultralytics training started after this call; ``disable=True`` stops it.

    ``kwargs`` go to :class:`EpochalCallbacks` (``project=``, ``dir=``, ``keep_last=``...).
    Registered where Ultralytics adds its own integrations, so models built before this
    call are covered too. Nothing else (MLflow, W&B...) is switched on or off.
    """
    try:
        from ultralytics.utils import callbacks as package
        from ultralytics.utils.callbacks import base
    except ImportError:
        raise ImportError("Ultralytics autolog needs ultralytics: pip install 'epochal[ultralytics]'") from None
    original = _autolog.pop("original", None)
    if original is not None:  # undo (or redo with new settings)
        for module in (base, package):
            if getattr(module, "add_integration_callbacks", None) is _autolog.get("patched"):
                module.add_integration_callbacks = original
        _autolog.clear()
    if disable:
        return
    tracker = EpochalCallbacks(**kwargs)
    original = base.add_integration_callbacks

    def add_integration_callbacks(instance: Any) -> None:
        original(instance)
        if "Trainer" in type(instance).__name__:
            for event, callback in tracker.callbacks.items():
                if callback not in instance.callbacks[event]:
                    instance.callbacks[event].append(callback)

    _autolog.update(original=original, patched=add_integration_callbacks, tracker=tracker)
    base.add_integration_callbacks = package.add_integration_callbacks = add_integration_callbacks
