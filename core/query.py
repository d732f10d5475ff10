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

from .artifacts import read_versions, resolve
from .records import ArtifactVersion
from .blocks import read_columns
from .environment import ENVIRONMENT_OF
from .store import (
    CONFIG_FILE, METRICS_FILE, RUN_FILE, SUMMARY_FILE, effective_status, read_json_object, read_jsonl, read_metrics,
)

__all__ = [
    "RunReader", "RunNotFoundError", "NoRunsError", "MISSING", "root_dir", "run_dirs", "find_run", "open_run",
    "list_runs", "runs", "diff", "flatten", "read_metadata", "run_row",
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
            d for d in candidates if read_metadata(d)[0].get("name") == text
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


# -- reading what a run holds, whatever shape it is in -------------------------------------------
_META_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,), "name": (str,), "project": (str,), "status": (str,), "notes": (str,), "host": (str,),
    "error": (str, type(None)), "created": (int, float), "started": (int, float), "finished": (int, float, type(None)),
    "pid": (int,), "flush_interval": (int, float), "datasets": (dict,), "git": (dict,), "name_map": (dict,),
    "tags": (list,), "metric_names": (list,), "last_step": (int,),
}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_metadata(run_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """run.json with every field a reader uses of the type it expects, and notes on what was dropped."""
    meta, note = read_json_object(Path(run_dir) / RUN_FILE)
    notes = [note] if note else []
    clean: dict[str, Any] = {}
    for key, value in meta.items():
        expected = _META_TYPES.get(key)
        ok = expected is None or (isinstance(value, expected) and not (isinstance(value, bool) and bool not in expected))
        if ok and key in ("tags", "metric_names"):
            ok = all(isinstance(v, str) for v in value)
        if ok and key == "datasets":
            value = {str(k): v for k, v in value.items() if isinstance(v, dict)}
        if ok and expected is not None and _number(value) and isinstance(value, float) and value != value:
            ok = False
        if ok:
            clean[key] = value
        else:
            notes.append(f"{RUN_FILE}: {key!r} holds a {type(value).__name__}, not what a run writes; ignored")
    return clean, notes


def _read_object(run_dir: Path, name: str, notes: list[str] | None = None) -> dict[str, Any]:
    data, note = read_json_object(Path(run_dir) / name)
    if note and notes is not None:
        notes.append(note)
    return data


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
        """run.json as stored, with ``status`` as a reader should see it (crashed runs detected).

        A field of the wrong type is left out (see :meth:`problems`); an unreadable run.json reads as ``{}``.
        """
        meta = read_metadata(self.dir)[0]
        meta["status"] = effective_status(meta, self.dir) if meta else "unknown"
        return meta

    @property
    def status(self) -> str:
        """running | finished | failed | crashed (a running run whose process is gone reads as crashed);
        ``unknown`` when run.json cannot be read."""
        return self.metadata["status"]

    @property
    def name(self) -> str:
        return read_metadata(self.dir)[0].get("name", self.id)

    @property
    def config(self) -> dict[str, Any]:
        return _read_object(self.dir, CONFIG_FILE)

    @property
    def summary(self) -> dict[str, Any]:
        return _read_object(self.dir, SUMMARY_FILE)

    @property
    def environment(self) -> dict[str, Any]:
        """environment/metadata.json (git with dirty flag, frameworks, hardware); {} when not captured.

        A run opened with ``parent=`` shares its parent's: run.json's ``environment_of``
        names that sibling run, whose ``environment/`` is read (here and in
        :meth:`requirements`, :meth:`git_diff`).
        """
        return _read_object(self._env_dir(), "metadata.json")

    def _env_dir(self) -> Path:
        from .run import check_segment

        shared = read_metadata(self.dir)[0].get(ENVIRONMENT_OF)
        if not isinstance(shared, str):
            return self.dir / _ENV_DIR
        try:  # one folder name only: never a path out of the project
            return self.dir.parent / check_segment(shared, "environment_of") / _ENV_DIR
        except ValueError:
            return self.dir / _ENV_DIR

    @property
    def datasets(self) -> dict[str, Any]:
        return read_metadata(self.dir)[0].get("datasets") or {}

    def problems(self) -> list[str]:
        """What could not be read, one note per problem naming the file ([] for a healthy run)."""
        notes = read_metadata(self.dir)[1]
        for name in (CONFIG_FILE, SUMMARY_FILE):
            _read_object(self.dir, name, notes)
        _read_object(self._env_dir(), "metadata.json", notes)
        for path in sorted(self.dir.glob("system*.jsonl")):
            skipped = read_jsonl(path)[1]
            if skipped:
                notes.append(f"{path.name}: {skipped} line(s) skipped (torn, not JSON or not an object)")
        skipped = read_metrics(self.dir)[1]
        if skipped:
            notes.append(f"{METRICS_FILE}: {skipped} damaged stretch(es) skipped")
        notes.extend(read_versions(self.dir)[1])
        return notes

    def requirements(self) -> dict[str, str]:
        """Installed distributions at the time of the run: name -> version."""
        try:
            text = (self._env_dir() / "requirements.txt").read_text(encoding="utf-8", errors="replace")
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
            return (self._env_dir() / "git.diff").read_text(encoding="utf-8", errors="replace")
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
        rows.sort(key=lambda r: (r["time"] if _number(r.get("time")) else 0.0,
                                 r["rank"] if _number(r.get("rank")) else 0))
        figures = sorted({k for r in rows for k in r} - {"time", "rank"})
        return pandas.DataFrame.from_records(rows).reindex(columns=["time", "rank", *figures])

    def media(self, key: str | None = None):
        """A DataFrame of logged images, histograms and texts: ``step``, ``time``, ``key``, ``type``, ``path``
        (absolute), ``caption``; one row per file, in logging order, only ``key``'s if given."""
        from ._media_store import read_index

        pandas = _require_pandas()
        rows = [r for r in read_index(self.dir) if key is None or r["key"] == key]
        return pandas.DataFrame({
            "step": pandas.Series([r["step"] for r in rows], dtype="int64"),
            "time": pandas.Series([r.get("time") for r in rows], dtype="float64"),
            "key": pandas.Series([r["key"] for r in rows], dtype=object),
            "type": pandas.Series([r["type"] for r in rows], dtype=object),
            "path": pandas.Series([str(self.dir / r["file"]) for r in rows], dtype=object),
            "caption": pandas.Series([r.get("caption") for r in rows], dtype=object),  # None stays None
        })

    # -- artifacts -------------------------------------------------------------------------------
    def artifacts(self) -> list[ArtifactVersion]:
        """Every stored artifact version (name, version, aliases, sha256, size, path relative to the run)."""
        return read_versions(self.dir)[0]

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


def run_row(run_dir: Path, now: float) -> dict[str, Any]:
    """One run as a flat row: identity, status, timing, tags, host, commit, config.*, summary.*, problems."""
    meta, notes = read_metadata(run_dir)
    status = effective_status(meta, run_dir, now) if meta else "unknown"
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
        "git.commit": (meta.get("git") or {}).get("commit"),
    }
    row.update(flatten(_read_object(run_dir, CONFIG_FILE, notes), "config."))
    row.update(flatten(_read_object(run_dir, SUMMARY_FILE, notes), "summary."))
    row["problems"] = notes
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
        row = run_row(run_dir, now)
        if _matches(row, wanted):
            rows.append(row)
    rows.sort(key=lambda r: (r["start"] if _number(r["start"]) else 0.0, r["id"]))
    return rows


