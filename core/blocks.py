"""Row blocks: the binary, append-only, crash-safe format of ``metrics.bin``.

Why not JSON lines: formatting one float as text costs about as much as a whole
``log()`` call, so a text format cannot keep up with the training thread. Here a
record is packed once on the training thread (:class:`epochal.records.RowFormat`)
and the writer appends runs of packed rows as blocks::

    b"EPB1" | uint32 header length | uint32 body length | header | body | uint32 crc32(header + body)

The header is JSON ``{"n": rows, "keys": [...]}``; the body is ``n`` little-endian
rows of ``int64 step, float64 time, float64 epoch (NaN = unknown), float64 value``
per key. Blocks appear in logging order. Metric values read back as floats. A torn
or corrupt block (a killed process) fails its length or checksum and is skipped;
the reader then looks for the next magic, so one bad block never hides the rest.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path
from typing import Any, Iterator, Sequence

from .records import RowFormat

__all__ = ["MAGIC", "encode_block", "iter_blocks", "iter_block_spans", "read_records", "read_columns", "read_series"]

MAGIC = b"EPB1"
_HEAD = struct.Struct("<4sII")
_CRC = struct.Struct("<I")
_FIXED = ("step", "time", "epoch")


def encode_block(fmt: RowFormat, rows: bytes | memoryview) -> bytes:
    """One block holding ``rows``: consecutive records packed by ``fmt``."""
    header = json.dumps({"n": len(rows) // fmt.size, "keys": list(fmt.keys)}, separators=(",", ":")).encode()
    payload = header + rows
    return _HEAD.pack(MAGIC, len(header), len(payload) - len(header)) + payload + _CRC.pack(zlib.crc32(payload))


def iter_blocks(data: bytes) -> Iterator[tuple[list[str], int, memoryview] | None]:
    """``(keys, rows, body)`` per block of a file's bytes; ``None`` for each torn or corrupt stretch."""
    for _, _, block in iter_block_spans(data):
        yield block


