"""Hot path: one ``log()`` of 10 scalars, in microseconds per call, on the hot path and including finish.

Every tracker logs the same dict of 10 floats ``n`` times after a short warm-up, each in its
own interpreter, with its hardware sampling off where it has a switch. ``hot_us`` is the loop
alone; ``total_us`` adds the tracker's finish/close (everything flushed to disk), both per call.
``cpu_us`` is the CPU time the calling thread spent per call in the loop (``time.thread_time``):
what the tracker costs the training thread itself, barely moved by other processes on a busy machine.
The floor is a bare ``queue.SimpleQueue.put`` of a copy of the dict; "floor + writer" adds a plain
thread that writes the same records as JSON lines, the least any persisting tracker must do.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from ._harness import Report, cell, failed, fmt, in_subprocess, target

__all__ = ["METRICS", "ANCHORS", "measure", "stored_records", "run"]

METRICS = {f"train/m{k}": 0.5 + k / 7 for k in range(10)}
WARMUP = 100
_clock = time.perf_counter
_thread_cpu = time.thread_time
_loop_cpu: list[float] = []  # the calling thread's CPU seconds in the last timed loop


def stored_records(run_dir: Path) -> list[dict[str, Any]]:
    """The metric records of a stored run, read with the store's own reader."""
    from epochal import store

    return store.read_metrics(run_dir)[0]


def _result(n: int, t0: float, t1: float, t2: float, init_s: float) -> dict[str, Any]:
    cpu = {"cpu_us": _loop_cpu[-1] / n * 1e6} if _loop_cpu else {}
    return {"n": n, "hot_us": (t1 - t0) / n * 1e6, "total_us": (t2 - t0) / n * 1e6, "init_s": init_s, **cpu}


def floor(n: int, tmp: str) -> dict[str, Any]:
    import queue

    q: queue.SimpleQueue = queue.SimpleQueue()
    put, copy = q.put, METRICS.copy
    for _ in range(WARMUP):
        put(copy())
    c0, t0 = _thread_cpu(), _clock()
    for _ in range(n):
        put(copy())
    t1 = _clock()
    _loop_cpu.append(_thread_cpu() - c0)
    return _result(n, t0, t1, t1, 0.0)


def floor_writer(n: int, tmp: str) -> dict[str, Any]:
    """The floor plus a minimal background writer: a thread draining the queue into a JSON-lines file."""
    import json
    import queue
    import threading

    q: queue.SimpleQueue = queue.SimpleQueue()

    def drain() -> None:
        dumps = json.dumps
        with open(Path(tmp) / "metrics.jsonl", "w") as out:
            step = 0
            while True:
                item = q.get()
                if item is None:
                    return
                item["step"] = step
                step += 1
                out.write(dumps(item) + "\n")

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    put, copy = q.put, METRICS.copy
    for _ in range(WARMUP):
        put(copy())
    c0, t0 = _thread_cpu(), _clock()
    for _ in range(n):
        put(copy())
    t1 = _clock()
    _loop_cpu.append(_thread_cpu() - c0)
    put(None)
    thread.join()
    return _result(n, t0, t1, _clock(), 0.0)


def epochal(n: int, tmp: str) -> dict[str, Any]:
    import epochal as ep

    t = _clock()
    run = ep.init(project="bench", dir=tmp, system_interval=0)
    init_s = _clock() - t
    log = run.log
    t0, t1 = _time_calls(log, n)
    run.finish()
    t2 = _clock()
    lines = len(stored_records(run.dir))
    if lines != n + WARMUP:
        raise RuntimeError(f"epochal stored {lines} records, expected {n + WARMUP}")
    return _result(n, t0, t1, t2, init_s)


