"""One writer per run: an exclusive lock on the run directory while a process has it open.

The owning process (rank 0) holds ``flock(LOCK_EX)`` on ``<run dir>/lock`` from ``init``
to ``finish``; the file names the owner (pid, host, start time). The kernel drops the
lock when the owner dies, however it dies, so a crashed run can be resumed at once.
Where ``flock`` is not shared between hosts (some network file systems), a run whose
``run.json`` says another host is still running it is refused unless that run reads as
``crashed`` (:func:`epochal.store.effective_status`: its heartbeat went stale): the same
rule the readers use. A forked child closes its copy of the lock without releasing it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from .store import transient

__all__ = ["LOCK_FILE", "RunInUseError", "RunLock"]

LOCK_FILE = "lock"


class RunInUseError(RuntimeError):
    """Another process has this run open."""


class RunLock:
    """The lock of one run directory, held by this process until :meth:`release`."""

    def __init__(self, run_dir: Path, run_id: str) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.run_id = run_id
        self._fd: int | None = None

    def acquire(self, meta: dict[str, Any] | None = None) -> None:
        """Take the lock or raise :class:`RunInUseError` naming the owner; ``meta`` is the run's ``run.json``."""
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = _read_owner(fd)
            os.close(fd)
            raise self._in_use(owner) from None
        try:
            owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
            os.ftruncate(fd, 0)
            try:
                os.pwrite(fd, json.dumps(owner).encode(), 0)  # first: a contender is waiting to read it
            except OSError as exc:  # a full disk: the lock holds all the same, its owner just goes unnamed
                if not transient(exc):
                    raise
            self._check_other_host(meta)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Let another process open the run (closing the file drops the lock).

        In a forked child this closes only the child's copy: the parent keeps the lock.
        """
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def _check_other_host(self, meta: dict[str, Any] | None) -> None:
        if not isinstance(meta, dict) or meta.get("status") != "running":
            return
        host = meta.get("host")
        if not host or host == socket.gethostname():
            return  # on this host the kernel's lock is the whole truth
        from .store import effective_status

        if effective_status(meta, self.path.parent) == "running":
            raise self._in_use({"pid": meta.get("pid"), "host": host})

    def _in_use(self, owner: dict[str, Any]) -> RunInUseError:
        since = owner.get("since")
        when = f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}" if isinstance(
            since, (int, float)) else ""
        return RunInUseError(
            f"run {self.run_id!r} is open in another process (pid {owner.get('pid', '?')} on host "
            f"{owner.get('host', '?')}{when}); finish it there first (it is released when that process ends), "
            "or start a new run without id="
        )


def _read_owner(fd: int, patience: float = 2.0) -> dict[str, Any]:
    """The owner named in the lock file; the owner writes it just after taking the lock, so an
    empty or partial file is read again for up to ``patience`` seconds before giving up."""
    deadline = time.monotonic() + patience
    while True:
        try:
            owner = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except OSError:
            return {}
        except ValueError:
            owner = {}
        if (isinstance(owner, dict) and "pid" in owner) or time.monotonic() > deadline:
            return owner if isinstance(owner, dict) else {}
        time.sleep(0.01)
