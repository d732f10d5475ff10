"""What a report shows, computed from the stored runs: per-run facts, metric figures, downsampled chart traces.

Downsampling (per chart trace, i.e. one metric of one run): every run gets an equal share of
:data:`POINT_BUDGET`, split equally among the metrics it logged; a trace keeps that many points,
but never more than :data:`MAX_POINTS` nor fewer than :data:`MIN_POINTS`. A trace whose finite
values fit is drawn whole. Otherwise its points (in logging order) are cut into
``(max_points - 2) // 2`` buckets of equal length (the last one shorter) and each bucket keeps
its minimum and its maximum (the earliest of equal ones), plus the first and the last point: spikes stay visible and the
extremes of the run are exact, as in W&B's and TensorBoard's min/max views. NaN and ±inf values
are not downsampled with the rest: up to :data:`MAX_NONFINITE` of them per trace (evenly
spread) are kept as gaps in the line and drawn as markers labelled ``nan``/``inf``.

The figures of the runs table (last, best, value at a step) come from every logged point,
never from the downsampled ones. Chart values are float32 (7 significant digits) unless a
value does not fit one.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .blocks import read_series
from .names import lower_is_better
from .query import RunReader, flatten, read_metadata
from .store import CONFIG_FILE, METRICS_FILE, read_json_object

__all__ = [
    "POINT_BUDGET", "MAX_POINTS", "MIN_POINTS", "MAX_NONFINITE", "MetricFigures", "Trace", "RunData",
    "downsample", "points_per_trace", "load_run", "value_at", "compare_at", "encode_array",
]

POINT_BUDGET = 800_000
MAX_POINTS = 2_000
MIN_POINTS = 100
MAX_NONFINITE = 200


def points_per_trace(runs: int, metrics_of_run: int) -> int:
    """How many points each trace of a run with ``metrics_of_run`` metrics may keep (see the module docstring)."""
    share = POINT_BUDGET // max(1, runs) // max(1, metrics_of_run)
    return max(MIN_POINTS, min(MAX_POINTS, share))


def downsample(values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices (sorted) of the points of ``values`` (all finite) a chart keeps: min and max per bucket, first, last.

    Buckets hold ``ceil(n / ((max_points - 2) // 2))`` consecutive points (the last one fewer).
    """
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    size = -(-n // max(1, (max_points - 2) // 2))
    count = -(-n // size)
    padded = np.empty(count * size)
    offsets = np.arange(count) * size
    padded[n:] = np.inf
    padded[:n] = values
    lows = padded.reshape(count, size).argmin(axis=1) + offsets
    padded[n:] = -np.inf
    highs = padded.reshape(count, size).argmax(axis=1) + offsets
    return np.unique(np.concatenate(([0, n - 1], lows, highs)))


def encode_array(values: np.ndarray, dtype: str) -> dict[str, str]:
    """A plotly.js typed-array spec: ``{"dtype": "f4", "bdata": base64 of the little-endian bytes}``."""
    data = np.ascontiguousarray(values, dtype="<" + dtype)
    return {"dtype": dtype, "bdata": base64.b64encode(data.tobytes()).decode("ascii")}


def _float_dtype(values: np.ndarray) -> str:
    finite = np.abs(values[np.isfinite(values)])
    if finite.size and (finite.max() > 3e38 or finite[finite > 0].min(initial=1.0) < 1e-37):
        return "f8"
    return "f4"


def _step_dtype(steps: np.ndarray) -> str:
    return "i4" if not steps.size or (steps.min() >= -2**31 and steps.max() < 2**31) else "f8"


def number(value: Any) -> Any:
    """A JSON-safe number: NaN and ±inf become the strings ``"nan"``, ``"inf"``, ``"-inf"``."""
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, np.integer):
        return int(value)
    return value


def value_at(steps: np.ndarray, values: np.ndarray, step: int) -> tuple[float | None, int | None]:
    """The value last logged (in logging order) at a step <= ``step``, and that step; ``(None, None)`` when none."""
    hits = np.flatnonzero(steps <= step)
    if not hits.size:
        return None, None
    return float(values[hits[-1]]), int(steps[hits[-1]])


@dataclass
class MetricFigures:
    """A metric of one run over every logged point: count, last, best (finite), first and last step."""

    count: int
    last: float
    last_step: int
    best: float | None
    best_step: int | None
    nonfinite: int
    at: float | None = None
    at_step: int | None = None


@dataclass
class Trace:
    """One run's line in one chart: encoded x arrays (step, seconds since start, epoch), y, markers for NaN/inf.

    ``steady``: the run logged the metric at strictly rising steps (else the page gets ``"rewinds": true``);
    ``values``: the kept values in float64, for :func:`epochal._report_step.exact_values` (not embedded as such).
    """

    run: int
    x: dict[str, Any]
    y: dict[str, str]
    logged: int
    kept: int
    nonfinite: dict[str, Any] | None = None
    low: float | None = None
    high: float | None = None
    steady: bool = True
    values: np.ndarray | None = None

    def as_json(self) -> dict[str, Any]:
        out = {"run": self.run, "x": self.x, "y": self.y, "logged": self.logged, "kept": self.kept,
               "nonfinite": self.nonfinite}
        return out if self.steady else {**out, "rewinds": True}


@dataclass
class RunData:
    """Everything the report shows of one run."""

    index: int
    dir: Path
    id: str
    project: str
    name: str
    status: str
    start: float | None
    duration: float | None
    tags: list[str]
    host: str | None
    git: dict[str, Any]
    config: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    metrics: dict[str, MetricFigures] = field(default_factory=dict)
    traces: dict[str, Trace] = field(default_factory=dict)
    system: dict[str, Trace] = field(default_factory=dict)


def _trace(index: int, steps: np.ndarray, seconds: np.ndarray, epochs: np.ndarray | None, values: np.ndarray,
           max_points: int) -> Trace:
    finite = np.isfinite(values)
    finite_at = np.flatnonzero(finite)
    kept = finite_at[downsample(values[finite_at], max_points)]
    odd = np.flatnonzero(~finite)
    if odd.size > MAX_NONFINITE:
        odd = odd[np.linspace(0, odd.size - 1, MAX_NONFINITE).round().astype(np.int64)]
    chosen = np.union1d(kept, odd) if odd.size else kept
    y = values[chosen]
    x = {"step": encode_array(steps[chosen], _step_dtype(steps[chosen])), "time": encode_array(seconds[chosen], "f4")}
    if epochs is not None:
        x["epoch"] = encode_array(epochs[chosen], "f4")
    markers = None
    if odd.size:
        labels = ["nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") for v in values[odd].tolist()]
        markers = {"step": steps[odd].tolist(), "time": [round(float(s), 3) for s in seconds[odd]],
                   "epoch": None if epochs is None else [e if e == e else None for e in epochs[odd].tolist()],
                   "label": labels, "total": int((~finite).sum())}
    fin = values[finite_at]
    return Trace(index, x, encode_array(np.where(np.isfinite(y), y, np.nan), _float_dtype(y)), int(values.size),
                 int(chosen.size), markers, float(fin.min()) if fin.size else None,
                 float(fin.max()) if fin.size else None, bool(np.all(np.diff(steps) > 0)), y)


