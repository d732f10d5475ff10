"""``Run``: the one object every integration talks to, and ``init`` that makes one.

The training thread does only: validate, coerce, copy, enqueue. Everything that
touches disk happens on the writer thread (:mod:`epochal.writer`) through the
plugins (:mod:`epochal.hookspecs`).
"""

from __future__ import annotations

import logging
import operator
import os
import re
import secrets
import socket
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping

from . import distributed
from .active import _active, _register_active, _unregister_active, active_runs, current_run, finish  # noqa: F401
from .backlog import WAKE_BYTES
from .blocks import last_step
from .mappings import Config, Summary
from .media import is_media, prepare_all
from .names import GENERIC, LIGHTNING, Dialect, Plan
from .plugins import build_plugin_manager, collect_run_metadata, requested_sinks
from .records import NAN as _NAN
from .records import ArtifactVersion, FrozenDict, RowFormat, RunInfo, SystemRecord
from .redact import redact
from .runlock import RunLock
from .store import (
    CONFIG_FILE, METRICS_FILE, RUN_FILE, SUMMARY_FILE, read_json, touch_heartbeat,
    transient,
    write_json_atomic,
)
from .values import check_step_range, clean_metrics, jsonable, to_number
from .writer import Event, Writer

__all__ = ["Run", "Config", "Summary", "init", "current_run", "active_runs", "finish", "DEFAULT_DIR", "DEFAULT_PROJECT"]

log = logging.getLogger("epochal")
DEFAULT_DIR = "epochal-runs"
DEFAULT_PROJECT = "default"
STATUSES = ("running", "finished", "failed", "crashed")
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]{0,127}$")
_time = time.time
_pending_lock = threading.Lock()  # guards the background thread and each run's list of work finish() waits for
_executor: Any = None  # the background thread of Run.in_background, made on first use


def _version() -> str:
    from . import __version__

    return __version__


def check_segment(value: str, what: str) -> str:
    """A run id or project name must be one safe path segment."""
    if not isinstance(value, str) or not _SAFE_SEGMENT.match(value) or ".." in value:
        raise ValueError(
            f"{what} {value!r} is not usable as a folder name; use letters, digits and . _ - = + "
            "(up to 128 characters, starting with a letter or digit)"
        )
    return value


