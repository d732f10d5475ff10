"""Hugging Face ``Trainer`` tracking: ``Trainer(..., callbacks=[EpochalCallback()])``.

- config (``setdefaults``: the user's keys win): ``training_args`` (secrets stored as ``***``),
  ``model_config``, ``model`` (class, ``parameters``, ``trainable_parameters``), ``peft_config``;
- ``on_log`` metrics at ``state.global_step`` in the ``transformers`` dialect of
  :mod:`epochal.names` (``loss`` -> ``train/loss``, ``eval_loss`` -> ``val/loss``,
  ``learning_rate`` -> ``lr``; ``epoch`` rides on each point); the end-of-training figures
  (``train_runtime``, ``total_flos``, ``train_loss``, memory deltas...) go to ``run.summary``;
  ``trainer.predict`` metrics (``test_*``) at ``on_predict``;
- ``checkpoints="best"`` (default) | ``"last"`` | ``"all"`` | ``False``: checkpoint folders as
  versions of the ``model`` artifact (best by ``metric_for_best_model``, else the last saved),
  ``keep_last`` bounds the versions kept (:class:`epochal.checkpoints.CheckpointPolicy`).

Which run, ending, failure at exit and resume are :class:`epochal.lifecycle.Tracking`'s: every
checkpoint folder gets an ``epochal.json`` marker, and ``train(resume_from_checkpoint=...)``
continues the run it names. The Trainer tells callbacks nothing about exceptions: an uncaught
one marks the run ``failed`` through epochal's ``sys.excepthook``; a training that never
reached ``on_train_end`` reads ``failed`` at exit. ``evaluate()``/``predict()`` outside
training reopen the run and close it again. Under DDP every rank opens rank 0's run; only the
world process zero logs. Pass ``TrainingArguments(report_to="none")`` so no other tracker
records the same training.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

try:
    import transformers
    from transformers import TrainerCallback
except ImportError as _exc:  # pragma: no cover - exercised only without transformers
    raise ImportError("EpochalCallback needs transformers: pip install 'epochal[transformers]'") from _exc

from epochal.integrations import InitAutolog
from epochal.checkpoints import CheckpointPolicy, Checkpoints
from epochal.lifecycle import Tracking, read_marker, write_marker
from epochal.values import model_facts, plain
from epochal.names import TRANSFORMERS
from epochal.run import Run

__all__ = ["EpochalCallback", "autolog"]
_TEST = TRANSFORMERS.with_split("test")


class EpochalCallback(TrainerCallback):
    """Record a Hugging Face ``Trainer`` in epochal; ``run=`` logs into an open run, other keywords go to ``epochal.init``."""

    def __init__(self, run: Run | None = None, checkpoints: Checkpoints = "best", keep_last: int | None = None,
                 **init_kwargs: Any) -> None:
        if "log_checkpoints" in init_kwargs:
            raise TypeError("EpochalCallback(log_checkpoints=...) is now checkpoints='best' | 'last' | 'all' | False")
        self.tracking = Tracking("transformers", run=run, **init_kwargs)
        self.policy = CheckpointPolicy(checkpoints, keep_last=keep_last)
        self.init_kwargs = self.tracking.init_kwargs
        self._training = False

    @property
    def run(self) -> Run | None:
        """The run of the current (or last) training."""
        return self.tracking.run

    def _outside(self) -> Run:
        """The run for an ``evaluate()``/``predict()`` outside training (reopened; closed by the caller)."""
        run = self.tracking.run
        return run if run is not None and (self._training or self.tracking.is_open) else self.tracking.reopen()

    # -- events -------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs) -> None:
        with self.tracking.guard("on_train_begin"):
            run = self.tracking.start(resume=_marker(args, state), name=getattr(args, "run_name", None))
            self._training = True
            if state.is_world_process_zero and run.is_owner:
                run.config.setdefaults(_config(args, model))

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        if state.is_world_process_zero and logs:
            with self.tracking.guard("on_log"):
                self._outside().log_native(logs, step=state.global_step, dialect=TRANSFORMERS)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs) -> None:
        if not self._training:  # an evaluate() outside training: its metrics came through on_log
            self.tracking.end()

    def on_predict(self, args, state, control, metrics=None, **kwargs) -> None:
        if state.is_world_process_zero and metrics:
            with self.tracking.guard("on_predict"):
                self._outside().log_native(metrics, step=state.global_step, dialect=_TEST)
        if not self._training:
            self.tracking.end()

    def on_save(self, args, state, control, **kwargs) -> None:
        with self.tracking.guard("on_save"):
            run = self.tracking.run
            folder = Path(args.output_dir or ".") / f"checkpoint-{state.global_step}"
            if run is None or run.disabled or not folder.is_dir():
                return
            if args.should_save:
                write_marker(folder, run)
            if state.is_world_process_zero and run.is_owner:
                best = state.best_model_checkpoint
                self.policy.saved(run, folder, best=(Path(best) == folder) if args.metric_for_best_model else None,
                                  metadata=_facts(args, state))

    def on_train_end(self, args, state, control, **kwargs) -> None:
        self._training = False
        with self.tracking.guard("on_train_end"):
            run = self.tracking.run
            if run is not None and state.is_world_process_zero and run.is_owner:
                best = state.best_model_checkpoint if args.metric_for_best_model else None
                self.policy.end(run, best=best, metadata=_facts(args, state) if best else None)
        self.tracking.end()


def _facts(args: Any, state: Any) -> dict[str, Any]:
    return {"global_step": state.global_step, "epoch": state.epoch, "metric": args.metric_for_best_model,
            "best_metric": state.best_metric}


def _marker(args: Any, state: Any) -> dict[str, str] | None:
    """The marker of the checkpoint this training resumed from (``resume_from_checkpoint`` path or ``True``)."""
    if state.global_step <= 0:
        return None
    folders = [args.resume_from_checkpoint] if isinstance(getattr(args, "resume_from_checkpoint", None), str) else []
    if args.output_dir:
        folders.append(os.path.join(args.output_dir, f"checkpoint-{state.global_step}"))
    return next((found for found in map(read_marker, folders) if found is not None), None)


def _config(args: Any, model: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"training_args": args.to_dict()}
    if model is not None:
        model_config: Any = getattr(model, "config", None)
        if hasattr(model_config, "to_dict"):
            values["model_config"] = model_config.to_dict()
        values["model"] = model_facts(model)
        adapters = getattr(model, "peft_config", None)  # PEFT models, or transformers models with adapters
        if isinstance(adapters, Mapping) and adapters:
            values["peft_config"] = {str(k): _adapter(c) for k, c in adapters.items()}
    return plain(values)


def _adapter(config: Any) -> Any:
    return config.to_dict() if hasattr(config, "to_dict") else {
        k: v for k, v in vars(config).items() if not k.startswith("_")}


def autolog(disable: bool = False, **kwargs: Any) -> None:
    """Add an ``EpochalCallback(**kwargs)`` to every ``transformers.Trainer`` that has none; ``disable`` undoes it."""
    _autolog.switch(disable, **kwargs)


def _add_callback(trainer: Any, options: dict[str, Any]) -> None:
    if not any(isinstance(cb, EpochalCallback) for cb in trainer.callback_handler.callbacks):
        trainer.add_callback(EpochalCallback(**options))


_autolog = InitAutolog("transformers", lambda: transformers.Trainer, EpochalCallback, _add_callback)
