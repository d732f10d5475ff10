"""``epochal sync``: push stored runs to an MLflow tracking server, resuming at each run's cursor.

Works for any run that is no longer running (finished, failed or crashed), whether it
was mirrored live, in part, or recorded before the mirror existed: everything is read
from the run directory with the store's readers, and the cursor (``mlflow.json``, see
:mod:`epochal.sinks.mlflow_mirror`) says what the server already has. A second sync
of the same runs sends nothing; an interrupted one resumes where it stopped.

One party at a time sends a run (the mirror lock, see :mod:`epochal.sinks.mlflow_mirror`):
a run whose live mirror is still sending it, or that another ``epochal sync`` is sending,
is skipped at once with a line naming that process (pid, host, role); nothing is sent
twice, and syncing again once that process ends sends what is left.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, TextIO, TypeVar

from .artifacts import list_versions
from .sinks.mlflow_mapping import alias_tag, run_tags
from .runlock import describe_holder
from .sinks.mlflow_mirror import Mirror, MirrorBusy, MirrorStopped
from .sinks.mlflow_rest import MlflowError, MlflowRest, ServerUnavailable, display_uri
from .store import CONFIG_FILE, METRICS_FILE, RUN_FILE, SUMMARY_FILE, effective_status, read_json, read_jsonl
from .store import write_json_atomic

__all__ = ["SyncResult", "SyncError", "sync_run", "sync_runs", "RETRY_DELAYS"]

#: seconds to wait before each new attempt while the server is unavailable; then sync stops (and resumes next time).
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
#: seconds between two progress lines of a long run.
PROGRESS_EVERY = 2.0
T = TypeVar("T")


class SyncError(Exception):
    """A sync that could not finish; the message says how to go on."""


@dataclass
class SyncResult:
    """What one run's sync did."""

    run: str
    status: str
    points: int = 0
    requests: int = 0
    skipped: int = 0
    media: int = 0  # media files uploaded
    mlflow_run_id: str | None = None
    note: str = ""


def _retrying(call: Callable[[], T], uri: str, sleep: Callable[[float], None] = time.sleep) -> T:
    for delay in (*RETRY_DELAYS, None):
        try:
            return call()
        except ServerUnavailable as exc:
            if delay is None:
                raise SyncError(f"{exc}; gave up after {len(RETRY_DELAYS) + 1} attempts. What was acknowledged is "
                                f"recorded: run `epochal sync --to {uri}` again to resume") from None
            sleep(delay)
    raise AssertionError("unreachable")