def iter_block_spans(data: bytes, pos: int = 0) -> Iterator[tuple[int, int, tuple[list[str], int, memoryview] | None]]:
    """``(start, stop, block)``: each block of ``data[pos:]`` (as :func:`iter_blocks` gives it) with its byte span."""
    view = memoryview(data)
    end = len(data)
    while pos < end:
        block = None
        if end - pos >= _HEAD.size + _CRC.size and data[pos : pos + 4] == MAGIC:
            _, head_len, body_len = _HEAD.unpack_from(data, pos)
            start = pos + _HEAD.size
            stop = start + head_len + body_len
            if stop + _CRC.size <= end and _CRC.unpack_from(data, stop)[0] == zlib.crc32(view[start:stop]):
                try:
                    header = json.loads(bytes(view[start : start + head_len]))
                    keys, n = [str(k) for k in header["keys"]], int(header["n"])
                    if body_len == n * 8 * (3 + len(keys)):
                        block = (keys, n, view[start + head_len : stop])
                except (ValueError, KeyError, TypeError):
                    block = None
        if block is None:
            found = data.find(MAGIC, pos + 1)
            found = end if found < 0 else found
            yield pos, found, None
            pos = found
            continue
        yield pos, stop + _CRC.size, block
        pos = stop + _CRC.size


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def read_records(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Every record as ``{"step", "time", "epoch", key: value}`` in logging order, and how many stretches were skipped."""
    records: list[dict[str, Any]] = []
    skipped = 0
    for block in iter_blocks(_read(path)):
        if block is None:
            skipped += 1
            continue
        keys, _, body = block
        fmt = RowFormat(tuple(keys))
        for row in fmt.iter_unpack(body):
            epoch = row[2]
            record = {"step": row[0], "time": row[1],
                      "epoch": None if epoch != epoch else int(epoch) if epoch.is_integer() else epoch}
            record.update(zip(keys, row[3:]))
            records.append(record)
    return records, skipped


def read_columns(path: Path, keys: Sequence[str] | None = None) -> tuple[dict[str, Any], int]:
    """Numpy columns ``step, time, epoch`` and one per metric (NaN where a record lacks it), in logging order."""
    import numpy as np

    parsed = list(iter_blocks(_read(path)))
    blocks = [b for b in parsed if b is not None]
    names = list(dict.fromkeys(k for b in blocks for k in b[0] if keys is None or k in keys))
    total = sum(b[1] for b in blocks)
    out: dict[str, Any] = {"step": np.empty(total, "<i8"), "time": np.empty(total), "epoch": np.empty(total)}
    for name in names:
        if name not in out:
            out[name] = np.full(total, np.nan)
    pos = 0
    for block_keys, n, body in blocks:
        dtype = np.dtype([("step", "<i8"), ("time", "<f8"), ("epoch", "<f8")]
                         + [(f"v{i}", "<f8") for i in range(len(block_keys))])
        rows = np.frombuffer(body, dtype=dtype, count=n)
        for name in _FIXED:
            out[name][pos : pos + n] = rows[name]
        for i, key in enumerate(block_keys):
            if key in out and key not in _FIXED:
                out[key][pos : pos + n] = rows[f"v{i}"]
        pos += n
    return out, len(parsed) - len(blocks)


def read_series(path: Path, keys: Sequence[str] | None = None) -> tuple[dict[str, dict[str, Any]], list[str], int]:
    """Each metric's own records: ``{key: {"step", "time", "epoch", "value"}}`` numpy arrays, logged points only.

    Unlike :func:`read_columns` nothing is filled in, so a logged NaN stays apart from "not logged
    in this record". Also returns every metric name in the file (``keys`` or not) and how many
    torn or corrupt stretches were skipped. Blocks of one row format are decoded together, in one
    pass; a metric found in several formats is put back in logging order.
    """
    import numpy as np

    parsed = list(iter_blocks(_read(path)))
    formats: dict[tuple[str, ...], list[tuple[int, int, memoryview]]] = {}
    position = 0
    for block in parsed:
        if block is not None:
            formats.setdefault(tuple(block[0]), []).append((position, block[1], block[2]))
            position += block[1]
    names = list(dict.fromkeys(k for fmt in formats for k in fmt))
    wanted = [k for k in names if keys is None or k in keys]
    parts: dict[str, list[tuple[Any, ...]]] = {k: [] for k in wanted}
    for fmt, chunks in formats.items():
        if not any(k in parts for k in fmt):
            continue
        dtype = np.dtype([("step", "<i8"), ("time", "<f8"), ("epoch", "<f8")]
                         + [(f"v{i}", "<f8") for i in range(len(fmt))])
        rows = np.frombuffer(b"".join(body for _, _, body in chunks), dtype=dtype)
        shared = [np.concatenate([np.arange(start, start + n) for start, n, _ in chunks])]
        shared += [np.ascontiguousarray(rows[name]) for name in _FIXED]  # one copy per format, shared by its keys
        for i, key in enumerate(fmt):
            if key in parts:
                parts[key].append((*shared, np.ascontiguousarray(rows[f"v{i}"])))
    series = {}
    for key, found in parts.items():
        if len(found) == 1:
            fields = found[0][1:]
        else:
            order = np.argsort(np.concatenate([f[0] for f in found]), kind="stable")
            fields = tuple(np.concatenate([f[j] for f in found])[order] for j in range(1, 5))
        series[key] = dict(zip(("step", "time", "epoch", "value"), fields))
    return series, names, sum(1 for b in parsed if b is None)


def last_step(path: Path) -> int:
    """The largest step in a metrics file (-1 if none), reading only the step column of each block."""
    best = -1
    for block in iter_blocks(_read(path)):
        if block is None or not block[1]:
            continue
        keys, _, body = block
        stride = 3 + len(keys)  # 8-byte fields per row; the step is the first
        if sys.byteorder == "little":
            steps: Any = body.cast("q")[::stride]
        else:
            steps = (s for (s,) in struct.iter_unpack(f"<q{8 * (stride - 1)}x", body))
        best = max(best, max(steps))
    return best
