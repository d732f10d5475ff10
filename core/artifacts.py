"""Versioned artifacts inside a run directory: files and folders, content-addressed, with aliases.

Layout::

    artifacts/manifest.json              every name, its versions, its aliases (rewritten atomically)
    artifacts/.blobs/<sha256>            each distinct file content, stored once per run
    artifacts/<name>/v<N>/<files...>     a version: hardlinks to the blobs, so it reads like a plain copy

Inside the store everything is hardlinked: two versions (or two artifacts) holding
an identical file share one inode, and storing content the latest version already
has returns that version (aliases applied) instead of making a new one. ``latest``
always points at the newest version; ``keep_last=K`` deletes older versions of that
name that no alias points to, and then the blobs nothing references.

Getting the source into the blob store (``EPOCHAL_ARTIFACT_LINK``):

- ``auto`` (default): a copy-on-write clone (reflink) where the filesystem has them
  (btrfs, XFS, APFS-like), else a plain copy. The stored bytes never change afterwards.
- ``hardlink``: hardlink the source when it is on the same filesystem, copy otherwise.
  No bytes are copied, but a program that later rewrites the *source* in place
  (``open(path, "wb")``, ``Path.write_bytes``, ``torch.save`` to the same path, as
  Ultralytics does with ``last.pt``) silently changes the stored version too; the next
  store of that name warns when it sees this.
- ``copy``: always copy.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from .records import ArtifactVersion
from .redact import redact
from .store import read_json, write_json_atomic
from .values import jsonable

__all__ = [
    "ARTIFACTS_DIR", "MANIFEST_FILE", "store_artifact", "set_alias", "read_manifest", "list_versions", "read_versions",
    "resolve", "check_name", "check_alias",
]

log = logging.getLogger("epochal")
ARTIFACTS_DIR = "artifacts"
MANIFEST_FILE = "manifest.json"
BLOBS_DIR = ".blobs"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._=+@,-]{0,127}$")
_VERSION = re.compile(r"^v(\d{1,9})$")
_RESERVED = {MANIFEST_FILE, BLOBS_DIR}
_CHUNK = 1 << 20
_FICLONE = 0x40049409
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(run_dir: Path) -> threading.Lock:
    key = str(Path(run_dir).absolute())
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


# -- names ------------------------------------------------------------------------------------
def check_name(name: Any, what: str = "artifact name") -> str:
    """Return ``name`` if it is one safe folder name, else raise ``ValueError`` saying why."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, got {type(name).__name__} {name!r}")
    if "\x00" in name:
        raise ValueError(f"{what} {name!r} contains a NUL character; use letters, digits and . _ - = + @ ,")
    if not name or name in (".", ".."):
        raise ValueError(f"{what} {name!r} is empty or a relative folder ('.', '..'); give it a real name")
    if "/" in name or "\\" in name or os.path.isabs(name) or ".." in name:
        raise ValueError(
            f"{what} {name!r} is a path; artifacts stay inside the run directory, so a name is one folder name "
            "without '/', '\\' or '..' (e.g. 'model' or 'epoch=3.ckpt')"
        )
    if name in _RESERVED or not _NAME.match(name):
        raise ValueError(
            f"{what} {name!r} is not usable; use letters, digits and . _ - = + @ , (up to 128 characters, "
            f"starting with a letter, digit or '_'; {sorted(_RESERVED)} are reserved)"
        )
    return name


def check_alias(alias: Any) -> str:
    alias = check_name(alias, "alias")
    if _VERSION.match(alias):
        raise ValueError(f"alias {alias!r} looks like a version number; pick a word such as 'best'")
    return alias


def _default_name(source: Path) -> str:
    """An artifact name derived from the source's file name (unsafe characters become '_')."""
    base = re.sub(r"[^A-Za-z0-9._=+@,-]", "_", source.name or "artifact").lstrip(".") or "artifact"
    base = base.replace("..", "_")[:128]
    if base in _RESERVED or not _NAME.match(base):
        base = "_" + base[:127]
    return base


def _version_number(version: Any) -> int:
    if isinstance(version, int) and not isinstance(version, bool) and version >= 0:
        return version
    match = _VERSION.match(str(version)) if isinstance(version, str) else None
    if not match:
        raise ValueError(f"version {version!r} is not like 'v3' (or the int 3)")
    return int(match.group(1))


# -- manifest ------------------------------------------------------------------------------
def _manifest_path(run_dir: Path) -> Path:
    return Path(run_dir) / ARTIFACTS_DIR / MANIFEST_FILE


