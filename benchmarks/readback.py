"""Read-back: the same points (steps x 10 scalars) read into a pandas DataFrame.

epochal: ``epochal.open_run(id).history()`` (or, before the query API, the store's reader
plus ``pandas.DataFrame``). TensorBoard: the events written by ``SummaryWriter``, loaded by
``EventAccumulator`` with every scalar kept (``size_guidance={"scalars": 0}``; its default
samples 10,000 per tag) and turned into a step-indexed DataFrame. Timed: reading alone.
"""

from __future__ import annotations

import time
from typing import Any

from ._harness import Report, cell, failed, fmt, in_subprocess, target
from .hotpath import METRICS

__all__ = ["epochal_read", "tensorboard_read", "run"]

_clock = time.perf_counter


def epochal_read(steps: int, tmp: str) -> dict[str, Any]:
    import pandas

    import epochal as ep

    with ep.init(project="bench", dir=tmp, system_interval=0) as r:
        for _ in range(steps):
            r.log(METRICS)
    t0 = _clock()
    try:
        frame = ep.open_run(r.id, dir=tmp).history()
        how = "open_run().history()"
    except (ImportError, AttributeError, NotImplementedError):
        from .hotpath import stored_records

        frame = pandas.DataFrame.from_records(stored_records(r.dir))
        how = "store reader + DataFrame"
    seconds = _clock() - t0
    points = int(frame[list(METRICS)].notna().sum().sum())
    if points != steps * len(METRICS):
        raise RuntimeError(f"epochal read {points} points back, expected {steps * len(METRICS)}")
    return {"points": points, "read_s": seconds, "how": how}


def tensorboard_read(steps: int, tmp: str) -> dict[str, Any]:
    import pandas
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=tmp)
    add, items = writer.add_scalar, list(METRICS.items())
    t0 = _clock()
    for step in range(steps):
        for key, value in items:
            add(key, value, step)
    writer.close()
    write_s = _clock() - t0
    t0 = _clock()
    acc = EventAccumulator(tmp, size_guidance={"scalars": 0})
    acc.Reload()
    columns = {}
    for tag in acc.Tags()["scalars"]:
        events = acc.Scalars(tag)
        columns[tag] = pandas.Series([e.value for e in events], index=[e.step for e in events])
    frame = pandas.DataFrame(columns)
    seconds = _clock() - t0
    points = int(frame.notna().sum().sum())
    if points != steps * len(METRICS):
        raise RuntimeError(f"EventAccumulator read {points} points back, expected {steps * len(METRICS)}")
    return {"points": points, "read_s": seconds, "write_s": write_s, "how": "EventAccumulator + DataFrame"}


def run(quick: bool = False) -> Report:
    steps = 10_000 if quick else 100_000
    results = {
        "epochal": in_subprocess("readback:epochal_read", 300, steps=steps),
        "TensorBoard": in_subprocess("readback:tensorboard_read", 600, steps=steps),
    }
    report = Report(f"read-back: {steps * len(METRICS):,} points ({steps:,} steps x {len(METRICS)} scalars) into pandas",
                    ["reader", "how", "seconds", "ns per point", "vs EventAccumulator"])
    tb = results["TensorBoard"]
    for name, result in results.items():
        vs = "" if failed(result) else "-" if failed(tb) else f"{result['read_s'] / tb['read_s']:.3f}x"
        report.rows.append([name, result.get("how", ""), cell(result, "read_s"),
                            "" if failed(result) else fmt(result["read_s"] / result["points"] * 1e9), vs])
    ep = results["epochal"]
    if failed(ep) or failed(tb):
        report.targets.append(target(None, "read-back under 1/10 of EventAccumulator's time per point: not measured"))
    else:
        share = ep["read_s"] / tb["read_s"]
        report.targets.append(target(
            share < 0.1, f"read-back under 1/10 of EventAccumulator's time per point: 1/{1 / share:.0f}"))
    return report
