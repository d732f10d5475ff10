"""The run directory: atomic small files, append-only records, the built-in store sink, the reader.

Layout (``<root>/<project>/<run_id>/``)::

    run.json  config.json  summary.json      atomic rewrites (temp file, fsync, os.replace)
    metrics.bin                              every log() call, in binary row blocks (see epochal.blocks)
    system.jsonl | system.rank<N>.jsonl      hardware samples (JSON lines), one file per rank under DDP
    heartbeat                                touched by the writer thread every cycle
    environment/  artifacts/  media/  tensorboard/

Records are written whole and flushed to the OS on every batch, so a killed process
loses at most the batch in flight; a torn last block or line is skipped by the reader.

The store survives I/O errors (a full disk, a quota, a flaky network filesystem):
a write that fails is kept in memory, in order, and retried with backoff (0.1 s
doubling to 10 s) each time an event reaches the store, and once more, whatever the
backoff, when the run ends. It warns once when writing starts to fail and once when
it works again. The backlog is bounded by ``EPOCHAL_STORE_BUFFER_MB`` (default 256 MB
of appended records; run.json, config.json and summary.json keep only their latest
content, which costs nothing extra): past the bound, new metric and system batches
are dropped whole (never half a record), counted, reported in a warning and recorded
in run.json as ``store_dropped`` (``{file: records}``). A run whose disk is still
full when it ends keeps what was written before; its run.json may then still say
``running``, and readers show it as ``crashed`` once its process is gone.

Nothing is written or deleted through a symlink inside the run folder: appends open
with ``O_NOFOLLOW``, folders are checked level by level (:func:`inside`), atomic
rewrites replace the link itself, and a planted link is refused with
:class:`UnsafePathError`.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from .blocks import encode_block, read_records
from .hookspecs import hookimpl
from .records import MetricBatch

log = logging.getLogger("epochal")

__all__ = [
    "METRICS_FILE", "RUN_FILE", "CONFIG_FILE", "SUMMARY_FILE", "HEARTBEAT_FILE",
    "write_json_atomic", "read_json", "read_json_object", "read_jsonl", "read_metrics", "system_file_name",
    "system_prefix", "StoreSink",
    "touch_heartbeat", "effective_status", "inside", "folder_inside", "UnsafePathError", "BUFFER_LIMIT_BYTES", "transient",
]

RUN_FILE = "run.json"
CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.bin"
HEARTBEAT_FILE = "heartbeat"
STALE_AFTER_SECONDS = 60.0
#: Readers refuse JSON files nested deeper than this (no run writes them; it keeps every reader's recursion bounded).
MAX_JSON_DEPTH = 100


class UnsafePathError(OSError):
    """A write or delete inside a run folder would go through a symlink (or leave the folder); refused."""


def inside(root: Path, *parts: str, create: bool = False) -> Path:
    """``root/parts...``, refusing any symlink below ``root`` (folders and the last part alike).

    With ``create=True`` missing folders (all parts but the last) are made one level at a
    time. Raises :class:`UnsafePathError` naming the link and where it points.
    """
    path = Path(root)
    for index, part in enumerate(parts):
        if not part or part in (".", "..") or "/" in part or "\\" in part or "\x00" in part:
            raise UnsafePathError(f"{part!r} is not one plain name inside {root}; epochal writes only inside the run folder")
        path = path / part
        if index < len(parts) - 1 and create:
            try:
                os.mkdir(path)
            except FileExistsError:
                pass
        if os.path.islink(path):
            raise UnsafePathError(
                f"refusing to write through the symlink {path} -> {os.readlink(path)}: epochal never writes or deletes "
                f"outside the run folder; remove the link (or replace it by a real folder)"
            )
    return path


def folder_inside(root: Path, *parts: str) -> Path:
    """``root/parts...`` as a real folder, made level by level if missing; :class:`UnsafePathError` for a
    symlink (or a file) on the way."""
    path = inside(root, *parts, create=True)
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    if os.path.islink(path) or not path.is_dir():
        raise UnsafePathError(f"{path} is a symlink or not a folder; epochal writes only inside the run folder")
    return path


def write_json_atomic(path: Path, data: Any, root: Path | None = None, *, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` as JSON: temp file in the same folder, fsync, ``os.replace``.

    The rename replaces a symlink at ``path`` itself, never its target. With ``root`` (the
    run folder), every folder between ``root`` and ``path`` must be a real folder (see :func:`inside`).
    ``sync=False`` leaves out the fsync, for a file rewritten durably moments later.
    """
    path = Path(path)
    if root is not None:
        path = inside(root, *path.relative_to(root).parts, create=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=1, sort_keys=False, default=repr)  # one write, not one per JSON token
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_json(path: Path, default: Any = None) -> Any:
    """A JSON file's content, or ``default`` when it is missing or unreadable (bad JSON, nested too deeply)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError, RecursionError):
        return default


def read_json_object(path: Path) -> tuple[dict[str, Any], str | None]:
    """The JSON object in ``path`` (``{}`` when missing) and a note naming the file when it cannot be used.

    Never raises for content: a file that is not JSON, nested too deeply, or holds
    another shape (a list, a number) reads as ``{}`` with a note saying so.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {}, None
    except OSError as exc:
        return {}, f"{path.name}: cannot be read ({exc.strerror or exc})"
    except RecursionError:
        return {}, f"{path.name}: nested too deeply to read"
    except ValueError as exc:
        return {}, f"{path.name}: not valid JSON ({str(exc)[:80]})"
    if not isinstance(data, dict):
        return {}, f"{path.name}: holds a JSON {_json_kind(data)} where an object belongs"
    if _too_deep(data):
        return {}, f"{path.name}: nested more than {MAX_JSON_DEPTH} levels deep"
    return data, None


