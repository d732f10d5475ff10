"""Dataset fingerprints: a small dict that says whether two runs saw the same data.

Supported without importing anything heavy (types are recognised by module name):

- a path (``str`` or ``os.PathLike``; file or folder): file count, total bytes and a sha256 over every file's
  relative name and size plus *sampled* content (head, middle and tail blocks of
  each file, and at most ``SAMPLE_BUDGET`` bytes in all), so a 10 GB folder takes
  well under a second or two;
- a numpy array: shape, dtype and a sha256 of the full content;
- a pandas DataFrame or Series: shape, dtypes, columns and a sha256 of the content
  (``pandas.util.hash_pandas_object``, index included);
- a Hugging Face ``datasets.Dataset``: its own fingerprint, rows and features;
- bytes, lists/tuples/dicts of plain values: a sha256 of their JSON form;
- anything else: its type and length, with ``sha256: None`` (not comparable by content).

``Run.log_dataset`` of a path records ``{"kind": "path", "path": ..., "pending": true}`` at
once and fingerprints on epochal's background thread (:meth:`Run.in_background`); the facts
replace the placeholder when done, and ``finish()`` waits for them (up to its timeout).
A missing path still raises ``FileNotFoundError`` on the caller's thread.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable

__all__ = ["fingerprint", "is_path", "PathFingerprints", "SAMPLE_BLOCK", "SAMPLE_BUDGET"]

SAMPLE_BLOCK = 64 * 1024
SAMPLE_BUDGET = 64 * 1024 * 1024
_FULL_HASH_BELOW = 3 * SAMPLE_BLOCK


def _module(data: Any) -> str:
    return (type(data).__module__ or "").split(".")[0]


def fingerprint(data: Any) -> dict[str, Any]:
    """A JSON-able fingerprint of ``data`` (see the module docstring for what is understood)."""
    if isinstance(data, (str, os.PathLike)):
        return _path_fingerprint(Path(os.fspath(data)).expanduser())
    module = _module(data)
    if module == "numpy" and hasattr(data, "dtype") and hasattr(data, "shape"):
        return _array_fingerprint(data)
    if module == "pandas" and hasattr(data, "dtypes") and hasattr(data, "shape"):
        return _pandas_fingerprint(data)
    if module == "datasets" and isinstance(getattr(data, "_fingerprint", None), str):
        return {
            "kind": "hf_dataset", "sha256": None, "fingerprint": data._fingerprint,
            "rows": _safe(lambda: len(data)), "features": _safe(lambda: {k: str(v) for k, v in data.features.items()}),
        }
    if module == "torch" and hasattr(data, "detach") and hasattr(data, "shape"):
        facts = _array_fingerprint(data.detach().cpu().numpy())
        return {**facts, "kind": "tensor"}
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        return {"kind": "bytes", "sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
    if isinstance(data, (list, tuple, dict)):
        try:
            text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            text = None
        if text is not None:
            return {"kind": type(data).__name__, "sha256": hashlib.sha256(text.encode()).hexdigest(), "length": len(data)}
    return {
        "kind": "object", "type": f"{type(data).__module__}.{type(data).__qualname__}", "sha256": None,
        "length": _safe(lambda: len(data)),
    }


def _safe(fn: Any) -> Any:
    try:
        return fn()
    except Exception:
        return None


# -- paths ----------------------------------------------------------------------------------
def _files(root: Path) -> list[tuple[str, Path, int]]:
    if root.is_file():
        return [(root.name, root, root.stat().st_size)]
    out = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            try:
                if path.is_file():
                    out.append((path.relative_to(root).as_posix(), path, path.stat().st_size))
            except OSError:
                continue
    return out


def _sample(path: Path, size: int, digest: Any) -> int:
    """Feed the head, middle and tail blocks (or the whole file when small) into ``digest``; bytes read."""
    with open(path, "rb") as handle:
        if size <= _FULL_HASH_BELOW:
            data = handle.read()
            digest.update(data)
            return len(data)
        read = 0
        for offset in (0, size // 2 - SAMPLE_BLOCK // 2, size - SAMPLE_BLOCK):
            handle.seek(offset)
            data = handle.read(SAMPLE_BLOCK)
            digest.update(data)
            read += len(data)
        return read


def _path_fingerprint(root: Path) -> dict[str, Any]:
    if not root.exists():
        raise FileNotFoundError(f"cannot fingerprint dataset {str(root)!r}: no such file or folder")
    files = _files(root)
    total = sum(size for _, _, size in files)
    digest = hashlib.sha256()
    per_file = min(_FULL_HASH_BELOW, 3 * SAMPLE_BLOCK)
    # Content of every file fits the budget -> sample each; else an evenly spaced subset of files.
    stride = max(1, -(-len(files) * per_file // SAMPLE_BUDGET)) if files else 1
    read = sampled_files = 0
    for index, (rel, path, size) in enumerate(files):
        digest.update(f"{rel}\x00{size}\n".encode())
        if index % stride == 0:
            try:
                read += _sample(path, size, digest)
                sampled_files += 1
            except OSError:
                digest.update(b"<unreadable>")
    return {
        "kind": "path", "path": str(root.absolute()), "files": len(files), "bytes": total,
        "sha256": digest.hexdigest(), "sampled": read < total, "sampled_files": sampled_files,
    }


def is_path(data: Any) -> bool:
    return isinstance(data, (str, os.PathLike))


class PathFingerprints:
    """One run's datasets: paths fingerprinted off the caller's thread, every record through ``record``.

    ``record(name, facts)`` stores the facts (the run's ``set_metadata``); it is called under
    one lock, so a placeholder never replaces finished facts and two datasets never lose each other.
    """

    def __init__(self, record: Callable[[str, dict[str, Any]], None],
                 in_background: Callable[..., Any]) -> None:
        self._record = record
        self._in_background = in_background  # the run's Run.in_background: its finish() waits for the work
        self._lock = threading.Lock()
        self._done: set[str] = set()

    def record(self, name: str, facts: dict[str, Any]) -> None:
        with self._lock:
            self._done.add(name)
            self._record(name, facts)

    def add(self, name: str, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Record a placeholder for ``path`` now, its fingerprint when the background thread has made it."""
        root = Path(os.fspath(path)).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"cannot fingerprint dataset {str(root)!r}: no such file or folder")
        placeholder = {"kind": "path", "path": str(root.absolute()), "pending": True}
        with self._lock:
            self._done.discard(name)
            self._record(name, placeholder)
        self._in_background(self._fingerprint, name, placeholder, root)
        return placeholder

    def _fingerprint(self, name: str, placeholder: dict[str, Any], root: Path) -> None:
        """On the background thread; recorded before the future is done, so a ``finish()`` waiting for it sees it."""
        try:
            facts = _path_fingerprint(root)
        except Exception as exc:  # unreadable now: say so instead of a fingerprint
            facts = {**placeholder, "pending": False, "sha256": None, "error": repr(exc)}
        with self._lock:
            if name not in self._done:  # a later log_dataset of the same name wins
                self._record(name, facts)


