"""Hardware sampler (placeholder until the run-context work lands)."""

from __future__ import annotations

import threading
from typing import Any

import psutil

__all__ = ["SystemSampler"]


class SystemSampler:
    """Samples this process and the machine every ``interval`` seconds on a daemon thread."""

    def __init__(self, run: Any, interval: float) -> None:
        self.run = run
        self.interval = interval
        self._stop = threading.Event()
        self._process = psutil.Process()
        self._process.cpu_percent(None)
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="epochal-system", daemon=True)
        self._thread.start()

    def sample(self) -> None:
        self.run.log_system({
            "cpu/percent": psutil.cpu_percent(None),
            "proc/cpu_percent": self._process.cpu_percent(None),
            "memory/percent": psutil.virtual_memory().percent,
            "proc/rss_mb": self._process.memory_info().rss / 2**20,
        })

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception:
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.sample()
        except Exception:
            pass
