"""Keras 3: ``EpochalCallback`` and ``autolog()``, on every backend (tensorflow is never imported here).

    cb = EpochalCallback(project="mnist")                # or run=..., or inside `with epochal.init():`
    model.fit(x, y, validation_data=(xv, yv), callbacks=[ModelCheckpoint("best.keras"), cb])
    model.evaluate(x_test, y_test, callbacks=[cb])      # -> test/loss, test/accuracy in the summary

Records the fit settings, the optimizer's config, parameter counts and a text summary of the
model; epoch-end logs under canonical names (``loss`` -> ``train/loss``, ``val_accuracy`` ->
``val/accuracy``) with ``lr`` (schedules evaluated at the optimizer's iteration count), all at
step = ``optimizer.iterations`` and epoch = epochs completed (fractional for batch points);
what any ``ModelCheckpoint`` of the same fit saves, as versions of an artifact named after its
file (``latest``, and ``best`` by the checkpoint's own monitor and mode); early stopping.

Without ``run=``, the callback logs into the current run (``epochal.init`` before ``fit``) or,
given ``epochal.init`` arguments or no current run, starts its own at the first ``fit`` and keeps
it open for ``evaluate``; it ends at interpreter exit, on ``cb.finish()`` or ``epochal.finish()``.

Failure: Keras calls no callback when ``fit`` raises. Under ``autolog()`` the patched ``fit``
marks the run ``failed`` at once. A plain callback's own run is marked ``failed`` by epochal's
``sys.excepthook`` when the exception is uncaught, and at interpreter exit when it was caught
(a ``fit`` that began and never reached ``on_train_end``). A run passed in is the caller's.

Checkpoints are seen by wrapping ``ModelCheckpoint._save_model`` while a fit with this callback
runs (Keras offers callbacks no view of each other); the wrapper does nothing for other models and
is removed at the end of the fit (after a fit that raised: at exit). Each saved file is stored as
a version of an artifact (the core stores copies by default, so Keras rewriting the path in place
later is harmless). ``batch_size`` is known only under
``autolog()`` (Keras does not tell callbacks); pass it in ``config=`` otherwise.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import logging
import math
import os
import re
import tempfile
import traceback
from typing import Any, Callable, Mapping

try:
    import keras
except ModuleNotFoundError as exc:
    if exc.name != "keras":
        raise
    raise ImportError("EpochalCallback needs keras: pip install 'epochal[keras]'") from None
if int(keras.version().split(".")[0]) < 3:
    raise ImportError(f"EpochalCallback needs Keras 3, found {keras.version()}: pip install 'epochal[keras]'")

import epochal
from epochal.run import Run
from epochal.values import to_number

__all__ = ["EpochalCallback", "autolog"]

log = logging.getLogger("epochal")
_Checkpoint = keras.callbacks.ModelCheckpoint
_FIT_ARGS = ("batch_size", "epochs", "steps_per_epoch", "initial_epoch", "validation_split", "validation_freq",
             "shuffle")


class EpochalCallback(keras.callbacks.Callback):
    """Track ``model.fit`` / ``model.evaluate`` in an epochal run.

    ``log_every_n_batches``: also log the running train metrics every N optimizer steps.
    ``log_checkpoints``: ``True`` (every ``ModelCheckpoint`` saving this model), ``False``, or
    the ``ModelCheckpoint`` instances to follow. ``init_kwargs`` go to ``epochal.init``.
    """

    def __init__(self, run: Run | None = None, log_every_n_batches: int | None = None,
                 log_checkpoints: bool | _Checkpoint | list[_Checkpoint] = True, **init_kwargs: Any) -> None:
        super().__init__()
        if run is not None and init_kwargs:
            raise TypeError("EpochalCallback takes either run= or epochal.init() arguments, not both")
        inspect.signature(epochal.init).bind(**init_kwargs)  # a TypeError here names the bad argument
        if log_every_n_batches is not None and (type(log_every_n_batches) is not int or log_every_n_batches < 1):
            raise ValueError(f"log_every_n_batches must be a positive int or None, got {log_every_n_batches!r}")
        if isinstance(log_checkpoints, _Checkpoint):
            log_checkpoints = [log_checkpoints]
        if not isinstance(log_checkpoints, bool) and not all(isinstance(c, _Checkpoint) for c in log_checkpoints):
            raise TypeError("log_checkpoints takes True, False or keras.callbacks.ModelCheckpoint instances")
        self.run, self._init_kwargs, self._owns_run = run, init_kwargs, False
        self._follow = log_checkpoints if isinstance(log_checkpoints, bool) else tuple(log_checkpoints)
        self._every, self._fit_args = log_every_n_batches, {}
        self._in_fit = self._in_epoch = self._summary_logged = False
        self._epoch, self._epoch_step, self._last_batch_log = 0, 0, 0
        self._best: dict[int, float] = {}
        if log_every_n_batches:  # defined per instance so Keras keeps async dispatch when unused
            self.on_train_batch_end = self._batch_end

    # -- run handling -------------------------------------------------------------------
    def _ensure_run(self) -> Run:
        if self.run is None:
            current = epochal.current_run()
            if current is not None and not self._init_kwargs:
                self.run = current
            else:
                self.run, self._owns_run = epochal.init(**self._init_kwargs), True
        return self.run

    def finish(self, status: str | None = None) -> None:
        """End the run if this callback started it."""
        if self._owns_run and self.run is not None:
            self.run.finish(status)

    def _guard(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # tracking never kills training
            log.warning("epochal: Keras callback step %s failed", fn.__name__, exc_info=True)

    def _stopped(self, error: str) -> None:
        """fit() left without on_train_end: stop watching; an own run is marked failed."""
        self._in_fit = self._in_epoch = False
        _unwatch(self)
        atexit.unregister(self._at_exit)
        if self._owns_run and self.run is not None:
            self.run.finish("failed", error=error)

    def _at_exit(self) -> None:
        if self._in_fit:
            self._stopped("model.fit() raised before on_train_end (the exception was caught by the program)")

    # -- readings -------------------------------------------------------------------------
    def _iterations(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _learning_rate(self) -> float | None:
        try:
            return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        except Exception:
            return None

    def _batch_step(self, batch: int) -> int:
        """The optimizer step after ``batch`` (counted, since JAX detaches variables inside an epoch)."""
        accumulate = getattr(self.model.optimizer, "gradient_accumulation_steps", None) or 1
        return self._epoch_step + (batch + 1) // accumulate

    def _batch_epoch(self, batch: int) -> float | int:
        steps = (self.params or {}).get("steps")
        return self._epoch + (batch + 1) / steps if steps else self._epoch

    # -- fit ------------------------------------------------------------------------------
    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._guard(self._train_begin)

    def _train_begin(self) -> None:
        run = self._ensure_run()
        self._in_fit = True
        _watch(self)
        if self._owns_run:
            atexit.register(self._at_exit)
        model = self.model
        self._epoch_step = self._last_batch_log = self._iterations()
        params = self.params or {}
        config: dict[str, Any] = {"epochs": params.get("epochs"), "steps_per_epoch": params.get("steps")}
        config.update(self._fit_args)
        config["optimizer"] = _optimizer_config(model.optimizer)
        config["model"] = {"class": type(model).__name__, "name": model.name, "params": _param_counts(model)}
        config["loss"] = _loss_name(model.loss)
        run.config.setdefaults({k: v for k, v in config.items() if v is not None})
        run.set_metadata(keras={"version": keras.version(), "backend": keras.backend.backend()})
        if not self._summary_logged:
            self._summary_logged = True
            self._log_summary(model)

    def _log_summary(self, model: Any) -> None:
        lines: list[str] = []
        model.summary(print_fn=lambda text, *a, **k: lines.append(str(text)))
        with tempfile.TemporaryDirectory(prefix="epochal-keras-") as tmp:
            path = os.path.join(tmp, "model_summary.txt")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write("\n".join(lines).rstrip() + "\n")
            self.run.log_artifact(path, name="model-summary", type="text")

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch, self._in_epoch = epoch, True
        self._guard(self._epoch_begin)

    def _epoch_begin(self) -> None:
        self._epoch_step = self._iterations()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._in_epoch = False
        self._guard(self._epoch_end, epoch, logs)

    def _epoch_end(self, epoch: int, logs: Mapping[str, Any] | None) -> None:
        values = _scalars(logs)
        values.pop("learning_rate", None)  # LearningRateScheduler's copy; ours is read below
        values.pop("lr", None)
        lr = self._learning_rate()
        if lr is not None:
            values["lr"] = lr
        self.run.log_native(values, step=self._iterations(), epoch=epoch + 1)

    def _batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        step = self._batch_step(batch)
        if step - self._last_batch_log >= self._every:
            self._last_batch_log = step
            self._guard(lambda: self.run.log_native(_scalars(logs), step=step, epoch=self._batch_epoch(batch)))

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        self._in_fit = self._in_epoch = False
        _unwatch(self)
        atexit.unregister(self._at_exit)
        self._guard(self._train_end)

    def _train_end(self) -> None:
        if getattr(self.model, "stop_training", False):
            self.run.summary.update(stopped_early=True, stopped_epoch=self._epoch + 1)
            self.run.set_metadata(stopped_early=True, stopped_epoch=self._epoch + 1)
        self.run.flush()

    # -- evaluate ---------------------------------------------------------------------------
    def on_test_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if not self._in_epoch:  # inside an epoch it is fit's validation, already in val_* logs
            self._guard(self._test_end, logs)

    def _test_end(self, logs: Mapping[str, Any] | None) -> None:
        run = self._ensure_run()
        step = self._iterations() if self.model.optimizer is not None else None
        run.log_native(_scalars(logs), step=step, split="test")
        run.flush()

    # -- checkpoints ------------------------------------------------------------------------
    def _follows(self, checkpoint: _Checkpoint) -> bool:
        if self.run is None or checkpoint.model is not self.model:
            return False
        return self._follow is True or any(c is checkpoint for c in self._follow or ())

    def _checkpoint_saved(self, ckpt: _Checkpoint, path: str, before: Any, best_before: Any, epoch: int,
                          batch: int | None, logs: Mapping[str, Any] | None) -> None:
        if _stat(path) in (None, before):
            return  # not saved this time (save_best_only without improvement)
        value = _scalars(logs).get(ckpt.monitor)
        if ckpt.save_best_only:
            improved = value is not None and best_before != ckpt.best
        else:
            previous = self._best.get(id(ckpt))
            maximize = _maximize(ckpt)
            improved = value is not None and (
                previous is None or (value > previous if maximize else value < previous))
            if improved:
                self._best[id(ckpt)] = value
        if self.run.disabled:
            return
        step = self._iterations() if batch is None else self._batch_step(batch)
        # The core stores a copy (not a link) by default, so Keras rewriting this path later is harmless.
        self.run.log_artifact(
            path, name=_artifact_name(ckpt.filepath), type="model",
            aliases=("latest", "best") if improved else ("latest",),
            metadata={"epoch": epoch + 1 if batch is None else self._batch_epoch(batch), "step": step,
                      "monitor": ckpt.monitor, "value": value, "weights_only": ckpt.save_weights_only,
                      "source": os.path.abspath(path)},
        )


# -- helpers ---------------------------------------------------------------------------------
def _scalars(logs: Mapping[str, Any] | None) -> dict[str, float | int]:
    out = {}
    for key, value in (logs or {}).items():
        try:
            out[key] = to_number(key, value)
        except (TypeError, ValueError):
            log.debug("epochal: Keras log %r is not a scalar; skipped", key)
    return out


def _loss_name(loss: Any) -> Any:
    if loss is None or isinstance(loss, str):
        return loss
    if isinstance(loss, Mapping):
        return {str(k): _loss_name(v) for k, v in loss.items()}
    if isinstance(loss, (list, tuple)):
        return [_loss_name(v) for v in loss]
    return getattr(loss, "name", None) or getattr(loss, "__name__", None) or type(loss).__name__


def _optimizer_config(optimizer: Any) -> dict[str, Any]:
    config = dict(optimizer.get_config())
    lr = config.get("learning_rate")
    if isinstance(lr, dict):  # a serialized LearningRateSchedule
        config["learning_rate"] = {"class": lr.get("class_name"), **(lr.get("config") or {})}
    return {"class": type(optimizer).__name__, **config}


def _param_counts(model: Any) -> dict[str, int]:
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    frozen = sum(math.prod(w.shape) for w in model.non_trainable_weights)
    return {"trainable": int(trainable), "non_trainable": int(frozen), "total": int(trainable + frozen)}


def _maximize(ckpt: _Checkpoint) -> bool:
    if ckpt.mode in ("min", "max"):
        return ckpt.mode == "max"
    if ckpt.monitor_op is not None:
        return ckpt.monitor_op is keras.ops.greater
    return not ckpt.monitor.endswith("loss")


def _artifact_name(template: str) -> str:
    """``ckpt/model-{epoch:02d}.keras`` -> ``model``: the file name without placeholders and extension."""
    base = os.path.basename(template)
    for ext in (".weights.h5", ".keras", ".h5"):
        if base.endswith(ext):
            base = base[: -len(ext)]
            break
    base = re.sub(r"\{[^}]*\}", "", base)
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base)
    return re.sub(r"[-_.]{2,}", "-", base).strip("-_.") or "checkpoint"


def _stat(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


# -- the ModelCheckpoint watch ------------------------------------------------------------------
_watchers: list[EpochalCallback] = []
_save_original: list[Any] = []


def _watch(callback: EpochalCallback) -> None:
    if callback._follow is False or callback in _watchers:
        return
    _watchers.append(callback)
    original = _Checkpoint.__dict__.get("_save_model")
    if _save_original or original is None:
        return
    if list(inspect.signature(original).parameters) != ["self", "epoch", "batch", "logs"]:
        log.info("epochal: ModelCheckpoint of Keras %s cannot be followed; checkpoints not logged", keras.version())
        return

    @functools.wraps(original)
    def _save_model(self, epoch, batch, logs):
        followers = [w for w in _watchers if w._follows(self)]
        try:
            path = self._get_file_path(epoch, batch, logs or {}) if followers else None
            before, best_before = (_stat(path) if path else None), self.best
        except Exception:
            path = None
        result = original(self, epoch, batch, logs)
        for follower in followers if path else ():
            follower._guard(follower._checkpoint_saved, self, path, before, best_before, epoch, batch, logs)
        return result

    _save_original.append(original)
    _Checkpoint._save_model = _save_model


def _unwatch(callback: EpochalCallback) -> None:
    if callback in _watchers:
        _watchers.remove(callback)
    if not _watchers and _save_original:
        _Checkpoint._save_model = _save_original.pop()


# -- autolog ----------------------------------------------------------------------------------------
_MISSING = object()
_patched: dict[str, Any] = {}  # attribute -> what keras.Model.__dict__ held before (or _MISSING)
_auto: dict[str, Any] = {}  # "options": EpochalCallback arguments; "last": the last autolog callback


def autolog(disable: bool = False, log_every_n_batches: int | None = None, log_checkpoints: bool = True,
            **init_kwargs: Any) -> None:
    """Track every ``keras.Model.fit`` (one run per model) and the ``evaluate`` after it.

    A fit given its own ``EpochalCallback`` keeps it. ``disable=True`` restores ``fit`` and
    ``evaluate`` exactly and finishes the last run autolog started.
    """
    if disable:
        for name, before in _patched.items():
            if before is _MISSING:
                delattr(keras.Model, name)
            else:
                setattr(keras.Model, name, before)
        _patched.clear()
        last = _auto.pop("last", None)
        if last is not None:
            last.finish()
        return
    options = dict(log_every_n_batches=log_every_n_batches, log_checkpoints=log_checkpoints, **init_kwargs)
    EpochalCallback(**options)  # user errors surface now, not at the first fit
    _auto["options"] = options
    if not _patched:
        for name, wrap in (("fit", _patched_fit), ("evaluate", _patched_evaluate)):
            _patched[name] = keras.Model.__dict__.get(name, _MISSING)
            setattr(keras.Model, name, wrap(getattr(keras.Model, name)))


def _is_open(callback: EpochalCallback | None, model: Any) -> bool:
    return (callback is not None and callback.model is model and callback.run is not None
            and callback.run.metadata.get("status", "running") == "running")


def _callbacks_of(bound: inspect.BoundArguments) -> list[Any] | None:
    callbacks = bound.arguments.get("callbacks")
    if isinstance(callbacks, keras.callbacks.CallbackList):
        return None  # Keras' own nested call (fit's validation) or an expert's list: leave it
    if not callbacks:
        return []
    return list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]


def _prepare_fit(model: Any, bound: inspect.BoundArguments) -> EpochalCallback | None:
    callbacks = _callbacks_of(bound)
    if callbacks is None:
        return None
    mine = next((c for c in callbacks if isinstance(c, EpochalCallback)), None)
    if mine is not None:
        return mine
    last = _auto.get("last")
    if _is_open(last, model):
        callback = last
    else:
        if last is not None:
            last.finish()
        callback = _auto["last"] = EpochalCallback(**_auto["options"])
    arguments = {k: p.default for k, p in bound.signature.parameters.items()} | dict(bound.arguments)
    callback._fit_args = {k: arguments.get(k) for k in _FIT_ARGS if arguments.get(k) is not None}
    x = arguments.get("x")
    if arguments.get("batch_size") is None and hasattr(x, "shape") and arguments.get("steps_per_epoch") is None:
        callback._fit_args["batch_size"] = 32  # Keras' default for arrays
    bound.arguments["callbacks"] = [*callbacks, callback]
    if hasattr(x, "shape"):
        callback._guard(lambda: callback._ensure_run().log_dataset(x, "train"))
    return callback


def _patched_fit(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def fit(self, *args, **kwargs):
        try:
            bound = signature.bind(self, *args, **kwargs)
            callback = _prepare_fit(self, bound)
            args, kwargs = bound.args[1:], bound.kwargs
        except Exception:
            log.warning("epochal: Keras autolog could not prepare this fit; it runs untracked", exc_info=True)
            callback = None
        try:
            return original(self, *args, **kwargs)
        except BaseException as exc:
            if callback is not None:
                callback._stopped("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
            raise

    return fit


def _patched_evaluate(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def evaluate(self, *args, **kwargs):
        last = _auto.get("last")
        if _is_open(last, self) and not last._in_fit:
            try:
                bound = signature.bind(self, *args, **kwargs)
                callbacks = _callbacks_of(bound)
                if callbacks is not None and last not in callbacks:
                    bound.arguments["callbacks"] = [*callbacks, last]
                    args, kwargs = bound.args[1:], bound.kwargs
            except Exception:
                log.debug("epochal: Keras autolog could not add its callback to evaluate()", exc_info=True)
        return original(self, *args, **kwargs)

    return evaluate
