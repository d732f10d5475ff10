"""``epochal report`` beside DVCLive's ``make_report``: seconds and megabytes for 10, 100 and 200 runs.

Every run logs 20 metrics for 10,000 steps (the same seeded random walks for both tools). epochal's
runs are written through ``epochal.init``/``log``; DVCLive's through its own TSV layout
(``plots/metrics/<name>.tsv``, as ``Live.log_metric`` writes it) because logging 200k values per run
through ``log_metric`` would take longer than the report itself. Neither writing is timed: only the
report. epochal makes one file for all runs; ``make_report`` renders one experiment, so DVCLive gets
one report per run (the time and size columns add them up). When Debian's chromium is installed,
each report is opened in it with the network off: seconds to the load event and to every chart
drawn, and how many requests the page tried to make.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ._harness import REPO, Report, cell, failed, fmt, in_subprocess, target

__all__ = ["values", "epochal_report", "dvclive_report", "run"]

METRICS = 20
STEPS = 10_000
SIZES = (10, 100, 200)


def _names(metrics: int) -> list[str]:
    return [f"m{k:02d}/{'loss' if k % 2 == 0 else 'acc'}" for k in range(metrics)]


def values(run: int, metrics: int, steps: int):
    """The logged values of run ``run``: a (steps, metrics) random walk, seeded by the run number."""
    import numpy as np

    rng = np.random.default_rng(run)
    return 1.0 + rng.normal(0, 0.01, size=(steps, metrics)).cumsum(axis=0)


def _open(path: Path) -> dict[str, Any]:
    """Load and draw a page in headless Chromium (network off); ``{}`` when chromium is not installed."""
    sys.path.insert(0, str(REPO / "tests" / "integrations"))
    from _chromium import Browser, chromium_path

    try:
        chromium_path()
    except RuntimeError:
        return {}
    with Browser(timeout=300) as browser:
        t0 = time.perf_counter()
        browser.open(path)
        loaded = time.perf_counter() - t0
        drawn = browser.evaluate("window.epochal ? window.epochal.renderAll().then(() => true) : false")
        charts = time.perf_counter() - t0 if drawn else None
        return {"load_s": loaded, "charts_s": charts, "blocked": len(browser.blocked), "errors": len(browser.errors)}


def epochal_report(runs: int, metrics: int, steps: int, tmp: str) -> dict[str, Any]:
    import epochal

    root = Path(tmp) / "runs"
    names = _names(metrics)
    for run in range(runs):
        rows = values(run, metrics, steps).tolist()
        with epochal.init(project="bench", name=f"run-{run}", dir=root, system_interval=0,
                          config={"lr": 10 ** -(run % 4), "batch": 2 ** (run % 6), "seed": run}) as tracked:
            for step, row in enumerate(rows):
                tracked.log(dict(zip(names, row)), step=step)
    out = Path(tmp) / "report.html"
    t0 = time.perf_counter()
    epochal.report(project="bench", dir=root, output=out)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "mb": out.stat().st_size / 1e6, "files": 1, **_open(out)}


def dvclive_report(runs: int, metrics: int, steps: int, tmp: str) -> dict[str, Any]:
    import os

    from dvclive import Live
    from dvclive.report import make_report

    names = _names(metrics)
    folders = []
    for run in range(runs):
        folder = Path(tmp) / f"run-{run}"
        table = values(run, metrics, steps)
        stamp = int(time.time() * 1000)
        for k, name in enumerate(names):
            path = folder / "plots" / "metrics" / f"{name}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            base = os.path.basename(name)
            path.write_text(f"timestamp\tstep\t{base}\n" + "".join(
                f"{stamp}\t{step}\t{value}\n" for step, value in enumerate(table[:, k].tolist())))
        folders.append(folder)
    seconds = 0.0
    size = 0
    for folder in folders:
        live = Live(dir=str(folder), report="html", resume=True, save_dvc_exp=False)
        t0 = time.perf_counter()
        make_report(live)
        seconds += time.perf_counter() - t0
        size += Path(live.report_file).stat().st_size
    try:
        opened = _open(Path(folders[0]) / "report.html")
    except ImportError:  # websocket-client is in epochal's test extra
        opened = {}
    return {"seconds": seconds, "mb": size / 1e6, "files": len(folders), **opened}


def run(quick: bool = False) -> Report:
    sizes, metrics, steps = ((2, 5), 4, 500) if quick else (SIZES, METRICS, STEPS)
    report = Report(f"HTML report of N runs x {metrics} metrics x {steps:,} steps: time and size",
                    ["runs", "tool", "seconds", "MB", "files", "open: load s", "open: charts s", "blocked requests",
                     "console errors"])
    for runs in sizes:
        for tool, func in (("epochal report", "epochal_report"), ("dvclive make_report", "dvclive_report")):
            result = in_subprocess(f"report:{func}", 1800, runs=runs, metrics=metrics, steps=steps)
            report.rows.append([str(runs), tool, cell(result, "seconds"), cell(result, "mb"),
                                "" if failed(result) else str(result["files"]), cell(result, "load_s"),
                                cell(result, "charts_s"), "" if failed(result) else str(result.get("blocked", "-")),
                                "" if failed(result) else str(result.get("errors", "-"))])
            if tool.startswith("epochal") and not failed(result):
                if runs == max(sizes):
                    report.targets.append(target(result["mb"] < 20, f"{runs} runs: {fmt(result['mb'])} MB < 20 MB"))
                if result.get("charts_s") is not None and runs == max(sizes):
                    report.targets.append(target(result["charts_s"] < 30, f"{runs} runs: every chart drawn in "
                                                 f"{fmt(result['charts_s'])} s in headless Chromium"))
    report.notes.append("DVCLive renders one experiment per report (one file per run) and loads Vega from a CDN: "
                        "offline its charts stay blank (the blocked requests)")
    report.notes.append("epochal: one file, plotly.js embedded once; charts downsampled per run and metric "
                        "(min/max per bucket), tables from every point")
    return report
