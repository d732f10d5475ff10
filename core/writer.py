"""The background writer: drains the run's queue, batches records, delivers hooks per plugin.

The training thread only puts items on ``Writer.queue``: a metric is a
``(row format id, packed row)`` tuple, anything else ``(None, Event)``. The writer
thread wakes at least twice per flush interval, gathers the packed rows into a
:class:`MetricBatch`, and hands every event to one *lane* per plugin: a
thread with its own queue. Which hooks exist comes from :mod:`epochal.hookspecs`.

Failure accounting is per plugin *and hook*: the first failure of a hook is
reported, and after ``max_failures`` failures that hook alone is switched off, so
one broken hook (a config write) never stops a plugin's other hooks (its metrics).
A plugin that hangs holds up only its own lane, and ``close()`` stops waiting for
it at its deadline. Payloads are frozen once (:func:`epochal.records.freeze`) and
shared by every lane: no plugin can change what another one receives.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from itertools import groupby
from operator import itemgetter
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from .hookspecs import delivered_hooks
from .records import MetricBatch, RowFormat, RunInfo, freeze

__all__ = ["Event", "Writer"]

log = logging.getLogger("epochal")
_first, _second = itemgetter(0), itemgetter(1)


@dataclass
class Event:
    """A non-metric item on the queue: a hook name and its keyword arguments."""

    hook: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    done: threading.Event | None = None  # set by every lane once delivered (flush barriers)


STOP = Event("stop")
_MARK = (None, Event("mark"))  # put by the writer itself to end one drain


class Lane:
    """One plugin's delivery thread, with failures counted per hook."""

    def __init__(self, name: str, callers: dict[str, Callable[..., Any]], run: RunInfo, max_failures: int) -> None:
        self.name = name
        self.callers = callers
        self.run = run
        self.max_failures = max_failures
        self.failures: dict[str, int] = {}  # hook -> failures so far
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name=f"epochal-{name}", daemon=True)
        self.thread.start()

    def put(self, item: Any) -> None:
        self.queue.put(item)

    def _loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            hook, kwargs, barrier = item
            caller = self.callers.get(hook)
            if caller is not None:
                try:
                    caller(run=self.run, **kwargs)
                except Exception as exc:  # a plugin never reaches training
                    self._failed(hook, exc)
            if barrier is not None:
                barrier.arrive()

    def _failed(self, hook: str, exc: Exception) -> None:
        count = self.failures[hook] = self.failures.get(hook, 0) + 1
        if count == 1:
            log.warning("epochal plugin %r failed in %s: %r (the run goes on without it)", self.name, hook, exc)
        if count >= self.max_failures:
            del self.callers[hook]
            log.warning("epochal plugin %r: %s switched off after %d failures (its other hooks go on)",
                        self.name, hook, count)


class Barrier:
    """Counts lanes down to zero, then sets an event."""

    def __init__(self, count: int, done: threading.Event) -> None:
        self._count = count
        self._lock = threading.Lock()
        self._done = done
        if count == 0:
            done.set()

    def arrive(self) -> None:
        with self._lock:
            self._count -= 1
            if self._count == 0:
                self._done.set()


