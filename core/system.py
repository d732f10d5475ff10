"""Hardware sampler: a daemon thread that records machine and process figures every few seconds.

Figures (names as stored in ``system.jsonl``):

- ``cpu/percent`` (machine), ``proc/cpu_percent`` (this process; 100 = one core),
  ``memory/percent`` (machine), ``proc/rss_mb`` (this process and its children),
  ``disk/read_mbps``, ``disk/write_mbps``, ``net/sent_mbps``, ``net/recv_mbps`` (machine,
  MB/s since the previous sample), ``disk/free_gb`` (the run directory's filesystem);
- per GPU ``gpu/<i>/util_percent``, ``gpu/<i>/memory_used_mb``, ``gpu/<i>/memory_total_mb``,
  ``gpu/<i>/temperature_c``, ``gpu/<i>/power_w`` through NVML (``nvidia-ml-py``) when it
  is installed and a driver answers; otherwise ``gpu/<i>/memory_allocated_mb`` and
  ``gpu/<i>/memory_reserved_mb`` from ``torch.cuda`` when torch is *already imported* and
  has initialised CUDA. No GPU: no GPU keys, never an error.

Rates and CPU percentages need a previous reading, so the first sample (taken when
the sampler starts) has neither. A last sample is taken at :meth:`SystemSampler.stop`.
Under DDP every rank samples its own process (and, with NVML, its local GPU).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any, Callable

import psutil

__all__ = ["SystemSampler", "nvml_reader", "torch_cuda_reader"]

log = logging.getLogger("epochal")
_MB = 1024.0**2
_GB = 1024.0**3
CHILDREN_REFRESH_SECONDS = 5.0

GpuReader = Callable[[], dict[str, float]]


def nvml_reader(pynvml: Any, only: int | None = None) -> GpuReader | None:
    """A function returning NVML figures for every GPU (or just index ``only``); None if NVML is unusable."""
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except Exception:
        return None
    indices = [only] if only is not None and only < count else list(range(count))
    handles = {}
    for index in indices:
        try:
            handles[index] = pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception:
            continue
    if not handles:
        return None
    temperature_sensor = getattr(pynvml, "NVML_TEMPERATURE_GPU", 0)

    def read() -> dict[str, float]:
        values: dict[str, float] = {}
        for index, handle in handles.items():
            prefix = f"gpu/{index}/"
            for key, getter in (
                ("util_percent", lambda h: pynvml.nvmlDeviceGetUtilizationRates(h).gpu),
                ("memory_used_mb", lambda h: pynvml.nvmlDeviceGetMemoryInfo(h).used / _MB),
                ("memory_total_mb", lambda h: pynvml.nvmlDeviceGetMemoryInfo(h).total / _MB),
                ("temperature_c", lambda h: pynvml.nvmlDeviceGetTemperature(h, temperature_sensor)),
                ("power_w", lambda h: pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0),
            ):
                try:  # a figure the GPU does not support is left out, the others stay
                    values[prefix + key] = float(getter(handle))
                except Exception:
                    continue
        return values

    return read


def torch_cuda_reader(torch: Any) -> GpuReader | None:
    """A function returning ``torch.cuda`` memory figures, or None when CUDA is not in use by ``torch``."""
    try:
        cuda = torch.cuda
        if not (cuda.is_available() and cuda.is_initialized()):  # never initialise CUDA ourselves
            return None
        count = cuda.device_count()
    except Exception:
        return None

    def read() -> dict[str, float]:
        values: dict[str, float] = {}
        for index in range(count):
            try:
                values[f"gpu/{index}/memory_allocated_mb"] = cuda.memory_allocated(index) / _MB
                values[f"gpu/{index}/memory_reserved_mb"] = cuda.memory_reserved(index) / _MB
            except Exception:
                continue
        return values

    return read


def _gpu_reader(local_rank: int | None) -> GpuReader | None:
    """NVML when ``pynvml`` imports and a driver answers, else torch.cuda when torch is already imported."""
    try:
        import pynvml  # nvidia-ml-py
    except Exception:
        pynvml = None
    if pynvml is not None:
        reader = nvml_reader(pynvml, local_rank)
        if reader is not None:
            return reader
    torch = sys.modules.get("torch")
    return torch_cuda_reader(torch) if torch is not None else None


class SystemSampler:
    """Samples this process and the machine every ``interval`` seconds on a daemon thread.

    ``cpu_seconds`` is the CPU time the sampler itself spent (its own cost) over ``samples`` samples.
    """

    def __init__(self, run: Any, interval: float) -> None:
        self.run = run
        self.interval = float(interval)
        self.samples = 0
        self.cpu_seconds = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._process = psutil.Process()
        self._children: list[psutil.Process] = []
        self._children_at = float("-inf")
        self._previous: tuple[float, Any, Any] | None = None
        self._cpu_times: Any = None
        self._gpu: GpuReader | None = None
        self._gpu_checked = False
        self._disk_path = str(getattr(run, "dir", ".") or ".")
        self._thread = threading.Thread(target=self._loop, name="epochal-system", daemon=True)
        self._thread.start()

    # -- readings --------------------------------------------------------------------------------
    def _rss_with_children(self, now: float) -> float:
        if now - self._children_at >= CHILDREN_REFRESH_SECONDS:
            self._children_at = now
            try:
                self._children = _descendants(self._process)
                for child in self._children:
                    child.cpu_percent(None)
            except psutil.Error:
                self._children = []
        total = self._process.memory_info().rss
        for child in list(self._children):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                self._children.remove(child)
        return total / _MB

    def read(self) -> dict[str, float]:
        """One sample's figures (see the module docstring); rates only after a first reading."""
        now = time.monotonic()
        values: dict[str, float] = {}
        first = self._previous is None
        times = psutil.cpu_times()
        proc_cpu = self._process.cpu_percent(None)
        if not first:
            total = sum(times) - sum(self._cpu_times)
            idle = (times.idle + getattr(times, "iowait", 0.0)) - (
                self._cpu_times.idle + getattr(self._cpu_times, "iowait", 0.0))
            values["cpu/percent"] = round(100.0 * (1.0 - idle / total), 2) if total > 0 else 0.0
            values["proc/cpu_percent"] = proc_cpu
        self._cpu_times = times
        values["memory/percent"] = psutil.virtual_memory().percent
        values["proc/rss_mb"] = self._rss_with_children(now)
        disk = _safe(psutil.disk_io_counters)
        net = _safe(psutil.net_io_counters)
        if not first:
            then, old_disk, old_net = self._previous or (now, None, None)
            elapsed = max(now - then, 1e-6)
            if disk is not None and old_disk is not None:
                values["disk/read_mbps"] = max(0, disk.read_bytes - old_disk.read_bytes) / _MB / elapsed
                values["disk/write_mbps"] = max(0, disk.write_bytes - old_disk.write_bytes) / _MB / elapsed
            if net is not None and old_net is not None:
                values["net/sent_mbps"] = max(0, net.bytes_sent - old_net.bytes_sent) / _MB / elapsed
                values["net/recv_mbps"] = max(0, net.bytes_recv - old_net.bytes_recv) / _MB / elapsed
        self._previous = (now, disk, net)
        usage = _safe(lambda: psutil.disk_usage(self._disk_path))
        if usage is not None:
            values["disk/free_gb"] = usage.free / _GB
        if not self._gpu_checked:
            self._gpu_checked = True
            local = None
            if getattr(self.run, "world_size", 1) > 1:
                from .distributed import local_rank

                local = local_rank()
            self._gpu = _gpu_reader(local)
        if self._gpu is not None:
            try:
                values.update(self._gpu())
            except Exception:
                pass
        return values

    def sample(self) -> None:
        """Read and record one sample (never raises)."""
        with self._lock:
            start = time.thread_time()
            try:
                values = self.read()
                self.run.log_system(values)
                self.samples += 1
            except Exception as exc:
                log.debug("epochal: system sample failed: %r", exc)
            self.cpu_seconds += time.thread_time() - start

    def _loop(self) -> None:
        self.sample()
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        """Stop the thread and record a last sample."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()


def _descendants(process: psutil.Process) -> list[psutil.Process]:
    """Every process below ``process``: from Linux's per-thread ``children`` lists (a few small reads), else
    ``psutil``'s ``children(recursive=True)``, which reads every process of the machine (ms of CPU on a busy host)."""
    if not os.path.exists(f"/proc/{process.pid}/task/{process.pid}/children"):
        return process.children(recursive=True)
    found: list[psutil.Process] = []
    todo = [process.pid]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:  # ended meanwhile
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/children", "rb") as handle:
                    kids = [int(k) for k in handle.read().split()]
            except (OSError, ValueError):
                continue
            todo.extend(kids)
            for kid in kids:
                try:
                    found.append(psutil.Process(kid))
                except psutil.Error:
                    continue
    return found


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:
        return None