# -- arrays and frames ---------------------------------------------------------------------------
def _array_fingerprint(array: Any) -> dict[str, Any]:
    np = sys.modules["numpy"]
    array = np.asarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}|{array.shape}\n".encode())
    if array.dtype.hasobject:
        digest.update(repr(array.tolist()).encode())
    else:
        digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return {
        "kind": "ndarray", "sha256": digest.hexdigest(), "shape": list(array.shape), "dtype": str(array.dtype),
        "bytes": int(array.nbytes),
    }


def _pandas_fingerprint(frame: Any) -> dict[str, Any]:
    pd = sys.modules["pandas"]
    is_series = getattr(frame, "ndim", 2) == 1
    digest = hashlib.sha256()
    columns = [str(frame.name)] if is_series else [str(c) for c in frame.columns]
    dtypes = {columns[0]: str(frame.dtype)} if is_series else {str(c): str(t) for c, t in frame.dtypes.items()}
    digest.update(json.dumps([columns, dtypes, list(frame.shape)]).encode())
    try:
        hashed = pd.util.hash_pandas_object(frame, index=True).to_numpy()
        digest.update(memoryview(hashed).cast("B"))
    except TypeError:  # unhashable cells (lists, dicts): fall back to their text form
        digest.update(frame.to_json(orient="split", default_handler=repr).encode())
    return {
        "kind": "series" if is_series else "dataframe", "sha256": digest.hexdigest(), "shape": list(frame.shape),
        "columns": columns, "dtypes": dtypes,
    }