class Writer:
    """Owns the queue, the writer thread and the per-plugin lanes of one run."""

    def __init__(
        self,
        run: RunInfo,
        pm: pluggy.PluginManager,
        flush_interval: float = 1.0,
        max_failures: int = 3,
        on_tick: Callable[[], None] | None = None,
        on_metrics: Callable[[MetricBatch], dict[str, Any]] | None = None,
        formats: list[RowFormat] | None = None,
    ) -> None:
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.flush_interval = max(0.01, float(flush_interval))
        self.on_tick = on_tick
        self.on_metrics = on_metrics
        self.formats = formats if formats is not None else []  # row format id -> RowFormat
        self._summary: dict[str, Any] | None = None
        self.lanes = self._build_lanes(run, pm, max_failures)
        self._wake = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="epochal-writer", daemon=True)
        self.thread.start()

    @staticmethod
    def _build_lanes(run: RunInfo, pm: pluggy.PluginManager, max_failures: int) -> list[Lane]:
        lanes = []
        hooks = delivered_hooks()
        for plugin in pm.get_plugins():
            name = pm.get_name(plugin) or repr(plugin)
            others = [p for p in pm.get_plugins() if p is not plugin]
            callers = {}
            for hook in hooks:
                caller = getattr(pm.hook, hook)
                if any(impl.plugin is plugin for impl in caller.get_hookimpls()):
                    callers[hook] = pm.subset_hook_caller(hook, remove_plugins=others)
            if callers:
                lanes.append(Lane(name, callers, run, max_failures))
        return lanes

    @property
    def failures(self) -> dict[str, int]:
        """Failures per plugin so far (all its hooks together)."""
        return {lane.name: sum(lane.failures.values()) for lane in self.lanes if lane.failures}

    def emit(self, hook: str, **kwargs: Any) -> None:
        """Queue a non-metric event (config, summary, artifact, ...) in order with the metrics.

        The payload is frozen here, on the caller's thread: later changes by the caller
        or by any plugin never reach what the plugins receive.
        """
        self.queue.put((None, Event(hook, {k: freeze(v) for k, v in kwargs.items()})))

    def wake(self) -> None:
        """Drain now rather than at the next tick (a large backlog)."""
        self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver everything queued so far to every plugin; False if a plugin did not finish in time."""
        done = threading.Event()
        self.queue.put((None, Event("", {}, done)))
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> bool:
        """Deliver everything, stop the threads; wait at most ``timeout`` seconds for slow plugins."""
        deadline = time.monotonic() + timeout
        self.queue.put((None, STOP))
        self._wake.set()
        self.thread.join(max(0.0, deadline - time.monotonic()))
        ok = not self.thread.is_alive()
        for lane in self.lanes:
            lane.thread.join(max(0.0, deadline - time.monotonic()))
            if lane.thread.is_alive():
                ok = False
                log.warning("epochal plugin %r did not finish within %.0f s; abandoned", lane.name, timeout)
        return ok

    # -- the writer thread -------------------------------------------------------------
    def _loop(self) -> None:
        period = self.flush_interval / 2
        while True:
            self._wake.wait(period)
            self._wake.clear()
            if self._drain():
                return
            if self.on_tick is not None:
                try:
                    self.on_tick()
                except Exception:  # the heartbeat is best effort
                    pass

    def _drain(self) -> bool:
        """Deliver what is queued; True once the stop event was seen.

        Takes everything queued before a marker in one C-level loop, then groups
        consecutive rows of one format (events have format None) without touching each row.
        """
        self.queue.put(_MARK)
        items = list(iter(self.queue.get, _MARK))
        runs: list[tuple[RowFormat, bytes]] = []
        for fid, group in groupby(items, key=_first):
            if fid is not None:
                runs.append((self.formats[fid], b"".join(map(_second, group))))
                continue
            self._deliver_metrics(runs)
            runs = []
            for _, event in group:
                if event is STOP or event.hook == "epochal_run_end":
                    self._deliver_summary()
                if event is STOP:
                    for lane in self.lanes:
                        lane.put(None)
                    return True
                barrier = Barrier(len(self.lanes), event.done) if event.done is not None else None
                self._deliver(event.hook, event.kwargs, barrier)
        self._deliver_metrics(runs)
        self._deliver_summary()
        return False

    def _deliver_metrics(self, runs: list[tuple[RowFormat, bytes]]) -> None:
        if not runs:
            return
        batch = MetricBatch(runs)
        self._deliver("epochal_metrics", {"records": batch}, None)
        if self.on_metrics is not None:
            self._summary = self.on_metrics(batch)

    def _deliver_summary(self) -> None:
        """The summary follows the metrics once per drain, not once per batch."""
        if self._summary is not None:
            self._deliver("epochal_summary", {"summary": freeze(self._summary)}, None)
            self._summary = None

    def _deliver(self, hook: str, kwargs: dict[str, Any], barrier: Barrier | None) -> None:
        for lane in self.lanes:
            lane.put((hook, kwargs, barrier))
