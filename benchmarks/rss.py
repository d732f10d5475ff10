"""RSS growth of a process logging ``steps`` records of 10 scalars to epochal (psutil, sampled every tenth)."""

from __future__ import annotations

import gc
import time
from typing import Any

from ._harness import Report, cell, failed, in_subprocess, target
from .hotpath import METRICS

__all__ = ["rss_growth", "run"]

MB = 2**20


def rss_growth(steps: int, tmp: str) -> dict[str, Any]:
    import psutil

    import epochal as ep

    process = psutil.Process()
    run = ep.init(project="bench", dir=tmp, system_interval=0)
    log = run.log
    for _ in range(1000):  # names registered, writer warmed up
        log(METRICS)
    run.flush()
    gc.collect()
    base = process.memory_info().rss
    peak = base
    chunk = max(1, steps // 10)
    t0 = time.perf_counter()
    for _ in range(steps // chunk):
        for _ in range(chunk):
            log(METRICS)
        peak = max(peak, process.memory_info().rss)
    logged_s = time.perf_counter() - t0
    run.flush()
    gc.collect()
    flushed = process.memory_info().rss
    run.finish()
    gc.collect()
    finished = process.memory_info().rss
    return {
        "steps": steps, "peak_mb": (max(peak, flushed) - base) / MB, "flushed_mb": (flushed - base) / MB,
        "finished_mb": (finished - base) / MB, "base_mb": base / MB, "log_s": logged_s,
    }


def run(quick: bool = False) -> Report:
    steps = 100_000 if quick else 1_000_000
    result = in_subprocess("rss:rss_growth", 600, steps=steps)
    report = Report(f"RSS growth over {steps:,} run.log() calls of 10 scalars (MB above the RSS after warm-up)",
                    ["tracker", "base MB", "peak growth", "after flush", "after finish", "logging s"])
    report.rows.append(["epochal", cell(result, "base_mb"), cell(result, "peak_mb"), cell(result, "flushed_mb"),
                        cell(result, "finished_mb"), cell(result, "log_s")])
    if failed(result):
        report.targets.append(target(None, "RSS growth under 50 MB per 1M steps: not measured"))
    else:
        per_million = result["peak_mb"] * 1_000_000 / steps
        report.targets.append(target(per_million < 50, f"RSS growth under 50 MB per 1M steps (peak): "
                                                       f"{per_million:.1f} MB per 1M steps"))
    from epochal.backlog import LIMIT_BYTES, WAKE_BYTES

    report.notes.append(f"bound on rows between log() and the plugins: {WAKE_BYTES / MB:.0f} MB per row format "
                        f"+ {LIMIT_BYTES / MB:.0f} MB waiting for the writer (epochal/backlog.py)")
    return report