def _figures(steps: np.ndarray, values: np.ndarray, lower: bool) -> MetricFigures:
    finite = np.flatnonzero(np.isfinite(values))
    best = best_step = None
    if finite.size:
        at = finite[(np.argmin if lower else np.argmax)(values[finite])]
        best, best_step = float(values[at]), int(steps[at])
    return MetricFigures(int(values.size), float(values[-1]), int(steps[-1]), best, best_step,
                         int(values.size - finite.size))


def _relative(times: np.ndarray, origin: float | None) -> np.ndarray:
    base = origin if origin is not None else (float(np.nanmin(times)) if times.size else 0.0)
    return times - base


def load_run(index: int, dir: Path, row: Mapping[str, Any] | None, runs: int, metrics: Sequence[str] | None,
             lower: Mapping[str, bool], problem: str | None = None) -> tuple[RunData, list[str]]:
    """One run's data and every metric name in its file; read problems are recorded, never raised."""
    try:
        return _load_run(index, dir, row, runs, metrics, lower, [problem] if problem else [])
    except Exception as exc:  # whatever is wrong with a run, the others still make a report
        data = RunData(index=index, dir=dir, id=dir.name, project=dir.parent.name, name=dir.name, status="unknown",
                       start=None, duration=None, tags=[], host=None, git={}, config={},
                       problems=[*([problem] if problem else []), f"unreadable: {type(exc).__name__}: {exc}"])
        return data, []