def new_run_id() -> str:
    """A fresh, sortable run id such as ``20261123-141502-a3f9c1``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


class Run:
    """A tracked run. Make one with :func:`epochal.init`; log with :meth:`log`; end with :meth:`finish`.

    Attributes: ``id``, ``name``, ``project``, ``dir``, ``rank``, ``world_size``,
    ``is_owner`` (rank 0: the process that writes metrics), ``config``, ``summary``.
    """

    disabled = False
    _dir_lock: RunLock | None = None

    def __init__(
        self,
        *,
        project: str,
        root: Path,
        run_id: str,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        tags: Iterable[str] = (),
        notes: str | None = None,
        resume: bool | Literal["allow", "must", "never"] = False,
        sinks: Iterable[str] = (),
        system_interval: float = 10.0,
        flush_interval: float = 1.0,
        finish_timeout: float = 30.0,
        rank: int = 0,
        world_size: int = 1,
        parent: Run | None = None,
    ) -> None:
        self.id = check_segment(run_id, "run id")
        self.project = check_segment(project, "project")
        self.root = Path(root)
        self.dir = self.root / self.project / self.id
        self._parent = _check_parent(parent, self.root, self.project)
        self.rank, self.world_size = rank, world_size
        self.is_owner = rank == 0
        self.finish_timeout = finish_timeout
        self._finished = False
        self._known: set[str] = set()
        self._native: dict[Plan, tuple[int, RowFormat, bytearray, Any, int | None]] = {}  # log_native's plans
        self._next_step = 0
        self._epoch: Any = None
        self.config = Config(on_change=self._config_changed)
        self.summary = Summary(on_change=self._summary_changed)
        self._meta = redact(self._open_directory(name, tags, notes, resume, flush_interval))
        try:
            self._start(config, sinks, system_interval, flush_interval)
        except BaseException:
            self._release_directory()
            raise

    def _start(self, config: Mapping[str, Any] | None, sinks: Iterable[str], system_interval: float,
               flush_interval: float) -> None:
        """Plugins, writer and sampler of a run whose directory is open (and locked)."""
        if config:
            self.config._data.update({str(k): Config._clean(k, v) for k, v in dict(config).items()})

        self.info = RunInfo(
            id=self.id, project=self.project, name=self._meta["name"], dir=self.dir, root=self.root,
            rank=self.rank, world_size=self.world_size, is_owner=self.is_owner, start_step=self._next_step,
            resumed=int(self._meta.get("resumed", 0)), parent=self._parent,
        )
        self._pm = build_plugin_manager(sinks)
        self._meta.update(redact(jsonable(collect_run_metadata(self._pm, self.info))))
        if self.is_owner:  # readable at once; made durable by the store's rewrite (epochal_metadata below)
            try:
                write_json_atomic(self.dir / RUN_FILE, self._meta, sync=False)
            except OSError as exc:  # a full disk: the store's lane keeps run.json and writes it when space returns
                if not transient(exc):
                    raise
                log.warning("epochal: run %s opened on a disk that refuses writes (%s); its files are kept in "
                            "memory and written when space returns", self.id, exc.strerror or exc)
        self._writer = Writer(
            self.info, self._pm, flush_interval=flush_interval,
            on_tick=(lambda: touch_heartbeat(self.dir)) if self.is_owner else None,
            on_metrics=self._absorb, deliver_metrics=self.is_owner,
        )
        backlog = self._writer.backlog
        self._formats, self._order = backlog.by_keys, backlog.order.append  # the hot path's two lookups
        self._writer.emit("epochal_run_start")
        self._writer.emit("epochal_config", config=self.config._data)
        self._writer.emit("epochal_metadata", metadata=self._meta)
        self._writer.wake()
        self._sampler = None
        if system_interval and system_interval > 0:
            from .system import SystemSampler

            self._sampler = SystemSampler(self, system_interval)
        _register_active(self)

    # -- opening ------------------------------------------------------------------------
    def _open_directory(self, name, tags, notes, resume, flush_interval) -> dict[str, Any]:
        existing = None
        if self.is_owner:  # one process writes a run at a time (epochal.runlock)
            existing = self._refuse(read_json(self.dir / RUN_FILE), resume)
            self.dir.mkdir(parents=True, exist_ok=True)
            self._dir_lock = RunLock(self.dir, self.id)
            self._dir_lock.acquire(existing)
            try:  # read again under the lock: another process may have made or changed the run meanwhile
                existing = self._refuse(read_json(self.dir / RUN_FILE), resume)
            except BaseException:
                self._release_directory()
                raise
        if existing is not None:
            return self._resume(existing, name, tags, notes)
        self.dir.mkdir(parents=True, exist_ok=True)
        now = _time()
        return {
            "id": self.id, "name": name or self.id, "project": self.project, "status": "running",
            "created": now, "started": now, "finished": None, "host": socket.gethostname(), "pid": os.getpid(),
            "rank": self.rank, "world_size": self.world_size, "tags": _clean_tags(tags), "notes": notes or "",
            "flush_interval": flush_interval, "epochal_version": _version(), "resumed": 0,
            "name_map": {}, "datasets": {}, "error": None, **({"parent": self._parent} if self._parent else {}),
        }

    def _refuse(self, existing: Any, resume: Any) -> Any:
        """``existing`` (run.json) if ``resume`` allows opening the run; else a clear error."""
        if existing is not None and resume in (False, "never"):
            raise FileExistsError(
                f"run {self.id!r} already exists in {self.dir.parent}; pass resume=True to append to it, "
                "or omit id= for a new run"
            )
        if existing is None and resume == "must":
            raise FileNotFoundError(f"cannot resume run {self.id!r}: no such run in {self.dir.parent}")
        return existing

    def _release_directory(self) -> None:
        if self._dir_lock is not None:
            self._dir_lock.release()

    def _resume(self, meta: dict[str, Any], name, tags, notes) -> dict[str, Any]:
        self.config._data.update(read_json(self.dir / CONFIG_FILE, {}) or {})
        self.summary._auto.update(read_json(self.dir / SUMMARY_FILE, {}) or {})
        last = meta.get("last_step")
        if meta.get("status") != "finished" or not isinstance(last, int):
            last = last_step(self.dir / METRICS_FILE)  # the step column only
        self._next_step = last + 1
        self._known.update(k for k in meta.get("metric_names", ()) if isinstance(k, str))
        meta.update(
            status="running", started=_time(), finished=None, host=socket.gethostname(), pid=os.getpid(),
            resumed=int(meta.get("resumed", 0)) + 1, error=None,
        )
        if name:
            meta["name"] = name
        if tags:
            meta["tags"] = _clean_tags([*meta.get("tags", []), *tags])
        if notes:
            meta["notes"] = notes
        if self._parent:
            meta["parent"] = self._parent
        return meta

    # -- the hot path ---------------------------------------------------------------------
    def log(self, metrics: Mapping[str, Any], step: int | None = None, *, epoch: float | int | None = None) -> None:
        """Record ``metrics`` (name -> number) at ``step``; omitted, the step auto-increments.

        Explicit steps are kept as given, even out of order or repeated. ``epoch`` is
        remembered and stamped on later records until changed. Values are stored as
        float64: Python, numpy and torch scalars and 0-d arrays are accepted (a
        one-element array counts as its element, as ``float()`` would take it).
        Raises ``TypeError``/``ValueError`` for bad names or values before anything is recorded.
        """
        next_step = self._next_step
        if step is None:
            step = next_step
        elif type(step) is not int or step < 0:
            step = _check_step(step)
        if epoch is None:
            epoch = self._epoch
        else:
            epoch = to_number("epoch", epoch)
        buffer: bytearray | None
        try:  # the fast path: known names; packing is the copy and the number check at once, and
            fid, fmt, buffer = self._formats[tuple(metrics)]  # the packed bytes join their format's buffer
            buffer += fmt.pack(step, _time(), _NAN if epoch is None else epoch, *metrics.values())
        except Exception:
            fid, buffer, epoch = self._slow_path(metrics, step, epoch)
        if step >= next_step:
            self._next_step = step + 1
        self._epoch = epoch
        if buffer is None:  # media only
            return
        self._order(fid)  # then its place among all rows (see epochal.backlog)
        if len(buffer) > WAKE_BYTES:
            self._writer.backlog_full()

    def _slow_path(self, metrics: Any, step: int, epoch: Any) -> tuple[int, bytearray | None, Any]:
        """Validate and coerce a record with new names or unusual values; pack it or raise a clear error."""
        if not isinstance(metrics, Mapping):
            raise TypeError(f"log() takes a mapping of name -> number, got {type(metrics).__name__}")
        check_step_range(step, automatic=step == self._next_step)
        values = dict(metrics)
        if "epoch" in values:
            found = to_number("epoch", values.pop("epoch"))
            epoch = found if epoch is None else epoch
        media = {k: values.pop(k) for k in [k for k, v in values.items() if is_media(v)]}
        values = clean_metrics(values, self._known)
        if media:  # images, histograms, texts: checked and copied here, encoded and written off this thread
            now = _time()
            event = Event("epochal_media", {"records": prepare_all(media, step, now)})
            if self.is_owner:
                self._writer.put_event(event)
            if not values:
                return 0, None, epoch
        fid, fmt, buffer = self._writer.backlog.register(tuple(values))  # under a lock: threads never mix formats
        buffer += fmt.pack(step, _time(), _NAN if epoch is None else epoch, *values.values())
        return fid, buffer, epoch

    def log_native(
        self,
        metrics: Mapping[str, Any],
        *,
        step: int | None = None,
        epoch: float | int | None = None,
        split: str = "train",
        step_suffixes: bool = False,
        dialect: Dialect | None = None,
    ) -> tuple[str, ...]:
        """Log a framework's metrics under canonical names (see :mod:`epochal.names`).

        ``dialect`` is the framework's naming (else the generic one, bare names going to
        ``split``; ``step_suffixes``: Lightning's). Original names are kept in the run's
        name map; a key ``epoch`` becomes the record's epoch; the dialect's summary-only
        keys go to ``run.summary``. Returns the canonical names of the values logged.
        """
        chosen = dialect or (LIGHTNING if step_suffixes else GENERIC).with_split(split)
        keys = tuple(metrics)
        plan = chosen.plans.get(keys) or chosen.plan(keys)  # memoised: the same keys come every step
        known = self._native.get(plan)
        if known is not None:  # log()'s fast path, packing the values in the plan's order
            next_step = self._next_step
            if step is None:
                step = next_step
            elif type(step) is not int or step < 0:
                step = _check_step(step)
            fid, fmt, buffer, getter, at_epoch = known
            if getter is None:
                values: Any = metrics.values()
            else:
                given = tuple(metrics.values())
                values = getter(given)
                if epoch is None and at_epoch is not None:
                    epoch = given[at_epoch]
            if epoch is None:
                epoch = self._epoch
            elif type(epoch) is not int and type(epoch) is not float:  # ints and floats: pack() checks them
                epoch = to_number("epoch", epoch)
            try:
                buffer += fmt.pack(step, _time(), _NAN if epoch is None else epoch, *values)
            except Exception:
                pass  # an unusual value: log() coerces it or says what is wrong
            else:
                if step >= next_step:
                    self._next_step = step + 1
                self._epoch = epoch
                self._order(fid)  # as in log()
                if len(buffer) > WAKE_BYTES:
                    self._writer.backlog_full()
                return plan.names
        return self._log_plan(plan, chosen, metrics, step, epoch)

    def _log_plan(self, plan: Plan, dialect: Dialect, metrics: Mapping[str, Any], step: Any, epoch: Any) -> tuple[str, ...]:
        """log_native's first call with these keys (or unusual values): name map, summary, then log()."""
        values, originals, found_epoch, summary = plan.apply(metrics.values())
        new = {k: v for k, v in originals.items() if self._meta["name_map"].get(k) != v}
        if new:
            self.set_metadata(name_map={**self._meta["name_map"], **new})
        if summary:
            self.summary.update(summary)
        if epoch is None and found_epoch is not None:
            epoch = found_epoch
        if not values:
            if epoch is not None:
                self._epoch = to_number("epoch", epoch)
            return ()
        if dialect.numbers_only:
            values = {k: v for k, v in values.items() if _is_number(k, v)}
        self.log(values, step=step, epoch=epoch)
        entry = self._formats.get(plan.names)
        if entry is not None and not summary and self.is_owner:  # next time: straight to the packed row
            getter = None if plan.take is None else _getter(plan.take)
            self._native[plan] = (*entry, getter, plan.epoch)
        return tuple(values)

    @property
    def step(self) -> int:
        """The step the next ``log()`` without ``step=`` will use."""
        return self._next_step

    @property
    def epoch(self) -> float | int | None:
        return self._epoch

    @epoch.setter
    def epoch(self, value: float | int | None) -> None:
        self._epoch = None if value is None else to_number("epoch", value)

    # -- metadata -----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._meta["name"]

    @name.setter
    def name(self, value: str) -> None:
        self.set_metadata(name=str(value))

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self._meta["tags"])

    @tags.setter
    def tags(self, value: Iterable[str]) -> None:
        self.set_metadata(tags=_clean_tags(value))

    @property
    def notes(self) -> str:
        return self._meta["notes"]

    @notes.setter
    def notes(self, value: str) -> None:
        self.set_metadata(notes=str(value))

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of what ``run.json`` holds."""
        return jsonable(self._meta)

    def set_metadata(self, **values: Any) -> None:
        """Merge ``values`` into ``run.json`` (JSON-able, secrets redacted)."""
        for key, value in values.items():
            self._meta[key] = Config._clean(key, value)
        self._emit("epochal_metadata", metadata=self._meta)

    def _config_changed(self, config: dict[str, Any]) -> None:
        self._emit("epochal_config", config=config)

    def _summary_changed(self, summary: dict[str, Any]) -> None:
        self._emit("epochal_summary", summary=summary)

    def _absorb(self, batch: Any) -> dict[str, Any]:
        """Writer thread: fold a batch's last values into the summary; returns the summary to deliver."""
        return self.summary.absorb(batch.last_values())

    def _emit(self, hook: str, **kwargs: Any) -> None:
        if self.is_owner and not self._finished:
            self._writer.emit(hook, **kwargs)

    # -- artifacts, datasets, system -----------------------------------------------------------
    def log_artifact(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        type: str = "file",
        aliases: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        keep_last: int | None = None,
        link: bool = False,
    ) -> ArtifactVersion | None:
        """Record a file or folder as the next version of artifact ``name`` (see :mod:`epochal.staging`).

        Copies (reflinks) it into the run on this thread and returns at once with ``name`` and
        ``version`` known; the store hashes and files it on its own thread. ``link=True``
        promises the file will not change again (a final checkpoint): it is hardlinked where
        possible instead of copied. Bad arguments raise; a full disk or a refused write is a
        warning and ``None``. After ``finish()`` the version is filed on this thread.
        """
        if not self.is_owner:
            return None
        staged = self._artifact_stager().stage(
            path, name=name, type=type, aliases=aliases, metadata=metadata, keep_last=keep_last, link=link)
        if staged is not None:
            if self._finished:  # no store lane any more
                from .artifacts import file_artifact

                return staged if file_artifact(self.dir, staged) is not None else None
            self._emit("epochal_artifact", artifact=staged)
        return staged

    def _artifact_stager(self) -> Any:
        stager = self.__dict__.get("_stager")
        if stager is None:
            from .staging import ArtifactStager

            stager = self.__dict__["_stager"] = ArtifactStager(self.dir)
        return stager

    def set_alias(self, name: str, version: str, alias: str) -> None:
        """Point ``alias`` (e.g. ``best``) of artifact ``name`` at ``version`` (applied in order with the artifacts)."""
        if self.is_owner:
            from .artifacts import alias_request, apply_alias

            request = alias_request(self._artifact_stager(), name, version, alias)
            if self._finished:  # no store lane any more
                apply_alias(self.dir, **request)
            else:
                self._emit("epochal_artifact_alias", **request)

    def log_dataset(self, data: Any, name: str) -> dict[str, Any]:
        """Fingerprint a path, array or DataFrame and record it under ``datasets.<name>`` in run.json.

        A path is fingerprinted off this thread: the facts returned (and stored first) say
        ``pending`` until the fingerprint replaces them (see :mod:`epochal.datasets`).
        """
        from .datasets import fingerprint, is_path

        if is_path(data) and not self._finished:
            return self._datasets().add(str(name), data)
        facts = fingerprint(data)
        self._datasets().record(str(name), facts)
        return facts

    def in_background(self, work: Callable[..., Any], *args: Any) -> Any:
        """Run ``work(*args)`` on epochal's background thread (one per process, tasks in order); its ``Future``.

        ``finish()`` waits for it (up to ``finish_timeout``), so work that records into this run
        off the caller's thread (a path's fingerprint, a training plot being drawn) is in before it closes.
        """
        global _executor
        with _pending_lock:
            if _executor is None:
                from concurrent import futures

                _executor = futures.ThreadPoolExecutor(1, thread_name_prefix="epochal-background")
            future = _executor.submit(work, *args)
            self.__dict__["_pending"] = [f for f in self.__dict__.get("_pending", ()) if not f.done()] + [future]
        return future

    def _datasets(self) -> Any:
        datasets = self.__dict__.get("_path_fingerprints")
        if datasets is None:
            from .datasets import PathFingerprints

            datasets = self.__dict__["_path_fingerprints"] = PathFingerprints(
                lambda name, facts: self.set_metadata(datasets={**self._meta.get("datasets", {}), name: facts}),
                self.in_background)
        return datasets

    def log_system(self, values: Mapping[str, float | int], wall: float | None = None) -> None:
        """Record one hardware sample of this process (every rank writes its own)."""
        if not self._finished:
            record = SystemRecord(wall or _time(), self.rank, FrozenDict(values))
            self._writer.emit("epochal_system", records=[record])

    # -- ending -------------------------------------------------------------------------
    def flush(self, timeout: float | None = 30.0) -> bool:
        """Block until every plugin has received what was logged so far."""
        return True if self._finished else self._writer.flush(timeout)

    def finish(self, status: str | None = None, error: str | None = None) -> None:
        """Flush, mark the run ``finished`` (or ``status``), close it. Safe to call twice; never raises."""
        if self._finished:
            return
        status = status or "finished"
        if status not in STATUSES:
            raise ValueError(f"status {status!r} is not one of {STATUSES}")
        try:
            if self._sampler is not None:
                self._sampler.stop()
            if self.__dict__.get("_pending"):  # work for this run off the training thread (see in_background)
                from concurrent import futures

                futures.wait(list(self.__dict__["_pending"]), self.finish_timeout)
            if self.is_owner:
                self._meta.update(
                    status=status, finished=_time(), last_step=self._next_step - 1, error=redact(error),
                    metric_names=sorted(self._known),
                )
                self._writer.emit("epochal_metadata", metadata=self._meta)
            self._finished = True
            self._writer.emit("epochal_run_end", status=status)
            self._writer.close(self.finish_timeout)
        except Exception as exc:  # tracking never kills training
            log.warning("epochal: finishing run %s failed: %r", self.id, exc)
        finally:
            self._finished = True
            self._release_directory()
            _unregister_active(self)

    @property
    def failures(self) -> dict[str, int]:
        """How often each plugin failed in this run."""
        return self._writer.failures

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.finish("failed", error="".join(traceback.format_exception(exc_type, exc, tb)))

    def __repr__(self) -> str:
        return f"<Run {self.project}/{self.id} name={self.name!r} dir={str(self.dir)!r}>"

    def _detach_after_fork(self) -> None:
        """In a forked child: become a :class:`ForkedRun`; the parent's threads and lock stay the parent's."""
        self.__class__ = ForkedRun
        ForkedRun._warned = False
        self._finished = True
        self.summary._lock = threading.Lock()  # the parent's writer may have held it at the fork
        self._release_directory()  # closes the child's copy; the parent keeps the lock


