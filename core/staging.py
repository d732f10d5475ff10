"""Artifacts staged on the caller's thread, stored on the store's lane; stale temp files cleaned.

``Run.log_artifact`` costs the caller one copy of the file (a reflink where the
filesystem has them; a hardlink with ``link=True``) into
``artifacts/.staging/<pid>-<n>/`` and returns a :class:`StagedArtifact` whose
``name``, ``version``, ``path``, ``size`` and ``aliases`` are known at once. The store's
lane then hashes, dedupes into ``.blobs/``, links the version folder and rewrites the
manifest (:func:`epochal.artifacts.commit`). Other plugins get the same handle;
``artifact.wait()`` (or reading ``artifact.sha256``) blocks until the store has
committed it and returns the stored :class:`~epochal.records.ArtifactVersion`, or
``None`` when it could not be stored.

Version numbers are given out by the run at call time, so every call makes a new
version; content already stored (in any version of any artifact of the run) is not
stored twice: the new version's files are hardlinks to the same blob.

Failures: bad arguments (name, alias, ``keep_last``, a missing source) raise at once;
anything the disk refuses (a full disk, a symlink planted in the run folder) is a
warning and ``None``, never an exception into training.

Temp files carry their writer's pid (``.<name>.<pid>.<random>.tmp``,
``.staging/<pid>-<n>``). :func:`clean_stale` removes those of processes that are
gone (and the caller's own leftovers at the end of a run), version folders the
manifest does not list and blobs nothing references; the store runs it when a run
opens and when it finishes.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any, Iterable, Mapping

from .records import ArtifactVersion
from .redact import redact
from .store import UnsafePathError, folder_inside, inside
from .values import jsonable

__all__ = ["StagedArtifact", "ArtifactStager", "STAGING_DIR", "clean_stale"]

log = logging.getLogger("epochal")
STAGING_DIR = ".staging"
_FICLONE = 0x40049409
_TEMP = re.compile(r"^\..+\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")
_STAGED = re.compile(r"^(?P<pid>\d+)-\d+$")
_counter = itertools.count()


class StagedArtifact:
    """An artifact version given out by ``Run.log_artifact``; stored by the store's lane shortly after.

    ``name``, ``version``, ``type``, ``path`` (relative to the run), ``size``, ``files``,
    ``aliases`` and ``metadata`` are known at once; ``sha256`` and ``created`` wait for the store.
    """

    def __init__(self, *, name: str, version: str, type: str, kind: str, path: str, size: int, files: int,
                 aliases: tuple[str, ...], metadata: dict[str, Any], keep_last: int | None, staging: Path,
                 rels: tuple[str, ...], source: str) -> None:
        self.name, self.version, self.type, self.kind, self.path = name, version, type, kind, path
        self.size, self.files, self.metadata, self.keep_last = size, files, metadata, keep_last
        self.aliases = tuple(sorted({"latest", *aliases}))
        self.requested_aliases = aliases
        self.staging, self.rels, self.source = staging, rels, source
        self._done = threading.Event()
        self._stored: ArtifactVersion | None = None

    def resolve(self, stored: ArtifactVersion | None) -> None:
        """Called once by the store: the committed version, or None when it could not be stored."""
        self._stored = stored
        self._done.set()

    def wait(self, timeout: float | None = 60.0) -> ArtifactVersion | None:
        """The stored version once the store committed it; None if it failed or ``timeout`` passed."""
        self._done.wait(timeout)
        return self._stored

    @property
    def failed(self) -> bool:
        return self._done.is_set() and self._stored is None

    @property
    def sha256(self) -> str | None:
        stored = self.wait()
        return stored.sha256 if stored is not None else None

    @property
    def created(self) -> float | None:
        stored = self.wait()
        return stored.created if stored is not None else None

    def __repr__(self) -> str:
        state = "stored" if self._stored else "failed" if self.failed else "staged"
        return f"<StagedArtifact {self.name}:{self.version} {state} {self.path!r}>"


class ArtifactStager:
    """One run's artifact versions as given out to callers (``Run.log_artifact`` holds one)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self._next: dict[str, int] = {}  # name -> next version number
        self._known: dict[str, set[str]] = {}  # name -> versions given out or stored
        self._lock = threading.Lock()

    def _load(self, name: str) -> None:
        if name in self._next:
            return
        from .artifacts import read_manifest

        item = read_manifest(self.run_dir)["artifacts"].get(name) or {}
        versions = {e["version"] for e in item.get("versions", [])}
        numbers = [int(v[1:]) for v in versions]
        self._next[name] = max(int(item.get("next", 0)), 1 + max(numbers, default=-1))
        self._known[name] = versions

    def knows(self, name: str, version: str) -> bool:
        with self._lock:
            self._load(name)
            return version in self._known[name]

    def versions(self, name: str) -> list[str]:
        with self._lock:
            self._load(name)
            return sorted(self._known[name], key=lambda v: int(v[1:]))

    def stage(self, path: str | os.PathLike[str], *, name: str | None = None, type: str = "file",
              aliases: Iterable[str] = (), metadata: Mapping[str, Any] | None = None, keep_last: int | None = None,
              link: bool = False) -> StagedArtifact | None:
        """Check the arguments (raising on bad ones), copy the source into staging; None (warned) if the disk refuses."""
        from .artifacts import check_alias, check_name, collect_files, default_name

        source = Path(os.fspath(path)).expanduser()
        if not source.exists():
            raise FileNotFoundError(f"cannot log artifact: {str(source)!r} does not exist")
        if not (source.is_file() or source.is_dir()):
            raise ValueError(f"cannot log artifact {str(source)!r}: not a regular file or folder")
        name = check_name(name) if name is not None else default_name(source)
        alias_list = tuple(check_alias(a) for a in ([aliases] if isinstance(aliases, str) else aliases))
        if keep_last is not None and (isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1):
            raise ValueError(f"keep_last must be an int >= 1 (or None to keep every version), got {keep_last!r}")
        if not isinstance(type, str) or not type:
            raise ValueError(f"artifact type must be a non-empty str such as 'model', got {type!r}")
        clean_metadata = redact(jsonable(dict(metadata or {})))
        kind = "file" if source.is_file() else "dir"
        link = link or os.environ.get("EPOCHAL_ARTIFACT_LINK") == "hardlink"
        try:
            inside(self.run_dir, "artifacts", name)  # refuse at once when a link was planted where it goes
            inside(self.run_dir, "artifacts", ".blobs")
            files = collect_files(source, self.run_dir)
            staging = _staging_folder(self.run_dir)
            size = 0
            try:
                for rel, src in files:
                    size += _stage_file(src, staging / rel, link)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        except OSError as exc:
            log.warning("epochal: artifact %r was not stored: %s", name, _reason(exc))
            return None
        with self._lock:  # the number is given only once the copy is made: no gaps when a copy fails
            self._load(name)
            number = self._next[name]
            self._next[name] = number + 1
            version = f"v{number}"
            self._known[name].add(version)
        rel_path = f"artifacts/{name}/{version}" + (f"/{source.name}" if kind == "file" else "")
        staged = StagedArtifact(
            name=name, version=version, type=type, kind=kind, path=rel_path, size=size, files=len(files),
            aliases=alias_list, metadata=clean_metadata, keep_last=keep_last, staging=staging,
            rels=tuple(rel for rel, _ in files), source=redact(str(source.absolute())))
        return staged


