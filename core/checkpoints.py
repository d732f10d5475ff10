"""Which checkpoints a training records, the same rule in every integration: ``checkpoints="best" |
"last" | "all" | False`` (:class:`CheckpointPolicy`), and :func:`detach` for files a framework
rewrites in place."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from .run import Run

__all__ = ["Checkpoints", "CheckpointPolicy", "detach"]

log = logging.getLogger("epochal")
Checkpoints = Literal["best", "last", "all", False]
_CHOICES = ("best", "last", "all", False)


def detach(path: str | os.PathLike[str]) -> None:
    """Give ``path`` its own inode when it shares one (a checkpoint stored with ``link=True``).

    Frameworks rewrite their checkpoint files in place (``last.pt``, ``best.keras``): call this
    before such a file is written again, so the stored version keeps its bytes. Costs one copy,
    only for a file that is linked; a failure is logged, never raised.
    """
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_nlink > 1:
            tmp = path.with_name(f".{path.name}.epochal.tmp")
            shutil.copyfile(path, tmp)
            os.replace(tmp, path)
    except OSError as exc:
        log.warning("epochal: could not detach %s from the stored artifact: %r", path, exc)


class CheckpointPolicy:
    """Which checkpoints a training records as versions of the ``model`` artifact.

    - ``"best"`` (the default everywhere): at the end of training, the best checkpoint (the
      last one where nothing is monitored), aliases ``best`` and ``latest``.
    - ``"last"``: at the end of training, the last checkpoint saved.
    - ``"all"``: every checkpoint as it is saved; the best keeps the ``best`` alias.
    - ``False``: none.

    ``True`` is taken as ``"best"``. The versions recorded at the end of training are stored
    with ``link=True`` (the framework is done with the file: a hardlink where the filesystem
    allows, no second copy on disk); ``"all"`` stores copies as they come, since the framework
    may rewrite a file such as ``last.ckpt`` in place. ``keep_last`` prunes older versions.
    """

    def __init__(self, checkpoints: Checkpoints | bool = "best", *, name: str = "model",
                 keep_last: int | None = None) -> None:
        if checkpoints is True:
            checkpoints = "best"
        if checkpoints not in _CHOICES:
            raise ValueError(f"checkpoints={checkpoints!r}: use 'best', 'last', 'all' or False")
        if keep_last is not None and (type(keep_last) is not int or keep_last < 1):
            raise ValueError(f"keep_last must be a positive int or None, got {keep_last!r}")
        self.mode: Checkpoints = checkpoints
        self.name = name
        self.keep_last = keep_last
        self._last: tuple[str, dict[str, Any]] | None = None
        self._best: tuple[str, dict[str, Any]] | None = None
        self._stored: dict[str, str] = {}  # path -> version recorded ("all")

    def begin(self) -> None:
        """A training begins: forget what an earlier one reported (one policy serves each fit in turn)."""
        self._last = self._best = None
        self._stored = {}

    @property
    def seen(self) -> bool:
        """True once the framework reported a saved checkpoint (an integration may save one itself if not)."""
        return self._last is not None

    def saved(self, run: Run, path: str | os.PathLike[str], *, best: bool | None = None,
              metadata: Mapping[str, Any] | None = None) -> None:
        """The framework saved a checkpoint at ``path``; ``best``: it is the best so far (None: not monitored)."""
        if not self.mode:
            return
        entry = (os.fspath(path), dict(metadata or {}))
        self._last = entry
        if best:
            self._best = entry
        if self.mode == "all":
            version = self._store(run, entry, aliases=("best",) if best else (), link=False)
            if version is not None:
                self._stored[entry[0]] = version

    def end(self, run: Run, *, best: str | os.PathLike[str] | None = None,
            last: str | os.PathLike[str] | None = None, metadata: Mapping[str, Any] | None = None) -> str | None:
        """Training ended: record what the policy keeps; returns the version recorded (or None).

        ``best``/``last`` override what :meth:`saved` saw (a framework that knows its best file).
        """
        if not self.mode:
            return None
        meta = dict(metadata or {})
        best_entry = (os.fspath(best), meta) if best else self._best
        last_entry = (os.fspath(last), meta) if last else self._last
        if self.mode == "all":
            if best_entry is not None and best_entry[0] in self._stored:
                run.set_alias(self.name, self._stored[best_entry[0]], "best")
            self._last = self._best = None
            return None
        entry = last_entry if self.mode == "last" else best_entry or last_entry
        self._last = self._best = None  # the next training starts afresh
        if entry is None or not os.path.exists(entry[0]):
            return None
        aliases = ("best",) if self.mode == "best" or entry == best_entry else ()
        return self._store(run, entry, aliases=aliases, link=True)

    def _store(self, run: Run, entry: tuple[str, dict[str, Any]], aliases: tuple[str, ...], link: bool) -> str | None:
        path, meta = entry
        meta.setdefault("filename", os.path.basename(path))
        version = run.log_artifact(os.path.realpath(path), name=self.name, type="model", aliases=aliases,
                                   metadata=meta, keep_last=self.keep_last, link=link)
        return getattr(version, "version", None)