class DisabledRun(Run):
    """What ``mode="disabled"`` returns: the same API, every call a cheap no-op, nothing written."""

    disabled = True

    def __init__(self, *, project: str = DEFAULT_PROJECT, run_id: str = "disabled", name: str | None = None,
                 config: Mapping[str, Any] | None = None, **_: Any) -> None:
        self.id, self.project, self.rank, self.world_size, self.is_owner = run_id, project, 0, 1, True
        self.root = self.dir = Path(os.devnull)
        self._finished, self._known, self._next_step, self._epoch = False, set(), 0, None
        self._native = {}
        self._formats, self._order = {}, _discard
        self.config = Config()
        self.config.update(config or {})
        self.summary = Summary()
        self._meta = {"id": run_id, "name": name or run_id, "tags": [], "notes": "", "name_map": {}, "datasets": {}}
        _register_active(self)

    def _emit(self, hook: str, **kwargs: Any) -> None:
        pass

    def log(self, metrics: Mapping[str, Any], step: int | None = None, *, epoch: float | int | None = None) -> None:
        pass

    def log_artifact(self, *args: Any, **kwargs: Any) -> None:
        return None

    def log_dataset(self, data: Any, name: str) -> dict[str, Any]:
        return {}

    def log_system(self, *args: Any, **kwargs: Any) -> None:
        pass

    def flush(self, timeout: float | None = 30.0) -> bool:
        return True

    @property
    def failures(self) -> dict[str, int]:
        return {}

    def finish(self, status: str | None = None, error: str | None = None) -> None:
        self._finished = True
        _unregister_active(self)


