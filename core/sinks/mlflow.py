"""The ``mlflow`` sink: mirror a live run into an MLflow tracking server, never slowing or stopping training.

Turn it on with ``epochal.init(sinks=["mlflow"])`` or ``EPOCHAL_SINKS=mlflow``; the server
is ``EPOCHAL_MLFLOW_URI``, else ``MLFLOW_TRACKING_URI``. It speaks MLflow's REST API
(:mod:`epochal.sinks.mlflow_rest`, needs ``requests``: ``pip install 'epochal[mlflow]'``),
never imports mlflow, and maps a run as :mod:`epochal.sinks.mlflow_mapping` says:
experiment = project, run name, tags, params = flattened config, every metric point
with its step and wall time, hardware samples as ``system/*``, artifacts through the
server's ``mlflow-artifacts`` proxy, media (images, histograms, texts) as artifact files
laid out as :mod:`epochal.sinks.mlflow_media` says, the summary and status at the end. The MLflow run
id goes into ``run.json`` (``"mlflow"``) when the server answers at ``init``.

Never blocks: the mirror works on its own plugin lane. Once at ``init`` the server is
asked for the project's experiment and the MLflow run is made (within
``EPOCHAL_MLFLOW_INIT_TIMEOUT`` seconds, 10 by default; a slow server gets the run made
from the lane instead, and its id reaches ``run.json`` with ``epochal sync``); an unreachable or
non-MLflow URI gives one warning naming it and training goes on. A server that is
down, slow or failing is tried again with backoff (0.5 s doubling to 30 s) on later
events, never by sleeping. The lane keeps what the server has not taken in memory
(up to ``EPOCHAL_MLFLOW_BACKLOG_MB``, 64 by default) and then reads it back from the run
directory past the cursor; media it always reads from the run directory (the store's
media index), so it holds none in memory. At the end of the run it gives the server
``EPOCHAL_MLFLOW_FINISH_TIMEOUT`` seconds (10 by default; a server that is down fails
at once, one that does not connect within 5 s; within it the store's lane is given time
to index the last media) and leaves the rest to
``epochal sync --to URI RUN``. Nothing is lost or sent twice: see the cursor in
:mod:`epochal.sinks.mlflow_mirror`.

Params are immutable in MLflow: a config value that changes after it was sent is
mirrored as the tag ``epochal.config.<key>`` (the param keeps the first value).
Only the process that owns the run (rank zero) mirrors; other ranks' hardware samples
reach the server with ``epochal sync``. The mirror holds the run's mirror lock from
``init`` to the end of the run, so an ``epochal sync`` meanwhile skips the run and says
why; a run resumed while a sync is sending it is not mirrored live (one warning names
that sync) and a later ``epochal sync`` sends it.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence, cast

from ..blocks import encode_block
from .._media_store import INDEX_FILE
from ..hookspecs import hookimpl
from ..media import MediaRecord
from ..records import ArtifactVersion, MetricBatch, RunInfo
from ..staging import StagedArtifact
from ..store import METRICS_FILE, SUMMARY_FILE, read_json, read_jsonl, system_file_name
from .mlflow_mapping import alias_tag, run_tags
from .mlflow_media import count_entries
from .mlflow_mirror import Mirror, MirrorBusy, MirrorStopped
from .mlflow_rest import MlflowError, MlflowRest, NotAnMlflowServer, RecordRejected, ServerUnavailable, resolve_uri

__all__ = ["MlflowSink"]

log = logging.getLogger("epochal")
PROBE_TIMEOUT = 5.0
MAX_DELAY = 30.0


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


class MlflowSink:
    """Mirrors one run into an MLflow server from its own lane (see the module docstring)."""

    def __init__(self) -> None:
        self.mirror: Mirror | None = None
        self._uri = ""
        self._outbox: list[tuple[int, bytes]] = []  # (metrics.bin offset, the bytes the store appends there)
        self._outbox_bytes = 0
        self._backlog_cap = int(_env_float("EPOCHAL_MLFLOW_BACKLOG_MB", 64) * 2**20)
        self._expected_end = 0  # where metrics.bin ends once the store wrote every batch delivered so far
        self._from_file = False  # the backlog is read back from metrics.bin past the cursor
        self._system_file = ""
        self._system: list[Mapping[str, Any]] = []
        self._system_first = 0  # the number in the file of self._system[0]
        self._system_backlog = False
        self._artifacts: list[StagedArtifact | ArtifactVersion] = []
        self._media = False  # the run has media the server may lack
        self._media_base = 0  # the size of the media index at init: this session's entries follow it
        self._media_expected = 0  # media files delivered this session (the store indexes each one)
        self._alias_tags: dict[str, str] = {}
        self._meta: Mapping[str, Any] | None = None
        self._meta_dirty = False
        self._params: Mapping[str, Any] | None = None
        self._params_sent = False
        self._config: Mapping[str, Any] | None = None
        self._config_dirty = False
        self._summary: Mapping[str, Any] | None = None
        self._run: Any = None
        self._reopen = False
        self._retry_at = 0.0
        self._delay = 0.0
        self._down_since: float | None = None

    # -- set-up, on the training thread at init --------------------------------------------------
    @hookimpl
    def epochal_run_metadata(self, run: RunInfo) -> dict[str, Any] | None:
        if not run.is_owner:
            return None
        uri = resolve_uri()
        if not uri:
            log.warning("epochal: the mlflow sink needs a server: set EPOCHAL_MLFLOW_URI (or MLFLOW_TRACKING_URI) to "
                        "its URL, e.g. http://127.0.0.1:5000; run %s is kept locally only", run.id)
            return None
        try:
            rest = MlflowRest(uri)
        except (ValueError, ImportError) as exc:
            log.warning("epochal: %s; run %s is kept locally only", exc, run.id)
            return None
        try:
            mirror = Mirror(Path(run.dir), rest, role="live mirror")  # held until run end: see mlflow_mirror
        except MirrorBusy as exc:
            rest.close()
            log.warning("epochal: %s; run %s is not mirrored live (one process at a time sends a run): run "
                        "`epochal sync --to %s %s` once that process ends", exc, run.id, rest.uri, run.id)
            return None
        self._run = run
        self._uri = rest.uri
        self.mirror = mirror
        self._reopen = mirror.state["status"] not in (None, "RUNNING")  # a resumed run runs again
        self._expected_end = _size(Path(run.dir) / METRICS_FILE)
        self._from_file = mirror.metrics_offset < self._expected_end
        self._system_file = system_file_name(run.rank, run.world_size)
        system_path = Path(run.dir) / self._system_file
        if system_path.exists():
            self._system_first = len(read_jsonl(system_path)[0])
            self._system_backlog = int(mirror.state["system"].get(self._system_file, 0)) < self._system_first
        self._media_base = _size(Path(run.dir) / INDEX_FILE)
        self._media = mirror.media_offset < self._media_base
        mirror.deadline = time.monotonic() + _env_float("EPOCHAL_MLFLOW_INIT_TIMEOUT", 10.0)
        try:
            mirror.experiment(run.project, timeout=PROBE_TIMEOUT)  # the probe: is it there, is it MLflow?
        except ServerUnavailable as exc:
            log.warning("epochal: %s; training goes on and run %s is kept locally. The mirror retries in the "
                        "background; what it cannot send, `epochal sync --to %s` sends later", exc, run.id, rest.uri)
            self._backoff()
        except (NotAnMlflowServer, RecordRejected, MirrorStopped) as exc:
            log.warning("epochal: %s; run %s is kept locally only (not mirrored)", exc, run.id)
            self._stop()
            return None
        else:
            try:
                mirror.ensure_run(run.project, run.name, run.id, time.time(), search=bool(run.resumed))
            except ServerUnavailable:  # slow, not gone: the lane finds or creates the run
                self._backoff()
            except MlflowError as exc:
                log.warning("epochal: %s; run %s is kept locally only (not mirrored)", exc, run.id)
                self._stop()
                return None
        finally:
            mirror.deadline = None
        if mirror.run_id is None:
            return None
        return {"mlflow": {"uri": rest.uri, "run_id": mirror.run_id,
                           "experiment_id": mirror.state.get("experiment_id")}}

    # -- events, on the mirror's lane -------------------------------------------------------------
    @hookimpl
    def epochal_config(self, run, config: Mapping[str, Any]) -> None:
        if self.mirror is not None:
            if self._params is None:  # the config at start (it follows run_start): the params
                self._params = config
            self._config, self._config_dirty = config, True
            self._pump()

    @hookimpl
    def epochal_metadata(self, run, metadata: Mapping[str, Any]) -> None:
        if self.mirror is not None:
            self._meta, self._meta_dirty = metadata, True
            self._pump()

    @hookimpl
    def epochal_metrics(self, run, records: MetricBatch) -> None:
        if self.mirror is None:
            return
        data = b"".join(encode_block(fmt, rows) for fmt, rows in records.runs)  # what the store appends
        if not self._from_file:
            self._outbox.append((self._expected_end, data))
            self._outbox_bytes += len(data)
            if self._outbox_bytes > self._backlog_cap:  # read it back from the run directory later
                self._outbox, self._outbox_bytes, self._from_file = [], 0, True
        self._expected_end += len(data)
        self._pump()

    @hookimpl
    def epochal_system(self, run, records: Sequence[Any]) -> None:
        if self.mirror is None:
            return
        for wall, rank, values in records:
            self._system.append({"time": wall, **values})
        self._pump()

    @hookimpl
    def epochal_summary(self, run, summary: Mapping[str, Any]) -> None:
        if self.mirror is not None:
            self._summary = summary

    @hookimpl
    def epochal_artifact(self, run, artifact: StagedArtifact) -> None:
        if self.mirror is not None:
            self._artifacts.append(artifact)
            self._pump()

    @hookimpl
    def epochal_media(self, run, records: Sequence[MediaRecord]) -> None:
        if self.mirror is not None:  # sent from the index once the store has filed them
            self._media = True
            self._media_expected += sum(len(record.items) for record in records)
            self._pump()

    @hookimpl
    def epochal_artifact_alias(self, run, name: str, version: str, alias: str) -> None:
        if self.mirror is not None:
            self._alias_tags[alias_tag(name, alias)] = version
            self._pump()

    @hookimpl
    def epochal_run_end(self, run, status: str) -> None:
        mirror = self.mirror
        if mirror is None:
            return
        self._retry_at = 0.0  # one more go, within the budget; a server that is down fails it at once
        mirror.deadline = time.monotonic() + _env_float("EPOCHAL_MLFLOW_FINISH_TIMEOUT", 10.0)
        problem = self._pump(status=status)
        if problem is not None and self.mirror is not None:
            log.warning("epochal: run %s is not fully mirrored to MLflow server %s (%s); it is complete locally: "
                        "run `epochal sync --to %s %s` to finish the mirror", run.id, self._uri, problem, self._uri,
                        run.id)
        if self.mirror is not None:
            self.mirror.close()
        self.mirror = None

    # -- sending -----------------------------------------------------------------------------------
    def _pump(self, status: str | None = None) -> str | None:
        """Send what the server lacks, unless backing off; None when everything (and ``status``) was sent, else why not."""
        mirror = self.mirror
        if mirror is None:
            return "mirror stopped"
        if time.monotonic() < self._retry_at:
            return "backing off"
        run = self._run
        try:
            mirror.ensure_run(run.project, run.name, run.id, float((self._meta or {}).get("created") or time.time()),
                              search=bool(run.resumed))
            if self._reopen:
                mirror.push_status("running")
                self._reopen = False
            if self._params is not None and not self._params_sent:
                mirror.push_params(self._params)
                self._params_sent = True
            if self._config_dirty and self._config is not None:
                mirror.push_params(self._config)
                self._config_dirty = False
            if self._meta_dirty and self._meta is not None:
                mirror.push_tags(run_tags(self._meta))
                self._meta_dirty = False
            complete = self._push_metrics(mirror)
            self._push_system(mirror)
            self._push_artifacts(mirror, final=status is not None)
            media_filed = self._push_media(mirror, final=status is not None)
            if self._alias_tags and not self._artifacts:  # after the versions they point at
                mirror.push_tags(self._alias_tags)
                self._alias_tags = {}
            if status is not None:
                if not complete or self._artifacts or not media_filed:
                    return "the run directory is ahead of what the store has written" if not complete else (
                        "artifacts not filed by the store in time" if self._artifacts else
                        "media not filed by the store in time")
                summary = self._summary if self._summary is not None else read_json(Path(run.dir) / SUMMARY_FILE, {})
                mirror.push_summary(summary or {})
                mirror.push_tags(run_tags({**(self._meta or {}), "status": status}))
                mirror.push_status(status)
        except ServerUnavailable as exc:
            self._backoff(exc)
            return "the server did not take it"  # the first warning of an outage said why
        except (MirrorStopped, MlflowError) as exc:
            log.warning("epochal: mirroring run %s to MLflow stopped: %s (the run is complete locally)", run.id, exc)
            self._stop()
            return str(exc)
        if self._down_since is not None:
            log.warning("epochal: MLflow server %s answers again after %.0f s; the mirror caught up", self._uri,
                        time.monotonic() - self._down_since)
        self._down_since, self._delay = None, 0.0
        return None

    def _push_metrics(self, mirror: Mirror) -> bool:
        """Send the metric backlog; True when the server has every point delivered so far."""
        if self._from_file:
            offset = mirror.metrics_offset
            try:
                with open(Path(self._run.dir) / METRICS_FILE, "rb") as handle:
                    handle.seek(offset)
                    data = handle.read(max(0, self._expected_end - offset))
            except OSError:
                data = b""
            mirror.push_metric_bytes(data, offset)
            if mirror.metrics_offset < self._expected_end:
                return False
            self._from_file = False
        if self._outbox:  # contiguous in metrics.bin: one stream, so only its very end is a partial request
            base = self._outbox[0][0]
            mirror.push_metric_bytes(b"".join(data for _, data in self._outbox), base)
            self._outbox, self._outbox_bytes = [], 0
        return True

    def _push_artifacts(self, mirror: Mirror, final: bool) -> None:
        """Upload the versions the store has filed (at the end, waiting for it within the deadline)."""
        pending = []
        for artifact in self._artifacts:
            wait = getattr(artifact, "wait", None)
            if wait is None:  # already a stored version
                stored = artifact
            else:
                left = (mirror.deadline - time.monotonic()) if final and mirror.deadline else 0.0
                stored = wait(max(0.0, left))
                if stored is None and not getattr(artifact, "failed", False):
                    pending.append(artifact)  # not filed yet
                    continue
            if stored is not None:
                mirror.push_artifact(cast(ArtifactVersion, stored))  # what wait() returned, or a filed version
        self._artifacts = pending

    def _push_media(self, mirror: Mirror, final: bool) -> bool:
        """Upload the media the store has indexed; at the end, first wait (within the deadline) until it
        indexed every file delivered. True when nothing delivered is left behind."""
        if not self._media:
            return True
        filed = True
        if final and self._media_expected:
            filed = self._await_index(mirror.deadline)
        if _size(Path(self._run.dir) / INDEX_FILE) > mirror.media_offset:
            mirror.push_media()
        return filed

    def _await_index(self, deadline: float | None) -> bool:
        """Wait for the store's lane to index this session's media (it runs beside this lane), polling its size."""
        path, size, wait = Path(self._run.dir) / INDEX_FILE, -1, 0.01
        while True:
            now_size = _size(path)
            if now_size != size:
                size = now_size
                if count_entries(Path(self._run.dir), self._media_base) >= self._media_expected:
                    return True
            if deadline is None or time.monotonic() + wait > deadline:
                return False
            time.sleep(wait)  # the store's lane gives no signal to this one; bounded by the finish deadline
            wait = min(0.2, wait * 2)

    def _push_system(self, mirror: Mirror) -> None:
        if self._system_backlog:
            samples = read_jsonl(Path(self._run.dir) / self._system_file)[0][: self._system_first]
            mirror.push_system(self._system_file, samples)
            self._system_backlog = False
        if self._system:
            mirror.push_system(self._system_file, self._system, self._system_first)
            self._system_first += len(self._system)
            self._system = []

    def _backoff(self, exc: Exception | None = None) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            if exc is not None:
                log.warning("epochal: %s; the mirror tries again with backoff (training goes on)", exc)
        self._delay = min(MAX_DELAY, max(0.5, self._delay * 2))
        self._retry_at = now + self._delay

    def _stop(self) -> None:
        if self.mirror is not None:
            self.mirror.close()
        self.mirror = None


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