def _too_deep(data: Any) -> bool:
    """Whether ``data`` nests more than :data:`MAX_JSON_DEPTH` levels (checked without recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, (dict, list)))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, (dict, list)))
    return False


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    return "null" if value is None else "number"


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """All records of a JSON-lines file and the number of lines skipped as torn or corrupt.

    Never raises for content: a file being written can be read live.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return [], 0
    if not data:
        return [], 0
    skipped = 0
    end = data.rfind(b"\n")
    if end != len(data) - 1:  # a torn last line: no newline yet
        skipped = 1 if data[end + 1 :].strip() else 0
        data = data[: end + 1]
    if not data:
        return [], skipped
    text = data.decode("utf-8", errors="replace")
    try:  # one parse for the whole file: the fast path
        parsed = json.loads("[" + text.rstrip("\n").replace("\n", ",") + "]")
        records = [r for r in parsed if isinstance(r, dict)]
        return records, skipped + len(parsed) - len(records)
    except (ValueError, RecursionError):
        pass
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            skipped += 1
            continue
        if isinstance(value, dict):
            records.append(value)
        else:
            skipped += 1
    return records, skipped


def read_metrics(run_dir: Path) -> tuple[list[dict[str, Any]], int]:
    """A run's metric records ``{"step", "time", "epoch", key: value}`` in logging order, and the number skipped."""
    return read_records(Path(run_dir) / METRICS_FILE)


def system_file_name(rank: int, world_size: int) -> str:
    return f"system.rank{rank}.jsonl" if world_size > 1 else "system.jsonl"


def system_prefix(file_name: str) -> str:
    """How exports name a system file's samples: ``system/``, or ``system/rank<N>/`` for ``system.rank<N>.jsonl``."""
    match = re.fullmatch(r"system\.rank(\d+)\.jsonl", file_name)
    return f"system/rank{match.group(1)}/" if match else "system/"


def touch_heartbeat(run_dir: Path) -> None:
    path = run_dir / HEARTBEAT_FILE
    try:
        os.utime(path, follow_symlinks=False)
    except FileNotFoundError:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644))


def effective_status(meta: Mapping[str, Any], run_dir: Path, now: float | None = None) -> str:
    """The run's status as a reader should see it: ``running`` becomes ``crashed`` when its process is gone."""
    status = meta.get("status", "running")
    if status != "running":
        return status if status in ("finished", "failed", "crashed") else "unknown"
    if meta.get("host") == socket.gethostname() and not _process_alive(meta.get("pid"), meta.get("started")):
        return "crashed"
    started = meta.get("started")
    try:
        beat = (run_dir / HEARTBEAT_FILE).stat().st_mtime
    except OSError:
        beat = float(started) if isinstance(started, (int, float)) and abs(started) < 1e300 else 0.0
    interval = meta.get("flush_interval")
    interval = interval if isinstance(interval, (int, float)) and interval == interval else 1.0
    stale = max(STALE_AFTER_SECONDS, 5 * float(interval))
    return "crashed" if (now or time.time()) - beat > stale else "running"


