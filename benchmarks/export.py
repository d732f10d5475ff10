"""TensorBoard export throughput (points/s): ``epochal.sinks.tensorboard.export_runs`` on a stored run
versus ``torch.utils.tensorboard.SummaryWriter`` writing the same points (add_scalar per point, then close).
Each side is checked by reading its event files back with ``EventAccumulator``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ._harness import Report, cell, failed, in_subprocess
from .hotpath import METRICS

__all__ = ["epochal_export", "summarywriter_write", "run"]


def _count_points(folder: Path) -> int:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return sum(len(acc.Scalars(tag)) for tag in acc.Tags()["scalars"] if tag in METRICS)


def epochal_export(steps: int, tmp: str) -> dict[str, Any]:
    import epochal as ep
    from epochal.sinks.tensorboard import export_runs

    with ep.init(project="bench", dir=tmp, system_interval=0, sinks=[]) as r:
        for _ in range(steps):
            r.log(METRICS)
    t0 = time.perf_counter()
    exported = export_runs([r.dir])
    seconds = time.perf_counter() - t0
    if exported != 1:
        raise RuntimeError(f"export_runs exported {exported} runs, expected 1")
    points = steps * len(METRICS)
    found = _count_points(r.dir / "tensorboard")
    if found != points:
        raise RuntimeError(f"the export holds {found} points, expected {points}")
    return {"points": points, "seconds": seconds, "points_per_s": points / seconds}


def summarywriter_write(steps: int, tmp: str) -> dict[str, Any]:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=tmp)
    add, items = writer.add_scalar, list(METRICS.items())
    t0 = time.perf_counter()
    for step in range(steps):
        for key, value in items:
            add(key, value, step)
    writer.close()
    seconds = time.perf_counter() - t0
    points = steps * len(METRICS)
    found = _count_points(Path(tmp))
    if found != points:
        raise RuntimeError(f"SummaryWriter's events hold {found} points, expected {points}")
    return {"points": points, "seconds": seconds, "points_per_s": points / seconds}


def run(quick: bool = False) -> Report:
    steps = 2_000 if quick else 20_000
    results = {
        "epochal export_runs": in_subprocess("export:epochal_export", 300, steps=steps),
        "torch SummaryWriter": in_subprocess("export:summarywriter_write", 300, steps=steps),
    }
    report = Report(f"TensorBoard export: {steps * len(METRICS):,} points ({steps:,} steps x {len(METRICS)} scalars)",
                    ["writer", "seconds", "points/s", "vs SummaryWriter"])
    sw = results["torch SummaryWriter"]
    for name, result in results.items():
        vs = "" if failed(result) else "-" if failed(sw) else f"{result['points_per_s'] / sw['points_per_s']:.1f}x"
        report.rows.append([name, cell(result, "seconds"), "" if failed(result) else cell(result, "points_per_s"), vs])
    return report
