"""Reading runs back: the runs table, one run's history and files, the diff of two runs.

Nothing here writes, and nothing read from a run is unpickled. pandas is imported
only by the functions that return DataFrames (:func:`runs`, ``RunReader.history``,
``RunReader.system``); listing, opening and diffing need only the standard library.

A run is found from its id under ``<root>/*/<id>`` (root from ``dir=``, ``EPOCHAL_DIR``
or ``./epochal-runs``); ``project/id``, a unique id prefix, a unique run name or the
run directory's path work too.
"""

from __future__ import annotations

import difflib
import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from .artifacts import list_versions, resolve
from .records import ArtifactVersion
from .blocks import read_columns
from .store import (
    CONFIG_FILE, METRICS_FILE, RUN_FILE, SUMMARY_FILE, effective_status, read_json, read_jsonl, read_metrics,
)

__all__ = [
    "RunReader", "RunNotFoundError", "NoRunsError", "MISSING", "root_dir", "run_dirs", "find_run", "open_run",
    "list_runs", "runs", "diff", "flatten",
]

#: Stands for "no such key" in :func:`diff` results.
MISSING = "<missing>"
_ENV_DIR = "environment"


class RunNotFoundError(LookupError):
    """No stored run matches the given id; the message lists the closest ids."""

    def __str__(self) -> str:  # LookupError would show the repr of the message
        return str(self.args[0]) if self.args else ""


class NoRunsError(RunNotFoundError):
    """The run root (or project) holds no runs at all."""


def root_dir(dir: str | os.PathLike[str] | None = None) -> Path:
    """The run root: ``dir``, else ``EPOCHAL_DIR``, else ``./epochal-runs``."""
    return Path(dir or os.environ.get("EPOCHAL_DIR") or "epochal-runs").expanduser().absolute()


def run_dirs(root: Path, project: str | None = None) -> Iterator[Path]:
    """Every run directory (a folder holding run.json) under ``root``, optionally of one project."""
    projects = [root / project] if project else _subdirs(root)
    for project_dir in projects:
        for run_dir in _subdirs(project_dir):
            if (run_dir / RUN_FILE).is_file():
                yield run_dir


