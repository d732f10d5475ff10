"""Media on the training thread: one 224x224x3 uint8 image, one histogram of 1M float32 values.

Each tracker logs the same image (or values) in its own interpreter, at increasing steps after a
short warm-up, two ways. ``one call``: calls one at a time with the tracker caught up in
between (its flush, outside the timed call), as in training where media come once per epoch
or validation: what one call costs the training thread (the figure the target judges).
``back-to-back``: ``n`` calls in a tight loop (a backlog builds up behind the training
thread: memory for the queued copies, the writer competing for the cores), and ``incl.
finish`` adds the tracker's finish/close (everything encoded and on disk), per call.
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


def _timed(log: Callable[[int], None], n: int, flush: Callable[[], Any]) -> tuple[float, float, float]:
    """Mean seconds of one call with the tracker caught up in between; then start and end of ``n`` back to back."""
    for step in range(WARMUP):
        log(step)
        flush()
    single = []
    for step in range(WARMUP, WARMUP + n):
        t = _clock()
        log(step)
        single.append(_clock() - t)
        flush()
    t0 = _clock()
    for step in range(WARMUP + n, WARMUP + 2 * n):
        log(step)
    return sum(single) / n, t0, _clock()


def _result(n: int, one: float, t0: float, t1: float, t2: float) -> dict[str, Any]:
    return {"n": n, "one_us": one * 1e6, "hot_us": (t1 - t0) / n * 1e6, "total_us": (t2 - t0) / n * 1e6}


def epochal(kind: str, n: int, tmp: str) -> dict[str, Any]:
    import epochal as ep

    data = _data(kind)
    run = ep.init(project="bench", dir=tmp, system_interval=0)
    make = (lambda: ep.Image(data)) if kind == "image" else (lambda: ep.Histogram(data))
    log = run.log
    one, t0, t1 = _timed(lambda step: log({"media": make()}, step=step), n, run.flush)
    run.finish()
    t2 = _clock()
    stored = len(ep.open_run(run.id, dir=tmp).media())
    if stored != 2 * n + WARMUP:
        raise RuntimeError(f"epochal stored {stored} media files, expected {2 * n + WARMUP}")
    return _result(n, one, t0, t1, t2)


def tensorboard(kind: str, n: int, tmp: str) -> dict[str, Any]:
    from torch.utils.tensorboard import SummaryWriter

    data = _data(kind)
    writer = SummaryWriter(log_dir=tmp)
    if kind == "image":
        one, t0, t1 = _timed(lambda step: writer.add_image("media", data, step, dataformats="HWC"), n, writer.flush)
    else:
        one, t0, t1 = _timed(lambda step: writer.add_histogram("media", data, step), n, writer.flush)
    writer.close()
    return _result(n, one, t0, t1, _clock())


def wandb(kind: str, n: int, tmp: str) -> dict[str, Any]:
    import wandb as wb

    data = _data(kind)
    run = wb.init(project="bench", dir=tmp, mode="offline",
                  settings=wb.Settings(x_disable_stats=True, console="off", disable_git=True, save_code=False))
    make = (lambda: wb.Image(data)) if kind == "image" else (lambda: wb.Histogram(data))
    one, t0, t1 = _timed(lambda step: run.log({"media": make()}, step=step), n, lambda: None)  # encoded in log()
    run.finish()
    return _result(n, one, t0, t1, _clock())


# name -> (function, calls per kind in a full run); quick runs use a fifth.
ANCHORS: dict[str, tuple[Callable[..., dict[str, Any]], dict[str, int]]] = {
    "epochal": (epochal, {"image": 100, "histogram": 30}),
    "tb SummaryWriter": (tensorboard, {"image": 50, "histogram": 15}),
    "wandb offline": (wandb, {"image": 50, "histogram": 15}),
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
        ["tracker", "image: one call", "back-to-back", "incl. finish", "histogram: one call", "back-to-back",
         "incl. finish"],
    )
    for name in ANCHORS:
        row = [name]
        for kind in ("image", "histogram"):
            result = results[(name, kind)]
            row += [cell(result, "one_us"), "" if failed(result) else cell(result, "hot_us"),
                    "" if failed(result) else cell(result, "total_us")]
        report.rows.append(row)
    for kind in ("image", "histogram"):
        ours = results[("epochal", kind)]
        anchors = [results[(name, kind)]["one_us"] for name in ANCHORS
                   if name != "epochal" and not failed(results[(name, kind)])]
        if failed(ours) or not anchors:
            report.targets.append(target(None, f"epochal {kind} within 1/5 of the fastest anchor: not measured"))
            continue
        ratio = ours["one_us"] / min(anchors)
        report.targets.append(target(ratio <= 0.2, f"epochal {kind} on the training thread within 1/5 of the "
                                                   f"fastest anchor: {ratio:.3f}x"))
    report.notes.append("one call: the tracker caught up before each (the target's figure); back-to-back: a tight "
                        "loop, a backlog behind it; incl. finish: until every file is encoded and written")
    return report
