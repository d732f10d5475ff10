"""Media on the training thread: one 224x224x3 uint8 image, one histogram of 1M float32 values.

Each tracker logs the same image (or values) ``n`` times at increasing steps after a short
warm-up, in its own interpreter; ``hot`` is the loop alone (what the training thread pays),
``incl. finish`` adds the tracker's finish/close (everything encoded and on disk), per call.
Anchors: ``torch.utils.tensorboard.SummaryWriter.add_image``/``add_histogram`` and
``wandb.Image``/``wandb.Histogram`` logged offline.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ._harness import Report, cell, failed, in_subprocess, target

__all__ = ["ANCHORS", "measure", "run"]

WARMUP = 3
HIST_VALUES = 1_000_000
_clock = time.perf_counter


def _data(kind: str) -> Any:
    import numpy as np

    rng = np.random.default_rng(0)
    if kind == "image":
        return rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    return rng.normal(size=HIST_VALUES).astype(np.float32)


def _timed(log: Callable[[int], None], n: int) -> tuple[float, float]:
    for step in range(WARMUP):
        log(step)
    t0 = _clock()
    for step in range(WARMUP, WARMUP + n):
        log(step)
    return t0, _clock()


def _result(n: int, t0: float, t1: float, t2: float) -> dict[str, Any]:
    return {"n": n, "hot_us": (t1 - t0) / n * 1e6, "total_us": (t2 - t0) / n * 1e6}


def epochal(kind: str, n: int, tmp: str) -> dict[str, Any]:
    import epochal as ep

    data = _data(kind)
    run = ep.init(project="bench", dir=tmp, system_interval=0)
    make = (lambda: ep.Image(data)) if kind == "image" else (lambda: ep.Histogram(data))
    log = run.log
    t0, t1 = _timed(lambda step: log({"media": make()}, step=step), n)
    run.finish()
    t2 = _clock()
    stored = len(ep.open_run(run.id, dir=tmp).media())
    if stored != n + WARMUP:
        raise RuntimeError(f"epochal stored {stored} media files, expected {n + WARMUP}")
    return _result(n, t0, t1, t2)


def tensorboard(kind: str, n: int, tmp: str) -> dict[str, Any]:
    from torch.utils.tensorboard import SummaryWriter

    data = _data(kind)
    writer = SummaryWriter(log_dir=tmp)
    if kind == "image":
        t0, t1 = _timed(lambda step: writer.add_image("media", data, step, dataformats="HWC"), n)
    else:
        t0, t1 = _timed(lambda step: writer.add_histogram("media", data, step), n)
    writer.close()
    return _result(n, t0, t1, _clock())


def wandb(kind: str, n: int, tmp: str) -> dict[str, Any]:
    import wandb as wb

    data = _data(kind)
    run = wb.init(project="bench", dir=tmp, mode="offline",
                  settings=wb.Settings(x_disable_stats=True, console="off", disable_git=True, save_code=False))
    make = (lambda: wb.Image(data)) if kind == "image" else (lambda: wb.Histogram(data))
    t0, t1 = _timed(lambda step: run.log({"media": make()}, step=step), n)
    run.finish()
    return _result(n, t0, t1, _clock())


# name -> (function, calls per kind in a full run); quick runs use a fifth.
ANCHORS: dict[str, tuple[Callable[..., dict[str, Any]], dict[str, int]]] = {
    "epochal": (epochal, {"image": 300, "histogram": 60}),
    "tb SummaryWriter": (tensorboard, {"image": 100, "histogram": 30}),
    "wandb offline": (wandb, {"image": 100, "histogram": 30}),
}


def measure(name: str, kind: str, n: int, tmp: str) -> dict[str, Any]:
    """One tracker's media loop in this process."""
    return ANCHORS[name][0](kind=kind, n=n, tmp=tmp)


def run(quick: bool = False) -> Report:
    scale = 5 if quick else 1
    results = {
        (name, kind): in_subprocess("media:measure", 300, name=name, kind=kind, n=max(5, calls[kind] // scale))
        for name, (_, calls) in ANCHORS.items() for kind in ("image", "histogram")
    }
    report = Report(
        "media: training-thread cost per log call (us): a 224x224x3 uint8 image, a 1M-value histogram",
        ["tracker", "image hot us", "image incl. finish us", "histogram hot us", "histogram incl. finish us"],
    )
    for name in ANCHORS:
        image, hist = results[(name, "image")], results[(name, "histogram")]
        report.rows.append([name, cell(image, "hot_us"), "" if failed(image) else cell(image, "total_us"),
                            cell(hist, "hot_us"), "" if failed(hist) else cell(hist, "total_us")])
    for kind in ("image", "histogram"):
        ours = results[("epochal", kind)]
        anchors = [results[(name, kind)]["hot_us"] for name in ANCHORS
                   if name != "epochal" and not failed(results[(name, kind)])]
        if failed(ours) or not anchors:
            report.targets.append(target(None, f"epochal {kind} within 1/5 of the fastest anchor: not measured"))
            continue
        ratio = ours["hot_us"] / min(anchors)
        report.targets.append(target(ratio <= 0.2, f"epochal {kind} on the training thread within 1/5 of the "
                                                   f"fastest anchor: {ratio:.3f}x"))
    report.notes.append("hot: the logging loop alone; incl. finish: until every file is encoded and written")
    return report
