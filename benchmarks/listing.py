"""``epochal.runs()`` over many synthetic runs under one root: listing time per run.

The runs are made by writing run.json, config.json and summary.json straight into the layout
of :mod:`epochal.store` (``<root>/<project>/<run_id>/``): mostly finished, some failed, and a
few left ``running`` by a process that is gone, so the crash check is exercised too.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from ._harness import Report, cell, failed, fmt, in_subprocess

__all__ = ["make_runs", "list_time", "run"]


def make_runs(root: Path, count: int, projects: int = 10) -> None:
    """Write ``count`` small finished/failed/crashed runs under ``root`` across ``projects`` projects."""
    host, pid, now = socket.gethostname(), os.getpid(), time.time()
    for i in range(count):
        run_dir = root / f"proj{i % projects}" / f"20261101-000000-{i:06x}"
        run_dir.mkdir(parents=True)
        status = "failed" if i % 100 == 1 else "running" if i % 100 == 2 else "finished"
        started = now - 86400 + i
        meta = {
            "id": run_dir.name, "name": f"run-{i}", "project": run_dir.parent.name, "status": status,
            "created": started, "started": started, "finished": None if status == "running" else started + 60,
            "host": host, "pid": pid, "rank": 0, "world_size": 1, "tags": ["bench", f"t{i % 7}"], "notes": "",
            "flush_interval": 1.0, "epochal_version": "0.1.0", "resumed": 0, "name_map": {}, "datasets": {},
            "error": None, "last_step": 999, "metric_names": ["train/loss", "val/accuracy", "val/loss"],
            "git": {"commit": f"{i:040x}", "branch": "main", "dirty": False},
        }
        config = {"lr": 10 ** -(i % 5), "batch_size": 2 ** (i % 8), "optimizer": {"name": "adam", "betas": [0.9, 0.999]},
                  "model": {"layers": i % 12, "hidden": 64}, "seed": i}
        summary = {"train/loss": 1 / (i + 1), "val/loss": 1.1 / (i + 1), "val/accuracy": (i % 1000) / 1000}
        for name, data in (("run.json", meta), ("config.json", config), ("summary.json", summary)):
            (run_dir / name).write_text(json.dumps(data))


def list_time(count: int, tmp: str) -> dict[str, Any]:
    import pandas  # noqa: F401  (imported before the clock: not part of listing)

    import epochal as ep

    root = Path(tmp) / "runs"
    t0 = time.perf_counter()
    make_runs(root, count)
    make_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    frame = ep.runs(dir=str(root))
    seconds = time.perf_counter() - t0
    if len(frame) != count:
        raise RuntimeError(f"epochal.runs() listed {len(frame)} runs, expected {count}")
    crashed = int((frame["status"] == "crashed").sum()) if "status" in frame else -1
    return {"runs": count, "list_s": seconds, "per_run_us": seconds / count * 1e6, "make_s": make_s,
            "columns": len(frame.columns), "crashed": crashed}


def run(quick: bool = False) -> Report:
    count = 1_000 if quick else 10_000
    result = in_subprocess("listing:list_time", 600, count=count)
    report = Report(f"epochal.runs() over {count:,} synthetic runs under one root",
                    ["call", "runs", "seconds", "us per run", "columns", "made in s"])
    report.rows.append(["epochal.runs(dir=root)", f"{count:,}", cell(result, "list_s"), cell(result, "per_run_us"),
                        "" if failed(result) else str(result["columns"]), cell(result, "make_s")])
    if not failed(result):
        report.notes.append(f"{result['crashed']} runs left 'running' by a gone process read as crashed; "
                            f"{fmt(result['per_run_us'])} us per run reads 3 JSON files and checks status")
    return report
