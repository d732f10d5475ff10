"""The hooks an epochal plugin can implement: the plugin author's documentation.

A plugin is any object or module with functions decorated by ``epochal.hookimpl``
and named like the stubs below; it may accept any subset of a hook's arguments.
Register one with the entry-point group ``epochal`` in your package metadata::

    [project.entry-points.epochal]
    my_sink = "my_package.sink"

Every hook but :func:`epochal_run_metadata` is delivered on a background thread of
its own per plugin, in the order the run produced the events, never on the
training thread. A plugin that raises is reported once and, after a few failures,
disabled for the rest of the run; one that hangs only holds up itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import pluggy

if TYPE_CHECKING:
    from .records import ArtifactVersion, MetricBatch, SystemRecord
    from .run import Run

__all__ = ["hookspec", "hookimpl", "PROJECT"]

PROJECT = "epochal"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def epochal_run_metadata(run: Run) -> Mapping[str, Any] | None:
    """Return metadata to merge into the run's ``run.json`` at start (called synchronously in ``init``).

    Keep it fast; write bulky files from :func:`epochal_run_start` instead, which runs
    off the training thread. Values must be JSON-able and free of secrets.
    """


@hookspec
def epochal_run_start(run: Run) -> None:
    """The run opened (or resumed): ``run.dir``, ``run.config`` and metadata are known."""


@hookspec
def epochal_config(run: Run, config: Mapping[str, Any]) -> None:
    """The run's config changed; ``config`` is the whole, redacted, JSON-able config."""


@hookspec
def epochal_metrics(run: Run, records: MetricBatch) -> None:
    """A batch of metric records, in logging order (steps may repeat or go back).

    ``records`` is a sequence of ``MetricRecord(step, time, epoch, values)``, decoded on
    first access; ``records.runs`` holds the packed rows for sinks that store bytes.
    """


@hookspec
def epochal_system(run: Run, records: Sequence[SystemRecord]) -> None:
    """A batch of hardware samples from this process (``record.rank`` says whose)."""


@hookspec
def epochal_summary(run: Run, summary: Mapping[str, Any]) -> None:
    """The run's summary changed; ``summary`` is the whole summary (last values and overrides)."""


@hookspec
def epochal_metadata(run: Run, metadata: Mapping[str, Any]) -> None:
    """The run's metadata changed (tags, notes, name, name map, datasets, status, ...)."""


@hookspec
def epochal_artifact(run: Run, artifact: ArtifactVersion) -> None:
    """An artifact version was stored in the run directory."""


@hookspec
def epochal_run_end(run: Run, status: str) -> None:
    """The run finished with ``status`` (finished, failed or crashed); every earlier event was delivered."""
