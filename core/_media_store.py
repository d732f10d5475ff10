"""Media in the run directory: ``media/<key>/<step>-<n>.<ext>`` files and the append-only index.

Each file is written to a temporary name, fsynced and linked into place without ever
replacing an existing file (a repeated step gets the next free ``<n>``); only then
is its index line appended, so the index never names a missing or partial file. The
index, ``media/.index.jsonl``, has one JSON line per file: ``step``, ``time``, ``key``,
``type``, ``file`` (relative to the run directory), ``caption``, ``sha256`` and, for
images, ``width`` and ``height``. A torn last line is skipped by the reader.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from .media import MediaRecord, check_media_key
from .store import folder_inside, read_jsonl

__all__ = ["MEDIA_DIR", "INDEX_FILE", "write_media", "end_torn_line", "read_index", "is_entry"]

log = logging.getLogger("epochal")
MEDIA_DIR = "media"
INDEX_FILE = f"{MEDIA_DIR}/.index.jsonl"


def _folder(run_dir: Path, key: str) -> Path:
    """The key's folder under ``<run>/media``, created one level at a time; never through a symlink."""
    return folder_inside(Path(run_dir), MEDIA_DIR, *check_media_key(key).split("/"))


def _place(folder: Path, step: int, n: int, ext: str, data: bytes) -> str:
    """Write ``data`` as ``<step>-<n>.<ext>`` (the next free ``n``) atomically; returns the file name."""
    fd, tmp = tempfile.mkstemp(prefix=".media-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        while True:
            name = f"{step}-{n}.{ext}"
            try:
                os.link(tmp, folder / name)  # never replaces: a repeated step takes the next n
                return name
            except FileExistsError:
                n += 1
            except OSError:  # no hard links here: check, then rename
                if (folder / name).exists():
                    n += 1
                    continue
                os.replace(tmp, folder / name)
                return name
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def write_media(run_dir: Path, records: Iterable[MediaRecord]) -> str:
    """Write the records' files; returns their index lines (to append once the files are in place).

    A record that cannot be written (full disk, a symlinked folder) is left out with a
    warning; the others, and the rest of the run, go on.
    """
    run_dir = Path(run_dir)
    lines = []
    for record in records:
        try:
            lines.extend(_write(run_dir, record))
        except OSError as exc:
            log.warning("epochal: media %r at step %d not stored: %s", record.key, record.step, exc)
    return "".join(lines)


def _write(run_dir: Path, record: MediaRecord) -> list[str]:
    folder = _folder(run_dir, record.key)
    lines = []
    for n, item in enumerate(record.items):
        data = item.data()
        name = _place(folder, record.step, n, item.ext, data)
        entry = {
            "step": record.step, "time": record.time, "key": record.key, "type": record.kind,
            "file": f"{MEDIA_DIR}/{record.key}/{name}", "caption": item.caption,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        if item.kind == "image":
            entry.update(width=item.width, height=item.height)
        lines.append(json.dumps(entry, separators=(",", ":")) + "\n")
    return lines


def end_torn_line(run_dir: Path) -> str:
    """A newline if the index ends in a torn line (a crash mid-write), so the next line starts afresh."""
    try:
        with open(Path(run_dir) / INDEX_FILE, "rb") as index:
            index.seek(-1, os.SEEK_END)
            return "" if index.read(1) == b"\n" else "\n"
    except OSError:  # missing or empty
        return ""


def read_index(run_dir: Path) -> list[dict[str, Any]]:
    """The media index of a stored run in logging order; torn or foreign lines are skipped."""
    rows, _ = read_jsonl(Path(run_dir) / INDEX_FILE)
    return [row for row in rows if is_entry(row)]


def is_entry(row: dict[str, Any]) -> bool:
    """An index line as the store writes it, naming a file under ``media/`` (never outside the run)."""
    file = row.get("file")
    return (isinstance(row.get("step"), int) and isinstance(row.get("key"), str) and isinstance(file, str)
            and row.get("type") in ("image", "histogram", "text") and ".." not in file.split("/")
            and file.startswith(MEDIA_DIR + "/"))
