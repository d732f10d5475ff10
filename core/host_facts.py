"""The slow, pure-data facts about this Python and machine: packages, framework versions, CPU and GPU names.

Listing every installed distribution costs ~0.1 s of CPU; done in the training process it
competes with training for the GIL. :func:`slow_facts` therefore gathers them in a short-lived
child Python (this file run as a script: standard library only, so the child imports nothing
of epochal's and no framework) that sees the parent's ``sys.path`` and prints JSON; on any
failure (timeout, crash, bad output) the same functions run in-process instead. The result
is cached per process.
"""

from __future__ import annotations

import functools
import json
import platform
import shutil
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

__all__ = ["FRAMEWORKS", "CHILD_TIMEOUT", "requirements", "framework_versions", "cpu_model", "gpu_names",
           "slow_facts"]

#: distribution names whose versions are recorded when installed (never imported).
FRAMEWORKS = (
    "torch", "torchvision", "lightning", "pytorch-lightning", "transformers", "accelerate", "datasets", "keras",
    "tensorflow", "jax", "jaxlib", "flax", "ultralytics", "scikit-learn", "xgboost", "lightgbm", "tensorboard",
    "numpy", "pandas", "epochal",
)
#: seconds the child process may take before the facts are gathered in-process instead.
CHILD_TIMEOUT = 30.0


@functools.lru_cache(maxsize=1)
def requirements() -> tuple[str, ...]:
    """Every installed distribution as ``name==version``, sorted, one per name."""
    seen: dict[str, str] = {}
    for dist in importlib_metadata.distributions():
        try:
            name = dist.metadata["Name"]
        except Exception:
            continue
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    return tuple(seen[k] for k in sorted(seen))


@functools.lru_cache(maxsize=1)
def framework_versions() -> dict[str, str]:
    """Versions of the ML frameworks installed (from package metadata; nothing is imported)."""
    out = {}
    for name in FRAMEWORKS:
        try:
            out[name] = importlib_metadata.version(name)
        except Exception:
            continue
    return out


@functools.lru_cache(maxsize=1)
def cpu_model() -> str | None:
    """The CPU's marketing name, e.g. ``AMD EPYC 7B13``."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "Processor", "cpu model") and value.strip():
            return value.strip()
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                 timeout=5)
            if out.stdout.strip():
                return out.stdout.strip()
        except Exception:
            pass
    return platform.processor() or None


def _driver_gpu_names() -> tuple[str, ...]:
    """GPU names via NVML, else ``nvidia-smi``; () when neither answers."""
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        names = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(index))
            names.append(name.decode() if isinstance(name, bytes) else str(name))
        return tuple(names)
    except Exception:
        pass
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=10)
            if out.returncode == 0:
                return tuple(line.strip() for line in out.stdout.splitlines() if line.strip())
        except Exception:
            pass
    return ()


def _torch_gpu_names() -> tuple[str, ...]:
    """GPU names from a ``torch.cuda`` this process already initialised (never imports torch)."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            return tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except Exception:
        pass
    return ()


@functools.lru_cache(maxsize=1)
def gpu_names() -> tuple[str, ...]:
    """GPU names via NVML, else ``nvidia-smi``, else an already-initialised ``torch.cuda``; () when none."""
    return _driver_gpu_names() or _torch_gpu_names()


def _gather() -> dict[str, Any]:
    """The facts a child computes (all but the in-process ``torch.cuda`` fallback)."""
    return {"requirements": list(requirements()), "frameworks": framework_versions(), "cpu_model": cpu_model(),
            "gpus": list(_driver_gpu_names())}


def _from_child() -> dict[str, Any]:
    """:func:`_gather` run in a child Python that sees this process's ``sys.path``; raises on any failure.

    A frozen application or an embedding host (``sys.executable`` not a Python) is never
    started again: that would run the user's program, not this file.
    """
    if getattr(sys, "frozen", False) or not Path(sys.executable or "").name.lower().startswith(("python", "pypy")):
        raise RuntimeError(f"{sys.executable!r} is not a Python interpreter that can run a script")
    out = subprocess.run(
        [sys.executable, "-I", "-S", __file__], input=json.dumps([p for p in sys.path if isinstance(p, str)]),
        capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=True,
    )
    facts = json.loads(out.stdout)
    if not (isinstance(facts.get("requirements"), list) and all(isinstance(r, str) for r in facts["requirements"])
            and isinstance(facts.get("frameworks"), dict) and isinstance(facts.get("gpus"), list)):
        raise ValueError(f"unexpected facts from the child process: {out.stdout[:200]!r}")
    return facts


@functools.lru_cache(maxsize=1)
def slow_facts() -> dict[str, Any]:
    """``requirements`` (list), ``frameworks`` (dict), ``cpu_model`` and ``gpus`` (list), gathered off this
    process's GIL when a child Python can be started, else in-process. Cached per process."""
    try:
        facts = _from_child()
    except Exception:
        facts = _gather()
    facts["gpus"] = list(facts["gpus"]) or list(_torch_gpu_names())
    return facts


if __name__ == "__main__":  # the child: the parent's sys.path on stdin, the facts as JSON on stdout
    sys.path[:] = json.load(sys.stdin)
    json.dump(_gather(), sys.stdout)
