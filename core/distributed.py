"""Rank detection and the rank-zero rules of a multi-process job.

Rank 0 owns the run (metrics, config, summary, artifacts); other ranks attach to
the same run id and write only their own per-rank files (hardware samples).
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any, Callable, Mapping, TypeVar

__all__ = ["rank", "local_rank", "world_size", "is_rank_zero", "rank_zero_only", "shared_run_id"]

T = TypeVar("T")
_RANK_VARS = ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK")
_LOCAL_RANK_VARS = ("LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK")
_WORLD_VARS = ("WORLD_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def _first_int(names: tuple[str, ...], environ: Mapping[str, str], default: int) -> int:
    for name in names:
        value = environ.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                continue
    return default


def _torch_dist() -> Any:
    """``torch.distributed`` when torch is already imported and a process group is up, else None."""
    dist = sys.modules.get("torch.distributed")
    try:
        if dist is not None and dist.is_available() and dist.is_initialized():
            return dist
    except Exception:
        pass
    return None


def rank(environ: Mapping[str, str] | None = None) -> int:
    """This process's global rank (0 when not distributed)."""
    dist = _torch_dist()
    if dist is not None and environ is None:
        return dist.get_rank()
    return _first_int(_RANK_VARS, os.environ if environ is None else environ, 0)


def local_rank(environ: Mapping[str, str] | None = None) -> int:
    return _first_int(_LOCAL_RANK_VARS, os.environ if environ is None else environ, 0)


def world_size(environ: Mapping[str, str] | None = None) -> int:
    """The number of processes in the job (1 when not distributed)."""
    dist = _torch_dist()
    if dist is not None and environ is None:
        return dist.get_world_size()
    return _first_int(_WORLD_VARS, os.environ if environ is None else environ, 1)


def is_rank_zero() -> bool:
    return rank() == 0


def rank_zero_only(fn: Callable[..., T]) -> Callable[..., T | None]:
    """Decorator: call ``fn`` on rank 0 only; other ranks get None."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T | None:
        return fn(*args, **kwargs) if is_rank_zero() else None

    return wrapper


def shared_run_id(proposed: str) -> str:
    """The run id every rank of a job agrees on.

    In order: ``EPOCHAL_RUN_ID``; rank 0's proposal broadcast over ``torch.distributed``
    when a process group is up; else an id derived from what the launcher gives every
    rank alike (torchrun's rendezvous id, master address and port, the launcher's pid).
    """
    if os.environ.get("EPOCHAL_RUN_ID"):
        return os.environ["EPOCHAL_RUN_ID"]
    dist = _torch_dist()
    if dist is not None and dist.get_world_size() > 1:
        box = [proposed if dist.get_rank() == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return str(box[0])
    env = os.environ
    launcher = str(os.getppid()) if "TORCHELASTIC_RUN_ID" in env else ""
    seed = "|".join(
        (env.get("TORCHELASTIC_RUN_ID", ""), env.get("SLURM_JOB_ID", ""), env.get("MASTER_ADDR", ""),
         env.get("MASTER_PORT", ""), launcher)
    )
    return "ddp-" + hashlib.sha256(seed.encode()).hexdigest()[:12]