def _reason(exc: OSError) -> str:
    if isinstance(exc, UnsafePathError):
        return str(exc)
    return f"{exc.strerror or exc} ({getattr(exc, 'filename', None) or ''}); training goes on"


def _staging_folder(run_dir: Path) -> Path:
    """A new, empty ``artifacts/.staging/<pid>-<n>`` folder (no symlink on the way)."""
    base = folder_inside(run_dir, "artifacts", STAGING_DIR)
    for _ in range(1000):
        folder = base / f"{os.getpid()}-{next(_counter)}"
        try:
            os.mkdir(folder)
            return folder
        except FileExistsError:  # a dead process with the same pid left it
            continue
    raise FileExistsError(f"cannot make a staging folder in {base}")


def _stage_file(src: Path, dst: Path, link: bool) -> int:
    """Put ``src`` at ``dst`` (a fresh path in our staging folder): hardlink if asked and possible, else a
    reflink, else a copy. Returns the size."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst, follow_symlinks=True)
            return os.stat(dst).st_size
        except OSError:  # another filesystem (EXDEV), no hardlinks there, permissions
            pass
    if not _clone(src, dst):
        shutil.copyfile(src, dst)
    return os.stat(dst).st_size


def _clone(src: Path, dst: Path) -> bool:
    """A copy-on-write clone (Linux FICLONE) of ``src`` at ``dst``; False when the filesystem has none."""
    if os.environ.get("EPOCHAL_ARTIFACT_LINK") == "copy":
        return False
    try:
        import fcntl
    except ImportError:
        return False
    try:
        with open(src, "rb") as source, open(dst, "wb") as target:
            fcntl.ioctl(target.fileno(), _FICLONE, source.fileno())
        return True
    except OSError:
        try:
            os.unlink(dst)
        except OSError:
            pass
        return False


# -- stale temp files ----------------------------------------------------------------------
def _alive(pid: int, ours_done: bool) -> bool:
    if pid == os.getpid():
        return not ours_done
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def clean_stale(run_dir: Path, finished: bool = False) -> int:
    """Remove temp files and staging folders of dead writers, version folders the manifest does not list,
    and blobs nothing references. Returns how many entries went.

    Called by the run's owner only: when the run opens, and with ``finished=True`` when the store's
    lane ends the run, when the caller's own artifact leftovers (staging, manifest temps: every
    artifact was committed by then) go too. Other plugins' lanes may still be writing elsewhere at
    that moment, so their folders lose only the temp files of processes that are gone. Never follows
    a symlink; a live process's temp file is kept whatever its age.
    """
    run_dir = Path(run_dir)
    artifacts = run_dir / "artifacts"
    removed = 0
    for folder, ours_done in ((run_dir, False), (run_dir / "environment", False), (run_dir / "media", False),
                              (artifacts, finished), (artifacts / ".blobs", finished)):
        for entry in _entries(folder):
            match = _TEMP.match(entry.name)
            if match and not entry.is_dir(follow_symlinks=False) and not _alive(int(match.group("pid")), ours_done):
                removed += _remove(entry)
    for entry in _entries(artifacts / STAGING_DIR):
        match = _STAGED.match(entry.name)
        if entry.is_symlink() or (match and not _alive(int(match.group("pid")), finished)):
            removed += _remove(entry)
    removed += _clean_unlisted(run_dir)
    return removed


def _entries(folder: Path) -> list[os.DirEntry]:
    if os.path.islink(folder):
        return []
    try:
        with os.scandir(folder) as it:
            return list(it)
    except OSError:
        return []


def _remove(entry: os.DirEntry) -> int:
    try:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
        return 1
    except OSError:
        return 0


def _clean_unlisted(run_dir: Path) -> int:
    """Version folders a killed store left without a manifest entry, and blobs no version uses."""
    from .artifacts import collect_garbage, read_manifest

    artifacts = run_dir / "artifacts"
    if os.path.islink(artifacts) or not artifacts.is_dir():
        return 0
    manifest = read_manifest(run_dir)
    listed = {(n, e["version"]) for n, item in manifest["artifacts"].items() for e in item["versions"]}
    removed = 0
    for name_entry in _entries(artifacts):
        if name_entry.name.startswith(".") or not name_entry.is_dir(follow_symlinks=False):
            continue
        for version_entry in _entries(Path(name_entry.path)):
            if re.fullmatch(r"v\d{1,9}", version_entry.name) and (name_entry.name, version_entry.name) not in listed:
                removed += _remove(version_entry)
    return removed + collect_garbage(run_dir, manifest)
