"""The MLflow mirror against one local ``mlflow server`` (sqlite store), side by side with MLflow's own client.

- ``log()`` on the training thread (10 scalars per call, microseconds) with the mirror on and off:
  the mirror works on its own lane, so the training thread should not notice it.
- Throughput into the same server, in points per second from the first point logged until the
  server holds them all: epochal's live mirror (``finish()`` waits for it), MLflow's
  ``log_metrics(synchronous=False)`` (then ``flush_async_logging``) and ``MlflowClient.log_batch``
  in batches of 1000. MLflow runs from the server's own venv (``tests/integrations/mlflow_server.py``).
- ``epochal sync`` of a stored run (1M points in the full run): seconds and requests sent.

A fresh server answers its first requests several times slower, so a warm-up sync runs first.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ._harness import MARK, REPO, Report, bench_env, cell, failed, fmt, in_subprocess, target
from .hotpath import METRICS

__all__ = ["log_cost", "epochal_mirror", "epochal_sync", "mlflow_async", "mlflow_log_batch", "run"]

_clock = time.perf_counter


def _server_module() -> Any:
    spec = importlib.util.spec_from_file_location("mlflow_server", REPO / "tests" / "integrations" / "mlflow_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _epochal_env(uri: str | None, finish_timeout: float) -> None:
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    if uri:
        os.environ["EPOCHAL_MLFLOW_URI"] = uri
    os.environ["EPOCHAL_MLFLOW_FINISH_TIMEOUT"] = str(finish_timeout)
    os.environ["EPOCHAL_MLFLOW_INIT_TIMEOUT"] = "120"


# -- measured in a fresh interpreter each -------------------------------------------------------
def log_cost(mirror: bool, n: int, uri: str, tmp: str) -> dict[str, Any]:
    """Microseconds per ``log()`` on the training thread, mirror on or off (finish not timed, not awaited)."""
    import epochal

    _epochal_env(uri, 1.0)
    run = epochal.init(project="bench-log", dir=tmp, system_interval=0, sinks=["mlflow"] if mirror else [],
                       finish_timeout=5)
    log = run.log
    for _ in range(100):
        log(METRICS)
    t0 = _clock()
    for _ in range(n):
        log(METRICS)
    t1 = _clock()
    run.finish()
    return {"us": (t1 - t0) / n * 1e6}


def epochal_mirror(steps: int, uri: str, tmp: str) -> dict[str, Any]:
    """Points per second from the first ``log()`` until ``finish()`` returns with the server holding every point."""
    import epochal
    from epochal.sinks.mlflow_mirror import CURSOR_FILE
    from epochal.store import read_json

    _epochal_env(uri, 3600.0)
    run = epochal.init(project="bench-mirror", dir=tmp, system_interval=0, sinks=["mlflow"], finish_timeout=3600)
    t0 = _clock()
    for step in range(steps):
        run.log(METRICS, step=step)
    run.finish()
    seconds = _clock() - t0
    cursor = read_json(Path(run.dir) / CURSOR_FILE)["servers"][uri]
    if cursor["status"] != "FINISHED" or cursor["metrics"][0] != (Path(run.dir) / "metrics.bin").stat().st_size:
        raise RuntimeError(f"the mirror did not finish: cursor {cursor['metrics']}, status {cursor['status']}")
    points = steps * len(METRICS)
    return {"points": points, "seconds": seconds, "points_per_s": points / seconds}


def epochal_sync(steps: int, uri: str, tmp: str) -> dict[str, Any]:
    """``epochal sync`` of a stored run of ``steps`` x 10 points: seconds, requests, points/s."""
    import epochal
    from epochal.sync import sync_runs

    run = epochal.init(project="bench-sync", dir=tmp, system_interval=0, sinks=[])
    for step in range(steps):
        run.log(METRICS, step=step)
    run.finish()
    t0 = _clock()
    result = sync_runs(uri, [run.dir], out=None)[0]
    seconds = _clock() - t0
    again = sync_runs(uri, [run.dir], out=None)[0]
    if result.points != steps * len(METRICS) or again.requests:
        raise RuntimeError(f"sync sent {result.points} points; a second sync sent {again.requests} requests")
    return {"points": result.points, "seconds": seconds, "points_per_s": result.points / seconds,
            "requests": result.requests}


def mlflow_async(steps: int, uri: str, tmp: str) -> dict[str, Any]:
    """MLflow's own client: ``log_metrics(synchronous=False)`` per step, then ``flush_async_logging``."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("bench-mlflow-async")
    t0 = _clock()
    with mlflow.start_run(log_system_metrics=False):
        for step in range(steps):
            mlflow.log_metrics(METRICS, step=step, synchronous=False)
    mlflow.flush_async_logging()
    seconds = _clock() - t0
    points = steps * len(METRICS)
    return {"points": points, "seconds": seconds, "points_per_s": points / seconds}


