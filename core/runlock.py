"""Exclusive locks inside a run directory, held by one process at a time and naming it.

:class:`OwnedLock` is the one mechanism: ``flock(LOCK_EX)`` on a file that the holder
fills with its pid, host, start time and role, so a process that finds it held can say
who holds it. The kernel drops the lock when the holder dies, however it dies (SIGKILL
included), so nothing has to be cleaned up. A forked child closes its copies of the locks
at once (the parent keeps them), so a long-lived child never outlives its parent's hold.
Two locks use it:

- :class:`RunLock`, ``<run dir>/lock``: one writer per run. The owning process (rank 0)
  holds it from ``init`` to ``finish``. Where ``flock`` is not shared between hosts (some
  network file systems), a run whose ``run.json`` says another host is still running it is
  refused unless that run reads as ``crashed`` (:func:`epochal.store.effective_status`:
  its heartbeat went stale): the same rule the readers use.
- the MLflow mirror's ``<run dir>/mlflow.lock`` (:mod:`epochal.sinks.mlflow_mirror`): one
  party at a time (a live mirror or ``epochal sync``) sends a run and moves its cursor.
"""

from __future__ import annotations

import json
import os
import socket
import time
import weakref
from pathlib import Path
from typing import Any

from .store import transient

__all__ = ["LOCK_FILE", "LockHeld", "OwnedLock", "RunInUseError", "RunLock", "describe_holder"]

LOCK_FILE = "lock"
_HELD: weakref.WeakSet[OwnedLock] = weakref.WeakSet()


class LockHeld(RuntimeError):
    """Another process holds the lock; ``holder`` is what it wrote there (pid, host, since, role)."""

    def __init__(self, message: str, holder: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.holder = holder or {}


class RunInUseError(LockHeld):
    """Another process has this run open."""


def describe_holder(holder: dict[str, Any]) -> str:
    """``pid 12 on host h (epochal sync) since 2026-11-30 10:58:03``, from what the holder wrote."""
    since = holder.get("since")
    when = f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}" if isinstance(
        since, (int, float)) else ""
    role = f" ({holder['role']})" if isinstance(holder.get("role"), str) else ""
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}{role}{when}"


class OwnedLock:
    """An exclusive lock on ``path`` (created if missing, never through a symlink), held until :meth:`release`."""

    def __init__(self, path: Path, role: str) -> None:
        self.path = Path(path)
        self.role = role
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock now or raise :class:`LockHeld` naming its holder (never waits)."""
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockHeld(f"{self.path} is held by {describe_holder(holder)}", holder) from None
        try:
            holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "role": self.role}
            os.ftruncate(fd, 0)
            try:
                os.pwrite(fd, json.dumps(holder).encode(), 0)  # first: a contender is waiting to read it
            except OSError as exc:  # a full disk: the lock holds all the same, its holder just goes unnamed
                if not transient(exc):
                    raise
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        _HELD.add(self)

    def release(self) -> None:
        """Let another process take it (closing the file drops the lock).

        In a forked child this closes only the child's copy: the parent keeps the lock.
        """
        _HELD.discard(self)
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


class RunLock:
    """The lock of one run directory, held by this process until :meth:`release`."""

    def __init__(self, run_dir: Path, run_id: str) -> None:
        self._lock = OwnedLock(Path(run_dir) / LOCK_FILE, "run")
        self.path = self._lock.path
        self.run_id = run_id

    def acquire(self, meta: dict[str, Any] | None = None) -> None:
        """Take the lock or raise :class:`RunInUseError` naming the owner; ``meta`` is the run's ``run.json``."""
        try:
            self._lock.acquire()
        except LockHeld as exc:
            raise self._in_use(exc.holder) from None
        try:
            self._check_other_host(meta)
        except BaseException:
            self._lock.release()
            raise

    def release(self) -> None:
        """Let another process open the run (in a forked child: only the child's copy is closed)."""
        self._lock.release()

    def _check_other_host(self, meta: dict[str, Any] | None) -> None:
        if not isinstance(meta, dict) or meta.get("status") != "running":
            return
        host = meta.get("host")
        if not host or host == socket.gethostname():
            return  # on this host the kernel's lock is the whole truth
        from .store import effective_status

        if effective_status(meta, self.path.parent) == "running":
            raise self._in_use({"pid": meta.get("pid"), "host": host})

    def _in_use(self, holder: dict[str, Any]) -> RunInUseError:
        return RunInUseError(
            f"run {self.run_id!r} is open in another process ({describe_holder(holder)}); finish it there first "
            "(it is released when that process ends), or start a new run without id=", holder)


def _read_holder(fd: int, patience: float = 2.0) -> dict[str, Any]:
    """The holder named in the lock file; it writes itself there just after taking the lock, so an
    empty or partial file is read again for up to ``patience`` seconds before giving up."""
    deadline = time.monotonic() + patience
    while True:
        try:
            holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except OSError:
            return {}
        except ValueError:
            holder = {}
        if (isinstance(holder, dict) and "pid" in holder) or time.monotonic() > deadline:
            return holder if isinstance(holder, dict) else {}
        time.sleep(0.01)


def _close_copies_in_forked_child() -> None:
    for lock in list(_HELD):
        lock.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_copies_in_forked_child)
