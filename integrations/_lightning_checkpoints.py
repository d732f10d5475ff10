"""Following Lightning's ``ModelCheckpoint`` saves into a :class:`~epochal.checkpoints.CheckpointPolicy`.

Lightning tells every logger after each save (``after_save_checkpoint``); the file just written
is the newest of the callback's best, last and top-k paths, and it is the best when the callback
monitors a value and names it its ``best_model_path``. At the end of training the first
callback's ``best_model_path`` is the best checkpoint, as for ``trainer.checkpoint_callback``.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from epochal.checkpoints import CheckpointPolicy
from epochal.run import Run

__all__ = ["CheckpointFollower"]


class CheckpointFollower:
    """Reports the files the ``ModelCheckpoint`` callbacks of one training write to ``policy``."""

    def __init__(self, policy: CheckpointPolicy) -> None:
        self.policy = policy
        self._saves: dict[str, tuple[Any, Any]] = {}  # ModelCheckpoint state_key -> (callback, last step stored)

    def saved(self, cb: Any, run: Callable[[], Run]) -> None:
        """``cb`` has saved a checkpoint; ``run()`` gives the run to record it in."""
        step = cb._last_global_step_saved
        key = cb.state_key
        if key in self._saves and self._saves[key][1] == step:
            return  # the same step's save under a second name (last.ckpt)
        self._saves[key] = (cb, step)
        files = [p for p in {cb.best_model_path, cb.last_model_path, *cb.best_k_models} if p and os.path.exists(p)]
        if files:
            path = max(files, key=os.path.getmtime)  # the file ModelCheckpoint has just written
            best = path == cb.best_model_path if cb.monitor else None
            self.policy.saved(run(), path, best=best, metadata=_facts(cb, path, step))

    def end(self, run: Run) -> None:
        """Training ended: the policy records what it keeps; the next training starts afresh."""
        if self._saves and run.is_owner:
            cb, step = next(iter(self._saves.values()))
            best = cb.best_model_path if cb.monitor and cb.best_model_path else None
            self.policy.end(run, best=best, metadata=_facts(cb, best, step) if best else None)
        self._saves.clear()

    def __getstate__(self) -> dict[str, Any]:  # a pickled copy (ddp_spawn) follows its own callbacks
        return {**self.__dict__, "_saves": {}}


def _facts(cb: Any, path: str, step: Any) -> dict[str, Any]:
    score = cb.best_k_models.get(path, cb.best_model_score if path == cb.best_model_path else cb.current_score)
    number = float(score.item() if hasattr(score, "item") else score) if score is not None else None
    return {"monitor": cb.monitor, "mode": cb.mode, "score": number, "step": step}
