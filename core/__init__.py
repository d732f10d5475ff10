"""epochal: a local-first experiment tracker for Python training code.

>>> import epochal
>>> with epochal.init(project="demo", config={"lr": 0.1}) as run:
...     run.log({"train/loss": 0.5})

The module-level ``log``, ``finish``, ``config`` and ``summary`` act on the current run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .hookspecs import hookimpl
from .media import Histogram, Image, Text
from .plugins import register_plugin, unregister_plugin
from .active import inherited_run
from .run import Config, Run, Summary, current_run, finish, init

if TYPE_CHECKING:
    from .query import RunReader

__version__ = "0.1.0"
__all__ = [
    "init", "log", "finish", "config", "summary", "autolog", "Run", "Config", "Summary",
    "current_run", "open_run", "runs", "diff", "report", "hookimpl", "Image", "Histogram", "Text", "register_plugin",
    "unregister_plugin",
    "__version__",
]


def _require_run() -> Run:
    run = current_run() or inherited_run()
    if run is None:
        raise RuntimeError("no active run: call epochal.init() first")
    return run


def log(metrics: Mapping[str, Any], step: int | None = None, *, epoch: float | None = None) -> None:
    """Log ``metrics`` to the current run (see :meth:`Run.log`)."""
    _require_run().log(metrics, step, epoch=epoch)


def autolog(disable: bool = False, **kwargs: Any) -> None:
    """Track every training of every installed framework (see :mod:`epochal.integrations`)."""
    from .integrations import autolog as _autolog

    _autolog(disable=disable, **kwargs)


def open_run(run_id: str, dir: str | None = None, project: str | None = None) -> RunReader:
    """Open a stored run for reading (history, system, artifacts, config, summary)."""
    from .query import open_run as _open_run

    return _open_run(run_id, dir=dir, project=project)


def runs(project: str | None = None, dir: str | None = None, **filters: Any):
    """A pandas DataFrame with one row per stored run (needs pandas)."""
    from .query import runs as _runs

    return _runs(project=project, dir=dir, **filters)


def diff(a: str, b: str, dir: str | None = None) -> dict[str, Any]:
    """What differs between two runs: config, summary, packages, git."""
    from .query import diff as _diff

    return _diff(a, b, dir=dir)


def report(runs: Any = None, **options: Any) -> Path:
    """Write a self-contained HTML file comparing runs; returns its path (see :func:`epochal.reporting.report`)."""
    from .reporting import report as _report

    return _report(runs, **options)


def __getattr__(name: str) -> Any:
    if name in ("config", "summary"):
        return getattr(_require_run(), name)
    raise AttributeError(f"module 'epochal' has no attribute {name!r}")
