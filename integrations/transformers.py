"""Hugging Face ``Trainer`` tracking: ``Trainer(..., callbacks=[EpochalCallback()])``.

What is recorded:

- config (added with ``setdefaults``, so the user's own keys win): ``training_args``
  (``TrainingArguments.to_dict()``; hub tokens and other secret-looking keys stored as
  ``***``), ``model_config``, ``model`` (class, ``parameters``, ``trainable_parameters``)
  and ``peft_config`` when the model carries adapters;
- ``on_log`` metrics at ``state.global_step`` under canonical names (``loss`` ->
  ``train/loss``, ``eval_loss`` -> ``val/loss``, ``learning_rate`` -> ``lr``,
  ``grad_norm`` -> ``train/grad_norm``; ``epoch`` is the record's epoch, not a chart);
  the end-of-training figures (``train_runtime``, ``train_samples_per_second``,
  ``train_steps_per_second``, ``total_flos``, ``train_loss``, memory-tracker deltas) go to
  ``run.summary`` under their own names. ``on_evaluate`` logs nothing (evaluation
  metrics arrive through ``on_log``); ``trainer.predict`` metrics (``test_*``) are logged
  at ``on_predict``, which ``on_log`` never sees;
- with ``log_checkpoints=True`` each checkpoint folder becomes a version of artifact
  ``checkpoint`` (``latest``; ``best`` follows ``state.best_model_checkpoint``), and
  ``keep_last`` bounds the unaliased versions kept.

Resume: every checkpoint folder gets a small ``epochal.json`` (run id, project, root).
``trainer.train(resume_from_checkpoint=...)`` reads it back in ``on_train_begin`` (from
``args.resume_from_checkpoint``, else ``<output_dir>/checkpoint-<global_step>``, which
is what ``resume_from_checkpoint=True`` picks) and appends to the same run.

Status: a run the callback made is ``finished`` at ``on_train_end``; an injected
``run=`` is left open for its owner. The Trainer tells callbacks nothing about
exceptions, so: an exception that ends the script marks the run ``failed`` (with its
traceback) through epochal's ``sys.excepthook``; a training that stopped without
``on_train_end`` in a process that lives on (notebook, caught exception) is marked
``failed`` when the callback starts its next training or when the process exits.
An ``evaluate()``/``predict()`` after training reopens the run, which is then finished
at exit.

Distributed: every rank opens the same run id (rank 0's, broadcast over the process
group that ``TrainingArguments`` has set up by ``on_train_begin``); only the world
process zero logs, the other ranks add their hardware samples (``system.rank<N>.jsonl``).

Double logging: transformers' own trackers are chosen by ``report_to`` (a closed list
without epochal); pass ``TrainingArguments(report_to="none")`` so that no other tracker
(wandb, mlflow, tensorboard...) records the same run alongside epochal.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import logging
import os
import re
import weakref
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Mapping

try:
    import transformers
    from transformers import TrainerCallback
except ImportError as _exc:  # pragma: no cover - exercised only without transformers
    raise ImportError("EpochalCallback needs transformers: pip install 'epochal[transformers]'") from _exc

import epochal
from epochal import distributed
from epochal.redact import redact_mapping
from epochal.run import Run, new_run_id
from epochal.store import RUN_FILE, read_json, write_json_atomic
from epochal.values import to_number

__all__ = ["EpochalCallback", "autolog", "CHECKPOINT_RUN_FILE", "CHECKPOINT_ARTIFACT"]

log = logging.getLogger("epochal")
CHECKPOINT_RUN_FILE = "epochal.json"
CHECKPOINT_ARTIFACT = "checkpoint"
SUMMARY_KEYS = frozenset({
    "train_runtime", "train_samples_per_second", "train_steps_per_second", "train_tokens_per_second",
    "total_flos", "train_loss",
})
_MEMORY_KEY = re.compile(r"_mem_(cpu|gpu|accelerator)_")
_INIT_PARAMS = frozenset(inspect.signature(epochal.init).parameters)
_in_flight: set[EpochalCallback] = set()  # between on_train_begin and on_train_end
_open_callbacks: weakref.WeakSet[EpochalCallback] = weakref.WeakSet()  # holding an unfinished run they made
_exit_hook_installed = False


def _safe(method: Callable[..., Any]) -> Callable[..., Any]:
    """Tracking never kills training: a failing event handler is logged and skipped."""

    @functools.wraps(method)
    def wrapper(self: EpochalCallback, *args: Any, **kwargs: Any) -> None:
        try:
            method(self, *args, **kwargs)
        except Exception as exc:
            log.warning("epochal: EpochalCallback.%s failed: %r", method.__name__, exc, exc_info=True)

    return wrapper


class EpochalCallback(TrainerCallback):
    """Record a Hugging Face ``Trainer`` run in epochal (see the module docstring).

    ``run``: log into this run (left open at the end) instead of making one;
    ``log_checkpoints``: store each checkpoint folder as an artifact version;
    ``keep_last``: keep only this many unaliased checkpoint versions;
    ``init_kwargs``: passed to :func:`epochal.init` (``project``, ``name``, ``tags``, ``dir``...).
    """

    def __init__(
        self, run: Run | None = None, log_checkpoints: bool = False, keep_last: int | None = None, **init_kwargs: Any
    ) -> None:
        unknown = sorted(set(init_kwargs) - _INIT_PARAMS)
        if unknown:
            raise TypeError(f"EpochalCallback got unknown epochal.init arguments {unknown}; known: {sorted(_INIT_PARAMS)}")
        if keep_last is not None and (isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1):
            raise ValueError(f"keep_last must be an int >= 1 or None, got {keep_last!r}")
        if run is not None and init_kwargs:
            raise TypeError("pass either run= or epochal.init arguments to EpochalCallback, not both")
        self.run = run
        self.log_checkpoints = bool(log_checkpoints)
        self.keep_last = keep_last
        self.init_kwargs = init_kwargs
        self._owns_run = run is None
        self._open = False  # an owned run that is not finished yet
        self._reopened = False  # opened again after training for evaluate()/predict()
        self._versions: dict[str, str] = {}  # checkpoint folder name -> artifact version

    # -- opening and closing ------------------------------------------------------------
    def _init(self, **overrides: Any) -> Run:
        kwargs = {**self.init_kwargs, **overrides}
        self.run = epochal.init(**kwargs)
        self._open, self._reopened, self._versions = True, False, {}
        _open_callbacks.add(self)
        _install_exit_hook()
        return self.run

    def _close(self, status: str | None = None, error: str | None = None) -> None:
        _in_flight.discard(self)
        _open_callbacks.discard(self)
        if self._owns_run and self._open and self.run is not None:
            self._open = False
            self.run.finish(status, error=error)

    def _start(self, args: Any, state: Any) -> Run:
        """The run of this training: injected, reused, resumed from the checkpoint, or new."""
        if not self._owns_run:
            return self.run
        saved = _saved_run(args, state) if state.global_step > 0 else {}
        resume_id = saved.get("id") if isinstance(saved.get("id"), str) else None
        current = self.run if self._open else None
        reuse = current is not None and (
            resume_id == current.id
            or (resume_id is None and state.global_step == 0 and self not in _in_flight and not self._reopened)
        )
        run_id = self.init_kwargs.get("id")
        if run_id is None:
            proposal = current.id if reuse else resume_id or os.environ.get("EPOCHAL_RUN_ID") or new_run_id()
            # a collective under DDP (every rank gets here): all ranks take rank 0's id
            run_id = distributed.shared_run_id(proposal) if distributed.world_size() > 1 else proposal
        if reuse and run_id == current.id:
            return current
        for other in list(_open_callbacks):  # this one's earlier run, or another Trainer's run being resumed here
            if other is self or other.run.id == run_id:
                if other in _in_flight:
                    other._close("failed", "training stopped before on_train_end (an exception?)")
                else:
                    other._close()
        overrides: dict[str, Any] = {"id": run_id, "resume": self.init_kwargs.get("resume") or "allow"}
        if resume_id is not None and resume_id == run_id:
            if "project" not in self.init_kwargs and isinstance(saved.get("project"), str):
                overrides["project"] = saved["project"]
            root, project = saved.get("dir"), overrides.get("project") or self.init_kwargs.get("project") or ""
            if "dir" not in self.init_kwargs and isinstance(root, str) and (Path(root) / project / run_id / RUN_FILE).is_file():
                overrides["dir"] = root
        if "name" not in self.init_kwargs and getattr(args, "run_name", None):
            overrides["name"] = args.run_name
        return self._init(**overrides)

    def _live(self) -> Run:
        """The run to log into outside training (world process zero only, so never a collective here)."""
        if self.run is None:
            run_id = self.init_kwargs.get("id") or os.environ.get("EPOCHAL_RUN_ID") or new_run_id()
            return self._init(id=run_id, resume=self.init_kwargs.get("resume") or "allow")
        if self._owns_run and not self._open:  # reopen our finished run: evaluate()/predict() after training
            run = self._init(id=self.run.id, project=self.run.project, dir=str(self.run.root), resume="allow")
            self._reopened = True
            return run
        return self.run

    # -- events -------------------------------------------------------------------------
    @_safe
    def on_train_begin(self, args, state, control, model=None, **kwargs) -> None:
        run = self._start(args, state)
        _in_flight.add(self)
        if state.is_world_process_zero and run.is_owner:
            run.config.setdefaults(_config(args, model))

    @_safe
    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        if not state.is_world_process_zero or not logs:
            return
        run = self._live()
        chart: dict[str, Any] = {}
        summary: dict[str, Any] = {}
        for key, value in logs.items():
            try:
                value = to_number(key, value)
            except (TypeError, ValueError):
                continue  # text or arrays are not chart points
            if key in SUMMARY_KEYS or _MEMORY_KEY.search(key):
                summary[key] = value
            else:
                chart[key] = value
        if summary:
            run.summary.update(summary)
        if chart:
            run.log_native(chart, step=state.global_step)

    @_safe
    def on_predict(self, args, state, control, metrics=None, **kwargs) -> None:
        if state.is_world_process_zero and metrics:
            numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            self._live().log_native(numbers, step=state.global_step, split="test")

    @_safe
    def on_save(self, args, state, control, **kwargs) -> None:
        run = self.run
        folder = Path(args.output_dir or ".") / f"checkpoint-{state.global_step}"
        if run is None or not folder.is_dir():
            return
        if args.should_save:
            write_json_atomic(
                folder / CHECKPOINT_RUN_FILE,
                {"id": run.id, "project": run.project, "dir": str(run.root), "step": state.global_step},
            )
        if not (self.log_checkpoints and state.is_world_process_zero and run.is_owner):
            return
        best = Path(state.best_model_checkpoint).name if state.best_model_checkpoint else None
        metadata = {
            "folder": folder.name, "global_step": state.global_step, "epoch": state.epoch,
            "metric": args.metric_for_best_model, "best_metric": state.best_metric,
        }
        version = run.log_artifact(
            folder, name=CHECKPOINT_ARTIFACT, type="checkpoint", aliases=("best",) if best == folder.name else (),
            metadata=metadata, keep_last=self.keep_last,
        )
        if version is not None:
            self._versions[folder.name] = version.version
        if best and best != folder.name:
            best_version = self._version_of(run, best)
            if best_version is not None:
                run.set_alias(CHECKPOINT_ARTIFACT, best_version, "best")

    def _version_of(self, run: Run, folder_name: str) -> str | None:
        if folder_name in self._versions:
            return self._versions[folder_name]
        from epochal.artifacts import list_versions  # a resumed run: versions stored by an earlier process

        for item in list_versions(run.dir):
            if item.name == CHECKPOINT_ARTIFACT and item.metadata.get("folder") == folder_name:
                return item.version
        return None

    @_safe
    def on_train_end(self, args, state, control, **kwargs) -> None:
        if self.run is not None and not self._owns_run:
            _in_flight.discard(self)
            self.run.flush()
            return
        self._close()


# -- config ---------------------------------------------------------------------------------
def _config(args: Any, model: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"training_args": args.to_dict()}
    if model is not None:
        model_config = getattr(model, "config", None)
        if hasattr(model_config, "to_dict"):
            values["model_config"] = model_config.to_dict()
        total = trainable = 0
        for param in model.parameters():
            count = getattr(param, "ds_numel", None) or param.numel()  # DeepSpeed ZeRO-3 shards report 0
            total += count
            trainable += count if param.requires_grad else 0
        values["model"] = {"class": type(model).__name__, "parameters": total, "trainable_parameters": trainable}
        peft = _peft_config(model)
        if peft:
            values["peft_config"] = peft
    return redact_mapping(_plain(values))


def _peft_config(model: Any) -> dict[str, Any] | None:
    """``{adapter: config}`` of a PEFT model or a transformers model with adapters loaded (duck-typed)."""
    configs = getattr(model, "peft_config", None)
    if not isinstance(configs, Mapping) or not configs:
        return None
    out = {}
    for name, config in configs.items():
        if hasattr(config, "to_dict"):
            config = config.to_dict()
        elif hasattr(config, "__dict__"):
            config = {k: v for k, v in vars(config).items() if not k.startswith("_")}
        out[str(name)] = config
    return out


def _plain(value: Any) -> Any:
    """Sets as sorted lists and enums as their values, so configs read as JSON rather than reprs."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v) for v in value), key=repr)
    if isinstance(value, Enum):
        return value.value
    return value


