"""The records that flow from a run to its plugins.

On the training thread a metric record is packed at once into bytes by a
:class:`RowFormat` (one per set of metric names): that is the copy ``log()``
makes, and it is what the store appends. Plugins see a :class:`MetricBatch`, a
sequence of :class:`MetricRecord` decoded on first access.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple, Sequence, overload

__all__ = ["MetricRecord", "MetricBatch", "RowFormat", "SystemRecord", "ArtifactVersion"]


class RowFormat(struct.Struct):
    """The packed layout of one record with these metric names: step, time, epoch (NaN if unknown), values."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        super().__init__("<qdd" + "d" * len(keys))
        self.keys = keys


class MetricRecord(NamedTuple):
    """One ``log()`` call: its step, wall time (epoch seconds), epoch (or None) and values."""

    step: int
    time: float
    epoch: float | int | None
    values: dict[str, float]


def _epoch(value: float) -> float | int | None:
    if value != value:
        return None
    return int(value) if value.is_integer() else value


class MetricBatch(Sequence[MetricRecord]):
    """Metric records in logging order: runs of ``(RowFormat, packed bytes)``, decoded lazily."""

    def __init__(self, runs: list[tuple[RowFormat, list[bytes]]]) -> None:
        self.runs = runs
        self._decoded: list[MetricRecord] | None = None

    def _records(self) -> list[MetricRecord]:
        if self._decoded is None:
            out = []
            for fmt, rows in self.runs:
                keys = fmt.keys
                for row in fmt.iter_unpack(b"".join(rows)):
                    out.append(MetricRecord(row[0], row[1], _epoch(row[2]), dict(zip(keys, row[3:]))))
            self._decoded = out
        return self._decoded

    def last_values(self) -> dict[str, float]:
        """The last value of every metric in the batch, decoding only one row per run."""
        out: dict[str, float] = {}
        for fmt, rows in self.runs:
            out.update(zip(fmt.keys, fmt.unpack(rows[-1])[3:]))
        return out

    def __len__(self) -> int:
        return sum(len(rows) for _, rows in self.runs)

    @overload
    def __getitem__(self, index: int) -> MetricRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[MetricRecord]: ...
    def __getitem__(self, index):
        return self._records()[index]

    def __iter__(self) -> Iterator[MetricRecord]:
        return iter(self._records())

    def __repr__(self) -> str:
        return f"<MetricBatch of {len(self)} records>"


NAN = math.nan


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
