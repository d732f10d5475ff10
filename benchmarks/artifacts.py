"""``log_artifact`` of a 200 MB file: what the calling (training) thread pays, beside a plain copy.

Each tool runs in a fresh interpreter on the same file (written once, so every reader gets it
from the page cache). The figure is the time until the call returns, best of ``repeats``; for
epochal also the time until the store has filed the version (hash, dedupe, manifest) on its
own thread, and the synchronous path (``epochal.artifacts.store_artifact``) that hashes on the
caller's thread.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from ._harness import Report, cell, failed, in_subprocess, target

__all__ = ["measure", "run"]


def _source(tmp: str, megabytes: int) -> Path:
    path = Path(tmp) / "model.bin"
    block = os.urandom(1 << 20)
    with open(path, "wb") as handle:
        for i in range(megabytes):
            handle.write(block[:-8] + i.to_bytes(8, "little"))  # distinct content per run
    return path


def _best(fn: Any, repeats: int) -> float:
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(tool: str, megabytes: int, repeats: int, tmp: str) -> dict[str, Any]:
    source = _source(tmp, megabytes)
    out: dict[str, Any] = {}
    if tool == "copy":
        out["call_s"] = _best(lambda i: shutil.copyfile(source, Path(tmp) / f"copy{i}.bin"), repeats)
    elif tool == "epochal":
        import epochal

        run = epochal.init(project="bench", dir=Path(tmp) / "runs", system_interval=0)
        calls, stored = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            version = run.log_artifact(source, name="model")
            calls.append(time.perf_counter() - t0)
            assert version.wait() is not None  # filed before the next call is timed
            stored.append(time.perf_counter() - t0)
        out["call_s"], out["stored_s"] = min(calls), min(stored)
        run.finish()
    elif tool == "epochal-sync":
        import epochal
        from epochal.artifacts import store_artifact

        run = epochal.init(project="bench", dir=Path(tmp) / "runs", system_interval=0)
        out["call_s"] = _best(lambda i: store_artifact(run.dir, source, name=f"model{i}"), repeats)
        run.finish()
    elif tool == "wandb":
        import wandb

        run = wandb.init(project="bench", dir=tmp, mode="offline")

        def log(i: int) -> None:
            artifact = wandb.Artifact(f"model{i}", type="model")
            artifact.add_file(str(source))
            run.log_artifact(artifact)

        out["call_s"] = _best(log, repeats)
        run.finish()
    elif tool == "mlflow":
        import mlflow

        mlflow.set_tracking_uri(Path(tmp, "mlruns").as_uri())
        with mlflow.start_run():
            out["call_s"] = _best(lambda i: mlflow.log_artifact(str(source), artifact_path=f"m{i}"), repeats)
    elif tool == "dvclive":
        from dvclive import Live

        with Live(dir=str(Path(tmp) / "dvclive"), save_dvc_exp=False) as live:
            out["call_s"] = _best(lambda i: live.log_artifact(str(source), name=f"model{i}", copy=True), repeats)
    return out


def run(quick: bool = False) -> Report:
    megabytes, repeats = (20, 2) if quick else (200, 3)
    tools = [("plain file copy (shutil.copyfile)", "copy"), ("epochal run.log_artifact", "epochal"),
             ("epochal store_artifact (hash on caller)", "epochal-sync"), ("wandb run.log_artifact", "wandb"),
             ("mlflow.log_artifact", "mlflow"), ("dvclive log_artifact(copy=True)", "dvclive")]
    results = {key: in_subprocess("artifacts:measure", 600, tool=key, megabytes=megabytes, repeats=repeats)
               for _, key in tools}
    report = Report(f"log_artifact of a {megabytes} MB file: seconds on the calling thread (best of {repeats})",
                    ["tool", "call returns (s)", "x plain copy", "stored (s)"])
    base = results["copy"].get("call_s") if not failed(results["copy"]) else None
    for label, key in tools:
        result = results[key]
        ratio = "-" if failed(result) or not base else f"{result['call_s'] / base:.2f}"
        report.rows.append([label, cell(result, "call_s"), ratio, cell(result, "stored_s") if key == "epochal" else ""])
    ours = results["epochal"]
    if base and not failed(ours):
        report.targets.append(target(ours["call_s"] <= 1.2 * base,
                                     f"epochal log_artifact returns within 1.2x of a plain copy "
                                     f"({ours['call_s'] / base:.2f}x)"))
    else:
        report.targets.append(target(None, "epochal log_artifact within 1.2x of a plain copy"))
    return report
