"""The records that flow from a run to its plugins.

On the training thread a metric record is packed at once into bytes by a
:class:`RowFormat` (one per set of metric names): that is the copy ``log()``
makes, and it is what the store appends. Plugins see a :class:`MetricBatch`, a
read-only sequence of :class:`MetricRecord` decoded on first access.

Everything a plugin receives is a snapshot it cannot change: the run as a frozen
:class:`RunInfo`, mappings as :class:`FrozenDict` (lists as tuples), so nothing one
plugin does reaches another plugin or the store.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple, NoReturn, Sequence, overload

__all__ = [
    "MetricRecord", "MetricBatch", "RowFormat", "SystemRecord", "ArtifactVersion", "RunInfo", "FrozenDict",
    "freeze",
]


@dataclass(frozen=True)
class RunInfo:
    """What a plugin knows of the run: a frozen snapshot taken when the run opened.

    ``dir`` is the run directory (``root / project / id``); ``is_owner`` is true on the
    process that writes metrics, config and summary (rank 0); ``start_step`` is the step
    the first ``log()`` without ``step=`` uses (past the last stored step after a resume);
    ``resumed`` counts how often the run was resumed (0 for a new run); ``parent`` is the id
    of the run this one is part of, open in the same process and folder (a search
    candidate's), whose environment capture this run shares. Config, summary and metadata
    arrive through their own hooks.
    """

    id: str
    project: str
    name: str
    dir: Path
    root: Path
    rank: int = 0
    world_size: int = 1
    is_owner: bool = True
    start_step: int = 0
    resumed: int = 0
    parent: str | None = None


class FrozenDict(dict):
    """A read-only dict: what plugins get for config, summary, metadata and values.

    A ``dict`` subclass so that ``json.dump`` and ``dict(...)`` take it as it is; every
    mutating method raises ``TypeError``. ``dict(frozen)`` is a mutable shallow copy.
    """

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("this mapping is a read-only snapshot; copy it with dict(...) to change it")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return id(self)

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: Any) -> FrozenDict:
        return self

    def __reduce__(self) -> Any:
        return (FrozenDict, (dict(self),))


def freeze(value: Any) -> Any:
    """A deep, read-only copy of JSON-like data: mappings become :class:`FrozenDict`, lists tuples."""
    if isinstance(value, FrozenDict):
        return value
    if isinstance(value, Mapping):
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    if type(value) is list or type(value) is tuple:  # records (named tuples) stay what they are
        return tuple(freeze(v) for v in value)
    return value


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
    """Metric records in logging order, read-only, decoded lazily.

    ``runs`` is a tuple of ``(RowFormat, rows)``: ``rows`` is one read-only bytes-like
    object (a ``memoryview``) holding consecutive records packed by that format (what
    the store appends as is).
    """

    __slots__ = ("runs", "_decoded")

    def __init__(self, runs: Sequence[tuple[RowFormat, bytes | memoryview]]) -> None:
        self.runs: tuple[tuple[RowFormat, bytes | memoryview], ...] = tuple(runs)
        self._decoded: tuple[MetricRecord, ...] | None = None

    def _records(self) -> tuple[MetricRecord, ...]:
        if self._decoded is None:
            out = []
            for fmt, rows in self.runs:
                keys = fmt.keys
                for row in fmt.iter_unpack(rows):
                    out.append(MetricRecord(row[0], row[1], _epoch(row[2]), FrozenDict(zip(keys, row[3:]))))
            self._decoded = tuple(out)
        return self._decoded

    def last_values(self) -> dict[str, float]:
        """The last value of every metric in the batch, decoding only one row per run."""
        out: dict[str, float] = {}
        for fmt, rows in self.runs:
            out.update(zip(fmt.keys, fmt.unpack_from(rows, len(rows) - fmt.size)[3:]))
        return out

    def __len__(self) -> int:
        return sum(len(rows) // fmt.size for fmt, rows in self.runs)

    @overload
    def __getitem__(self, index: int) -> MetricRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[MetricRecord]: ...
    def __getitem__(self, index):
        records = self._records()[index]
        return list(records) if isinstance(index, slice) else records

    def __iter__(self) -> Iterator[MetricRecord]:
        return iter(self._records())

    def __repr__(self) -> str:
        return f"<MetricBatch of {len(self)} records>"


NAN = math.nan


class SystemRecord(NamedTuple):
    """One hardware sample of one process: wall time, rank and readings such as ``cpu/percent`` (read-only)."""

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
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:  # plugins share one version: its metadata is read-only
        object.__setattr__(self, "aliases", tuple(self.aliases))
        object.__setattr__(self, "metadata", freeze(self.metadata))
