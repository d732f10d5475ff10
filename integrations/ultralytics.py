"""Ultralytics YOLO: every ``model.train()`` becomes an epochal run.

>>> from epochal.integrations.ultralytics import autolog, add_epochal_callbacks
>>> autolog()                     # every YOLO training of this process from now on
>>> add_epochal_callbacks(model)  # or only this model (run=, project=, tags=... optional)

Which run, ending and failure follow :mod:`epochal.lifecycle` (a run passed in, else one the
user opened, else the training's own, finished when it ends; ``failed`` when it raises).
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
- checkpoints (``checkpoints="best"|"last"|"all"|False``, :class:`epochal.checkpoints.CheckpointPolicy`):
  by default ``best.pt`` at the end, as a version of the ``model`` artifact (``best``/``latest``);
  ``plots`` and ``results.csv`` at the end;
- every plot YOLO draws (label statistics, batch mosaics, results, curves, confusion matrices)
  as an image ``plots/<name>`` at the epoch it appears, the final validation's as ``best/plots/<name>``;
- ``resume=True`` continues the same run (its marker is ``<save_dir>/epochal.json``).

Checkpoints recorded at the end are hardlinked where possible (no second copy); Ultralytics
rewrites ``weights/*.pt`` in place, so a later training in the same folder first gives those
files their own copy (the stored versions keep their bytes).
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from epochal.checkpoints import Checkpoints, CheckpointPolicy, detach
from epochal.lifecycle import Tracking, read_marker, write_marker
from epochal.names import ULTRALYTICS, epoch_step

from ._ultralytics_facts import log_datasets, log_plots, project_name, setup_facts, store_outputs

__all__ = ["EpochalCallbacks", "add_epochal_callbacks", "autolog"]

_EVENTS = ("on_pretrain_routine_end", "on_model_save", "on_train_epoch_end", "on_fit_epoch_end", "on_train_end",
           "teardown")
_trainings: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # trainer -> _Training
_autolog: dict[str, Any] = {}


class _Training:
    """What one tracker knows about one trainer."""

    def __init__(self, owner: EpochalCallbacks, tracking: Tracking, policy: CheckpointPolicy) -> None:
        self.owner, self.tracking, self.policy = owner, tracking, policy
        self.pending: int | None = None  # epoch trained but not yet logged
        self.seen: Any = None  # the trainer.metrics dict already logged (a skipped validation keeps it)
        self.plotted: dict[Any, float] = {}  # plot file -> timestamp logged

    @property
    def run(self) -> Any:
        return self.tracking.run

    def plots(self, plots: list[dict[Any, Any]], step: int, prefix: str = "") -> None:
        log_plots(self.run, self.plotted, plots, step, prefix)


class EpochalCallbacks:
    """Trainer callbacks that track each Ultralytics training as an epochal run.

    ``run``: log into this run and leave it open; else the user's current run, else each
    training opens (and finishes) its own with ``init_kwargs`` (``project=``, ``dir=``,
    ``tags=``...), which win over the trainer's project and name. ``checkpoints``/``keep_last``:
    see :class:`~epochal.checkpoints.CheckpointPolicy`.
    """

    def __init__(self, run: Any = None, *, checkpoints: Checkpoints | bool = "best", keep_last: int | None = None,
                 **init_kwargs: Any) -> None:
        self.run, self.init_kwargs = run, init_kwargs
        self.checkpoints, self.keep_last = checkpoints, keep_last
        Tracking("ultralytics", run=run, **init_kwargs)  # wrong arguments fail here, not mid-training
        CheckpointPolicy(checkpoints, keep_last=keep_last)
        self.callbacks: dict[str, Callable[[Any], None]] = {event: self._handler(event) for event in _EVENTS}

    def _handler(self, event: str) -> Callable[[Any], None]:
        method = getattr(self, "_" + event)

        def callback(trainer: Any) -> None:
            training = _trainings.get(trainer)
            if training is None and event == "on_pretrain_routine_end":
                tracking = Tracking("ultralytics", run=self.run, **self.init_kwargs)
                policy = CheckpointPolicy(self.checkpoints, keep_last=self.keep_last)
                training = _trainings[trainer] = _Training(self, tracking, policy)
            if training is None or training.owner is not self:
                return
            with training.tracking.guard(event):
                method(trainer, training)

        callback.__qualname__ = callback.__name__ = f"epochal_{event}"
        return callback

    def _on_pretrain_routine_end(self, trainer: Any, training: _Training) -> None:
        """Data and model are ready, training starts next: open the run, record config and data."""
        save_dir = Path(trainer.save_dir)
        for path in save_dir.glob("weights/*.pt"):
            detach(path)  # stored versions of an earlier training, about to be rewritten in place
        defaults = {"name": save_dir.name, "project": project_name(trainer)}
        resume = read_marker(save_dir) if trainer.args.resume else None
        run = training.tracking.start(resume=resume, **{k: v for k, v in defaults.items() if v})
        if training.tracking.owns and not run.disabled:
            write_marker(save_dir, run)
        training.seen = trainer.metrics  # the placeholder zeros, never logged
        run.config.setdefaults(setup_facts(trainer))
        log_datasets(run, trainer)

    def _on_train_epoch_end(self, trainer: Any, training: _Training) -> None:
        training.pending = trainer.epoch

    def _on_model_save(self, trainer: Any, training: _Training) -> None:
        fitness = float(trainer.fitness) if trainer.fitness is not None else None
        best = trainer.best_fitness == trainer.fitness and Path(trainer.best).exists()
        training.policy.saved(training.run, trainer.last, best=best,
                              metadata={"epoch": trainer.epoch + 1, "fitness": fitness})

    def _on_fit_epoch_end(self, trainer: Any, training: _Training) -> None:
        if training.pending is None:  # Ultralytics re-fires this for the final validation of best.pt
            self._log_best(trainer, training.run)
            training.plots([trainer.validator.plots], training.run.step - 1, prefix="best/")  # last epoch's step
            return
        epoch, training.pending = training.pending, None
        metrics = {**(trainer.label_loss_items(trainer.tloss, prefix="train") if trainer.tloss else {}), **trainer.lr}
        if trainer.metrics is not training.seen:
            metrics.update(trainer.metrics)
            training.seen = trainer.metrics
        training.run.log_native(metrics, step=epoch_step(epoch), epoch=epoch + 1, dialect=ULTRALYTICS)
        training.plots([trainer.plots, trainer.validator.plots], epoch_step(epoch))

    def _log_best(self, trainer: Any, run: Any) -> None:
        values, originals, _, _ = ULTRALYTICS.map(trainer.metrics or {})
        summary = {f"best/{name}": value for name, value in values.items()}
        summary["best/epoch"] = getattr(trainer.stopper, "best_epoch", None)
        run.summary.update(summary)
        name_map = run.metadata.get("name_map", {})
        run.set_metadata(name_map={**name_map, **{f"best/{k}": v for k, v in originals.items()}})

    def _on_train_end(self, trainer: Any, training: _Training) -> None:
        run = training.run
        if run.disabled:
            return
        training.plots([trainer.plots], run.step - 1)  # results.png, drawn after the last epoch
        best = Path(trainer.best)
        training.policy.end(run, best=best if best.is_file() else None, last=trainer.last, metadata={
            "best_epoch": getattr(trainer.stopper, "best_epoch", None), "best_fitness": _number(trainer.best_fitness)})
        store_outputs(run, trainer)

    def _teardown(self, trainer: Any, training: _Training) -> None:
        _trainings.pop(trainer, None)
        training.tracking.end(error=sys.exc_info()[1])  # teardown runs in Ultralytics' `finally`


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def add_epochal_callbacks(model: Any, run: Any = None, **kwargs: Any) -> EpochalCallbacks:
    """Track every training of this YOLO ``model`` (see :class:`EpochalCallbacks` for the arguments)."""
    tracker = EpochalCallbacks(run, **kwargs)
    for event, callback in tracker.callbacks.items():
        model.add_callback(event, callback)
    return tracker


def autolog(disable: bool = False, **kwargs: Any) -> None:
    """Track every Ultralytics training started after this call; ``disable=True`` stops it.

    ``kwargs`` go to :class:`EpochalCallbacks` (``project=``, ``dir=``, ``checkpoints=``...).
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
                setattr(module, "add_integration_callbacks", original)
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
    base.add_integration_callbacks = add_integration_callbacks
    setattr(package, "add_integration_callbacks", add_integration_callbacks)
