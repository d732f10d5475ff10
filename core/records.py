"""The records that flow from a run to its plugins."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = ["MetricRecord", "SystemRecord", "ArtifactVersion"]


class MetricRecord(NamedTuple):
    """One ``log()`` call: its step, wall time (epoch seconds), epoch (or None) and values."""

    step: int
    time: float
    epoch: float | int | None
    values: dict[str, float | int]


class SystemRecord(NamedTuple):
    """One hardware sample of one process: wall time, rank and readings such as ``cpu/percent``."""

    time: float
    rank: int
    values: dict[str, float | int]


@dataclass(frozen=True)
class ArtifactVersion:
    """One stored version of a named artifact, as listed in ``artifacts/manifest.json``."""

    name: str
    version: str
    type: str
    path: str  # relative to the run directory
    sha256: str
    size: int
    files: int
    created: float
    aliases: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
