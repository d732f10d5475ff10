"""Which run a training logs into, and the rules around it: the one copy every integration calls.

An integration keeps one :class:`Tracking` per callback or logger and calls it at its
framework's events::

    tracking = Tracking("keras", run=run, **init_kwargs)   # init arguments checked here, once
    run = tracking.start(name="Sequential")                # training begins
    with tracking.guard("on_epoch_end"):                   # never raises into training
        run.log_native(logs, step=step)
    tracking.end()                                         # or tracking.end(error=exc)

The rules, each written once:

- **Which run.** A run passed in (``run=``) is the caller's: logged into, never finished.
  Else, when the integration was given no ``epochal.init`` arguments of its own, the run
  the *user* opened with :func:`epochal.init` (the current one). Else the integration's
  own run. A run an integration opened is never adopted by another integration, another
  thread or a nested fit, and it finishes when its training ends.
- **Failure.** ``end(error=...)`` marks an own run ``failed`` with the traceback; an own run
  whose training began and had not ended when the interpreter exits reads ``failed`` too
  (the exception was caught by the program, or the framework calls no callback on error).
- **Guards.** Tracking never raises into training: a failing call is logged once per place
  (``guard`` / ``call``) and training goes on.
- **Resume markers.** One format everywhere, :func:`marker`: ``{"project", "id", "root"}``,
  stored under the key ``"epochal"`` of a checkpoint dict or as ``epochal.json`` in a
  checkpoint folder; :func:`read_marker` reads either.
- **Checkpoints** live in :mod:`epochal.checkpoints` (``checkpoints="best" | "last" | "all" | False``).
- **One handle per run and process.** A marker naming a run already open in this process
  takes that handle instead of opening a second one (over from the integration that opened
  it, whose training never ended, e.g. it crashed; a user's run is borrowed); a pickled :class:`Tracking` (a
  ``ddp_spawn`` launch, a copied logger) hands its run over: this process's handle closes
  (status left ``running``, run.json not written again) and the copy reopens the run.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import shutil
import logging
import os
import threading
import traceback
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Callable, TypeVar

from .run import DisabledRun, Run, active_runs, check_segment, init
from .store import read_json, write_json_atomic

__all__ = [
    "Tracking", "check_init_args", "marker", "read_marker", "write_marker", "MARKER_KEY", "MARKER_FILE", "owned_by",
]

log = logging.getLogger("epochal")
MARKER_KEY = "epochal"
MARKER_FILE = "epochal.json"
_INIT = inspect.signature(init)
_T = TypeVar("_T")

_owners: weakref.WeakKeyDictionary[Run, str] = weakref.WeakKeyDictionary()  # own runs -> integration
_holders: weakref.WeakKeyDictionary[Run, Tracking] = weakref.WeakKeyDictionary()  # own runs -> their Tracking
_training: set[Tracking] = set()  # trackings mid-training (held: the callback owning one may be dropped first)
_lock = threading.Lock()
_exit_hook = False


def check_init_args(where: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` if :func:`epochal.init` accepts them; else a TypeError naming the bad ones and the choices."""
    unknown = sorted(set(kwargs) - set(_INIT.parameters))
    if unknown:
        raise TypeError(
            f"{where} got unexpected argument(s) {unknown}; it passes these on to epochal.init, "
            f"which takes {sorted(_INIT.parameters)}"
        )
    return dict(kwargs)


def owned_by(run: Run) -> str | None:
    """The integration that opened ``run`` for itself, or None for a run the user opened."""
    return _owners.get(run)


def _user_run() -> Run | None:
    """The newest open run the user opened (integrations' own runs are never adopted)."""
    for run in reversed(active_runs()):
        if run not in _owners:
            return run
    return None


