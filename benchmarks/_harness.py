"""The harness: one measurement per fresh interpreter, and side-by-side tables with PASS/MISS targets.

A measurement is a function ``benchmarks.<module>:<func>(**kwargs) -> dict`` run by
:mod:`benchmarks._worker` in a subprocess with a timeout. Whatever goes wrong there (an anchor
not installed, a crash, a hang) comes back as ``{"error": reason}`` and is printed in its cell.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MARK", "BENCH_ENV", "Report", "bench_env", "in_subprocess", "cell", "fmt", "target", "failed"]

MARK = "@@epochal-bench@@"
REPO = Path(__file__).resolve().parent.parent
# No network, no telemetry, no dashboards: every anchor stays local and quiet.
BENCH_ENV = {
    "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true", "WANDB_CONSOLE": "off",
    "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1", "DVC_NO_ANALYTICS": "1",
    "GRADIO_ANALYTICS_ENABLED": "False", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false",
}


@dataclass
class Report:
    """One topic's table: a title, column headers, rows of cells, and the targets judged on them."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    targets: list[tuple[bool | None, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def render(self, max_cell: int = 72) -> str:
        rows = [[v if len(v) <= max_cell else v[: max_cell - 3] + "..." for v in row] for row in self.rows]
        widths = [len(h) for h in self.headers]
        for row in rows:
            for i, value in enumerate(row):
                widths[i] = max(widths[i], len(value))
        line = "  ".join("-" * w for w in widths)
        right = [i > 0 and any(_numeric(r[i]) for r in rows if i < len(r)) for i in range(len(widths))]
        head = "  ".join(h.rjust(w) if r else h.ljust(w) for h, w, r in zip(self.headers, widths, right))
        out = [f"== {self.title} ==", head.rstrip(), line]
        for row in rows:
            out.append("  ".join(v.rjust(w) if i and _numeric(v) else v.ljust(w)
                                 for i, (v, w) in enumerate(zip(row, widths))).rstrip())
        for ok, text in self.targets:
            out.append(f"{'PASS' if ok else 'MISS' if ok is False else 'n/a '}  {text}")
        out.extend(f"note: {n}" for n in self.notes)
        return "\n".join(out)


def bench_env() -> dict[str, str]:
    """The environment of every measured interpreter.

    Bytecode is cached (in a folder of its own, outside the repo) even where the caller's
    environment says ``PYTHONDONTWRITEBYTECODE``: installed anchors ship compiled bytecode, so
    recompiling epochal's sources on every import would not be a like-for-like comparison.
    """
    env = {**os.environ, **BENCH_ENV, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    for name in ("EPOCHAL_DIR", "EPOCHAL_PROJECT", "EPOCHAL_MODE", "EPOCHAL_RUN_ID", "EPOCHAL_SINKS",
                 "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "epochal-bench-pycache")
    return env


def _numeric(text: str) -> bool:
    return bool(text) and (text[0].isdigit() or text[0] in "-.+") and not text.startswith("failed")


def in_subprocess(target: str, timeout: float = 300.0, **kwargs: Any) -> dict[str, Any]:
    """Run ``benchmarks.<target>`` (``"module:func"``) in a fresh interpreter with its own temp folder.

    The function gets ``tmp=<folder>`` plus ``kwargs``; its JSON result comes back, or
    ``{"error": reason}`` when it raised, crashed, printed nothing or ran past ``timeout`` seconds.
    """
    tmp = tempfile.mkdtemp(prefix="epochal-bench-")
    env = bench_env()
    cmd = [sys.executable, "-m", "benchmarks._worker", target, json.dumps({"tmp": tmp, **kwargs})]
    try:
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    return {"error": _reason(proc)}


def _reason(proc: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in (proc.stderr or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln or "Exception" in ln]
    text = (errors or lines or [f"exit code {proc.returncode}, no output"])[-1]
    return text[:90]


def failed(result: dict[str, Any]) -> str | None:
    """The failure reason of a result, or None when it holds figures."""
    return result.get("error") if isinstance(result, dict) else "no result"


def fmt(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` significant digits, without scientific notation for everyday sizes."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 10 ** digits:
        return f"{value:,.0f}"
    decimals = max(0, digits - 1 - int(f"{magnitude:e}".split("e")[1]))
    return f"{value:.{decimals}f}"


def cell(result: dict[str, Any], key: str, digits: int = 3, scale: float = 1.0) -> str:
    """The figure ``key`` of a result, or ``failed: reason`` in its place."""
    reason = failed(result)
    if reason:
        return f"failed: {reason}"
    value = result.get(key)
    return "-" if value is None else fmt(value * scale, digits)


def target(ok: bool | None, text: str) -> tuple[bool | None, str]:
    """A target line; ``ok=None`` when it could not be judged (a figure failed)."""
    return ok, text