# -- resume ---------------------------------------------------------------------------------
def _saved_run(args: Any, state: Any) -> dict[str, Any]:
    """The ``epochal.json`` of the checkpoint this training resumed from, or ``{}``."""
    folders = []
    if isinstance(getattr(args, "resume_from_checkpoint", None), str):
        folders.append(Path(args.resume_from_checkpoint))
    if args.output_dir:
        folders.append(Path(args.output_dir) / f"checkpoint-{state.global_step}")
    for folder in folders:
        data = read_json(folder / CHECKPOINT_RUN_FILE)
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            return data
    return {}


# -- exit -----------------------------------------------------------------------------------
def _install_exit_hook() -> None:
    """Registered after epochal's own exit handler, so it runs first (atexit is last-in first-out)."""
    global _exit_hook_installed
    if not _exit_hook_installed:
        _exit_hook_installed = True
        atexit.register(_fail_unfinished)


def _fail_unfinished() -> None:
    """Mark runs whose training never reached ``on_train_end`` as failed (the process is exiting)."""
    for callback in list(_in_flight):
        callback._close("failed", "the process exited during training (on_train_end was never reached)")


# -- autolog --------------------------------------------------------------------------------
_original_init: Callable[..., None] | None = None


def autolog(disable: bool = False, **kwargs: Any) -> None:
    """Add an :class:`EpochalCallback` (made with ``kwargs``) to every ``Trainer`` that has none.

    Patches ``transformers.Trainer.__init__``; ``autolog(disable=True)`` puts the original back.
    """
    global _original_init
    trainer_cls = transformers.Trainer
    if disable:
        if _original_init is not None:
            trainer_cls.__init__ = _original_init
            _original_init = None
        return
    EpochalCallback(**kwargs)  # argument errors surface here, not inside every Trainer
    if _original_init is None:
        _original_init = trainer_cls.__dict__["__init__"]
    original = _original_init

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **init_kwargs: Any) -> None:
        original(self, *args, **init_kwargs)
        try:
            if not any(isinstance(cb, EpochalCallback) for cb in self.callback_handler.callbacks):
                self.add_callback(EpochalCallback(**kwargs))
        except Exception as exc:
            log.warning("epochal: could not add EpochalCallback to %s: %r", type(self).__name__, exc)

    trainer_cls.__init__ = __init__
