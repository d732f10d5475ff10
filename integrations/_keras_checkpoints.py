"""Following the ``ModelCheckpoint`` callbacks of one Keras fit into a :class:`~epochal.checkpoints.CheckpointPolicy`.

Keras gives a callback no view of another's saves, so for the length of the fit each followed
``ModelCheckpoint`` gets an instance-level ``_save_model`` that calls its own and then reports
what was written; :meth:`CheckpointFollower.close` removes it (the class is never touched).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

from epochal.checkpoints import CheckpointPolicy, detach
from epochal.lifecycle import Tracking

from ._keras_facts import file_state, scalars

__all__ = ["CheckpointFollower"]


class CheckpointFollower:
    """Reports each file the given ``ModelCheckpoint`` callbacks write to ``policy``.

    ``best`` is judged by each checkpoint's own monitor and mode; a fixed path rewritten at
    every save holds the last checkpoint, not the best, so it is reported as not monitored.
    ``position(batch)`` gives the ``epoch`` and ``step`` of a save (``batch`` None: epoch end).
    """

    def __init__(self, tracking: Tracking, policy: CheckpointPolicy, checkpoints: list[Any],
                 position: Callable[[int | None], dict[str, Any]]) -> None:
        self.tracking, self.policy, self.position = tracking, policy, position
        self.checkpoints = checkpoints
        self.best: dict[int, float] = {}
        for checkpoint in checkpoints:
            checkpoint._save_model = self._wrap(checkpoint, type(checkpoint)._save_model.__get__(checkpoint))

    def close(self) -> None:
        for checkpoint in self.checkpoints:
            checkpoint.__dict__.pop("_save_model", None)
        self.checkpoints = []

    def _wrap(self, ckpt: Any, save: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(save)
        def _save_model(epoch: int, batch: int | None, logs: Mapping[str, Any] | None) -> Any:
            path = self.tracking.call("checkpoint path", ckpt._get_file_path, epoch, batch, logs or {})
            if path:
                detach(path)  # Keras rewrites in place: a version stored earlier keeps its bytes
            before = file_state(path) if path else None
            result = save(epoch=epoch, batch=batch, logs=logs)
            if path and file_state(path) not in (None, before):
                with self.tracking.guard("checkpoint"):
                    self._saved(ckpt, path, batch, logs)
            return result

        return _save_model

    def _saved(self, ckpt: Any, path: str, batch: int | None, logs: Mapping[str, Any] | None) -> None:
        value = scalars(logs).get(ckpt.monitor)
        best = None
        if value is not None and (ckpt.save_best_only or "{" in ckpt.filepath):
            previous = self.best.get(id(ckpt))
            best = previous is None or bool(ckpt._is_improvement(value, previous))
            if best:
                self.best[id(ckpt)] = value
        run = self.tracking.run
        if run is not None:
            self.policy.saved(run, path, best=best, metadata={
                **self.position(batch), "monitor": ckpt.monitor, "value": value,
                "weights_only": ckpt.save_weights_only})