def read_manifest(run_dir: Path, notes: list[str] | None = None) -> dict[str, Any]:
    """The artifacts manifest of a run (empty when none was stored), keeping only well-formed entries.

    Every artifact is a dict with ``aliases`` (alias -> version), ``versions`` (entries
    with at least ``version``, ``path`` and ``sha256`` as strings) and ``type``; anything
    else is left out, with a note appended to ``notes`` naming what was wrong.
    """
    data = read_json(_manifest_path(run_dir), None)
    where = f"{ARTIFACTS_DIR}/{MANIFEST_FILE}"
    if data is None:
        if notes is not None and _manifest_path(run_dir).exists():
            notes.append(f"{where}: not readable JSON")
        return {"format": 1, "artifacts": {}}
    if not isinstance(data, dict) or not isinstance(data.get("artifacts"), dict):
        if notes is not None:
            notes.append(f"{where}: no 'artifacts' object")
        return {"format": 1, "artifacts": {}}
    artifacts: dict[str, Any] = {}
    for name, item in data["artifacts"].items():
        if not isinstance(item, dict) or not isinstance(item.get("versions", []), list):
            if notes is not None:
                notes.append(f"{where}: artifact {name!r} is a {type(item).__name__}, not an artifact entry; ignored")
            continue
        versions = [e for e in item.get("versions", []) if _valid_entry(e)]
        if notes is not None and len(versions) != len(item.get("versions", [])):
            notes.append(f"{where}: artifact {name!r} has {len(item['versions']) - len(versions)} malformed version "
                         "entr(ies); ignored")
        aliases = item.get("aliases")
        aliases = {a: v for a, v in aliases.items() if isinstance(v, str)} if isinstance(aliases, dict) else {}
        following = item.get("next")
        artifacts[str(name)] = {
            **item, "type": item.get("type") if isinstance(item.get("type"), str) else "file", "aliases": aliases,
            "versions": versions, "next": following if isinstance(following, int) and not isinstance(following, bool)
            and following >= 0 else 0,
        }
    return {**data, "artifacts": artifacts}


def _valid_entry(entry: Any) -> bool:
    """A version entry a reader and the store can use: the required fields with the right types."""
    if not isinstance(entry, dict):
        return False
    if not (isinstance(entry.get("version"), str) and _VERSION.match(entry["version"])
            and isinstance(entry.get("path"), str) and isinstance(entry.get("sha256"), str)):
        return False
    typed = {"size": int, "files": int, "created": (int, float), "metadata": dict, "contents": dict, "mtimes": dict,
             "type": str, "kind": str}
    return all(k not in entry or isinstance(entry[k], t) for k, t in typed.items())


def _as_version(name: str, entry: Mapping[str, Any], aliases: Mapping[str, str]) -> ArtifactVersion:
    version = entry["version"]
    return ArtifactVersion(
        name=name, version=version, type=entry.get("type", "file"), path=entry["path"],
        sha256=entry["sha256"], size=int(entry.get("size", 0)), files=int(entry.get("files", 0)),
        created=float(entry["created"]) if abs(entry.get("created", 0)) < 1e300 else 0.0,
        aliases=tuple(sorted(a for a, v in aliases.items() if v == version)),
        metadata=dict(entry.get("metadata") or {}),
    )


def read_versions(run_dir: Path) -> tuple[list[ArtifactVersion], list[str]]:
    """Every stored version of every artifact, by name then version number, and notes on malformed entries."""
    notes: list[str] = []
    out = []
    for name, item in sorted(read_manifest(run_dir, notes)["artifacts"].items()):
        aliases = item["aliases"]
        for entry in sorted(item["versions"], key=lambda e: _version_number(e["version"])):
            out.append(_as_version(name, entry, aliases))
    return out, notes


def list_versions(run_dir: Path) -> list[ArtifactVersion]:
    """Every stored version of every artifact, by name then version number (malformed entries left out)."""
    return read_versions(run_dir)[0]


def resolve(run_dir: Path, name: str, alias: str = "latest") -> Path:
    """The stored path of artifact ``name`` at ``alias`` or version (``"v2"``); raises ``KeyError``."""
    item = read_manifest(run_dir)["artifacts"].get(name)
    if item is None:
        raise KeyError(f"no artifact {name!r} in {run_dir}")
    version = item.get("aliases", {}).get(alias, alias)
    for entry in item.get("versions", []):
        if entry["version"] == version:
            path = (Path(run_dir) / entry["path"]).resolve()
            if not path.is_relative_to(Path(run_dir).resolve()):
                raise ValueError(f"artifact {name!r} points outside its run directory: {entry['path']!r}")
            return path
    known = sorted(item.get("aliases", {})) + [e["version"] for e in item.get("versions", [])]
    raise KeyError(f"artifact {name!r} has no alias or version {alias!r}; known: {known}")