class ForkedRun(DisabledRun):
    """A run as a forked child sees its parent's: detached, every call a no-op (``log`` warns once).

    The parent's writer, sampler and lanes are threads the child does not have, so
    the child never writes to the parent's run and exits without waiting for them.
    Open a new run in the child (``epochal.init``) to track it.
    """

    _warned = False

    def log(self, metrics: Mapping[str, Any], step: int | None = None, *, epoch: float | int | None = None) -> None:
        if not ForkedRun._warned:
            ForkedRun._warned = True
            log.warning("epochal: run %s belongs to the parent of this forked process (pid %d); log() here "
                        "records nothing. Call epochal.init() in the child to track it", self.id, os.getpid())


def _discard(item: Any) -> None:
    pass


def _getter(take: tuple[int, ...]) -> Any:
    """A callable picking the values at ``take`` out of a tuple, always as a tuple."""
    return operator.itemgetter(*take) if len(take) > 1 else (lambda row: (row[take[0]],))


def _is_number(name: str, value: Any) -> bool:
    try:
        to_number(name, value)
    except (TypeError, ValueError):
        return False
    return True


def _check_step(step: Any) -> int:
    try:
        number = to_number("step", step)
    except TypeError:
        raise TypeError(f"step must be an int, got {type(step).__name__} {step!r}") from None
    if isinstance(number, float) and not number.is_integer():
        raise ValueError(f"step must be a whole number, got {step!r}")
    return check_step_range(int(number))