class Tracking:
    """One integration's hold on a run: which run, guards, ending, failure at exit."""

    def __init__(self, integration: str, run: Run | None = None, **init_kwargs: Any) -> None:
        if run is not None and init_kwargs:
            raise TypeError(f"{integration} takes either run= or epochal.init() arguments, not both")
        self.integration = integration
        self.init_kwargs = check_init_args(integration, init_kwargs)
        self._given = run
        self._run: Run | None = run
        self._owns = False
        self._warned: set[str] = set()
        self._pid = os.getpid()

    # -- which run ---------------------------------------------------------------------
    @property
    def run(self) -> Run | None:
        """The run of the current (or last) training, or None before the first."""
        return self._run

    @property
    def owns(self) -> bool:
        """True when the run was opened by this integration (and is finished by it)."""
        return self._owns

    @property
    def is_open(self) -> bool:
        return self._run is not None and not self._run._finished

    def start(self, resume: Mapping[str, Any] | None = None, **defaults: Any) -> Run:
        """Training begins: return the run to log into, opening one if needed. Never raises.

        ``resume`` is a marker (:func:`read_marker`) of the run a restored checkpoint belongs
        to: that run is reopened instead of a new one. ``defaults`` are ``epochal.init``
        arguments the framework suggests (``name=``, ``config=``); the user's win.
        """
        if self._given is not None:
            return self._given
        current = self._run
        if current is not None and not current._finished and self._owns:
            if resume is None or resume.get("id") == current.id:
                self._mark_training()
                return current
            _discard(current)  # the run opened before the checkpoint was read, replaced by the one it names
        if resume is not None:
            held = _open_handle(resume)
            if held is not None and held is not self._run:  # never two handles on one run in a process
                previous = _holders.get(held)
                self._run, self._owns = held, previous is not None
                if previous is not None:  # taken over: ended (finished or failed) by this Tracking now
                    previous._owns = False
                    _training.discard(previous)
                    _owners[held], _holders[held] = self.integration, self
                    self._mark_training()
                return held
        if resume is None and not self.init_kwargs:
            user = _user_run()
            if user is not None:
                self._run, self._owns = user, False
                return user
        kwargs = {**defaults, **self.init_kwargs}
        if resume is not None:
            kwargs.update(id=resume["id"], resume=kwargs.get("resume") or "allow")
            kwargs.setdefault("project", resume.get("project"))
            if resume.get("root"):
                kwargs.setdefault("dir", resume["root"])
        return self._open(kwargs)

    def reopen(self, **defaults: Any) -> Run:
        """Reopen this integration's own finished run (an ``evaluate()`` after ``fit()``); else :meth:`start`.

        ``defaults`` are ``epochal.init`` settings for the reopened handle (``system_interval=0``...),
        as in :meth:`start`; the run's identity (id, project, folder) is always the previous one.
        """
        if self._owns and self._run is not None and self._run._finished and not self._run.disabled:
            previous = self._run
            return self._open({**defaults, **self.init_kwargs, "id": previous.id, "project": previous.project,
                               "dir": str(previous.root), "resume": "must"})
        return self.start(**defaults)

    def _open(self, kwargs: dict[str, Any]) -> Run:
        try:
            run = init(**kwargs)
        except Exception as exc:  # e.g. an unwritable folder: training goes on, untracked
            self.warn("open", exc)
            run = DisabledRun(project=str(kwargs.get("project") or "default"))
        self._run, self._owns, self._pid = run, True, os.getpid()
        _owners[run], _holders[run] = self.integration, self
        self._mark_training()
        return run

    def _mark_training(self) -> None:
        global _exit_hook
        with _lock:
            _training.add(self)
            if not _exit_hook:  # registered after the run's own exit handler, so it runs first
                _exit_hook = True
                atexit.register(_fail_unended)

    # -- ending ------------------------------------------------------------------------
    def end(self, error: BaseException | str | None = None, *, status: str | None = None) -> None:
        """Training ended: an own run finishes (``failed`` with ``error``); a borrowed one is flushed."""
        with _lock:
            _training.discard(self)
        run = self._run
        if run is None or run._finished:
            return
        text = _error_text(error)
        try:
            if self._owns:
                run.finish(status or ("failed" if text else "finished"), error=text)
            else:
                run.flush()
        except Exception as exc:
            self.warn("end", exc)

    # -- guards ------------------------------------------------------------------------
    @contextlib.contextmanager
    def guard(self, where: str) -> Iterator[None]:
        """Run the block; an exception in it is logged once per ``where`` and swallowed."""
        try:
            yield
        except Exception as exc:
            self.warn(where, exc)

    def call(self, where: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T | None:
        """``fn(*args, **kwargs)``, or None (logged once per ``where``) if it raised."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            self.warn(where, exc)
            return None

    def warn(self, where: str, exc: BaseException | str) -> None:
        """Log a tracking failure once per place; training goes on."""
        if where in self._warned:
            return
        self._warned.add(where)
        log.warning("epochal: %s: %s failed: %r (training goes on; this is logged once)",
                    self.integration, where, exc, exc_info=isinstance(exc, BaseException))

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with its logger/callback: the copy opens the run anew (its integration passes a marker)."""
        run = self._run
        if self._owns and run is not None and not run._finished and self._pid == os.getpid():
            _training.discard(self)
            run.finish("running")  # handed over: this handle never writes run.json again
        state = self.__dict__.copy()
        state.update(_run=self._given, _owns=False, _warned=set())
        return state


def _open_handle(found: Mapping[str, Any]) -> Run | None:
    """The run a marker names if a handle on it is open in this process."""
    for run in active_runs():
        if run.id == found.get("id") and run.project == found.get("project", run.project) and (
                not found.get("root") or Path(found["root"]) == run.root):
            return run
    return None


def _discard(run: Run) -> None:
    """Finish ``run``; delete its folder if it was opened new moments ago and holds nothing but bookkeeping."""
    empty = run.is_owner and not run.disabled and not run.metadata.get("resumed") and run.step == 0 and not any(
        (run.dir / sub).exists() and any((run.dir / sub).iterdir()) for sub in ("artifacts", "checkpoints", "media"))
    run.finish()
    if empty:
        shutil.rmtree(run.dir, ignore_errors=True)


def _error_text(error: BaseException | str | None) -> str | None:
    if error is None or isinstance(error, str):
        return error
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def _fail_unended() -> None:
    """At exit: an own run whose training began and never ended is ``failed``."""
    with _lock:
        unended = list(_training)
    for tracking in unended:
        if tracking._pid == os.getpid() and tracking.owns:
            tracking.end(f"{tracking.integration}: training did not end (it raised and the program caught the "
                         "exception, or the process exited during training)")


# -- resume markers ------------------------------------------------------------------------------
def marker(run: Run) -> dict[str, str]:
    """What a checkpoint remembers of its run, so a restored training continues it."""
    return {"project": run.project, "id": run.id, "root": str(run.root)}


def write_marker(folder: str | os.PathLike[str], run: Run) -> None:
    """Write ``epochal.json`` into a checkpoint folder."""
    write_json_atomic(Path(folder) / MARKER_FILE, marker(run))


def read_marker(source: Mapping[str, Any] | str | os.PathLike[str] | None,
                project: str | None = None) -> dict[str, str] | None:
    """The run a checkpoint dict (key ``"epochal"``) or checkpoint folder (``epochal.json``) belongs to.

    Returns ``{"project", "id", "root"}`` or None when there is none, it is malformed, or it
    names another ``project`` than the one given. Reads the earlier ``{project: id}`` form too.
    """
    if source is None:
        return None
    if isinstance(source, Mapping):
        found = source.get(MARKER_KEY)
    else:
        found = read_json(Path(source) / MARKER_FILE) if Path(source).is_dir() else None
    if not isinstance(found, Mapping):
        return None
    if "id" not in found and project is not None and isinstance(found.get(project), str):
        found = {"project": project, "id": found[project]}  # the earlier Lightning form
    try:
        out = {"id": check_segment(found.get("id"), "run id"),  # type: ignore[arg-type]  # a ValueError if not a str
               "project": check_segment(found.get("project") or project or "default", "project")}
    except ValueError:
        return None
    if project is not None and out["project"] != project:
        return None
    root = found.get("root", found.get("dir"))  # "dir": the earlier Hugging Face form
    if isinstance(root, str):
        out["root"] = root
    return out