def _read_tail(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read()
    except OSError:
        return b""


def sync_run(run_dir: Path, rest: MlflowRest, out: TextIO | None = None) -> SyncResult:
    """Push one stored run to the server of ``rest``, holding its mirror lock; returns what was done."""
    run_dir = Path(run_dir)
    progress = _Progress(f"{run_dir.parent.name}/{run_dir.name}", out)
    try:
        mirror = Mirror(run_dir, rest, progress=progress, role="epochal sync")
    except MirrorBusy as exc:
        return SyncResult(progress.label, "busy", note=(
            f"skipped: {describe_holder(exc.holder)} is sending it to MLflow now (one process at a time sends a "
            "run, so nothing is sent twice); sync it again once that process ends"))
    try:
        return _sync_owned(run_dir, mirror, progress)
    finally:
        mirror.release()


def _sync_owned(run_dir: Path, mirror: Mirror, progress: _Progress) -> SyncResult:
    """:func:`sync_run` once this process holds the run's mirror lock."""
    meta = read_json(run_dir / RUN_FILE, {})
    label = progress.label = f"{meta.get('project', run_dir.parent.name)}/{meta.get('id', run_dir.name)}"
    status = effective_status(meta, run_dir)
    if status == "running":
        return SyncResult(label, status, note="still running: skipped (its live mirror, or a later sync, sends it)")
    rest = mirror.rest
    requests_before = rest.requests_sent
    uri = rest.uri
    try:
        _retrying(lambda: mirror.ensure_run(meta.get("project", run_dir.parent.name), meta.get("name") or run_dir.name,
                                            meta.get("id", run_dir.name), meta.get("created") or time.time()), uri)
        _retrying(lambda: mirror.push_params(read_json(run_dir / CONFIG_FILE, {}) or {}), uri)
        offset = mirror.metrics_offset
        data = _read_tail(run_dir / METRICS_FILE, offset)
        progress.total = mirror.pending_metric_points(data, offset)
        _retrying(lambda: mirror.push_metric_bytes(_read_tail(run_dir / METRICS_FILE, mirror.metrics_offset),
                                                   mirror.metrics_offset), uri)
        for path in sorted(run_dir.glob("system*.jsonl")):
            samples = read_jsonl(path)[0]
            _retrying(lambda: mirror.push_system(path.name, samples), uri)
        versions = list_versions(run_dir)
        for version in versions:
            _retrying(lambda: mirror.push_artifact(version), uri)
        _retrying(lambda: mirror.push_tags({alias_tag(v.name, a): v.version for v in versions for a in v.aliases}), uri)
        _retrying(mirror.push_media, uri)
        _retrying(lambda: mirror.push_summary(read_json(run_dir / SUMMARY_FILE, {}) or {}, meta.get("finished")), uri)
        _retrying(lambda: mirror.push_tags(run_tags({**meta, "status": status})), uri)
        _retrying(lambda: mirror.push_status(status, meta.get("finished") or _last_sign_of_life(run_dir, meta)), uri)
    except MirrorStopped as exc:
        raise SyncError(f"run {label}: {exc}") from None
    _note_in_run_json(run_dir, mirror)
    return SyncResult(label, status, mirror.points_sent, rest.requests_sent - requests_before, mirror.skipped,
                      mirror.media_sent, mirror.run_id)


def _last_sign_of_life(run_dir: Path, meta: dict) -> float:
    try:
        return (run_dir / "heartbeat").stat().st_mtime
    except OSError:
        return float(meta.get("started") or time.time())


def _note_in_run_json(run_dir: Path, mirror: Mirror) -> None:
    """Record the MLflow run in ``run.json`` (the run is not running: nobody else writes it now)."""
    meta = read_json(run_dir / RUN_FILE, None)
    entry = {"uri": mirror.rest.uri, "run_id": mirror.run_id, "experiment_id": mirror.state.get("experiment_id")}
    if isinstance(meta, dict) and meta.get("mlflow") != entry:
        meta["mlflow"] = entry
        write_json_atomic(run_dir / RUN_FILE, meta)


class _Progress:
    """Prints ``label: N of M points`` at most every two seconds for long runs."""

    def __init__(self, label: str, out: TextIO | None) -> None:
        self.label, self.out, self.total = label, out, 0
        self._shown = time.monotonic()

    def __call__(self, sent: int) -> None:
        now = time.monotonic()
        if self.out is not None and now - self._shown >= PROGRESS_EVERY:
            self._shown = now
            self.out.write(f"  {self.label}: {sent:,} of {self.total:,} points\n")
            self.out.flush()


def sync_runs(uri: str, run_dirs: Iterable[Path], out: TextIO | None = sys.stdout,
              rest_factory: Callable[[str], MlflowRest] = MlflowRest) -> list[SyncResult]:
    """Sync every run in ``run_dirs`` to the server at ``uri``, printing one line per run."""
    rest = rest_factory(uri)
    results = []
    try:
        for run_dir in run_dirs:
            try:
                result = sync_run(run_dir, rest, out)
            except MlflowError as exc:
                raise SyncError(str(exc)) from None
            results.append(result)
            if out is not None:
                if result.note:
                    out.write(f"{result.run}: {result.note}\n")
                else:
                    out.write(f"{result.run}: {result.status}, {result.points:,} points sent in {result.requests} "
                              f"request(s)" + (f", {result.media:,} media file(s)" if result.media else "")
                              + (f", {result.skipped} record(s) refused" if result.skipped else "")
                              + f" -> {display_uri(uri)} run {result.mlflow_run_id}\n")
    finally:
        rest.close()
    return results