def _check_parent(parent: Any, root: Path, project: str) -> str | None:
    """The id of ``parent`` (an open run of this process in the same folder and project), or a clear error."""
    if parent is None:
        return None
    if not isinstance(parent, Run) or parent.disabled or parent._finished or not parent.is_owner:
        raise ValueError(f"parent={parent!r} is not an open run of this process; pass the Run returned by "
                         "epochal.init (before its finish()), or omit parent=")
    if parent.root != root or parent.project != project:
        raise ValueError(f"parent run {parent.id!r} is in {parent.dir.parent}, not in {root / project}; "
                         "open the run with the parent's dir= and project=, or omit parent=")
    return parent.id


def _clean_tags(tags: Iterable[str] | str | None) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [tags]
    return list(dict.fromkeys(str(t) for t in tags))


def init(
    project: str | None = None,
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    tags: Iterable[str] | None = None,
    notes: str | None = None,
    dir: str | os.PathLike[str] | None = None,
    id: str | None = None,
    resume: bool | Literal["allow", "must", "never"] = False,
    mode: Literal["enabled", "disabled"] | None = None,
    sinks: Iterable[str] | None = None,
    system_interval: float = 10.0,
    flush_interval: float = 1.0,
    finish_timeout: float = 30.0,
    parent: Run | None = None,
) -> Run:
    """Start (or resume) a run and make it the current run for ``epochal.log`` and friends.

    Settings not given come from ``EPOCHAL_DIR`` (default ``./epochal-runs``),
    ``EPOCHAL_PROJECT`` (default ``default``), ``EPOCHAL_MODE`` (``disabled`` makes every
    call a no-op) and ``EPOCHAL_RUN_ID``. Use it as a context manager to mark the run
    ``failed`` when the block raises.

    ``parent``: an open run of this process, in the same ``dir`` and ``project``, that this
    run is part of (a search candidate of a search's run). run.json names it (``parent``) and
    the environment is not captured again: run.json's ``environment_of`` points at the
    parent's ``environment/``, which ``epochal.open_run(...).environment`` reads.
    """
    env = os.environ
    chosen = mode or env.get("EPOCHAL_MODE") or "enabled"
    if chosen not in ("enabled", "disabled", "offline", "online"):
        raise ValueError(f"mode {chosen!r} is not 'enabled' or 'disabled'")
    project = project or env.get("EPOCHAL_PROJECT") or DEFAULT_PROJECT
    if chosen == "disabled":
        return DisabledRun(project=project, name=name, config=config)
    root = Path(dir or env.get("EPOCHAL_DIR") or DEFAULT_DIR).expanduser().absolute()
    rank, world = distributed.rank(), distributed.world_size()
    if id is None and env.get("EPOCHAL_RUN_ID"):
        id, resume = env["EPOCHAL_RUN_ID"], resume or "allow"
    if id is None:
        id = distributed.shared_run_id(new_run_id()) if world > 1 else new_run_id()
    return Run(
        project=project, root=root, run_id=id, name=name, config=config, tags=tags or (), notes=notes,
        resume=resume, sinks=requested_sinks(sinks), system_interval=system_interval,
        flush_interval=flush_interval, finish_timeout=finish_timeout, rank=rank, world_size=world, parent=parent,
    )