# -- storing ------------------------------------------------------------------------------
def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _collect(source: Path, exclude: Path) -> list[tuple[str, Path]]:
    """(relative posix path, source file) for a file or every regular file under a folder but ``exclude``."""
    if source.is_file():
        return [(source.name, source)]
    files = []
    skip = exclude.resolve()
    for folder, dirs, names in os.walk(source, followlinks=False):
        dirs[:] = sorted(d for d in dirs if (Path(folder) / d).resolve() != skip)
        for file_name in sorted(names):
            path = Path(folder) / file_name
            if path.is_file():  # follows file symlinks, skips sockets, fifos and dangling links
                files.append((path.relative_to(source).as_posix(), path))
    return files


def _clone(src: Path, dst: Path) -> bool:
    """A copy-on-write clone (Linux FICLONE) of ``src`` at ``dst``; False when the filesystem has none."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        with open(src, "rb") as source, open(dst, "wb") as target:
            fcntl.ioctl(target.fileno(), _FICLONE, source.fileno())
        return True
    except OSError:
        dst.unlink(missing_ok=True)
        return False


def _place(src: Path, dst: Path, link: bool, clone: bool = False) -> None:
    """Put ``src``'s content at ``dst``: hardlink or clone when asked and possible, else copy (via a temp name)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return
        except FileExistsError:
            raise
        except OSError:  # other filesystem (EXDEV), no hardlink support, permissions
            pass
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        if not (clone and _clone(src, tmp)):
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _store_blob(blobs: Path, sha: str, source: Path, link: bool = False) -> Path:
    blob = blobs / sha
    if blob.exists():
        if blob.stat().st_size == source.stat().st_size:
            return blob
        blob.unlink()  # the content behind this name changed in place (a hardlinked source was rewritten)
    mode = "hardlink" if link else os.environ.get("EPOCHAL_ARTIFACT_LINK", "auto")
    try:
        _place(source, blob, link=mode == "hardlink", clone=mode not in ("hardlink", "copy"))
    except FileExistsError:
        pass
    return blob


def store_artifact(
    run_dir: Path,
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    type: str = "file",
    aliases: Iterable[str] = (),
    metadata: Mapping[str, Any] | None = None,
    keep_last: int | None = None,
    link: bool = False,
) -> ArtifactVersion:
    """Store file or folder ``path`` as the next version of artifact ``name`` in ``run_dir``.

    ``link=True``: the caller is done with the file (a final checkpoint), so it is hardlinked
    where the filesystem allows instead of copied.

    Returns the stored :class:`~epochal.records.ArtifactVersion`. Raises
    ``FileNotFoundError`` for a missing source and ``ValueError`` for an unsafe name
    or alias (anything that is not one plain folder name).
    """
    source = Path(os.fspath(path)).expanduser()
    if not source.exists():
        raise FileNotFoundError(f"cannot log artifact: {str(source)!r} does not exist")
    if not (source.is_file() or source.is_dir()):
        raise ValueError(f"cannot log artifact {str(source)!r}: not a regular file or folder")
    name = check_name(name) if name is not None else _default_name(source)
    alias_list = [check_alias(a) for a in ([aliases] if isinstance(aliases, str) else aliases)]
    if keep_last is not None and (not isinstance(keep_last, int) or keep_last < 1):
        raise ValueError(f"keep_last must be an int >= 1 (or None to keep every version), got {keep_last!r}")
    clean_metadata = redact(jsonable(dict(metadata or {})))
    if not isinstance(type, str) or not type:
        raise ValueError(f"artifact type must be a non-empty str such as 'model', got {type!r}")

    run_dir = Path(run_dir)
    root = run_dir / ARTIFACTS_DIR
    files = _collect(source, run_dir)
    contents = {rel: _sha256_file(src) for rel, src in files}
    if source.is_file():
        sha, size = contents[source.name], source.stat().st_size
    else:
        listing = "".join(f"{rel}\x00{contents[rel]}\n" for rel, _ in files)
        sha, size = hashlib.sha256(listing.encode()).hexdigest(), sum(src.stat().st_size for _, src in files)

    with _lock(run_dir):
        manifest = read_manifest(run_dir)
        item = manifest["artifacts"].setdefault(name, {"type": type, "aliases": {}, "versions": [], "next": 0})
        versions = item["versions"]
        latest = item["aliases"].get("latest")
        current = next((e for e in versions if e["version"] == latest), None)
        if current is not None:
            _warn_if_changed(run_dir, name, current)
        if current is None or current["sha256"] != sha or current.get("kind") != ("file" if source.is_file() else "dir"):
            blobs = root / BLOBS_DIR
            for rel, src in files:
                _store_blob(blobs, contents[rel], src, link)
            number = max(int(item.get("next", 0)), 1 + max((_version_number(e["version"]) for e in versions), default=-1))
            version = f"v{number}"
            folder = root / name / version
            if folder.exists():  # leftovers of an interrupted store
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            for rel in contents:
                _place(blobs / contents[rel], folder / rel, True)
            rel_path = (folder / source.name if source.is_file() else folder).relative_to(run_dir).as_posix()
            current = {
                "version": version, "type": type, "kind": "file" if source.is_file() else "dir",
                "path": rel_path, "sha256": sha, "size": size, "files": len(files), "created": time.time(),
                "source": redact(str(source.absolute())), "metadata": clean_metadata, "contents": contents,
                "mtimes": {rel: (folder / rel).stat().st_mtime_ns for rel in contents},
            }
            versions.append(current)
            item["next"] = number + 1
        elif clean_metadata:
            current["metadata"] = {**current.get("metadata", {}), **clean_metadata}
        item["type"] = type
        for alias in ("latest", *alias_list):
            item["aliases"][alias] = current["version"]
        if keep_last is not None:
            _retain(run_dir, item, keep_last)
        write_json_atomic(_manifest_path(run_dir), manifest)
        if keep_last is not None:
            _collect_garbage(run_dir, manifest)
        return _as_version(name, current, item["aliases"])