def _load_run(index: int, dir: Path, row: Mapping[str, Any] | None, runs: int, metrics: Sequence[str] | None,
              lower: Mapping[str, bool], problems: list[str]) -> tuple[RunData, list[str]]:
    meta, notes = read_metadata(dir)
    raw_config, config_note = read_json_object(dir / CONFIG_FILE)
    if row is None:
        notes = [*notes, *([config_note] if config_note else [])]
    problems.extend(n for n in dict.fromkeys((row or {}).get("problems") or notes) if n not in problems)
    row = dict(row or {})
    config = flatten(raw_config)
    reader = RunReader(dir)
    try:
        environment = reader.environment
    except Exception as exc:  # a damaged environment file must not lose the run
        environment = {}
        problems.append(f"environment unreadable: {exc}")
    git = {**(environment.get("git") or {}), **(meta.get("git") or {})} if isinstance(environment, dict) else {}
    start = row.get("start") if isinstance(row.get("start"), (int, float)) else None
    data = RunData(
        index=index, dir=dir, id=dir.name, project=dir.parent.name, name=str(row.get("name") or meta.get("name") or dir.name),
        status=str(row.get("status") or meta.get("status") or "unknown"), start=start, duration=row.get("duration"),
        tags=[str(t) for t in row.get("tags") or meta.get("tags") or []], host=row.get("host") or meta.get("host"),
        git=git, config=config, problems=problems,
    )
    names: list[str] = []
    try:
        series, names, skipped = read_series(dir / METRICS_FILE, metrics)
        if skipped:
            problems.append(f"{skipped} damaged stretch(es) of {METRICS_FILE} skipped (a killed process?)")
        budget = points_per_trace(runs, len(series))
        for key, s in series.items():
            steps, values = s["step"], s["value"]
            data.metrics[key] = _figures(steps, values, lower.get(key, lower_is_better(key)))
            epochs = s["epoch"] if np.isfinite(s["epoch"]).any() else None
            data.traces[key] = _trace(index, steps, _relative(s["time"], start), epochs, values, budget)
    except Exception as exc:
        problems.append(f"metrics unreadable: {type(exc).__name__}: {exc}")
    try:
        data.system = _system(index, reader, start)
    except Exception as exc:
        problems.append(f"hardware samples unreadable: {type(exc).__name__}: {exc}")
    return data, names


def _system(index: int, reader: RunReader, start: float | None) -> dict[str, Trace]:
    frame = reader.system()
    if not len(frame):
        return {}
    ranks = frame["rank"].fillna(0)
    frame = frame[ranks == ranks.min()]
    times = frame["time"].to_numpy(dtype=float)
    seconds = _relative(times, start)
    out = {}
    for column in frame.columns:
        if column in ("time", "rank"):
            continue
        try:
            values = np.asarray(frame[column].to_numpy(dtype=float, na_value=np.nan))
        except (TypeError, ValueError):  # not a number series: nothing to chart
            continue
        present = np.flatnonzero(~np.isnan(values))
        if present.size:
            steps = np.arange(values.size)[present]
            out[column] = _trace(index, steps, seconds[present], None, values[present], MAX_POINTS)
    return out


def compare_at(runs: Sequence[RunData], metrics: Sequence[str], step: int | None) -> dict[str, int | None]:
    """Fill each run's value at the comparison step of each metric and return those steps.

    The step is ``step`` or, per metric, the last step every run that logged it reached. A run whose
    last record of the metric lies at or before the step needs nothing more; the others are re-read.
    """
    steps: dict[str, int | None] = {}
    reread: dict[int, list[str]] = {}
    for metric in metrics:
        lasts = [r.metrics[metric].last_step for r in runs if metric in r.metrics]
        at = step if step is not None else (min(lasts) if lasts else None)
        steps[metric] = at
        for run in runs:
            figures = run.metrics.get(metric)
            if figures is None or at is None:
                continue
            if figures.last_step <= at:
                figures.at, figures.at_step = figures.last, figures.last_step
            else:
                reread.setdefault(run.index, []).append(metric)
    for run in runs:
        keys = reread.get(run.index)
        if not keys:
            continue
        try:
            series = read_series(run.dir / METRICS_FILE, keys)[0]
        except Exception as exc:
            run.problems.append(f"metrics unreadable: {type(exc).__name__}: {exc}")
            continue
        for key in keys:
            at = steps[key]
            if key in series and at is not None:
                figures = run.metrics[key]
                figures.at, figures.at_step = value_at(series[key]["step"], series[key]["value"], at)
    return steps


def config_value(value: Any) -> str:
    """A config value as the config table shows it."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=repr, sort_keys=True)