def _subdirs(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as entries:
            return sorted(Path(e.path) for e in entries if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []


def find_run(run_id: str | os.PathLike[str], dir: str | os.PathLike[str] | None = None,
             project: str | None = None) -> Path:
    """The directory of run ``run_id``; raises :class:`RunNotFoundError` with the closest ids."""
    text = os.fspath(run_id)
    root = root_dir(dir)
    as_path = Path(text).expanduser()
    if (as_path / RUN_FILE).is_file():  # a run directory's path
        return as_path.absolute()
    if "/" in text and project is None:
        project, _, text = text.rpartition("/")
    if not text or "\x00" in text or text in (".", "..") or "/" in text or "\\" in text:
        raise RunNotFoundError(f"{text!r} is not a run id")
    if project is not None and (not project or "/" in project or "\\" in project or project in (".", "..")):
        raise RunNotFoundError(f"{project!r} is not a project name")
    candidates = list(run_dirs(root, project))
    where = f"{root}" + (f" (project {project!r})" if project else "")
    if not candidates:
        raise NoRunsError(f"no runs in {where}; pass --dir/dir= or set EPOCHAL_DIR to the folder holding your runs")
    exact = [d for d in candidates if d.name == text]
    if not exact:
        exact = [d for d in candidates if d.name.startswith(text)] or [
            d for d in candidates if (read_json(d / RUN_FILE, {}) or {}).get("name") == text
        ]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        names = ", ".join(f"{d.parent.name}/{d.name}" for d in exact[:10])
        raise RunNotFoundError(f"{text!r} matches several runs: {names}; give the full id or the project")
    ids = sorted({d.name for d in candidates})
    close = difflib.get_close_matches(text, ids, n=5, cutoff=0.5)
    hint = f"; closest ids: {', '.join(close)}" if close else f"; {len(ids)} runs there, e.g. {', '.join(ids[-3:])}"
    raise RunNotFoundError(f"no run {text!r} in {where}{hint}")


def _require_pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError("this needs pandas: pip install 'epochal[query]'") from None
    return pandas


class RunReader:
    """A stored run opened for reading. Cheap to make: files are read when asked for."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(run_dir).absolute()
        if not (self.dir / RUN_FILE).is_file():
            raise RunNotFoundError(f"{self.dir} is not a run directory (no {RUN_FILE})")
        self.id = self.dir.name
        self.project = self.dir.parent.name

    # -- small files ---------------------------------------------------------------------------
    @property
    def metadata(self) -> dict[str, Any]:
        """run.json as stored, with ``status`` as a reader should see it (crashed runs detected)."""
        meta = read_json(self.dir / RUN_FILE, {}) or {}
        meta["status"] = effective_status(meta, self.dir)
        return meta

    @property
    def status(self) -> str:
        """running | finished | failed | crashed (a running run whose process is gone reads as crashed)."""
        return effective_status(read_json(self.dir / RUN_FILE, {}) or {}, self.dir)

    @property
    def name(self) -> str:
        return (read_json(self.dir / RUN_FILE, {}) or {}).get("name", self.id)

    @property
    def config(self) -> dict[str, Any]:
        return read_json(self.dir / CONFIG_FILE, {}) or {}

    @property
    def summary(self) -> dict[str, Any]:
        return read_json(self.dir / SUMMARY_FILE, {}) or {}

    @property
    def environment(self) -> dict[str, Any]:
        """environment/metadata.json (git with dirty flag, frameworks, hardware); {} when not captured."""
        return read_json(self.dir / _ENV_DIR / "metadata.json", {}) or {}

    @property
    def datasets(self) -> dict[str, Any]:
        return (read_json(self.dir / RUN_FILE, {}) or {}).get("datasets") or {}

    def requirements(self) -> dict[str, str]:
        """Installed distributions at the time of the run: name -> version."""
        try:
            text = (self.dir / _ENV_DIR / "requirements.txt").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            name, sep, version = line.strip().partition("==")
            if sep:
                out[name] = version
        return out

    def git_diff(self) -> str:
        """The uncommitted changes recorded at start ('' when clean or not a repository)."""
        try:
            return (self.dir / _ENV_DIR / "git.diff").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    # -- records ---------------------------------------------------------------------------------
    def records(self, keys: Iterable[str] | str | None = None) -> list[dict[str, Any]]:
        """The metric records as dicts (a torn last record is skipped); only rows with one of ``keys`` if given."""
        rows = read_metrics(self.dir)[0]
        if keys is None:
            return rows
        wanted = [keys] if isinstance(keys, str) else list(keys)
        keep = ("step", "time", "epoch", *wanted)
        return [{k: r.get(k) for k in keep if k in r} for r in rows if any(k in r for k in wanted)]

    def history(self, keys: Iterable[str] | str | None = None):
        """A DataFrame with ``step``, ``time``, ``epoch`` and one column per metric (rows in logging order).

        With ``keys``, only those metric columns and the rows holding at least one of them.
        """
        pandas = _require_pandas()
        wanted = None if keys is None else ([keys] if isinstance(keys, str) else list(keys))
        columns, _ = read_columns(self.dir / METRICS_FILE, wanted)
        frame = pandas.DataFrame(columns)
        names = wanted if wanted is not None else [c for c in frame.columns if c not in ("step", "time", "epoch")]
        frame = frame.reindex(columns=["step", "time", "epoch", *names])
        if wanted is not None and len(frame):
            frame = frame[frame[wanted].notna().any(axis=1)].reset_index(drop=True)
        return frame

    def system(self):
        """A DataFrame of hardware samples of every rank: ``time``, ``rank`` and one column per figure."""
        pandas = _require_pandas()
        rows: list[dict[str, Any]] = []
        for path in sorted(self.dir.glob("system*.jsonl")):
            rows.extend(read_jsonl(path)[0])
        rows.sort(key=lambda r: (r.get("time") or 0.0, r.get("rank") or 0))
        figures = sorted({k for r in rows for k in r} - {"time", "rank"})
        return pandas.DataFrame.from_records(rows).reindex(columns=["time", "rank", *figures])

    def media(self, key: str | None = None):
        """A DataFrame of logged images, histograms and texts: ``step``, ``time``, ``key``, ``type``, ``path``
        (absolute), ``caption``; one row per file, in logging order, only ``key``'s if given."""
        from ._media_store import read_index

        pandas = _require_pandas()
        rows = [{"step": r["step"], "time": r.get("time"), "key": r["key"], "type": r["type"],
                 "path": str(self.dir / r["file"]), "caption": r.get("caption")}
                for r in read_index(self.dir) if key is None or r["key"] == key]
        return pandas.DataFrame.from_records(rows, columns=["step", "time", "key", "type", "path", "caption"])

    # -- artifacts -------------------------------------------------------------------------------
    def artifacts(self) -> list[ArtifactVersion]:
        """Every stored artifact version (name, version, aliases, sha256, size, path relative to the run)."""
        return list_versions(self.dir)

    def path(self, name: str, alias: str = "latest") -> Path:
        """The stored file (or folder) of artifact ``name`` at ``alias`` or version such as ``"v2"``."""
        return resolve(self.dir, name, alias)

    def __repr__(self) -> str:
        return f"<RunReader {self.project}/{self.id} dir={str(self.dir)!r}>"


def open_run(run_id: str, dir: str | os.PathLike[str] | None = None, project: str | None = None) -> RunReader:
    """Open stored run ``run_id`` (see the module docstring for what identifies a run)."""
    return RunReader(find_run(run_id, dir=dir, project=project))


# -- the runs table ----------------------------------------------------------------------------
def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (with ``prefix`` before every key)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _row(run_dir: Path, now: float) -> dict[str, Any] | None:
    meta = read_json(run_dir / RUN_FILE)
    if not isinstance(meta, dict):
        return None
    status = effective_status(meta, run_dir, now)
    started = meta.get("created") or meta.get("started")
    ended = meta.get("finished")
    if ended is None and status == "running":
        ended = now
    elif ended is None:
        try:
            ended = (run_dir / "heartbeat").stat().st_mtime
        except OSError:
            ended = None
    row = {
        "id": run_dir.name, "name": meta.get("name", run_dir.name), "project": run_dir.parent.name,
        "status": status, "start": started,
        "duration": (ended - started) if isinstance(ended, (int, float)) and isinstance(started, (int, float)) else None,
        "tags": list(meta.get("tags") or []), "host": meta.get("host"),
        "git.commit": (meta.get("git") or {}).get("commit") if isinstance(meta.get("git"), dict) else None,
    }
    row.update(flatten(read_json(run_dir / CONFIG_FILE, {}) or {}, "config."))
    row.update(flatten(read_json(run_dir / SUMMARY_FILE, {}) or {}, "summary."))
    return row


def _matches(row: Mapping[str, Any], filters: Mapping[str, Any]) -> bool:
    for key, wanted in filters.items():
        value = row.get(key, MISSING)
        if callable(wanted):
            try:
                if not wanted(value):
                    return False
            except Exception:
                return False
        elif key == "tags":
            needed = [wanted] if isinstance(wanted, str) else list(wanted)
            if not set(needed).issubset(value or ()):
                return False
        elif isinstance(wanted, (list, tuple, set, frozenset)):
            if value not in wanted:
                return False
        elif value != wanted:
            return False
    return True


def _filter_key(key: str) -> str:
    """``config__lr`` (keyword-friendly) -> ``config.lr``."""
    return key.replace("__", ".")


def list_runs(project: str | None = None, dir: str | os.PathLike[str] | None = None,
              **filters: Any) -> list[dict[str, Any]]:
    """One flat dict per run (no pandas): the rows of :func:`runs`, oldest first."""
    now = time.time()
    wanted = {_filter_key(k): v for k, v in filters.items()}
    rows = []
    for run_dir in run_dirs(root_dir(dir), project):
        row = _row(run_dir, now)
        if row is not None and _matches(row, wanted):
            rows.append(row)
    rows.sort(key=lambda r: (r["start"] or 0.0, r["id"]))
    return rows


def runs(project: str | None = None, dir: str | os.PathLike[str] | None = None, **filters: Any):
    """A DataFrame, one row per run: id, name, project, status, start, duration (s), tags, config.*, summary.*.

    ``filters`` keep rows whose column equals the value (a list/tuple/set: is one of them;
    a callable: returns true). ``tags="x"`` keeps runs tagged ``x``; ``config__lr=0.1``
    stands for ``config.lr``. Read from run.json, config.json and summary.json only.
    """
    pandas = _require_pandas()
    rows = list_runs(project, dir, **filters)
    base = ["id", "name", "project", "status", "start", "duration", "tags", "host", "git.commit"]
    frame = pandas.DataFrame.from_records(rows)
    extra = sorted({k for r in rows for k in r} - set(base))
    frame = frame.reindex(columns=[*base, *extra])
    frame["start"] = pandas.to_datetime(frame["start"], unit="s", errors="coerce")
    return frame


# -- diff -----------------------------------------------------------------------------------------
def _changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, list[Any]]:
    keys = sorted(set(a) | set(b))
    return {k: [a.get(k, MISSING), b.get(k, MISSING)] for k in keys if a.get(k, MISSING) != b.get(k, MISSING)}


def diff(a: str | RunReader, b: str | RunReader, dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What differs between runs ``a`` and ``b``: config, summary, packages, git, datasets.

    Every section maps a key to ``[value in a, value in b]``; :data:`MISSING` marks an absent key.
    """
    ra = a if isinstance(a, RunReader) else open_run(a, dir=dir)
    rb = b if isinstance(b, RunReader) else open_run(b, dir=dir)
    ma, mb = read_json(ra.dir / RUN_FILE, {}) or {}, read_json(rb.dir / RUN_FILE, {}) or {}
    ga = {**(ra.environment.get("git") or {}), **(ma.get("git") or {})}  # run.json wins, environment adds dirty
    gb = {**(rb.environment.get("git") or {}), **(mb.get("git") or {})}
    git_keys = ("repo", "commit", "branch", "remote", "dirty")
    git = _changes({k: ga[k] for k in git_keys if k in ga}, {k: gb[k] for k in git_keys if k in gb})
    diff_a, diff_b = ra.git_diff(), rb.git_diff()
    if diff_a != diff_b:
        git["diff"] = [_diff_summary(diff_a), _diff_summary(diff_b)]
    return {
        "a": f"{ra.project}/{ra.id}", "b": f"{rb.project}/{rb.id}",
        "config": _changes(flatten(ra.config), flatten(rb.config)),
        "summary": _changes(ra.summary, rb.summary),
        "packages": _changes(ra.requirements(), rb.requirements()),
        "git": git,
        "datasets": _changes(
            {k: (v or {}).get("sha256") for k, v in ra.datasets.items()},
            {k: (v or {}).get("sha256") for k, v in rb.datasets.items()},
        ),
        "git_diff": "".join(difflib.unified_diff(
            diff_a.splitlines(True), diff_b.splitlines(True), f"{ra.id}/git.diff", f"{rb.id}/git.diff", n=1,
        ))[:200_000] if diff_a != diff_b else "",
    }


def _diff_summary(text: str) -> str:
    if not text:
        return "clean"
    import hashlib

    files = sum(1 for line in text.splitlines() if line.startswith("diff --git "))
    return f"{files} file(s), {len(text)} bytes, sha256 {hashlib.sha256(text.encode()).hexdigest()[:12]}"

