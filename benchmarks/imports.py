"""Import time: each tracker imported in a fresh interpreter, timed inside it (interpreter start-up excluded)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile

from ._harness import Report, bench_env, fmt, target

__all__ = ["STATEMENTS", "import_seconds", "run"]

STATEMENTS = {
    "epochal": "import epochal",
    "trackio": "import trackio",
    "wandb": "import wandb",
    "mlflow": "import mlflow",
    "tb SummaryWriter": "from torch.utils.tensorboard import SummaryWriter",
    "dvclive": "from dvclive import Live",
}
_PROBE = "import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"


def import_seconds(stmt: str, timeout: float = 120.0) -> float | str:
    """Seconds ``stmt`` takes in a fresh interpreter, or the failure reason."""
    env = bench_env()
    with tempfile.TemporaryDirectory(prefix="epochal-bench-") as tmp:
        try:
            proc = subprocess.run([sys.executable, "-c", _PROBE.format(stmt=stmt)], cwd=tmp, env=env,
                                  capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return f"timeout after {timeout:.0f} s"
    try:
        return float(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        return (lines[-1] if lines else f"exit code {proc.returncode}")[:90]


def run(quick: bool = False) -> Report:
    repeats = 3 if quick else 5
    samples: dict[str, list[float | str]] = {name: [] for name in STATEMENTS}
    for stmt in STATEMENTS.values():  # warm-up: bytecode compiled and cached, files in the page cache
        import_seconds(stmt)
    for _ in range(repeats):  # round-robin, so load drift hits every tracker alike
        for name, stmt in STATEMENTS.items():
            samples[name].append(import_seconds(stmt))
    report = Report(f"import time (ms, median of {repeats} fresh interpreters)",
                    ["tracker", "statement", "median ms", "min ms", "vs epochal"])
    medians: dict[str, float] = {}
    for name, stmt in STATEMENTS.items():
        numbers = [s for s in samples[name] if isinstance(s, float)]
        if numbers:
            medians[name] = statistics.median(numbers)
    for name, stmt in STATEMENTS.items():
        if name not in medians:
            reason = next(s for s in samples[name] if isinstance(s, str))
            report.rows.append([name, stmt, f"failed: {reason}", "", ""])
            continue
        numbers = [s for s in samples[name] if isinstance(s, float)]
        vs = f"{medians[name] / medians['epochal']:.1f}x" if medians.get("epochal") else "-"
        report.rows.append([name, stmt, fmt(medians[name] * 1e3), fmt(min(numbers) * 1e3), vs])
    anchors = {k: v for k, v in medians.items() if k != "epochal"}
    if "epochal" in medians and anchors:
        fastest = min(anchors, key=anchors.get)
        share = medians["epochal"] / anchors[fastest]
        report.targets.append(target(
            share < 1 / 8,
            f"import epochal under 1/8 of the fastest anchor's ({fastest}, {fmt(anchors[fastest] * 1e3)} ms): "
            f"{fmt(medians['epochal'] * 1e3)} ms = 1/{1 / share:.1f}",
        ))
    else:
        report.targets.append(target(None, "import epochal under 1/8 of the fastest anchor's: not measured"))
    return report