def mlflow_log_batch(steps: int, uri: str, tmp: str) -> dict[str, Any]:
    """``MlflowClient.log_batch`` with 1000 metrics per request (MLflow's limit)."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("bench-log-batch")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("bench-log-batch")
    t0 = _clock()
    run_id = client.create_run(experiment_id).info.run_id
    batch: list[Any] = []
    for step in range(steps):
        stamp = int(time.time() * 1000)
        batch.extend(Metric(key, value, stamp, step) for key, value in METRICS.items())
        if len(batch) >= 1000:
            client.log_batch(run_id, metrics=batch[:1000])
            batch = batch[1000:]
    if batch:
        client.log_batch(run_id, metrics=batch)
    client.set_terminated(run_id)
    seconds = _clock() - t0
    points = steps * len(METRICS)
    return {"points": points, "seconds": seconds, "points_per_s": points / seconds}


def _in_server_venv(python: Path, target_name: str, timeout: float, **kwargs: Any) -> dict[str, Any]:
    """Like ``in_subprocess``, but with the MLflow server's python (where the full mlflow package lives)."""
    tmp = tempfile.mkdtemp(prefix="epochal-bench-")
    cmd = [str(python), "-m", "benchmarks._worker", target_name, json.dumps({"tmp": tmp, **kwargs})]
    try:
        proc = subprocess.run(cmd, cwd=tmp, env=bench_env(), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return {"error": (lines[-1] if lines else f"exit code {proc.returncode}")[:90]}


def run(quick: bool = False) -> Report:
    log_n = 2_000 if quick else 20_000
    steps = 200 if quick else 2_000  # x 10 scalars
    sync_steps = 2_000 if quick else 100_000  # x 10 scalars: 1M points in the full run
    module = _server_module()
    server = module.MlflowServer(Path(tempfile.mkdtemp(prefix="epochal-bench-mlflow-"))).start()
    try:
        uri = server.uri
        in_subprocess("mirror:epochal_sync", 900, steps=sync_steps // 20, uri=uri)  # warm-up: a fresh server is slow at first
        off = in_subprocess("mirror:log_cost", 300, mirror=False, n=log_n, uri=uri)
        on = in_subprocess("mirror:log_cost", 300, mirror=True, n=log_n, uri=uri)
        live = in_subprocess("mirror:epochal_mirror", 3600, steps=steps, uri=uri)
        asynchronous = _in_server_venv(server.python, "mirror:mlflow_async", 3600, steps=steps, uri=uri)
        batch = _in_server_venv(server.python, "mirror:mlflow_log_batch", 3600, steps=steps, uri=uri)
        synced = in_subprocess("mirror:epochal_sync", 7200, steps=sync_steps, uri=uri)
    finally:
        server.stop()
    report = Report(f"MLflow mirror into a local mlflow server (sqlite): log() of {len(METRICS)} scalars x {log_n:,}; "
                    f"{steps * len(METRICS):,} points mirrored; sync of {sync_steps * len(METRICS):,} points",
                    ["measure", "epochal", "mlflow log_metrics async", "MlflowClient.log_batch"])
    report.rows.append(["log() us/call, mirror off", cell(off, "us"), "", ""])
    report.rows.append(["log() us/call, mirror on", cell(on, "us"), "", ""])
    report.rows.append(["points/s into the server", cell(live, "points_per_s"), cell(asynchronous, "points_per_s"),
                        cell(batch, "points_per_s")])
    report.rows.append(["seconds until the server has all", cell(live, "seconds"), cell(asynchronous, "seconds"),
                        cell(batch, "seconds")])
    report.rows.append([f"epochal sync, {sync_steps * len(METRICS):,} points: seconds", cell(synced, "seconds"), "", ""])
    report.rows.append(["epochal sync: requests sent", "" if failed(synced) else str(synced["requests"]), "", ""])
    report.rows.append(["epochal sync: points/s", cell(synced, "points_per_s"), "", ""])
    if not failed(off) and not failed(on):
        ratio = on["us"] / off["us"]
        report.targets.append(target(ratio < 1.25, f"log() with the mirror on costs {ratio:.2f}x of off (< 1.25x)"))
    else:
        report.targets.append(target(None, "log() with the mirror on vs off"))
    if not failed(live) and not failed(batch):
        ratio = live["points_per_s"] / batch["points_per_s"]
        report.targets.append(target(ratio >= 0.8, f"mirror throughput {ratio:.2f}x of MlflowClient.log_batch (>= 0.8x)"))
    if not failed(synced):
        floor = -(-synced["points"] // 1000)
        report.targets.append(target(synced["requests"] <= floor + 10,
                                     f"sync sent {fmt(synced['requests'])} requests for {synced['points']:,} points "
                                     f"(<= {floor} batches + 10)"))
    report.notes.append(f"mlflow server and its client from {server.python.parent.parent}")
    return report
