"""The packed rows between ``log()`` and the writer: one growing buffer per row format.

``log()`` packs a record into bytes (:class:`RowFormat`) and appends them to its
format's ``bytearray``, then the format's id to ``order`` (an ``array`` of ints): two
C-level appends, no object per row, no lock. A known format's buffer is reached
through ``by_keys`` without a lock; a new set of names is registered under a lock, so
two threads never get one format id for two sets of names.

:meth:`Backlog.cut` takes every row so far as runs of consecutive rows of one format,
in logging order. The order of rows of one format is their buffer's order; ``order``
says how they interleave with other formats. A row whose id is not in ``order`` yet
(its thread is between the two appends) stays for the next cut.

The bound: past ``WAKE_BYTES`` in one buffer, the training thread cuts the rows
itself (one copy, no per-row work) and wakes the writer; once more than
``LIMIT_BYTES`` of cut rows wait for a writer thread starved of the GIL, the training
thread hands them to the plugins itself. Rows in flight between ``log()`` and the
plugins thus stay under about ``WAKE_BYTES`` per format plus ``LIMIT_BYTES``. Rows handed
to the store's lane and not yet written stay under ``writer.LANE_LIMIT_BYTES`` (16 MB):
past it ``log()`` waits for the store (a loop faster than the disk runs at its pace), at
most ``writer.LANE_WAIT_SECONDS`` once, after which that run no longer waits for it.
Other plugins' queues are theirs.
"""

from __future__ import annotations

import threading
from array import array
from itertools import groupby

from .records import RowFormat

__all__ = ["Backlog", "WAKE_BYTES", "LIMIT_BYTES"]

WAKE_BYTES = 1 << 20  # about 10,000 rows of 10 metrics
LIMIT_BYTES = 8 << 20


class Backlog:
    """Row formats of one run and the rows packed by them that no plugin has received yet."""

    def __init__(self) -> None:
        self.formats: list[RowFormat] = []  # format id -> format
        self.buffers: list[bytearray] = []  # format id -> packed rows not yet cut
        self.by_keys: dict[tuple[str, ...], tuple[int, RowFormat, bytearray]] = {}
        self.order = array("I")  # format id of every row not yet cut, in logging order
        self._lock = threading.Lock()

    def register(self, keys: tuple[str, ...]) -> tuple[int, RowFormat, bytearray]:
        """The ``(id, format, buffer)`` of these metric names, made on first use (under a lock)."""
        entry = self.by_keys.get(keys)
        if entry is not None:
            return entry
        with self._lock:
            entry = self.by_keys.get(keys)
            if entry is None:
                fmt, buffer = RowFormat(keys), bytearray()
                self.formats.append(fmt)
                self.buffers.append(buffer)
                entry = (len(self.formats) - 1, fmt, buffer)
                self.by_keys[keys] = entry  # published last: the fast path sees it whole
            return entry

    def cut(self) -> list[tuple[RowFormat, memoryview]]:
        """Every row so far as ``(format, consecutive packed rows)`` runs, in logging order (one caller at a time).

        The rows are copied once, into a read-only view no other code can change.
        """
        order = self.order
        n = len(order)
        if not n:
            return []
        taken = order[:n]
        del order[:n]
        first = taken[0]
        groups = [(first, n)] if taken.count(first) == n else [(k, len(list(g))) for k, g in groupby(taken)]
        used = [0] * len(self.formats)
        runs = []
        for fid, count in groups:
            fmt, buffer = self.formats[fid], self.buffers[fid]
            start = used[fid]
            end = used[fid] = start + count * fmt.size
            runs.append((fmt, memoryview(buffer[start:end]).toreadonly()))  # the slice is one atomic copy
        for fid, size in enumerate(used):
            if size:
                del self.buffers[fid][:size]
        return runs

    def pending_bytes(self) -> int:
        return sum(len(b) for b in self.buffers)
