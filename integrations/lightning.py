"""PyTorch Lightning: ``EpochalLogger``, a Lightning ``Logger`` that records into an epochal run.

>>> trainer = Trainer(logger=EpochalLogger(project="mnist", log_model=True))

- Metrics at the step Lightning gives, named by :mod:`epochal.names` (``train_loss_step`` ->
  ``train/loss``, ``val_acc`` -> ``val/acc``); Lightning's ``epoch`` key is each point's epoch.
- ``log_hyperparams`` (dict, Namespace, dataclass, ``save_hyperparameters()``) and model facts
  (class, parameter counts) go to the config; the run ends ``finished`` or ``failed``.
- ``ModelCheckpoint`` files become versions of the ``model`` artifact (``latest``/``best``
  aliases, monitor, score and step in the metadata): ``log_model="all"`` each save,
  ``True``/``"best"`` the best one at the end, ``False`` (the default) none.
- ``name`` is the project and ``version`` the run id, so ModelCheckpoint's default folder is
  ``<run dir>/checkpoints``. ``self.logger.experiment`` is the :class:`epochal.Run`.

Resume: every checkpoint holds ``checkpoint["epochal"] = {project: run_id}``, written by a
small callback the logger adds to the trainer. Lightning opens loggers before it reads the
checkpoint, so a resumed fit first starts an empty run; once the checkpoint is loaded (the
callback's ``on_load_checkpoint``, or ``log_graph`` when the callback joined later) the logger
drops that empty run, reopens the stored one (steps continue from Lightning's restored global
step) and points ModelCheckpoint folders derived from the dropped id back to the stored run.

DDP: every rank opens the run when Lightning first asks for ``experiment``; the process group
is up then, so :func:`epochal.init` broadcasts rank 0's run id. Rank 0 writes metrics; the
others only add their hardware samples (``system.rank<N>.jsonl``).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import logging
import os
import shutil
import traceback
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

try:
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint
    from lightning.pytorch.loggers import Logger
except ImportError as exc:  # pragma: no cover - exercised only without lightning
    raise ImportError("EpochalLogger needs lightning: pip install 'epochal[lightning]'") from exc

import epochal
from epochal.run import DEFAULT_DIR, DEFAULT_PROJECT, DisabledRun, Run, check_segment
from epochal.store import METRICS_FILE

__all__ = ["EpochalLogger", "autolog"]

log = logging.getLogger("epochal")
CHECKPOINT_KEY = "epochal"
_STATUS = {"success": "finished", "finished": "finished"}
LogModel = Literal["all", "best"] | bool
_INIT_ARGS = frozenset(inspect.signature(epochal.init).parameters) - {"project", "name", "dir", "id", "resume"}


class EpochalLogger(Logger):
    """Log a Lightning training to epochal. ``name`` names the run; ``run`` injects an open one.

    Other keyword arguments go to :func:`epochal.init` (``config``, ``tags``, ``notes``, ``sinks``...).
    """

    def __init__(
        self,
        project: str | None = None,
        name: str | None = None,
        *,
        dir: str | os.PathLike[str] | None = None,
        id: str | None = None,
        run: Run | None = None,
        log_model: LogModel = False,
        checkpoint_name: str = "model",
        keep_last: int | None = None,
        **init_kwargs: Any,
    ) -> None:
        super().__init__()
        if log_model not in (True, False, "all", "best"):
            raise ValueError(f"log_model={log_model!r}: use 'all', 'best', True or False")
        unknown = sorted(set(init_kwargs) - _INIT_ARGS)
        if unknown:
            raise TypeError(f"EpochalLogger got unexpected arguments {unknown}; epochal.init takes {sorted(_INIT_ARGS)}")
        self._project = check_segment(
            run.project if run else project or os.environ.get("EPOCHAL_PROJECT") or DEFAULT_PROJECT, "project")
        self._root = run.root if run else Path(dir or os.environ.get("EPOCHAL_DIR") or DEFAULT_DIR).expanduser().absolute()
        self._init = dict(name=name, **init_kwargs)
        self._id = run.id if run else (check_segment(id, "run id") if id else None)
        self._run, self._owns_run, self._closed = run, run is None, False
        self._log_model, self._checkpoint_name, self._keep_last = log_model, checkpoint_name, keep_last
        self._hparams: dict[str, Any] = {}
        self._logged = False  # metrics or artifacts went into the open run
        self._fresh = False
        self._error: str | None = None
        self._pending: dict[str, Any] = {}  # ModelCheckpoint (weak proxies) to scan at the end
        self._stored: dict[str, str] = {}  # checkpoint path -> artifact version holding it
        self._stored_step: dict[str, Any] = {}  # ModelCheckpoint -> global step of its last stored file
        self._warned: set[str] = set()
        self.callback = _RunInCheckpoint(self)

    # -- Lightning's Logger interface ---------------------------------------------------------
    @property
    def experiment(self) -> Run:
        """The epochal run (opened on first use, reopened after ``finalize`` for a later fit/test)."""
        if self._run is None or self._closed:
            self._open()
        return self._run

    @property
    def name(self) -> str:
        return self._project

    @property
    def version(self) -> str | None:
        return self._run.id if self._run is not None else self._id

    @property
    def save_dir(self) -> str:
        return str(self._root)

    @property
    def root_dir(self) -> str:
        return str(self._root / self._project)

    @property
    def log_dir(self) -> str | None:
        version = self.version
        return str(self._root / self._project / version) if version else None

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        try:
            values = _plain(params if params is not None else {})
            if not isinstance(values, dict):
                raise TypeError(f"hyperparameters must be a dict, Namespace or dataclass, got {type(params).__name__}")
            self._hparams.update(values)
            run = self.experiment
            if run.is_owner:
                run.config.update(values)
        except Exception as exc:
            self._warn("log_hyperparams", exc)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        run = self._run if self._run is not None and not self._closed else self.experiment
        if not run.is_owner:
            return
        try:
            run.log_native(metrics, step=step, step_suffixes=True)
            self._logged = True
        except Exception as exc:
            self._warn("log_metrics", exc)

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Called by Lightning before training: model facts to the config, and the trainer hooked up."""
        try:
            trainer = _trainer_of(model)
            if trainer is not None:
                self._attach(trainer)
                loaded = getattr(getattr(trainer, "_checkpoint_connector", None), "_loaded_checkpoint", None)
                if loaded:
                    self._resume_from(trainer, loaded)
            run = self.experiment
            if run.is_owner:
                run.config.setdefaults(model_facts(model))
        except Exception as exc:
            self._warn("log_graph", exc)

    def after_save_checkpoint(self, checkpoint_callback: ModelCheckpoint) -> None:
        try:
            if self._log_model == "all":
                self._log_checkpoints(checkpoint_callback, final=False)
            elif self._log_model:
                self._pending[_key(checkpoint_callback)] = checkpoint_callback
        except Exception as exc:
            self._warn("after_save_checkpoint", exc)

    def save(self) -> None:
        """Nothing to do: the run's writer thread flushes in the background."""

    def finalize(self, status: str) -> None:
        """End the run: Lightning's ``success`` -> ``finished``, anything else (error, Ctrl-C) -> ``failed``."""
        if self._run is None or self._closed:
            return
        try:
            for callback in self._pending.values():
                self._log_checkpoints(callback, final=True)
        except Exception as exc:
            self._warn("finalize", exc)
        self._pending.clear()
        state = _STATUS.get(status, "failed")
        if self._owns_run:
            self._run.finish(state, error=self._error if state == "failed" else None)
            self._closed = True
        else:
            self._run.flush()
        self._error = None

    def __getstate__(self) -> dict[str, Any]:  # ddp_spawn pickles the logger; each process reopens the run
        state = self.__dict__.copy()
        state.update(_run=None if self._owns_run else self._run, _closed=False, _pending={})
        return state

    # -- the run ------------------------------------------------------------------------
    def _open(self) -> None:
        if not self._owns_run:
            raise RuntimeError("the run given to EpochalLogger(run=...) was finished")
        try:
            run = epochal.init(project=self._project, dir=self._root, id=self._id,
                               resume="allow" if self._id else False, **self._init)
        except Exception as exc:  # e.g. an unwritable folder: training goes on, untracked
            self._warn("open", exc)
            run = DisabledRun(project=self._project, run_id=self._id or "disabled")
        self._run, self._id, self._closed, self._logged = run, run.id, False, False
        self._fresh = not run.metadata.get("resumed")  # made by this open, not an existing run reopened
        if self._hparams and run.is_owner:
            run.config.update(self._hparams)

    def _attach(self, trainer: Trainer) -> None:
        """Add the callback that stores the run id in checkpoints (once per trainer)."""
        if not any(cb is self.callback for cb in trainer.callbacks):
            trainer.callbacks.append(self.callback)

    def _resume_from(self, trainer: Trainer, checkpoint: Mapping[str, Any]) -> None:
        """Continue the run stored in ``checkpoint`` instead of the empty one Lightning opened."""
        stored = (checkpoint.get(CHECKPOINT_KEY) or {}).get(self._project)
        if not isinstance(stored, str) or stored == self.version or not self._owns_run:
            return
        if self._logged:
            log.warning("epochal: checkpoint of run %s loaded after run %s logged data; keeping %s",
                        stored, self.version, self.version)
            return
        old_dir = Path(self.log_dir) if self.log_dir else None
        if self._run is not None and not self._closed:
            self._run.finish()
            if self._run.is_owner and self._fresh and not self._run.disabled:
                _remove_empty_run(self._run.dir)
        self._id, self._run = check_segment(stored, "run id"), None
        self._open()
        new_dir = Path(self.log_dir)
        for callback in trainer.checkpoint_callbacks:  # folders Lightning derived from the dropped id
            if old_dir is None or not isinstance(callback, ModelCheckpoint) or callback.dirpath is None:
                continue
            if Path(callback.dirpath) == old_dir / "checkpoints":
                callback.dirpath = str(new_dir / "checkpoints")
                state = (checkpoint.get("callbacks") or {}).get(callback.state_key)
                if state:
                    callback.load_state_dict(copy.deepcopy(state))

    # -- checkpoints as artifacts -----------------------------------------------------------
    def _log_checkpoints(self, callback: Any, final: bool) -> None:
        """Store the checkpoint just saved (``all``) or, at the end, the best one; keep ``best`` on the best."""
        run = self.experiment
        if not run.is_owner:
            return
        best = getattr(callback, "best_model_path", "") or ""
        last = getattr(callback, "last_model_path", "") or ""
        scores = dict(getattr(callback, "best_k_models", None) or {})
        if final:
            path = best or last
        else:  # the newest file ModelCheckpoint knows: the one it has just written
            known = [p for p in {best, last, *scores} if p and os.path.isfile(p)]
            path = max(known, key=os.path.getmtime, default="")
        step = getattr(callback, "_last_global_step_saved", None)
        if path and os.path.isfile(path) and (final or step is None or step != self._stored_step.get(_key(callback))):
            self._stored_step[_key(callback)] = step
            score = scores.get(path, getattr(callback, "best_model_score", None) if path == best
                               else getattr(callback, "current_score", None))
            metadata = {"monitor": getattr(callback, "monitor", None), "mode": getattr(callback, "mode", None),
                        "score": _number(score), "filename": os.path.basename(path), "step": step}
            version = run.log_artifact(os.path.realpath(path), name=self._checkpoint_name, type="model",
                                       aliases=("best",) if path == best else (), metadata=metadata,
                                       keep_last=self._keep_last)
            if version is not None:
                self._stored[path] = version.version
                self._logged = True
        if best in self._stored:
            run.set_alias(self._checkpoint_name, self._stored[best], "best")

    def _warn(self, where: str, exc: Exception) -> None:
        if where not in self._warned:
            self._warned.add(where)
            log.warning("epochal: EpochalLogger.%s failed: %r (training goes on)", where, exc)


