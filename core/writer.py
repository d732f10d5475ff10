"""The background writer: takes the run's rows and events, delivers hooks per plugin.

The training thread packs metric rows into the run's :class:`~epochal.backlog.Backlog`
(no object per row); events (config, summary, artifacts, ...) go to the *outbox*
after the rows logged before them are sealed there, so plugins see both in logging
order. The writer thread wakes once per flush interval (or early, when a buffer
grows past ``WAKE_BYTES``, or on ``flush()``/``close()``), gathers the rows into a :class:`MetricBatch`, and
hands every event to one *lane* per plugin: a thread with its own queue. Which hooks
exist comes from :mod:`epochal.hookspecs`.

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
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from .backlog import LIMIT_BYTES, Backlog
from .hookspecs import delivered_hooks
from .plugins import plugin_caller
from .records import MetricBatch, RowFormat, RunInfo, freeze

__all__ = ["Event", "Writer"]

log = logging.getLogger("epochal")

#: The lanes ``log()`` keeps pace with: the store, which a run must keep (other plugins' queues are theirs).
GATED_LANES = frozenset({"store"})
LANE_LIMIT_BYTES = 16 << 20  # packed rows queued for a gated lane before log() waits for it
LANE_WAIT_SECONDS = 10.0


@dataclass(eq=False)
class Event:
    """A non-metric item on the queue: a hook name and its keyword arguments."""

    hook: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    done: threading.Event | None = None  # set by every lane once delivered (flush barriers)


STOP = Event("stop")
_MARK = Event("mark")  # put by a drain itself to end it


class Lane:
    """One plugin's delivery thread, with failures counted per hook."""

    def __init__(self, name: str, callers: dict[str, Any], run: RunInfo, max_failures: int) -> None:
        self.name = name
        self.callers = callers
        self.run = run
        self.max_failures = max_failures
        self.failures: dict[str, int] = {}  # hook -> failures so far
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.pending = 0  # bytes of packed rows queued here and not yet handled (changed under _count)
        self._count = threading.Lock()  # the drain adds, this lane's thread subtracts
        self.caught_up = threading.Event()  # set while ``pending`` is within LANE_LIMIT_BYTES
        self.caught_up.set()
        self.thread = threading.Thread(target=self._loop, name=f"epochal-{name}", daemon=True)
        self.thread.start()

    def put(self, item: Any, size: int = 0) -> None:
        if size:
            with self._count:
                self.pending += size
                if self.pending > LANE_LIMIT_BYTES:
                    self.caught_up.clear()
        self.queue.put((item, size) if item is not None else None)

    def _loop(self) -> None:
        while True:
            entry = self.queue.get()
            if entry is None:
                return
            (hook, kwargs, barrier), size = entry
            caller = self.callers.get(hook)
            if caller is not None:
                try:
                    caller(run=self.run, **kwargs)
                except Exception as exc:  # a plugin never reaches training
                    self._failed(hook, exc)
            if size:
                with self._count:
                    self.pending -= size
                    if self.pending <= LANE_LIMIT_BYTES:
                        self.caught_up.set()
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
    """Owns the backlog, the outbox, the writer thread and the per-plugin lanes of one run."""

    def __init__(
        self,
        run: RunInfo,
        pm: pluggy.PluginManager,
        flush_interval: float = 1.0,
        max_failures: int = 3,
        on_tick: Callable[[], None] | None = None,
        on_metrics: Callable[[MetricBatch], dict[str, Any]] | None = None,
        deliver_metrics: bool = True,
    ) -> None:
        self.backlog = Backlog()
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()  # metric runs and events, in order
        self.flush_interval = max(0.01, float(flush_interval))
        self.on_tick = on_tick
        self.on_metrics = on_metrics
        self.deliver_metrics = deliver_metrics  # False on ranks that do not own the run
        self._summary: dict[str, Any] | None = None
        self._lock = threading.Lock()  # one drain at a time; events sealed in order with the rows
        self._stopped = False
        self._sealed = 0  # bytes of rows in the outbox
        self.lanes = self._build_lanes(run, pm, max_failures)
        self._gated = [lane for lane in self.lanes if lane.name in GATED_LANES]  # log() keeps pace with these
        self._wake = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="epochal-writer", daemon=True)
        self.thread.start()

    @staticmethod
    def _build_lanes(run: RunInfo, pm: pluggy.PluginManager, max_failures: int) -> list[Lane]:
        lanes = []
        hooks = delivered_hooks()
        for plugin in pm.get_plugins():
            name = pm.get_name(plugin) or repr(plugin)
            callers: dict[str, Any] = {}  # hook -> a caller of this plugin's implementation alone
            for hook in hooks:
                caller = plugin_caller(pm, plugin, hook)
                if caller is not None:
                    callers[hook] = caller
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
        self.put_event(Event(hook, {k: freeze(v) for k, v in kwargs.items()}))

    def put_event(self, event: Event) -> None:
        """Queue ``event`` after every row logged so far."""
        with self._lock:
            self._seal()
            self.outbox.put(event)

    def wake(self) -> None:
        """Deliver what is queued now rather than at the next tick (a run's opening events: the
        environment capture and first writes then overlap training instead of waiting for its end)."""
        self._wake.set()

    def backlog_full(self) -> None:
        """``log()`` saw a buffer past ``WAKE_BYTES``: cut the rows on this thread and wake the writer;
        past ``LIMIT_BYTES`` of cut rows not yet delivered, deliver them on this thread; while the store's
        lane holds more than ``LANE_LIMIT_BYTES`` of rows it has not written, wait for it (see ``_keep_up``)."""
        with self._lock:
            self._seal()
        self._wake.set()
        if self._sealed > LIMIT_BYTES:
            self._drain()
        for lane in self._gated:
            if not lane.caught_up.is_set():
                self._keep_up(lane)

    def _keep_up(self, lane: Lane) -> None:
        """Let the store write what it holds before more rows pile up behind it (memory stays bounded; a
        loop faster than the disk runs at the disk's pace). A store that does not catch up within
        ``LANE_WAIT_SECONDS`` is not waited for again in this run: training never stalls on it."""
        if not lane.caught_up.wait(LANE_WAIT_SECONDS):
            self._gated.remove(lane)
            log.warning("epochal: plugin %r has not written %d MB of rows for %.0f s; log() no longer waits for "
                        "it (its queue may grow)", lane.name, lane.pending >> 20, LANE_WAIT_SECONDS)

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver everything queued so far to every plugin; False if a plugin did not finish in time."""
        done = threading.Event()
        self.put_event(Event("", {}, done))
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> bool:
        """Deliver everything, stop the threads; wait at most ``timeout`` seconds for slow plugins."""
        deadline = time.monotonic() + timeout
        self.put_event(STOP)
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
        period = self.flush_interval  # each wake costs the lanes a write (and the summary a rewrite)
        while not self._stopped:
            self._wake.wait(period)
            self._wake.clear()
            self._drain()
            if self.on_tick is not None and not self._stopped:
                try:
                    self.on_tick()
                except Exception:  # the heartbeat is best effort
                    pass

    def _seal(self) -> None:
        """Move the backlog's rows to the outbox (the caller holds the lock); after the stop, drop them."""
        runs = self.backlog.cut()
        if runs and not self._stopped:
            self.outbox.put(runs)
            self._sealed += sum(len(rows) for _, rows in runs)

    def _drain(self) -> None:
        """Deliver every row and event so far to the lanes, in order (any thread, one at a time)."""
        with self._lock:
            if self._stopped:
                return
            self._seal()
            self.outbox.put(_MARK)
            self._sealed = 0
            runs: list[tuple[RowFormat, memoryview]] = []
            for item in iter(self.outbox.get, _MARK):
                if type(item) is list:  # metric runs
                    runs.extend(item)
                    continue
                self._deliver_metrics(runs)
                runs = []
                if item is STOP or item.hook == "epochal_run_end":
                    self._deliver_summary()
                if item is STOP:
                    for lane in self.lanes:
                        lane.put(None)
                    self._stopped = True
                    return
                barrier = Barrier(len(self.lanes), item.done) if item.done is not None else None
                self._deliver(item.hook, item.kwargs, barrier)
            self._deliver_metrics(runs)
            self._deliver_summary()

    def _deliver_metrics(self, runs: list[tuple[RowFormat, memoryview]]) -> None:
        if not runs or not self.deliver_metrics:
            return
        batch = MetricBatch(runs)
        self._deliver("epochal_metrics", {"records": batch}, None, sum(len(rows) for _, rows in runs))
        if self.on_metrics is not None:
            self._summary = self.on_metrics(batch)

    def _deliver_summary(self) -> None:
        """The summary follows the metrics once per drain, not once per batch."""
        if self._summary is not None:
            self._deliver("epochal_summary", {"summary": freeze(self._summary)}, None)
            self._summary = None

    def _deliver(self, hook: str, kwargs: dict[str, Any], barrier: Barrier | None, size: int = 0) -> None:
        for lane in self.lanes:
            lane.put((hook, kwargs, barrier), size)
