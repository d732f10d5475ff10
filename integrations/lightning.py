"""PyTorch Lightning: ``Trainer(logger=EpochalLogger(project="mnist"))``.

- Metrics at Lightning's step in the ``lightning`` dialect of :mod:`epochal.names`
  (``train_loss_step`` -> ``train/loss``; ``prefix="fit"``: ``fit-train_loss_step`` -> ``fit/train/loss``).
- Hyperparameters (dict, Namespace, dataclass) and model facts to the config; ``log_image``/``log_text``
  take ``WandbLogger``'s arguments (:mod:`epochal.media`).
- ``checkpoints="best"`` (default) | ``"last"`` | ``"all"`` | ``False``: ModelCheckpoint files as
  versions of the ``model`` artifact (:class:`~epochal.checkpoints.CheckpointPolicy`).
- ``name`` is the project, ``version`` the run id (ModelCheckpoint's default folder is
  ``<run dir>/checkpoints``), ``experiment`` the :class:`epochal.Run` on every rank (the others
  add hardware samples; metrics, config and checkpoints are rank zero's).

Which run, ending, failure and resume are :class:`~epochal.lifecycle.Tracking`'s; checkpoints hold
its marker, and loading one switches to that run (Lightning opens loggers before reading it):
:mod:`._lightning_resume`. ModelCheckpoint following: :mod:`._lightning_checkpoints`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

try:
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import Logger
    from lightning.pytorch.utilities import rank_zero_only
except ImportError as exc:  # pragma: no cover - exercised only without lightning
    raise ImportError("EpochalLogger needs lightning: pip install 'epochal[lightning]'") from exc

from epochal.integrations import InitAutolog
from epochal.checkpoints import CheckpointPolicy, Checkpoints
from epochal.lifecycle import Tracking, marker
from epochal.values import model_facts, plain
from epochal.media import image_batch, markdown_table
from epochal.names import LIGHTNING
from epochal.query import root_dir
from epochal.run import DEFAULT_PROJECT, Run

from ._lightning_checkpoints import CheckpointFollower
from ._lightning_resume import RunInCheckpoint, trainer_of

__all__ = ["EpochalLogger", "autolog"]


class EpochalLogger(Logger):
    """Log a Lightning training to epochal; ``run=`` logs into an open run, other keywords go to ``epochal.init``."""

    LOGGER_JOIN_CHAR = "-"

    def __init__(self, project: str | None = None, name: str | None = None, *, prefix: str = "",
                 checkpoints: Checkpoints = "best", keep_last: int | None = None, run: Run | None = None,
                 **init_kwargs: Any) -> None:
        super().__init__()
        if "log_model" in init_kwargs:
            raise TypeError("EpochalLogger(log_model=...) is now checkpoints='best' | 'last' | 'all' | False")
        given = {k: v for k, v in {"project": project, "name": name, **init_kwargs}.items() if v is not None}
        self._tracking = Tracking("lightning", run=run, **given)
        self._checkpoints = CheckpointFollower(CheckpointPolicy(checkpoints, keep_last=keep_last))
        self._dialect = LIGHTNING.with_prefix(prefix)
        self._marker: dict[str, str] | None = marker(run) if run is not None else None
        self._hparams: dict[str, Any] = {}
        self._error: BaseException | None = None
        self.callback = RunInCheckpoint(self)

    @property
    def experiment(self) -> Run:
        """The run, opened on first use (and reopened after ``finalize`` for a later test/validate)."""
        tracking = self._tracking
        if not tracking.is_open:
            run = self._open(self._marker)
            self._marker = None if run.disabled else marker(run)
        return tracking.run  # type: ignore[return-value]

    @property
    def name(self) -> str:
        run, given = self._tracking.run, self._tracking.init_kwargs
        return run.project if run else given.get("project") or os.environ.get("EPOCHAL_PROJECT") or DEFAULT_PROJECT

    @property
    def version(self) -> str | None:
        run = self._tracking.run
        return run.id if run else self._tracking.init_kwargs.get("id")

    @property
    def save_dir(self) -> str:
        run = self._tracking.run
        return str(run.root if run else root_dir(self._tracking.init_kwargs.get("dir")))

    @property
    def root_dir(self) -> str:
        return os.path.join(self.save_dir, self.name)

    @property
    def log_dir(self) -> str | None:
        return os.path.join(self.root_dir, self.version) if self.version else None

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        with self._tracking.guard("log_hyperparams"):
            values = plain(params if params is not None else {})
            if not isinstance(values, dict):
                raise TypeError(f"hyperparameters must be a dict, Namespace or dataclass, got {type(params).__name__}")
            self._hparams.update(values)
            self.experiment.config.update(values)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if getattr(rank_zero_only, "rank", 0):  # @rank_zero_only's rule, inlined: this runs at every step
            return
        tracking = self._tracking
        try:  # Tracking.guard's own rule, without a context manager per call
            run = tracking.run if tracking.is_open else self.experiment
            run.log_native(metrics, step=step, dialect=self._dialect)  # type: ignore[union-attr]
        except Exception as exc:
            self._tracking.warn("log_metrics", exc)

    @rank_zero_only
    def log_image(self, key: str, images: list[Any], step: int | None = None,
                  caption: list[str | None] | None = None) -> None:
        """Images (arrays, tensors, PIL, figures, paths) under ``key`` at ``step`` (default: the latest metrics')."""
        self._log_media({key: image_batch(images, caption)}, step)

    @rank_zero_only
    def log_text(self, key: str, columns: list[str] | None = None, data: list[list[Any]] | None = None,
                 dataframe: Any = None, step: int | None = None) -> None:
        """Log a table (``columns`` and ``data`` rows, or a ``dataframe``) as markdown, as ``WandbLogger`` does."""
        self._log_media({key: markdown_table(columns, data, dataframe)}, step)

    def _log_media(self, values: dict[str, Any], step: int | None) -> None:
        run = self.experiment
        run.log(values, step=max(run.step - 1, 0) if step is None else step)

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Called before training: hooks the trainer up, follows a loaded checkpoint, records model facts."""
        with self._tracking.guard("log_graph"):
            trainer = trainer_of(model)
            if trainer is not None:
                self.callback.attach(trainer)
                loaded = getattr(trainer._checkpoint_connector, "_loaded_checkpoint", None)
                if loaded:  # read before the callback joined the trainer
                    self.callback.follow(trainer, loaded)
            if self.experiment.is_owner:
                self.experiment.config.setdefaults({"model": model_facts(model)})

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: ModelCheckpoint) -> None:
        with self._tracking.guard("after_save_checkpoint"):
            self._checkpoints.saved(checkpoint_callback, lambda: self.experiment)

    def save(self) -> None:
        """Nothing to do: the run's writer thread flushes in the background."""

    def finalize(self, status: str) -> None:
        """End the run: Lightning's ``success`` -> ``finished``, anything else (error, Ctrl-C) -> ``failed``."""
        run, tracking = self._tracking.run, self._tracking
        if run is None or not tracking.is_open:
            return
        with tracking.guard("finalize"):
            self._checkpoints.end(run)
        failed = status not in ("success", "finished")
        tracking.end((self._error or f"Lightning ended the training with status {status!r}") if failed else None)
        self._error = None

    def __getstate__(self) -> dict[str, Any]:  # ddp_spawn pickles the logger: the copy reopens the run by marker
        state = self.__dict__.copy()
        state.update(_error=None)
        return state

    def _open(self, resume: dict[str, str] | None) -> Run:
        """Start the run, or continue the one the marker ``resume`` names; the hyperparameters logged so far go with it."""
        self._marker = resume
        run = self._tracking.start(resume=resume)
        if self._hparams and run.is_owner:
            run.config.update(self._hparams)
        return run


def autolog(disable: bool = False, **logger_kwargs: Any) -> None:
    """Give every new ``Trainer`` an ``EpochalLogger(**logger_kwargs)`` unless it has one; ``disable`` undoes it."""
    _autolog.switch(disable, **logger_kwargs)


def _add_logger(trainer: Trainer, options: dict[str, Any]) -> None:
    if getattr(trainer, "barebones", False) or getattr(trainer, "fast_dev_run", False):
        return
    ours = [lg for lg in trainer.loggers if isinstance(lg, EpochalLogger)]
    if not ours:
        ours = [EpochalLogger(**options)]
        trainer.loggers = [*trainer.loggers, *ours]
    for logger in ours:  # attached now, so a checkpoint loaded before training is followed
        logger.callback.attach(trainer)


_autolog = InitAutolog("lightning", lambda: Trainer, EpochalLogger, _add_logger)
