"""The run directory: atomic small files, append-only records, the built-in store sink, the reader.

Layout (``<root>/<project>/<run_id>/``)::

    run.json  config.json  summary.json      atomic rewrites (temp file, fsync, os.replace)
    metrics.bin                              every log() call, in binary row blocks (see epochal.blocks)
    system.jsonl | system.rank<N>.jsonl      hardware samples (JSON lines), one file per rank under DDP
    heartbeat                                touched by the writer thread every cycle
    environment/  artifacts/  media/  tensorboard/

Records are written whole and flushed to the OS on every batch, so a killed process
loses at most the batch in flight; a torn last block or line is skipped by the reader.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from .blocks import encode_block, read_records
from .hookspecs import hookimpl
from .records import MetricBatch

__all__ = [
    "METRICS_FILE", "RUN_FILE", "CONFIG_FILE", "SUMMARY_FILE", "HEARTBEAT_FILE",
    "write_json_atomic", "read_json", "read_json_object", "read_jsonl", "read_metrics", "system_file_name", "StoreSink",
    "touch_heartbeat", "effective_status",
]

RUN_FILE = "run.json"
CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.bin"
HEARTBEAT_FILE = "heartbeat"
STALE_AFTER_SECONDS = 60.0
#: Readers refuse JSON files nested deeper than this (no run writes them; it keeps every reader's recursion bounded).
MAX_JSON_DEPTH = 100


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON: temp file in the same folder, fsync, ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=False, default=repr)
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


def touch_heartbeat(run_dir: Path) -> None:
    path = run_dir / HEARTBEAT_FILE
    try:
        os.utime(path)
    except FileNotFoundError:
        path.touch()


def effective_status(meta: Mapping[str, Any], run_dir: Path, now: float | None = None) -> str:
    """The run's status as a reader should see it: ``running`` becomes ``crashed`` when its process is gone."""
    status = meta.get("status", "running")
    if status != "running":
        return status if status in ("finished", "failed", "crashed") else "unknown"
    if meta.get("host") == socket.gethostname() and not _process_alive(meta.get("pid"), meta.get("started")):
        return "crashed"
    try:
        beat = (run_dir / HEARTBEAT_FILE).stat().st_mtime
    except OSError:
        beat = meta.get("started") if isinstance(meta.get("started"), (int, float)) else 0.0
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


class StoreSink:
    """The built-in plugin that writes a run's events into its directory."""

    def __init__(self) -> None:
        self._files: dict[str, Any] = {}

    def _append(self, run_dir: Path, name: str, data: str | bytes) -> None:
        handle = self._files.get(name)
        if handle is None:
            handle = self._files[name] = open(run_dir / name, "ab")
        handle.write(data.encode() if isinstance(data, str) else data)
        handle.flush()

    @hookimpl
    def epochal_config(self, run, config: Mapping[str, Any]) -> None:
        if run.is_owner:
            write_json_atomic(run.dir / CONFIG_FILE, dict(config))

    @hookimpl
    def epochal_metrics(self, run, records: MetricBatch) -> None:
        if not run.is_owner:
            return
        self._append(run.dir, METRICS_FILE, b"".join(encode_block(fmt, rows) for fmt, rows in records.runs))

    @hookimpl
    def epochal_system(self, run, records: Sequence) -> None:
        parts = []
        for wall, rank, values in records:
            row = {"time": wall, "rank": rank}
            row.update(values)
            parts.append(_line(row))
        self._append(run.dir, system_file_name(run.rank, run.world_size), "".join(parts))

    @hookimpl
    def epochal_summary(self, run, summary: Mapping[str, Any]) -> None:
        if run.is_owner:
            write_json_atomic(run.dir / SUMMARY_FILE, dict(summary))

    @hookimpl
    def epochal_metadata(self, run, metadata: Mapping[str, Any]) -> None:
        if run.is_owner:
            write_json_atomic(run.dir / RUN_FILE, dict(metadata))

    @hookimpl
    def epochal_media(self, run, records: Sequence) -> None:
        if run.is_owner:
            from ._media_store import INDEX_FILE, end_torn_line, write_media

            lines = write_media(run.dir, records)
            if not lines:
                return
            if INDEX_FILE not in self._files:  # first append of this process: after a crash's torn line
                lines = end_torn_line(run.dir) + lines
            self._append(run.dir, INDEX_FILE, lines)

    @hookimpl
    def epochal_run_end(self, run, status: str) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()
