"""The mirror of one run directory on one MLflow server, and its cursor: what the server acknowledged.

The run directory is the truth; the server holds a copy that catches up. Both the live
sink (:mod:`epochal.sinks.mlflow`) and ``epochal sync`` (:mod:`epochal.sync`) push
through a :class:`Mirror`, so a run is mapped the same way whichever sent it.

The cursor, ``mlflow.json`` in the run folder (one entry per server URI, never a
credential), is rewritten atomically after every acknowledged request and records:

- ``metrics``: ``[offset, points]``: the byte offset in ``metrics.bin`` of the first block
  not wholly acknowledged, and how many of its points were;
- ``system``: per ``system*.jsonl`` file, how many samples were acknowledged;
- ``artifacts``: the ``name:version`` pairs uploaded;
- ``media``: ``[offset, files]``: the byte offset in ``media/.index.jsonl`` of the first media
  entry not wholly uploaded, and how many of its files were (see :mod:`epochal.sinks.mlflow_media`);
- ``params``, ``tags``: a hash of each value sent (so nothing is sent twice);
- ``names``: epochal name -> MLflow name, for names MLflow would refuse;
- ``last``, ``last_step``: each metric's last value sent (to tell summary overrides);
- ``summary``, ``status``: what was sent last.

So nothing is sent twice and nothing is skipped: a request whose answer was lost is
sent again, and MLflow's SQL stores keep one copy of a point sent twice.

One party at a time sends a run: a :class:`Mirror` holds ``mlflow.lock`` in the run folder
(an :class:`epochal.runlock.OwnedLock`) from before it reads the cursor until
:meth:`Mirror.release`, so a live mirror (for the run's life) and ``epochal sync`` (while it
sends that run), or two syncs, never read the same cursor and send the same records. The
lock names its holder (pid, host, role); the kernel drops it when the holder dies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from ..blocks import iter_block_spans
from ..records import ArtifactVersion, RowFormat
from ..runlock import LockHeld, OwnedLock, describe_holder
from ..store import read_json, system_prefix, write_json_atomic
from .mlflow_mapping import (
    MAX_METRICS, MAX_PARAMS, MAX_TAG_VALUE, MAX_TAGS, STATUS, NameMapper, alias_tag, chunks, param_values, summary_records, truncate,
)
from .mlflow_media import IMAGES_TAG, index_entries, media_files
from .mlflow_rest import MlflowRest, RecordRejected, ServerUnavailable

__all__ = ["CURSOR_FILE", "MIRROR_LOCK_FILE", "Mirror", "MirrorBusy", "MirrorStopped"]

log = logging.getLogger("epochal")
CURSOR_FILE = "mlflow.json"
MIRROR_LOCK_FILE = "mlflow.lock"
_RUN_LEVEL_ERRORS = ("RESOURCE_DOES_NOT_EXIST", "INVALID_STATE", "PERMISSION_DENIED")
_MAX_WARNINGS = 5
Point = dict[str, Any]


class MirrorBusy(LockHeld):
    """Another process (a live run's mirror or ``epochal sync``) is sending this run now; ``holder`` names it."""


class MirrorStopped(Exception):
    """The server refuses the run as a whole (deleted, no permission): mirroring it cannot go on."""


def _hash(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=repr).encode()).hexdigest()[:16]


def _value(value: float) -> float | str:
    """A float as MLflow's JSON takes it: NaN and the infinities as the strings protobuf's JSON format uses."""
    if value - value == 0:
        return value
    return "NaN" if value != value else "Infinity" if value > 0 else "-Infinity"


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