def _warn_if_changed(run_dir: Path, name: str, entry: Mapping[str, Any]) -> None:
    """Warn once when a stored version's files were rewritten in place (through a hardlinked source)."""
    base = Path(run_dir) / entry["path"]
    base = base.parent if entry.get("kind", "file") == "file" else base
    for rel, mtime in (entry.get("mtimes") or {}).items():
        try:
            changed = (base / rel).stat().st_mtime_ns != mtime
        except OSError:
            changed = True
        if changed:
            log.warning(
                "epochal: artifact %r %s was changed after it was stored: its source %r is hardlinked and was "
                "rewritten in place. Unset EPOCHAL_ARTIFACT_LINK=hardlink to store copies instead.",
                name, entry["version"], entry.get("source"),
            )
            return


def set_alias(run_dir: Path, name: str, version: str | int, alias: str) -> ArtifactVersion:
    """Point ``alias`` of artifact ``name`` at ``version`` (``"v3"`` or ``3``); raises ``KeyError`` if unknown."""
    check_name(name)
    alias = check_alias(alias)
    wanted = f"v{_version_number(version)}"
    with _lock(Path(run_dir)):
        manifest = read_manifest(run_dir)
        item = manifest["artifacts"].get(name)
        if item is None:
            raise KeyError(f"no artifact {name!r} in this run; log it first with run.log_artifact(path, name={name!r})")
        entry = next((e for e in item["versions"] if e["version"] == wanted), None)
        if entry is None:
            raise KeyError(f"artifact {name!r} has no version {wanted!r}; it has {[e['version'] for e in item['versions']]}")
        item["aliases"][alias] = wanted
        write_json_atomic(_manifest_path(run_dir), manifest)
        return _as_version(name, entry, item["aliases"])


# -- retention --------------------------------------------------------------------------
def _retain(run_dir: Path, item: dict[str, Any], keep_last: int) -> None:
    """Drop (from the manifest and disk) versions older than the newest ``keep_last`` with no alias."""
    ordered = sorted(item["versions"], key=lambda e: _version_number(e["version"]))
    pinned = set(item["aliases"].values())
    keep = {e["version"] for e in ordered[-keep_last:]} | pinned
    for entry in ordered:
        if entry["version"] not in keep:
            folder = (Path(run_dir) / entry["path"])
            if entry.get("kind", "file") == "file":
                folder = folder.parent
            if folder.resolve().is_relative_to((Path(run_dir) / ARTIFACTS_DIR).resolve()):
                shutil.rmtree(folder, ignore_errors=True)
    item["versions"] = [e for e in ordered if e["version"] in keep]


def _collect_garbage(run_dir: Path, manifest: Mapping[str, Any]) -> None:
    """Delete blobs no version references any more."""
    used = {sha for item in manifest["artifacts"].values() for e in item["versions"] for sha in e.get("contents", {}).values()}
    blobs = Path(run_dir) / ARTIFACTS_DIR / BLOBS_DIR
    try:
        entries = list(os.scandir(blobs))
    except OSError:
        return
    for entry in entries:
        if entry.name not in used and not entry.name.startswith("."):
            try:
                os.unlink(entry.path)
            except OSError:
                pass