def epochal_native(n: int, tmp: str) -> dict[str, Any]:
    """``run.log_native`` of the same 10 values under a framework's spelling (``m0`` -> ``train/m0``).

    Timed in chunks alternating with ``run.log`` of the canonical names in the same process, the
    fastest chunk of each kept, so the ratio (``log_us``: plain ``log``) is the naming's cost alone
    even on a busy machine.
    """
    import epochal as ep
    from epochal.names import KERAS

    t = _clock()
    run = ep.init(project="bench", dir=tmp, system_interval=0)
    init_s = _clock() - t
    native = {name.removeprefix("train/"): value for name, value in METRICS.items()}
    log, log_native, chunk = run.log, run.log_native, max(n // 20, 1)
    best = {"log": float("inf"), "native": float("inf")}
    for _ in range(WARMUP):
        log_native(native, dialect=KERAS)
    t0 = _clock()
    for _ in range(20):
        c0 = _clock()
        for _ in range(chunk):
            log_native(native, dialect=KERAS)
        c1 = _clock()
        for _ in range(chunk):
            log(METRICS)
        best["native"] = min(best["native"], c1 - c0)
        best["log"] = min(best["log"], _clock() - c1)
    t1 = _clock()
    run.finish()
    rows = stored_records(run.dir)
    if len(rows) != 40 * chunk + WARMUP or set(rows[0]) - {"step", "time", "epoch"} != set(METRICS):
        raise RuntimeError(f"epochal log_native stored {len(rows)} records, expected {40 * chunk + WARMUP}")
    return {"n": 40 * chunk, "hot_us": best["native"] / chunk * 1e6, "log_us": best["log"] / chunk * 1e6,
            "total_us": (_clock() - t0) / (40 * chunk) * 1e6, "init_s": init_s, "loop_s": t1 - t0}


def _time_calls(log: Any, n: int) -> tuple[float, float]:
    """Warm ``log`` up, then call it ``n`` times with the benchmark's metrics; returns start and end times."""
    for _ in range(WARMUP):
        log(METRICS)
    c0, t0 = _thread_cpu(), _clock()
    for _ in range(n):
        log(METRICS)
    t1 = _clock()
    _loop_cpu.append(_thread_cpu() - c0)
    return t0, t1


def trackio(n: int, tmp: str) -> dict[str, Any]:
    os.environ["TRACKIO_DIR"] = tmp
    import trackio as tr

    t = _clock()
    run = tr.init(project="bench", embed=False, auto_log_cpu=False, auto_log_gpu=False)
    init_s = _clock() - t
    log = run.log
    t0, t1 = _time_calls(log, n)
    tr.finish()
    return _result(n, t0, t1, _clock(), init_s)


def wandb(n: int, tmp: str) -> dict[str, Any]:
    import wandb as wb

    t = _clock()
    run = wb.init(project="bench", dir=tmp, mode="offline",
                  settings=wb.Settings(x_disable_stats=True, console="off", disable_git=True, save_code=False))
    init_s = _clock() - t
    log = run.log
    t0, t1 = _time_calls(log, n)
    run.finish()
    return _result(n, t0, t1, _clock(), init_s)


def mlflow(n: int, tmp: str) -> dict[str, Any]:
    import mlflow as mf

    t = _clock()
    mf.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
    mf.config.enable_async_logging(True)
    mf.start_run(log_system_metrics=False)
    init_s = _clock() - t
    log = mf.log_metrics
    for i in range(WARMUP):
        log(METRICS, step=i, synchronous=False)
    t0 = _clock()
    for i in range(WARMUP, WARMUP + n):
        log(METRICS, step=i, synchronous=False)
    t1 = _clock()
    mf.end_run()
    mf.flush_async_logging()
    return _result(n, t0, t1, _clock(), init_s)


def tensorboard(n: int, tmp: str) -> dict[str, Any]:
    from torch.utils.tensorboard import SummaryWriter

    t = _clock()
    writer = SummaryWriter(log_dir=tmp)
    init_s = _clock() - t
    add, items = writer.add_scalar, list(METRICS.items())
    for i in range(WARMUP):
        for key, value in items:
            add(key, value, i)
    t0 = _clock()
    for i in range(WARMUP, WARMUP + n):
        for key, value in items:
            add(key, value, i)
    t1 = _clock()
    writer.close()
    return _result(n, t0, t1, _clock(), init_s)


def dvclive(n: int, tmp: str) -> dict[str, Any]:
    from dvclive import Live

    t = _clock()
    live = Live(dir=os.path.join(tmp, "dvclive"), save_dvc_exp=False, dvcyaml=None, report=None,
                monitor_system=False)
    init_s = _clock() - t
    log, step, items = live.log_metric, live.next_step, list(METRICS.items())
    for _ in range(WARMUP):
        for key, value in items:
            log(key, value)
        step()
    t0 = _clock()
    for _ in range(n):
        for key, value in items:
            log(key, value)
        step()
    t1 = _clock()
    live.end()
    return _result(n, t0, t1, _clock(), init_s)


# name -> (function, calls in a full run); quick runs use a tenth.
ANCHORS: dict[str, tuple[Callable[..., dict[str, Any]], int]] = {
    "floor": (floor, 200_000),
    "floor + writer": (floor_writer, 200_000),
    "epochal": (epochal, 200_000),
    "epochal log_native": (epochal_native, 200_000),
    "trackio": (trackio, 50_000),
    "wandb offline": (wandb, 20_000),
    "mlflow async sqlite": (mlflow, 5_000),
    "tb SummaryWriter": (tensorboard, 20_000),
    "dvclive": (dvclive, 2_000),
}
REPEATED = ("floor", "epochal", "epochal log_native")  # measured several times, alternating; best kept


def measure(name: str, n: int, tmp: str) -> dict[str, Any]:
    """Run one tracker's hot-path loop in this process (the smoke test calls this directly)."""
    return ANCHORS[name][0](n=n, tmp=tmp)


def _best(results: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in results if not failed(r)]
    if not good:
        return results[-1]
    best = {**min(good, key=lambda r: r["hot_us"]), "total_us": min(r["total_us"] for r in good)}
    cpu = [r["cpu_us"] for r in good if "cpu_us" in r]
    return {**best, "cpu_us": min(cpu)} if cpu else best


def run(quick: bool = False) -> Report:
    scale = 10 if quick else 1
    repeats = 2 if quick else 3
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name in ANCHORS}
    for _ in range(repeats):  # floor and epochal alternate, so load drift hits both alike
        for name in REPEATED:
            raw[name].append(in_subprocess("hotpath:measure", 180, name=name, n=ANCHORS[name][1] // scale))
    for name, (_, calls) in ANCHORS.items():
        if name not in REPEATED:
            raw[name].append(in_subprocess("hotpath:measure", 300, name=name, n=max(100, calls // scale)))
    results = {name: _best(rs) for name, rs in raw.items()}
    floor_us = None if failed(results["floor"]) else results["floor"]["hot_us"]

    def ratio(result: dict[str, Any], key: str) -> str:
        return "-" if failed(result) or not floor_us else f"{result[key] / floor_us:.1f}x"

    report = Report(
        "hot path: run.log() of 10 scalars (us per call; ratios to the floor's hot path)",
        ["tracker", "calls", "hot us", "hot/floor", "incl. finish us", "incl./floor", "thread CPU us", "init s"],
    )
    for name, result in results.items():
        report.rows.append([
            name, "-" if failed(result) else f"{result['n']:,}", cell(result, "hot_us"), ratio(result, "hot_us"),
            "" if failed(result) else cell(result, "total_us"), "" if failed(result) else ratio(result, "total_us"),
            "" if failed(result) or "cpu_us" not in result else cell(result, "cpu_us"),
            "" if failed(result) else cell(result, "init_s", 2),
        ])
    ep, fw = results["epochal"], results["floor + writer"]
    if floor_us and not failed(ep):
        hot, total = ep["hot_us"] / floor_us, ep["total_us"] / floor_us
        report.targets.append(target(hot <= 2, f"epochal hot path within 2x the floor: {hot:.2f}x"))
        report.targets.append(target(total <= 3, f"epochal including finish within 3x the floor: {total:.2f}x"))
        if not failed(fw):
            report.notes.append(
                f"including finish, epochal is {ep['total_us'] / fw['total_us']:.2f}x a bare thread writing JSON "
                f"lines ({fmt(fw['total_us'])} us/call): the least a persisting tracker can cost"
            )
    else:
        report.targets.append(target(None, "epochal hot path within 2x / 3x the floor: not measured"))
    native = results["epochal log_native"]
    if not failed(native):
        slower = native["hot_us"] / native["log_us"]
        report.targets.append(target(slower <= 1.5, f"run.log_native (framework names -> canonical) within 1.5x of "
                                                    f"run.log: {native['hot_us']:.2f} vs {native['log_us']:.2f} us, "
                                                    f"{slower:.2f}x (same process, alternating chunks)"))
    else:
        report.targets.append(target(None, "run.log_native within 1.5x of run.log: not measured"))
    report.notes.append(f"floor and epochal rows: best of {repeats} runs, alternating; others: one run each")
    return report