def _process_alive(pid: Any, started: Any) -> bool:
    if not isinstance(pid, int):
        return True
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return not isinstance(started, (int, float)) or process.create_time() <= started + 1.0
    except psutil.NoSuchProcess:
        return False
    except (psutil.Error, ValueError, OverflowError):
        return True


def _line(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), default=repr) + "\n"


#: errno values a retry can outlive: a full disk or quota, a flaky (network) filesystem.
_TRANSIENT = frozenset(getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EIO", "EAGAIN", "EINTR", "ENOMEM", "ESTALE",
                                                  "ETIMEDOUT", "EROFS", "ENOLCK", "EBUSY") if hasattr(errno, n))


def transient(exc: OSError) -> bool:
    """True for an I/O error a retry can outlive (a full disk, a flaky filesystem); never for a refused path."""
    return not isinstance(exc, UnsafePathError) and exc.errno in _TRANSIENT


BUFFER_LIMIT_BYTES = int(float(os.environ.get("EPOCHAL_STORE_BUFFER_MB", "256")) * (1 << 20))
_BACKOFF_FIRST, _BACKOFF_MAX = 0.1, 10.0


class StoreSink:
    """The built-in plugin that writes a run's events into its directory, surviving I/O errors (see the module)."""

    def __init__(self, limit: int | None = None) -> None:
        self._fds: dict[str, int] = {}  # relative path -> append descriptor
        self._backlog: dict[str, bytearray] = {}  # relative path -> bytes not yet appended, in order
        self._rewrites: dict[str, Any] = {}  # relative path -> latest content not yet written (JSON files)
        self._buffered = 0
        self._limit = BUFFER_LIMIT_BYTES if limit is None else limit
        self._dropped: dict[str, int] = {}  # relative path -> records dropped past the bound
        self._failing: OSError | None = None
        self._retry_at = 0.0
        self._delay = _BACKOFF_FIRST
        self._run_dir: Path | None = None

    # -- writing with a backlog ---------------------------------------------------------------
    def _append(self, run_dir: Path, name: str, data: str | bytes, records: int = 1) -> None:
        data = data.encode() if isinstance(data, str) else data
        if not data:
            return
        self._run_dir = run_dir
        if self._buffered + len(data) > self._limit and self._backlog:
            self._dropped[name] = self._dropped.get(name, 0) + records
            if sum(self._dropped.values()) == records:
                log.warning("epochal: the store's backlog is full (%d MB, EPOCHAL_STORE_BUFFER_MB); new records are "
                            "dropped until the disk takes writes again (counted in run.json 'store_dropped')",
                            self._limit >> 20)
            self._retry(run_dir)
            return
        self._backlog.setdefault(name, bytearray()).extend(data)
        self._buffered += len(data)
        self._retry(run_dir)

    def _rewrite(self, run_dir: Path, name: str, data: Any) -> None:
        self._run_dir = run_dir
        self._rewrites[name] = data
        self._retry(run_dir)

    def _retry(self, run_dir: Path, force: bool = False) -> None:
        """Write what is pending; on an I/O error keep it, warn once, and wait out the backoff."""
        if not (self._backlog or self._rewrites) or (not force and time.monotonic() < self._retry_at):
            return
        refused: list[OSError] = []  # errors that do not go away by waiting: reported to the writer
        try:
            for name in list(self._rewrites):
                data = self._rewrites[name]
                if name == RUN_FILE and self._dropped:
                    data = {**data, "store_dropped": dict(self._dropped)}
                try:
                    write_json_atomic(run_dir / name, data, root=run_dir)
                except OSError as exc:
                    if transient(exc):
                        raise
                    refused.append(exc)
                del self._rewrites[name]
            for name in list(self._backlog):
                pending = self._backlog[name]
                try:
                    fd = self._fd(run_dir, name)
                    while pending:
                        written = os.write(fd, pending)
                        del pending[:written]
                except OSError as exc:
                    if transient(exc):
                        raise
                    refused.append(exc)
                del self._backlog[name]
        except OSError as exc:
            self._failed(exc)
        else:
            if self._failing is not None:
                log.warning("epochal: the run folder %s takes writes again; what was kept in memory is stored", run_dir)
                self._failing = None
            self._delay = _BACKOFF_FIRST
        finally:
            self._buffered = sum(map(len, self._backlog.values()))
        if refused:
            raise refused[0]

    def _failed(self, exc: OSError) -> None:
        if self._failing is None:
            log.warning("epochal: writing to the run folder failed (%s); records are kept in memory (up to %d MB) "
                        "and written when it works again", exc.strerror or exc, self._limit >> 20)
        self._failing = exc
        self._retry_at = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, _BACKOFF_MAX)

    def _fd(self, run_dir: Path, name: str) -> int:
        fd = self._fds.get(name)
        if fd is None:
            path = inside(run_dir, *name.split("/"), create=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise UnsafePathError(f"refusing to append through the symlink {path}; remove the link") from None
                raise
            self._fds[name] = fd
        return fd

    # -- hooks ----------------------------------------------------------------------------------
    @hookimpl
    def epochal_config(self, run, config: Mapping[str, Any]) -> None:
        if run.is_owner:
            self._rewrite(run.dir, CONFIG_FILE, config)

    @hookimpl
    def epochal_metrics(self, run, records: MetricBatch) -> None:
        if not run.is_owner:
            return
        self._append(run.dir, METRICS_FILE, b"".join(encode_block(fmt, rows) for fmt, rows in records.runs),
                     len(records))

    @hookimpl
    def epochal_system(self, run, records: Sequence) -> None:
        parts = []
        for wall, rank, values in records:
            row = {"time": wall, "rank": rank}
            row.update(values)
            parts.append(_line(row))
        self._append(run.dir, system_file_name(run.rank, run.world_size), "".join(parts), len(parts))

    @hookimpl
    def epochal_summary(self, run, summary: Mapping[str, Any]) -> None:
        if run.is_owner:
            self._rewrite(run.dir, SUMMARY_FILE, summary)

    @hookimpl
    def epochal_metadata(self, run, metadata: Mapping[str, Any]) -> None:
        if run.is_owner:
            self._rewrite(run.dir, RUN_FILE, metadata)

    @hookimpl
    def epochal_media(self, run, records: Sequence) -> None:
        if run.is_owner:
            from ._media_store import INDEX_FILE, end_torn_line, write_media

            try:
                lines = write_media(run.dir, records)
            except OSError as exc:  # a full disk: these media are lost (counted), later ones are written
                if not transient(exc):
                    raise
                self._failed(exc)
                self._dropped[INDEX_FILE] = self._dropped.get(INDEX_FILE, 0) + len(records)
                return
            if not lines:
                return
            if INDEX_FILE not in self._fds and INDEX_FILE not in self._backlog:  # first append: after a torn line
                lines = end_torn_line(run.dir) + lines
            self._append(run.dir, INDEX_FILE, lines, len(records))

    @hookimpl
    def epochal_run_start(self, run) -> None:
        if run.is_owner:
            from .staging import clean_stale

            try:
                clean_stale(run.dir)
            except OSError as exc:  # housekeeping only: never a failure of the store
                log.warning("epochal: cleaning stale temp files in %s failed: %r", run.dir, exc)

    @hookimpl
    def epochal_artifact(self, run, artifact) -> None:
        if not run.is_owner or not hasattr(artifact, "resolve"):
            return
        from .artifacts import file_artifact

        file_artifact(run.dir, artifact)

    @hookimpl
    def epochal_artifact_alias(self, run, name: str, version: str, alias: str) -> None:
        if run.is_owner:
            from .artifacts import apply_alias

            apply_alias(run.dir, name, version, alias)

    @hookimpl
    def epochal_run_end(self, run, status: str) -> None:
        self._retry(run.dir, force=True)
        if run.is_owner:
            from .staging import clean_stale

            try:
                clean_stale(run.dir, finished=True)
            except OSError as exc:
                log.warning("epochal: cleaning stale temp files in %s failed: %r", run.dir, exc)
        if self._backlog or self._rewrites:
            log.warning("epochal: run %s ended with %d bytes of records the disk did not take (%s); they are lost",
                        run.id, self._buffered, self._failing)
        if self._dropped:
            log.warning("epochal: run %s dropped records past the store's backlog bound: %s", run.id, self._dropped)
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()
