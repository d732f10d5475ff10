"""Keras 3: ``EpochalCallback`` and ``autolog()``, on every backend (tensorflow is never imported here).

    cb = EpochalCallback(project="mnist")                # or run=..., or inside `with epochal.init():`
    model.fit(x, y, validation_data=(xv, yv), callbacks=[ModelCheckpoint("best.keras"), cb])
    model.evaluate(x_test, y_test, callbacks=[cb])      # -> test/loss, test/accuracy in the summary

Which run, ending and failure follow :mod:`epochal.lifecycle`: a run passed in or opened by the
user is logged into and left open; else each fit opens its own run and finishes it when the fit
ends. An ``evaluate()`` with the callback after ``fit()`` reopens that model's run to add
``test/*`` and finishes it again; another fit of the same model continues it. Keras calls no
callback when ``fit`` raises: under ``autolog()`` the run is ``failed`` at once, else at exit.

Records fit settings, the optimizer's config, parameter counts and ``model.summary()``;
epoch-end logs under canonical names (``val_accuracy`` -> ``val/accuracy``) with ``lr``, at
step = ``optimizer.iterations`` and epoch = epochs completed (fractional for batch points).

Checkpoints (``checkpoints="best"|"last"|"all"|False``, :class:`epochal.checkpoints.CheckpointPolicy`):
what the fit's ``ModelCheckpoint`` callbacks save, the best by each one's own monitor and mode
(a fixed path rewritten every epoch holds the last, not the best); a fit without one saves the
model once at its end (``model.keras``). Resume: with ``keras.callbacks.BackupAndRestore`` in the
fit, the run's marker goes into its ``backup_dir`` and a fit restored from it continues the run.
``batch_size`` is known only under ``autolog()``; pass it in ``config=`` otherwise.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from typing import Any, Callable, Mapping

try:
    import keras
except ModuleNotFoundError as exc:
    if exc.name != "keras":
        raise
    raise ImportError("EpochalCallback needs keras: pip install 'epochal[keras]'") from None
if int(keras.version().split(".")[0]) < 3:
    raise ImportError(f"EpochalCallback needs Keras 3, found {keras.version()}: pip install 'epochal[keras]'")

from epochal.checkpoints import Checkpoints, CheckpointPolicy
from epochal.lifecycle import Tracking, read_marker, write_marker
from epochal.names import KERAS
from epochal.run import Run

from ._keras_checkpoints import CheckpointFollower
from ._keras_facts import (
    fit_callbacks, fit_facts, iterations, learning_rate, scalars, store_summary, weight_histograms,
)

__all__ = ["EpochalCallback", "autolog"]


class EpochalCallback(keras.callbacks.Callback):
    """Track ``model.fit`` / ``model.evaluate`` in an epochal run.

    ``log_every_n_batches``: also log the running train metrics every N optimizer steps.
    ``histogram_freq``: every N epochs, a histogram of each weight (``weights/<weight path>``), as
    ``keras.callbacks.TensorBoard(histogram_freq=N)`` writes them (0: none).
    ``checkpoints``/``keep_last``: see :class:`~epochal.checkpoints.CheckpointPolicy`.
    ``init_kwargs`` go to ``epochal.init``.
    """

    def __init__(self, run: Run | None = None, log_every_n_batches: int | None = None,
                 checkpoints: Checkpoints | bool = "best", keep_last: int | None = None, histogram_freq: int = 0,
                 **init_kwargs: Any) -> None:
        super().__init__()
        if type(histogram_freq) is not int or histogram_freq < 0:
            raise ValueError(f"histogram_freq must be an int >= 0 (epochs between weight histograms), got {histogram_freq!r}")
        self._histogram_freq = histogram_freq
        if log_every_n_batches is not None and (type(log_every_n_batches) is not int or log_every_n_batches < 1):
            raise ValueError(f"log_every_n_batches must be a positive int or None, got {log_every_n_batches!r}")
        self.tracking = Tracking("keras", run=run, **init_kwargs)
        self.policy = CheckpointPolicy(checkpoints, keep_last=keep_last)  # bad values fail here
        self._every, self._data = log_every_n_batches or 0, None
        self._fit_args: dict[str, Any] = {}  # what autolog saw of the fit call
        self._in_epoch, self._epoch, self._epoch_step, self._last_batch_log = False, 0, 0, 0
        self._model_ref: Callable[[], Any] = lambda: None
        self.follower: CheckpointFollower | None = None
        self._summarized: str | None = None
        if log_every_n_batches:  # defined per instance so Keras keeps async dispatch when unused
            self.on_train_batch_end = self._batch_end

    @property
    def run(self) -> Run | None:
        """The run of the current (or last) fit or evaluate."""
        return self.tracking.run

    def _live(self) -> Run:
        if self.tracking.run is None:
            raise RuntimeError("no run to log into (on_train_begin failed; see the warning before)")
        return self.tracking.run

    # -- fit ------------------------------------------------------------------------------
    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        with self.tracking.guard("on_train_begin"):
            self._train_begin()

    def _train_begin(self) -> None:
        model, others = self.model, fit_callbacks(self)
        backups = [c.backup_dir for c in others if isinstance(c, keras.callbacks.BackupAndRestore)]
        restored = [read_marker(d) for d in backups if os.path.isfile(os.path.join(d, "training_metadata.json"))]
        resume = next((m for m in restored if m), None)
        same_model = self._model_ref() is model
        run = self.tracking.reopen() if same_model and resume is None else self.tracking.start(resume=resume)
        self._model_ref = weakref.ref(model)
        if self.tracking.owns and not run.disabled:
            for folder in backups:
                self.tracking.call("resume marker", write_marker, folder, run)
        self.policy.begin()
        saving = [c for c in others if isinstance(c, keras.callbacks.ModelCheckpoint)] if self.policy.mode else []
        self.follower = CheckpointFollower(self.tracking, self.policy, saving, self._position)
        self._epoch_step = self._last_batch_log = iterations(model)
        run.config.setdefaults({**fit_facts(model, self.params), **self._fit_args})
        run.set_metadata(keras={"version": keras.version(), "backend": keras.backend.backend()})
        if self._data is not None:
            self.tracking.call("log_dataset", run.log_dataset, self._data, "train")
            self._data = None
        if self._summarized != run.id:
            self._summarized = run.id
            store_summary(run, model)

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch, self._in_epoch = epoch, True
        with self.tracking.guard("on_epoch_begin"):
            self._epoch_step = iterations(self.model)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._in_epoch = False
        with self.tracking.guard("on_epoch_end"):
            values = scalars(logs)
            for key in ("learning_rate", "lr"):  # LearningRateScheduler's copy; ours is read below
                values.pop(key, None)
            lr = learning_rate(self.model)
            if lr is not None:
                values["lr"] = lr
            run = self._live()
            run.log_native(values, step=iterations(self.model), epoch=epoch + 1, dialect=KERAS)
            if self._histogram_freq and epoch % self._histogram_freq == 0:
                run.log(weight_histograms(self.model), step=iterations(self.model))

    def _batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        step = self._batch_step(batch)
        if step - self._last_batch_log >= self._every:
            self._last_batch_log = step
            with self.tracking.guard("on_train_batch_end"):
                self._live().log_native(scalars(logs), step=step, epoch=self._batch_epoch(batch), dialect=KERAS)

    def _batch_step(self, batch: int | None) -> int:
        """The optimizer step after ``batch`` (counted: JAX detaches variables inside an epoch)."""
        if batch is None:
            return iterations(self.model)
        accumulate = getattr(self.model.optimizer, "gradient_accumulation_steps", None) or 1
        return self._epoch_step + (batch + 1) // accumulate

    def _position(self, batch: int | None) -> dict[str, Any]:
        return {"epoch": self._batch_epoch(batch), "step": self._batch_step(batch)}

    def stop_following(self) -> None:
        """The fit ended (or raised): its ModelCheckpoints are Keras' own again."""
        if self.follower is not None:
            self.follower.close()

    def _batch_epoch(self, batch: int | None) -> float | int:
        """Epochs completed after ``batch`` (None: the whole epoch); fractional inside an epoch."""
        steps = (self.params or {}).get("steps")
        if batch is None or not steps:
            return self._epoch + 1 if batch is None else self._epoch
        return self._epoch + (batch + 1) / steps

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        self._in_epoch = False
        self.stop_following()
        with self.tracking.guard("on_train_end"):
            self._train_end()
        self.tracking.end()

    def _train_end(self) -> None:
        run, model = self._live(), self.model
        if getattr(model, "stop_training", False):
            run.summary.update(stopped_early=True, stopped_epoch=self._epoch + 1)
            run.set_metadata(stopped_early=True, stopped_epoch=self._epoch + 1)
        if self.policy.mode and not self.policy.seen and not run.disabled:
            with tempfile.TemporaryDirectory(prefix="epochal-keras-") as tmp:  # no ModelCheckpoint saved one
                path = os.path.join(tmp, "model.keras")
                model.save(path)
                self.policy.end(run, last=path, metadata={"epoch": self._epoch + 1, "step": iterations(model)})
        else:
            self.policy.end(run)

    # -- evaluate -------------------------------------------------------------------------
    def on_test_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._in_epoch:  # fit's validation: already in the epoch's val_* logs
            return
        with self.tracking.guard("evaluate"):
            fitted = self._model_ref() is self.model
            run = self.tracking.reopen() if fitted else self.tracking.start()
            self._model_ref = weakref.ref(self.model)
            step = iterations(self.model) if self.model.optimizer is not None else None
            run.log_native(scalars(logs), step=step, epoch=self._epoch + 1 if fitted else None,
                           dialect=KERAS.with_split("test"))
        self.tracking.end()


from ._keras_autolog import autolog  # noqa: E402  (uses EpochalCallback)