def runs(project: str | None = None, dir: str | os.PathLike[str] | None = None, **filters: Any):
    """A DataFrame, one row per run: id, name, project, status, start, duration (s), tags, config.*, summary.*.

    ``filters`` keep rows whose column equals the value (a list/tuple/set: is one of them;
    a callable: returns true). ``tags="x"`` keeps runs tagged ``x``; ``config__lr=0.1``
    stands for ``config.lr``. Read from run.json, config.json and summary.json only.
    """
    pandas = _require_pandas()
    rows = list_runs(project, dir, **filters)
    base = ["id", "name", "project", "status", "start", "duration", "tags", "host", "git.commit", "problems"]
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
    ma, mb = read_metadata(ra.dir)[0], read_metadata(rb.dir)[0]
    ga = {**_dict(ra.environment.get("git")), **(ma.get("git") or {})}  # run.json wins, environment adds dirty
    gb = {**_dict(rb.environment.get("git")), **(mb.get("git") or {})}
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


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _diff_summary(text: str) -> str:
    if not text:
        return "clean"
    import hashlib

    files = sum(1 for line in text.splitlines() if line.startswith("diff --git "))
    return f"{files} file(s), {len(text)} bytes, sha256 {hashlib.sha256(text.encode()).hexdigest()[:12]}"