class _RunInCheckpoint(Callback):
    """Writes the run id into every checkpoint, resumes that run when one is loaded, notes errors."""

    def __init__(self, logger: EpochalLogger) -> None:
        self.logger = logger

    @property
    def state_key(self) -> str:
        return f"EpochalLogger[{self.logger.name}]"

    def on_save_checkpoint(self, trainer: Trainer, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        if self.logger.version:
            checkpoint.setdefault(CHECKPOINT_KEY, {})[self.logger.name] = self.logger.version

    def on_load_checkpoint(self, trainer: Trainer, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        try:
            self.logger._resume_from(trainer, checkpoint)
        except Exception as exc:
            self.logger._warn("on_load_checkpoint", exc)

    def on_exception(self, trainer: Trainer, pl_module: Any, exception: BaseException) -> None:
        self.logger._error = "".join(traceback.format_exception(type(exception), exception, exception.__traceback__))


# -- helpers ------------------------------------------------------------------------------------
def model_facts(model: Any) -> dict[str, Any]:
    """Class name and parameter counts (total, trainable) of a torch module."""
    facts: dict[str, Any] = {"model_class": type(model).__name__}
    try:
        params = list(model.parameters())
        facts["num_parameters"] = sum(p.numel() for p in params)
        facts["num_trainable_parameters"] = sum(p.numel() for p in params if p.requires_grad)
    except Exception:  # lazy (uninitialised) parameters have no size yet
        pass
    return facts


def _plain(value: Any) -> Any:
    """Namespaces, dataclasses and mappings (nested too) as plain dicts."""
    if isinstance(value, Namespace):
        value = vars(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError):
        return None


def _key(callback: Any) -> str:
    """A stable key for a ModelCheckpoint (Lightning hands loggers a new weak proxy each time)."""
    return str(getattr(callback, "state_key", None) or id(callback))


def _trainer_of(model: Any) -> Trainer | None:
    try:
        trainer = model.trainer
    except (AttributeError, RuntimeError):
        return None
    return trainer if isinstance(trainer, Trainer) else None


def _remove_empty_run(run_dir: Path) -> None:
    """Delete a run folder this logger opened moments ago if nothing but bookkeeping is in it."""
    metrics = run_dir / METRICS_FILE
    if (metrics.exists() and metrics.stat().st_size) or (run_dir / "artifacts").exists():
        return
    if any((run_dir / "checkpoints").glob("*")):
        return
    shutil.rmtree(run_dir, ignore_errors=True)


# -- autolog ---------------------------------------------------------------------------------
_patched: dict[str, Any] = {}


def autolog(disable: bool = False, **logger_kwargs: Any) -> None:
    """Give every new ``lightning.pytorch.Trainer`` an ``EpochalLogger(**logger_kwargs)`` unless it has one.

    ``autolog(disable=True)`` puts ``Trainer.__init__`` back exactly as it was.
    """
    if disable:
        original = _patched.pop("init", None)
        if original is not None:
            Trainer.__init__ = original
        _patched.pop("kwargs", None)
        return
    EpochalLogger(**logger_kwargs)  # user errors (bad log_model, project) surface here, not per Trainer
    _patched["kwargs"] = dict(logger_kwargs)
    if "init" in _patched:
        return
    original = Trainer.__dict__["__init__"]

    @functools.wraps(original)
    def __init__(self: Trainer, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        try:
            _add_logger(self, _patched.get("kwargs", {}))
        except Exception as exc:
            log.warning("epochal: autolog could not add EpochalLogger to the Trainer: %r", exc)

    _patched["init"] = original
    Trainer.__init__ = __init__


def _add_logger(trainer: Trainer, kwargs: Mapping[str, Any]) -> None:
    if getattr(trainer, "barebones", False) or getattr(trainer, "fast_dev_run", False):
        return
    ours = [lg for lg in trainer.loggers if isinstance(lg, EpochalLogger)]
    if not ours:
        ours = [EpochalLogger(**kwargs)]
        trainer.loggers = [*trainer.loggers, *ours]
    for logger in ours:
        logger._attach(trainer)
