"""Media in MLflow: where each stored image, histogram and text lands among the run's artifacts.

The run directory's media index (``media/.index.jsonl``, see :mod:`epochal._media_store`)
is read from a byte offset, one complete line at a time, and each entry becomes artifact
files of the MLflow run:

- an image goes where ``mlflow.log_image(image, key=..., step=...)`` puts one, so the MLflow
  UI's image grid (a slider over steps per key) shows it:
  ``images/<key>+step+<step>+timestamp+<ms>+<id>.png`` with the stored PNG's bytes, plus a
  thumbnail at most :data:`THUMBNAIL_SIZE` pixels wide or high at ``...+<id>+compressed.png``
  (MLflow writes a WebP there; the grid takes PNG as well). ``/`` in the key reads ``~``,
  as MLflow writes it; ``<id>`` is the stored file's ``<step>-<n>``, so a file sent again lands
  on the same path and never doubles. A JPEG (logged from a ``.jpg`` path) keeps its bytes and
  extension; the grid shows PNG only, so it is found in the artifact browser under ``images/``.
- a histogram (MLflow has no histogram type) is its stored JSON,
  ``{"edges": [...], "counts": [...], "nonfinite": n}``, at ``histograms/<key>/<step>-<n>.json``;
- a text is its stored markdown at ``text/<key>/<step>-<n>.md``.

Keys pass through the mirror's name mapping (``epochal.name_map``), so they hold only
characters MLflow accepts and two keys never meet.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

from .._media_store import INDEX_FILE, is_entry
from ..store import inside

__all__ = ["IMAGES_TAG", "THUMBNAIL_SIZE", "index_entries", "count_entries", "media_files"]

log = logging.getLogger("epochal")
#: the tag MLflow sets on a run with logged images (its UI then offers the image grid).
IMAGES_TAG = "mlflow.loggedImages"
THUMBNAIL_SIZE = 256  # as MLflow's compress_image_size
_CHUNK = 1 << 18


def index_entries(run_dir: Path, offset: int) -> Iterator[tuple[dict[str, Any] | None, int]]:
    """``(entry, offset after its line)`` for each complete line of the index from byte ``offset``.

    ``entry`` is None for a line that is not a media entry (a torn line ended by a later
    write); a last line without its newline (still being written) ends the iteration.
    Reads a chunk at a time: memory stays bounded whatever the index's size.
    """
    try:
        handle = open(Path(run_dir) / INDEX_FILE, "rb")
    except OSError:
        return
    with handle:
        handle.seek(offset)
        rest = b""
        while True:
            chunk = handle.read(_CHUNK)
            if not chunk:
                return
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                offset += len(line) + 1
                yield _entry(line), offset


def count_entries(run_dir: Path, offset: int) -> int:
    """How many media entries the index holds past byte ``offset``."""
    return sum(entry is not None for entry, _ in index_entries(run_dir, offset))


def _entry(line: bytes) -> dict[str, Any] | None:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) and is_entry(row) else None


def media_files(entry: dict[str, Any], run_dir: Path,
                name: Callable[[str], str]) -> list[tuple[str, Callable[[], bytes]]]:
    """The artifact files of one index entry: ``(path in the run's artifacts, read its bytes)``.

    ``name`` maps an epochal key to the MLflow name (the mirror's :class:`NameMapper`).
    Reading raises ``OSError`` for a file gone from the run directory, and
    :class:`~epochal.store.UnsafePathError` for one reached through a symlink.
    """
    stored = PurePosixPath(entry["file"])
    key = name(entry["key"])

    def read() -> bytes:
        return inside(Path(run_dir), *stored.parts).read_bytes()

    if entry["type"] == "histogram":
        return [(f"histograms/{key}/{stored.name}", read)]
    if entry["type"] == "text":
        return [(f"text/{key}/{stored.name}", read)]
    stamp = int(round(float(entry.get("time") or 0.0) * 1000))
    base = f"images/{key.replace('/', '~')}+step+{entry['step']}+timestamp+{stamp}+{stored.stem}"
    if stored.suffix.lower() != ".png":
        return [(base + stored.suffix.lower(), read)]
    return [(base + ".png", read), (base + "+compressed.png", lambda: thumbnail(read()))]


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def thumbnail(png: bytes) -> bytes:
    """The image scaled to fit :data:`THUMBNAIL_SIZE` pixels (the PNG itself when it fits, or without Pillow)."""
    if not png.startswith(_PNG_SIGNATURE):  # never handed to a decoder (nor to what others patched into it)
        return png
    try:
        from PIL import Image
    except ImportError:
        return png
    try:
        with Image.open(io.BytesIO(png), formats=["PNG"]) as image:
            if max(image.size) <= THUMBNAIL_SIZE:
                return png
            scale = THUMBNAIL_SIZE / max(image.size)
            small = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
            out = io.BytesIO()
            small.save(out, format="PNG")
            return out.getvalue()
    except Exception as exc:  # not a readable PNG, or a decoder patched by another library: the file as it is
        log.info("epochal: no thumbnail for a media image (%r); the full image stands in", exc)
        return png

