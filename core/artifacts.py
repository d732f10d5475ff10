"""Versioned artifacts inside a run directory: files and folders, content-addressed, with aliases.

Layout::

    artifacts/manifest.json              every name, its versions, its aliases (rewritten atomically)
    artifacts/.blobs/<sha256>            each distinct file content, stored once per run
    artifacts/<name>/v<N>/<files...>     a version: hardlinks to the blobs, so it reads like a plain copy
    artifacts/.staging/<pid>-<n>/        copies on their way in (see epochal.staging)

Inside the store everything is hardlinked: two versions (or two artifacts) holding
an identical file share one inode, so logging unchanged content again makes a new
version that costs no disk. ``latest`` always points at the newest version;
``keep_last=K`` deletes older versions of that name that no alias points to, and then
the blobs nothing references. ``Run.log_artifact`` stages on the caller's thread and
:func:`commit` files the version on the store's lane; :func:`store_artifact` does
both at once.

Disk cost: one copy of each distinct content per run. Getting the source in
(``link=True`` or ``EPOCHAL_ARTIFACT_LINK``):

- ``auto`` (default): a copy-on-write clone (reflink) where the filesystem has them
  (btrfs, XFS, APFS-like: no extra bytes), else a plain copy. The stored bytes never
  change afterwards.
- ``link=True`` (a final checkpoint that will not change) or ``hardlink``: hardlink
  the source when it is on the same filesystem (no extra bytes), copy otherwise.
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
from .store import UnsafePathError, folder_inside, inside, read_json, write_json_atomic

__all__ = [
    "ARTIFACTS_DIR", "MANIFEST_FILE", "store_artifact", "set_alias", "read_manifest", "list_versions", "read_versions",
    "resolve", "check_name", "check_alias", "commit", "collect_files", "collect_garbage", "default_name",
    "alias_request", "file_artifact", "apply_alias",
]

log = logging.getLogger("epochal")
ARTIFACTS_DIR = "artifacts"
MANIFEST_FILE = "manifest.json"
BLOBS_DIR = ".blobs"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._=+@,-]{0,127}$")
_VERSION = re.compile(r"^v(\d{1,9})$")
_RESERVED = {MANIFEST_FILE, BLOBS_DIR}
_CHUNK = 1 << 20
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


def default_name(source: Path) -> str:
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
    typed: dict[str, type | tuple[type, ...]] = {
        "size": int, "files": int, "created": (int, float), "metadata": dict, "contents": dict, "mtimes": dict,
        "type": str, "kind": str}
    return all(k not in entry or isinstance(entry[k], t) for k, t in typed.items())


def _as_version(name: str, entry: Mapping[str, Any], aliases: Mapping[str, str]) -> ArtifactVersion:
    version, created = entry["version"], entry.get("created", 0)  # created: optional in a readable entry
    return ArtifactVersion(
        name=name, version=version, type=entry.get("type", "file"), path=entry["path"],
        sha256=entry["sha256"], size=int(entry.get("size", 0)), files=int(entry.get("files", 0)),
        created=float(created) if abs(created) < 1e300 else 0.0,
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


# -- storing (on the store's lane) --------------------------------------------------------------
def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def collect_files(source: Path, exclude: Path) -> list[tuple[str, Path]]:
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


def _adopt_blob(blobs: Path, sha: str, staged: Path) -> None:
    """Move a staged file into the blob store under its hash (dropping it if an equal blob is there)."""
    blob = blobs / sha
    if os.path.islink(blob):
        os.unlink(blob)  # a planted link: removed itself, its target untouched
    elif blob.exists() and blob.stat().st_size == staged.stat().st_size:
        os.unlink(staged)
        return
    os.replace(staged, blob)  # also replaces content changed in place through a hardlinked source


def commit(run_dir: Path, staged: Any) -> ArtifactVersion:
    """Store a staged artifact (:class:`epochal.staging.StagedArtifact`): hash, dedupe, link, manifest, retention.

    Runs on the store's lane. Raises ``OSError`` (:class:`~epochal.store.UnsafePathError` for a
    symlink in the run folder) when the disk refuses; the staging folder is removed either way.
    """
    run_dir = Path(run_dir)
    try:
        contents = {rel: _sha256_file(staged.staging / rel) for rel in staged.rels}
        if staged.kind == "file":
            sha = next(iter(contents.values()))
        else:
            sha = hashlib.sha256("".join(f"{rel}\x00{contents[rel]}\n" for rel in staged.rels).encode()).hexdigest()
        with _lock(run_dir):
            manifest = read_manifest(run_dir)
            item = manifest["artifacts"].setdefault(
                staged.name, {"type": staged.type, "aliases": {}, "versions": [], "next": 0})
            versions = item["versions"]
            if any(e["version"] == staged.version for e in versions):
                raise FileExistsError(f"artifact {staged.name!r} {staged.version} is stored already")
            current = next((e for e in versions if e["version"] == item["aliases"].get("latest")), None)
            if current is not None:
                _warn_if_changed(run_dir, staged.name, current)
            blobs = folder_inside(run_dir, ARTIFACTS_DIR, BLOBS_DIR)
            for rel in staged.rels:
                _adopt_blob(blobs, contents[rel], staged.staging / rel)
            folder_inside(run_dir, ARTIFACTS_DIR, staged.name)
            folder = inside(run_dir, ARTIFACTS_DIR, staged.name, staged.version)
            if folder.exists():  # leftovers of an interrupted store
                shutil.rmtree(folder)
            os.mkdir(folder)
            for rel in staged.rels:
                target = folder / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(blobs / contents[rel], target)
            entry = {
                "version": staged.version, "type": staged.type, "kind": staged.kind, "path": staged.path,
                "sha256": sha, "size": staged.size, "files": staged.files, "created": time.time(),
                "source": staged.source, "metadata": staged.metadata, "contents": contents,
                "mtimes": {rel: (folder / rel).stat().st_mtime_ns for rel in contents},
            }
            versions.append(entry)
            versions.sort(key=lambda e: _version_number(e["version"]))
            item["next"] = max(item["next"], _version_number(staged.version) + 1)
            item["aliases"]["latest"] = versions[-1]["version"]
            item["type"] = staged.type
            for alias in staged.requested_aliases:
                item["aliases"][alias] = staged.version
            if staged.keep_last is not None:
                _retain(run_dir, staged.name, item, staged.keep_last)
            write_json_atomic(_manifest_path(run_dir), manifest, root=run_dir)
            if staged.keep_last is not None:
                collect_garbage(run_dir, manifest)
            return _as_version(staged.name, entry, item["aliases"])
    finally:
        shutil.rmtree(staged.staging, ignore_errors=True)


def file_artifact(run_dir: Path, staged: Any) -> ArtifactVersion | None:
    """:func:`commit` a staged artifact and resolve its handle; a refusal is a warning and ``None``."""
    try:
        stored = commit(run_dir, staged)
    except (OSError, KeyError) as exc:
        staged.resolve(None)
        log.warning("epochal: artifact %r %s was not stored: %s", staged.name, staged.version,
                    str(exc) if isinstance(exc, UnsafePathError) else repr(exc))
        return None
    except BaseException:
        staged.resolve(None)
        raise
    staged.resolve(stored)
    return stored


def apply_alias(run_dir: Path, name: str, version: str, alias: str) -> None:
    """:func:`set_alias` for ``Run.set_alias``; a refusal is a warning."""
    try:
        set_alias(run_dir, name, version, alias)
    except (OSError, KeyError) as exc:
        log.warning("epochal: alias %r of artifact %r could not be set: %s", alias, name, exc)


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
    """Store file or folder ``path`` as the next version of artifact ``name`` in ``run_dir``, synchronously.

    ``Run.log_artifact`` does the same in two halves (staging on the caller's thread, this
    commit on the store's lane). Raises ``FileNotFoundError`` for a missing source,
    ``ValueError`` for an unsafe name or alias, ``OSError`` when the disk refuses.
    """
    from .staging import ArtifactStager

    staged = ArtifactStager(Path(run_dir)).stage(
        path, name=name, type=type, aliases=aliases, metadata=metadata, keep_last=keep_last, link=link)
    if staged is None:
        raise OSError(f"artifact {path!s} could not be staged in {run_dir} (see the warning above)")
    return commit(run_dir, staged)


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
        write_json_atomic(_manifest_path(run_dir), manifest, root=Path(run_dir))
        return _as_version(name, entry, item["aliases"])


def alias_request(stager: Any, name: str, version: str | int, alias: str) -> dict[str, str]:
    """Check a ``Run.set_alias`` call against the versions the run gave out; the event's arguments."""
    check_name(name)
    alias = check_alias(alias)
    wanted = f"v{_version_number(version)}"
    if not stager.knows(name, wanted):
        known = stager.versions(name)
        if not known:
            raise KeyError(f"no artifact {name!r} in this run; log it first with run.log_artifact(path, name={name!r})")
        raise KeyError(f"artifact {name!r} has no version {wanted!r}; it has {known}")
    return {"name": name, "version": wanted, "alias": alias}


# -- retention --------------------------------------------------------------------------
def _retain(run_dir: Path, name: str, item: dict[str, Any], keep_last: int) -> None:
    """Drop (from the manifest and disk) versions older than the newest ``keep_last`` with no alias.

    A version folder is deleted only when reached without a symlink (``artifacts/<name>/v<N>``).
    """
    ordered = sorted(item["versions"], key=lambda e: _version_number(e["version"]))
    pinned = set(item["aliases"].values())
    keep = {e["version"] for e in ordered[-keep_last:]} | pinned
    for entry in ordered:
        if entry["version"] not in keep:
            folder = inside(run_dir, ARTIFACTS_DIR, name, entry["version"])
            shutil.rmtree(folder, ignore_errors=True)
    item["versions"] = [e for e in ordered if e["version"] in keep]


def collect_garbage(run_dir: Path, manifest: Mapping[str, Any]) -> int:
    """Delete blobs no version references any more; returns how many (nothing behind a symlinked folder)."""
    used = {sha for item in manifest["artifacts"].values() for e in item["versions"] for sha in e.get("contents", {}).values()}
    try:
        blobs = inside(run_dir, ARTIFACTS_DIR, BLOBS_DIR)
        entries = list(os.scandir(blobs))
    except OSError:
        return 0
    removed = 0
    for entry in entries:
        if entry.name not in used and not entry.name.startswith("."):
            try:
                os.unlink(entry.path)
                removed += 1
            except OSError:
                pass
    return removed
