"""The hooks an epochal plugin can implement: the plugin author's documentation.

A plugin is any object or module with functions decorated by ``epochal.hookimpl``
and named like the stubs below; it may accept any subset of a hook's arguments.
Register one with the entry-point group ``epochal`` in your package metadata::

    [project.entry-points.epochal]
    my_sink = "my_package.sink"

What a plugin gets is a snapshot it cannot change: ``run`` is a frozen
:class:`~epochal.records.RunInfo` (id, project, name, dir, root, rank, world_size,
is_owner, start_step, resumed), never the live ``Run``; config, summary and
metadata arrive through their own hooks as read-only mappings
(:class:`~epochal.records.FrozenDict`, lists as tuples; ``dict(...)`` makes a copy);
metric batches are read-only. Nothing one plugin does reaches another plugin or the store.

Every hook but :func:`epochal_run_metadata` is delivered on a background thread of
its own per plugin (its *lane*), in the order the run produced the events, never on
the training thread. Failures are counted per plugin *and hook*: the first failure of
a hook is reported once, and after three failures that hook alone is switched off
for the rest of the run, so a plugin whose config write fails still receives
metrics. A plugin that hangs holds up only its own lane; ``finish()`` stops waiting
for it at its deadline. A plugin that raises in :func:`epochal_run_metadata`
(called during ``init``) is reported and unregistered for that run; the run opens.
"""

from __future__ import annotations

import inspect
import sys
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import pluggy

if TYPE_CHECKING:
    from .media import MediaRecord
    from .records import MetricBatch, RunInfo, SystemRecord
    from .staging import StagedArtifact

__all__ = ["hookspec", "hookimpl", "PROJECT", "SYNCHRONOUS_HOOKS", "delivered_hooks"]

PROJECT = "epochal"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def epochal_run_metadata(run: RunInfo) -> Mapping[str, Any] | None:
    """Return metadata to merge into the run's ``run.json`` at start (called synchronously in ``init``).

    Keep it fast; write bulky files from :func:`epochal_run_start` instead, which runs
    off the training thread. Values must be JSON-able and free of secrets.
    """


@hookspec
def epochal_run_start(run: RunInfo) -> None:
    """The run opened (or resumed); the whole config and metadata follow as their own events."""


@hookspec
def epochal_config(run: RunInfo, config: Mapping[str, Any]) -> None:
    """The run's config changed; ``config`` is the whole, redacted, JSON-able config."""


@hookspec
def epochal_metrics(run: RunInfo, records: MetricBatch) -> None:
    """A batch of metric records, in logging order (steps may repeat or go back).

    ``records`` is a read-only sequence of ``MetricRecord(step, time, epoch, values)``,
    decoded on first access; ``records.runs`` holds ``(RowFormat, rows)`` pairs,
    ``rows`` a read-only bytes-like object of consecutive packed rows, for sinks that store bytes.
    """


@hookspec
def epochal_system(run: RunInfo, records: Sequence[SystemRecord]) -> None:
    """A batch of hardware samples from this process (``record.rank`` says whose)."""


@hookspec
def epochal_summary(run: RunInfo, summary: Mapping[str, Any]) -> None:
    """The run's summary changed; ``summary`` is the whole summary (last values and overrides)."""


@hookspec
def epochal_metadata(run: RunInfo, metadata: Mapping[str, Any]) -> None:
    """The run's metadata changed (tags, notes, name, name map, datasets, status, ...)."""


@hookspec
def epochal_artifact(run: RunInfo, artifact: StagedArtifact) -> None:
    """An artifact version was logged: ``name``, ``version``, ``type``, ``path``, ``size`` are known.

    The built-in store files it from its staging copy on its own lane; a plugin that needs
    the stored file or its hash calls ``artifact.wait()``, which returns the stored
    :class:`~epochal.records.ArtifactVersion` (``None`` if it could not be stored).
    """


@hookspec
def epochal_artifact_alias(run: RunInfo, name: str, version: str, alias: str) -> None:
    """``Run.set_alias``: ``alias`` of artifact ``name`` now points at ``version``."""


@hookspec
def epochal_media(run: RunInfo, records: Sequence[MediaRecord]) -> None:
    """Images, histograms and texts logged by one ``log()`` call, in order with the metrics.

    Each ``MediaRecord(step, time, key, kind, items)`` holds one ``MediaItem`` per file
    (several for a batch of images): ``item.data()`` is the file's bytes (PNG/JPEG,
    histogram JSON, UTF-8 markdown), ``item.histogram()`` the bins. Both are made once,
    by whichever plugin asks first; they are read-only, so never modify them.
    """


@hookspec
def epochal_run_end(run: RunInfo, status: str) -> None:
    """The run finished with ``status`` (finished, failed or crashed); every earlier event was delivered."""


#: Hooks called on the calling thread (not through a lane).
SYNCHRONOUS_HOOKS = ("epochal_run_metadata",)


def delivered_hooks() -> tuple[str, ...]:
    """Every hook the writer delivers through the plugin lanes: each stub above but the synchronous ones."""
    module = sys.modules[__name__]
    return tuple(
        name for name, fn in inspect.getmembers(module, inspect.isfunction)
        if hasattr(fn, f"{PROJECT}_spec") and name not in SYNCHRONOUS_HOOKS
    )
