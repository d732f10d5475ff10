"""Hardware sampler cost: CPU time of the ``epochal-system`` thread at a 1 s interval, as % of one core.

The thread's CPU time comes from the kernel (``/proc/self/task/<tid>/schedstat``, nanoseconds;
psutil's per-thread times where that is missing). The whole process's CPU over the same idle
window is shown too: it adds the writer thread that persists the samples and its heartbeat.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from ._harness import Report, cell, failed, in_subprocess, target

__all__ = ["thread_cpu_seconds", "process_cpu_seconds", "sampler_cost", "run"]


def thread_cpu_seconds(native_id: int) -> float:
    """CPU seconds a thread of this process has used so far."""
    try:
        with open(f"/proc/self/task/{native_id}/schedstat") as handle:
            return int(handle.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        import psutil

        for thread in psutil.Process().threads():
            if thread.id == native_id:
                return thread.user_time + thread.system_time
        raise LookupError(f"thread {native_id} not found") from None


def process_cpu_seconds() -> float:
    """CPU seconds used so far by this process's living threads (nanosecond resolution where possible)."""
    try:
        total = 0.0
        for tid in os.listdir("/proc/self/task"):
            try:
                total += thread_cpu_seconds(int(tid))
            except (LookupError, ValueError):
                pass
        return total
    except OSError:
        import psutil

        return sum(psutil.Process().cpu_times()[:2])


def _sampler_thread(run: Any) -> threading.Thread:
    sampler = getattr(run, "_sampler", None)
    thread = getattr(sampler, "_thread", None)
    if isinstance(thread, threading.Thread):
        return thread
    for thread in threading.enumerate():
        if thread.name.startswith("epochal-system"):
            return thread
    raise RuntimeError("no epochal-system sampler thread found (did system_interval=1 start one?)")


def sampler_cost(seconds: float, tmp: str) -> dict[str, Any]:
    import epochal as ep

    run = ep.init(project="bench", dir=tmp, system_interval=1.0)
    thread = _sampler_thread(run)
    time.sleep(1.5)  # the window starts after start-up work (first sample, first writer cycle)
    t0, cpu0, proc0 = time.perf_counter(), thread_cpu_seconds(thread.native_id), process_cpu_seconds()
    time.sleep(seconds)  # the measurement window: the process idles while the sampler works
    elapsed = time.perf_counter() - t0
    cpu = thread_cpu_seconds(thread.native_id) - cpu0
    proc = process_cpu_seconds() - proc0
    samples = getattr(run._sampler, "samples", None)
    run.finish()
    return {
        "window_s": elapsed, "sampler_pct": 100 * cpu / elapsed, "process_pct": 100 * proc / elapsed,
        "per_sample_ms": 1000 * cpu / max(1, round(elapsed)), "samples": samples,
    }


def run(quick: bool = False) -> Report:
    seconds = 3.0 if quick else 10.0
    result = in_subprocess("sampler:sampler_cost", 120, seconds=seconds)
    report = Report(f"hardware sampler at 1 s interval, {seconds:.0f} s idle window (% of one core)",
                    ["what", "sampler thread %", "ms per sample", "whole process %"])
    report.rows.append(["epochal SystemSampler", cell(result, "sampler_pct"), cell(result, "per_sample_ms"),
                        cell(result, "process_pct")])
    if failed(result):
        report.targets.append(target(None, "sampler under 1% of a core: not measured"))
    else:
        report.targets.append(target(result["sampler_pct"] < 1,
                                     f"sampler under 1% of a core: {result['sampler_pct']:.3f}%"))
    return report