class Mirror:
    """Pushes one run's records to one server, recording each acknowledgement in the cursor.

    Every ``push_*`` sends only what the cursor lacks and raises :class:`ServerUnavailable`
    when the server cannot take it now (what was acknowledged before stays recorded).
    A record the server refuses is skipped with a warning, never retried.

    Making one takes the run's mirror lock or raises :class:`MirrorBusy` naming the
    process that holds it; ``role`` (``"live mirror"``, ``"epochal sync"``) is how this
    one is named to others. :meth:`release` (or :meth:`close`) gives it back.
    """

    def __init__(self, run_dir: Path, rest: MlflowRest, progress: Callable[[int], None] | None = None,
                 role: str = "epochal sync") -> None:
        self.dir = Path(run_dir)
        self._lock = OwnedLock(self.dir / MIRROR_LOCK_FILE, role)
        try:
            self._lock.acquire()  # before reading the cursor: the holder may be moving it
        except LockHeld as exc:
            raise MirrorBusy(f"run {self.dir.name} is being sent to MLflow by {describe_holder(exc.holder)}",
                             exc.holder) from None
        self.rest = rest
        self.progress = progress
        self.deadline: float | None = None  # time.monotonic() after which no request starts
        self.points_sent = 0
        self.media_sent = 0  # media files uploaded
        self.skipped = 0
        doc = read_json(self.dir / CURSOR_FILE, {})
        self._doc: dict[str, Any] = doc if isinstance(doc, dict) and isinstance(doc.get("servers"), dict) else {"format": 1,
                                                                                                  "servers": {}}
        state = self._doc["servers"].setdefault(rest.uri, {})
        for key, default in (("metrics", [0, 0]), ("system", {}), ("artifacts", []), ("media", [0, 0]), ("params", {}), ("tags", {}),
                             ("names", {}), ("last", {}), ("last_step", None), ("summary", None), ("status", None)):
            state.setdefault(key, default)
        self.state = state
        self.names = NameMapper(state["names"])
        self._artifacts_done = set(state["artifacts"])
        self._create_unanswered = False
        self._experiment: str | None = None
        self._warned_artifacts = False

    # -- the cursor ----------------------------------------------------------------------------
    @property
    def run_id(self) -> str | None:
        return self.state.get("run_id")

    @property
    def metrics_offset(self) -> int:
        return int(self.state["metrics"][0])

    @property
    def media_offset(self) -> int:
        return int(self.state["media"][0])

    def save(self) -> None:
        self.state["names"] = self.names.mapped
        write_json_atomic(self.dir / CURSOR_FILE, self._doc)

    def _timeout(self) -> float | None:
        if self.deadline is None:
            return None
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise ServerUnavailable(f"no time left to reach MLflow server {self.rest.uri}")
        return min(remaining, self.rest.timeout)

    def _rejected(self, what: str, exc: RecordRejected) -> None:
        if exc.error_code in _RUN_LEVEL_ERRORS:
            raise MirrorStopped(f"{exc} (if MLflow run {self.run_id} was deleted, remove {self.dir / CURSOR_FILE} "
                                "to mirror this run anew)") from None
        self.skipped += 1
        if self.skipped <= _MAX_WARNINGS:
            log.warning("epochal: %s; %s skipped (the run directory keeps it)", exc, what)
        elif self.skipped == _MAX_WARNINGS + 1:
            log.warning("epochal: MLflow server %s rejects more records; further ones are skipped silently",
                        self.rest.uri)

    def _log_batch(self, metrics: Sequence[Point] = (), params: Sequence[Point] = (), tags: Sequence[Point] = ()) -> None:
        """One log-batch request; a refused one is split in halves until the refused records are found and skipped."""
        try:
            self.rest.log_batch(self.run_id, metrics, params, tags, timeout=self._timeout())  # type: ignore[arg-type]
        except RecordRejected as exc:
            items = [("metrics", m) for m in metrics] + [("params", p) for p in params] + [("tags", t) for t in tags]
            if len(items) == 1:
                self._rejected(f"{items[0][0][:-1]} {items[0][1].get('key')!r}", exc)
                return
            for half in (items[: len(items) // 2], items[len(items) // 2:]):
                self._log_batch(*([i for kind, i in half if kind == k] for k in ("metrics", "params", "tags")))

    # -- the run -------------------------------------------------------------------------------------
    def experiment(self, project: str, timeout: float | None = None) -> str:
        """The id of the project's experiment (created if missing), asked once per mirror."""
        if self._experiment is None:
            self._experiment = self.rest.experiment_id(project, timeout=timeout or self._timeout())
        return self._experiment

    def ensure_run(self, project: str, name: str, epochal_id: str, created: float, search: bool = True) -> str:
        """The MLflow run of this epochal run: found by its ``epochal.run_id`` tag, else created.

        ``search=False`` skips the look-up for a run that cannot exist yet (a new run whose
        every earlier create request was answered).
        """
        if self.run_id:
            return self.run_id
        experiment = self.experiment(project)
        found: list[Any] = []
        if search or self._create_unanswered:
            found = self.rest.call("runs/search", {
                "experiment_ids": [experiment], "max_results": 1,
                "filter": f"tags.`epochal.run_id` = '{epochal_id}'"}, timeout=self._timeout()).get("runs") or []
        if found:
            info = found[0]["info"]
        else:
            tags = [{"key": "epochal.run_id", "value": epochal_id}, {"key": "epochal.project", "value": project}]
            self._create_unanswered = True  # until the answer arrives, the server may have made it
            info = self.rest.create_run(experiment, name, _ms(created), tags, timeout=self._timeout())
            self._create_unanswered = False
        self.state.update(run_id=info["run_id"], experiment_id=experiment, artifact_uri=info.get("artifact_uri"))
        self.save()
        return str(info["run_id"])

    def push_tags(self, tags: Mapping[str, str]) -> None:
        """Set the tags whose value differs from what was sent."""
        sent = self.state["tags"]
        todo = {k: v for k, v in tags.items() if sent.get(k) != _hash(v)}
        if self.names.mapped:
            mapping = truncate(json.dumps(self.names.mapped, sort_keys=True), MAX_TAG_VALUE)
            if sent.get("epochal.name_map") != _hash(mapping):
                todo["epochal.name_map"] = mapping
        items = [{"key": self.names(k), "value": v, "_name": k} for k, v in todo.items()]
        for batch in chunks(items, MAX_TAGS):
            self._log_batch(tags=[{"key": t["key"], "value": t["value"]} for t in batch])
            sent.update((t["_name"], _hash(t["value"])) for t in batch)
            self.save()

    def push_params(self, config: Mapping[str, Any]) -> None:
        """The flattened config as params; a value changed after it was sent becomes the tag ``epochal.config.<key>``."""
        sent = self.state["params"]
        values = param_values(config)
        new = [{"key": self.names(k), "value": v, "_name": k} for k, v in values.items() if k not in sent]
        for batch in chunks(new, MAX_PARAMS):
            self._log_batch(params=[{"key": p["key"], "value": p["value"]} for p in batch])
            sent.update((p["_name"], _hash(p["value"])) for p in batch)
            self.save()
        changed = {f"epochal.config.{k}": v for k, v in values.items()
                   if sent.get(k) != _hash(v) or f"epochal.config.{k}" in self.state["tags"]}
        if changed:
            self.push_tags(changed)

    def push_status(self, status: str, end_time: float | None = None) -> None:
        """Set the MLflow run status (``finished`` -> FINISHED, ``failed`` -> FAILED, ``crashed`` -> KILLED)."""
        target = STATUS.get(status, "RUNNING")
        if self.state["status"] == target:
            return
        ended = _ms(end_time or time.time()) if target != "RUNNING" else None
        self.rest.update_run(self.run_id, target, ended, timeout=self._timeout())  # type: ignore[arg-type]
        self.state["status"] = target
        self.save()

    def push_summary(self, summary: Mapping[str, Any], when: float | None = None) -> None:
        """The summary's figures MLflow's last values do not already show (see :func:`summary_records`)."""
        digest = _hash(summary)
        if self.state["summary"] == digest:
            return
        metrics, tags = summary_records(summary, self.state["last"])
        step = self.state["last_step"] or 0
        stamp = _ms(when or time.time())
        points = [{"key": self.names(k), "value": v, "timestamp": stamp, "step": step} for k, v in metrics.items()]
        for batch in chunks(points, MAX_METRICS):
            self._log_batch(metrics=batch)
        self.push_tags(tags)
        self.state["summary"] = digest
        self.save()

    # -- points ------------------------------------------------------------------------------------
    def _send_points(self, stream: Iterator[tuple[Point | None, Any]], commit: Callable[[Any], None]) -> int:
        """Send ``(point, position)`` pairs in requests of up to 1000; ``commit(position)`` after each acknowledgement."""
        sent = 0
        batch: list[Point] = []
        position = None
        for point, position_after in stream:
            if point is not None:
                batch.append(point)
            position = position_after
            if len(batch) >= MAX_METRICS:
                self._log_batch(metrics=batch)
                sent += len(batch)
                self.points_sent += len(batch)
                batch = []
                commit(position)
                if self.progress is not None:
                    self.progress(self.points_sent)
        if batch:
            self._log_batch(metrics=batch)
            sent += len(batch)
            self.points_sent += len(batch)
        if position is not None:
            commit(position)
        return sent

    def pending_metric_points(self, data: bytes, base: int) -> int:
        """How many points of these ``metrics.bin`` bytes (at file offset ``base``) the server lacks."""
        offset, done = self.state["metrics"]
        total = 0
        for start, stop, block in iter_block_spans(data):
            if block is not None and base + stop > offset:
                total += block[1] * len(block[0]) - (done if base + start == offset else 0)
        return total

    def push_metric_bytes(self, data: bytes, base: int) -> int:
        """Send the points of ``data``, the bytes of ``metrics.bin`` from file offset ``base``, past the cursor.

        A stretch that is not a valid block is passed over, unless it ends the data (a
        block still being written): the cursor stops before it. Returns the points sent.
        """
        last, names = self.state["last"], self.names
        end = base + len(data)

        def stream() -> Iterator[tuple[Point | None, tuple[int, int]]]:
            offset, done = self.state["metrics"]
            for start, stop, block in iter_block_spans(data):
                start, stop = base + start, base + stop
                if stop <= offset:
                    continue
                if block is None:
                    if stop >= end:
                        return
                    yield None, (stop, 0)
                    continue
                keys, rows, body = block
                mapped = [names(k) for k in keys]
                skip = done if start == offset else 0
                count = rows * len(keys)
                index = 0
                step = None
                for row in RowFormat(tuple(keys)).iter_unpack(body):
                    step, stamp = row[0], _ms(row[1])
                    for key, name, value in zip(keys, mapped, row[3:]):
                        index += 1
                        if index > skip:
                            last[key] = value
                            yield ({"key": name, "value": _value(value), "timestamp": stamp, "step": step},
                                   (stop, 0) if index == count else (start, index))
                if step is not None:
                    self.state["last_step"] = max(step, self.state["last_step"] or 0)

        def commit(position: tuple[int, int]) -> None:
            self.state["metrics"] = list(position)
            self.save()

        return self._send_points(stream(), commit)

    def push_system(self, file_name: str, samples: Iterable[Mapping[str, Any]], first: int = 0) -> int:
        """Send hardware samples number ``first, first+1, ...`` of ``file_name`` as ``system/*`` metrics.

        The step of a sample is its number in the file; its wall time is the point's timestamp.
        """
        acked = int(self.state["system"].get(file_name, 0))
        prefix = system_prefix(file_name)
        names = self.names

        def stream() -> Iterator[tuple[Point | None, int]]:
            for index, sample in enumerate(samples, first):
                if index < acked:
                    continue
                stamp = _ms(float(sample.get("time") or 0.0))
                values = [(k, v) for k, v in sample.items() if k not in ("time", "rank")
                          and isinstance(v, (int, float)) and not isinstance(v, bool)]
                if not values:
                    yield None, index + 1
                for i, (key, value) in enumerate(values, 1):
                    yield ({"key": names(prefix + key), "value": _value(float(value)), "timestamp": stamp, "step": index},
                           index + 1 if i == len(values) else index)

        def commit(position: int) -> None:
            self.state["system"][file_name] = max(acked, position)
            self.save()

        return self._send_points(stream(), commit)

    # -- artifacts ------------------------------------------------------------------------------
    def _artifact_root(self) -> str | None:
        uri = str(self.state.get("artifact_uri") or "")
        if not uri.startswith("mlflow-artifacts:"):
            return None
        path = uri[len("mlflow-artifacts:"):]
        if path.startswith("//"):  # mlflow-artifacts://host:port/path
            path = path[2:].partition("/")[2]
        return path.strip("/")

    def _upload_root(self) -> str | None:
        """Where the run's artifacts go through the proxy; None (warned once) for a server without one.

        Metrics and the rest go on; a later sync uploads the files once the server proxies artifacts.
        """
        root = self._artifact_root()
        if root is None and not self._warned_artifacts:
            self._warned_artifacts = True
            log.warning(
                "epochal: MLflow server %s does not serve artifacts (run artifact URI %r); artifacts and media are "
                "not uploaded. Start it with `--artifacts-destination DIR` so they go through its mlflow-artifacts "
                "proxy", self.rest.uri, self.state.get("artifact_uri"))
        return root

    def push_media(self) -> int:
        """Upload the media of the index entries past the cursor (see :mod:`epochal.sinks.mlflow_media`).

        The cursor moves past each entry once its files are uploaded; a file gone from the
        run directory (or reached through a symlink) is passed over with a warning. Returns the entries sent.
        """
        root = self._upload_root()
        if root is None:
            return 0
        sent = 0
        offset, done = self.state["media"]
        for entry, after in index_entries(self.dir, offset):
            if entry is not None:
                if entry["type"] == "image":
                    self.push_tags({IMAGES_TAG: "True"})  # as mlflow.log_image sets it: the UI's image grid
                files = media_files(entry, self.dir, self.names)
                for index, (path, read) in enumerate(files[done:], done):
                    try:
                        self.rest.upload(f"{root}/{path}", read(), timeout=self._timeout())
                        self.media_sent += 1
                    except RecordRejected as exc:
                        self._rejected(f"media file {path}", exc)
                    except OSError as exc:  # deleted, or a symlink: never read through it
                        log.warning("epochal: media file %s of run %s not uploaded: %s", entry["file"], self.dir, exc)
                    self.state["media"] = [after, 0] if index == len(files) - 1 else [offset, index + 1]
                    self.save()
                sent += 1
            if self.state["media"] != [after, 0]:  # a line that is no entry
                self.state["media"] = [after, 0]
                self.save()
            offset, done = after, 0
        return sent

    def push_artifact(self, version: ArtifactVersion) -> bool:
        """Upload one stored artifact version's files to ``<name>/<version>/...`` (True once done or gone).

        Its aliases become tags ``epochal.artifact.<name>.<alias>`` = version.
        """
        key = f"{version.name}:{version.version}"
        if key in self._artifacts_done:
            return True
        root = self._upload_root()
        if root is None:
            return True
        base = self.dir.resolve()
        source = (self.dir / version.path).resolve()
        if not source.is_relative_to(base) or not source.exists():  # deleted by retention (keep_last)
            log.info("epochal: artifact %s is no longer in %s; not uploaded", key, self.dir)
            return True
        files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
        for file in files:
            relative = file.name if file == source else file.relative_to(source).as_posix()
            try:
                self.rest.upload(f"{root}/{version.name}/{version.version}/{relative}", file, timeout=self._timeout())
            except RecordRejected as exc:
                self._rejected(f"artifact file {key}/{relative}", exc)
            except FileNotFoundError:  # retention removed it meanwhile
                return True
        self._artifacts_done.add(key)
        self.state["artifacts"] = sorted(self._artifacts_done)
        self.save()
        self.push_tags({alias_tag(version.name, alias): version.version for alias in version.aliases})
        return True

    def release(self) -> None:
        """Give up the run's mirror lock: another process may send the run from now on."""
        self._lock.release()

    def close(self) -> None:
        """:meth:`release`, and close the connection to the server."""
        self.release()
        self.rest.close()

