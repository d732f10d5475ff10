"""TensorBoard export: the ``tensorboard`` sink, export of stored runs, and ``epochal tb``.

Needs only the ``tensorboard`` package (its protobufs; no TensorFlow, no torch). Event
files go to ``<run dir>/tensorboard/``: one uniquely named file per process of a live
run, or ``events.out.tfevents.<created>.epochal-export`` for a run exported after the fact
(rewritten whole on every export, so exporting twice never duplicates a point).

What TensorBoard shows:

- every metric as a scalar at the run's step with its wall time (TensorBoard keeps
  scalars as float32);
- the config (JSON) and the notes as text;
- images, histograms and markdown logged with ``epochal.Image``/``Histogram``/``Text``
  in the images, histograms and text tabs, at their steps (a batch of images is one step's samples);
- hardware samples as scalars under ``system/`` (``system/rank<N>/`` under DDP), at
  step = whole seconds since the run was created;
- at the end of the run, when the summary is final, one HParams session per run
  (group = run id): the config flattened to dotted names as hyperparameters, non-scalars
  as strings. The HParams metrics are the run's scalars, read by TensorBoard as their
  last values, which are the summary's; summary values never logged as metrics are
  written as scalars at the last step, overrides that differ from the last logged
  value as ``summary/<name>``. No experiment summary is written: TensorBoard then
  builds the experiment from every run's session, so runs with different configs
  compare in one table.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
from array import array
from itertools import count
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable, Mapping, Sequence

from .._media_store import INDEX_FILE, read_index
from ..hookspecs import hookimpl
from ..redact import redact, redact_text
from ..store import (
    CONFIG_FILE, METRICS_FILE, RUN_FILE, SUMMARY_FILE, effective_status, folder_inside, read_json, read_jsonl,
    read_metrics, system_file_name, system_prefix,
)

__all__ = [
    "TensorBoardSink", "EventFile", "export_run", "export_runs", "serve", "flatten_config",
    "masked_crc32c", "TB_DIR", "INSTALL_HINT",
]

log = logging.getLogger("epochal")
TB_DIR = "tensorboard"
INSTALL_HINT = "pip install 'epochal[tensorboard]'"
EXPORT_SUFFIX = ".epochal-export"
_RECORD_KEYS = frozenset({"step", "time", "epoch"})
_SESSION_STATUS = {"finished": 1, "failed": 2, "crashed": 2, "running": 3}  # hparams api Status
_file_ids = count()


@functools.cache
def _pb() -> SimpleNamespace:
    """TensorBoard's protobuf modules, imported on first use (a clear error names the extra)."""
    try:
        from google.protobuf import struct_pb2
        from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
        from tensorboard.plugins.hparams import plugin_data_pb2
    except ImportError as exc:
        raise ImportError(f"TensorBoard export needs tensorboard: {INSTALL_HINT}") from exc
    scalar_shape = tensor_shape_pb2.TensorShapeProto()
    return SimpleNamespace(
        Event=event_pb2.Event, Summary=summary_pb2.Summary, Value=summary_pb2.Summary.Value,
        Metadata=summary_pb2.SummaryMetadata, PluginData=summary_pb2.SummaryMetadata.PluginData,
        TENSOR=summary_pb2.DATA_CLASS_TENSOR, Tensor=tensor_pb2.TensorProto, hparams=plugin_data_pb2,
        PbValue=struct_pb2.Value, DT_STRING=types_pb2.DT_STRING, scalar_shape=scalar_shape,
        DT_DOUBLE=types_pb2.DT_DOUBLE, Shape=tensor_shape_pb2.TensorShapeProto,
        BLOBS=summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
        null_tensor=tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=0)]),
        ),
    )


# -- TFRecord framing: length, masked CRC-32C of the length, data, masked CRC-32C of the data --------
@functools.cache
def _crc_tables() -> tuple[tuple[int, ...], array, array]:
    """The byte table of CRC-32C and two 16-bit tables that fold four bytes per step."""
    byte = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        byte.append(c)
    tables = [byte]
    for _ in range(3):
        tables.append([(v >> 8) ^ byte[v & 0xFF] for v in tables[-1]])
    t0, t1, t2, t3 = tables
    low = array("I", (t3[i & 0xFF] ^ t2[i >> 8] for i in range(65536)))
    high = array("I", (t1[i & 0xFF] ^ t0[i >> 8] for i in range(65536)))
    return tuple(byte), low, high


_WORDS = struct.Struct("<I")


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C (Castagnoli) of ``data`` that TFRecord framing uses."""
    byte, low, high = _crc_tables()
    crc = 0xFFFFFFFF
    end = len(data) & ~3
    for (word,) in _WORDS.iter_unpack(memoryview(data)[:end]):
        x = crc ^ word
        crc = low[x & 0xFFFF] ^ high[x >> 16]
    for b in data[end:]:
        crc = byte[(crc ^ b) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@functools.lru_cache(maxsize=4096)
def _header(length: int) -> bytes:
    head = struct.pack("<Q", length)
    return head + _WORDS.pack(masked_crc32c(head))


class EventFile:
    """An event file written whole records at a time: what :meth:`flush` writes is never torn.

    A failed write is rolled back (the file is truncated to its last complete record)
    and re-raised, so a later write appends to a readable file.
    """

    def __init__(self, path: Path, wall: float | None = None) -> None:
        self.path = Path(path)
        self._handle = open(self.path, "wb", buffering=0)
        self._pending: list[bytes] = []
        self._size = 0
        self.add(_pb().Event(wall_time=time.time() if wall is None else wall, file_version="brain.Event:2"))

    def add(self, event: Any) -> None:
        data = event.SerializeToString()
        self._pending.append(_header(len(data)) + data + _WORDS.pack(masked_crc32c(data)))

    def flush(self) -> None:
        if not self._pending:
            return
        data = memoryview(b"".join(self._pending))
        self._pending.clear()
        written = 0
        try:
            while written < len(data):
                written += self._handle.write(data[written:]) or 0
        except BaseException:
            try:
                os.ftruncate(self._handle.fileno(), self._size)
                self._handle.seek(self._size)
            except OSError:
                pass
            raise
        self._size += written

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._handle.close()


def _new_event_path(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_file_ids)}"
    return directory / name


# -- what a run writes ---------------------------------------------------------------------------
def _number(value: Any) -> bool:
    return type(value) in (int, float) or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _same(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, bool | float | str]:
    """Nested config as dotted names -> bool, number or string (anything else as JSON text)."""
    flat: dict[str, bool | float | str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_config(value, name + "."))
        elif isinstance(value, (bool, str)):
            flat[name] = value
        elif _number(value) and math.isfinite(value):
            flat[name] = float(value)
        elif value is None:
            flat[name] = "None"
        else:
            flat[name] = json.dumps(value, default=repr)
    return flat


class _RunEvents:
    """Turns one run's records into events of one :class:`EventFile` (the live sink and export share it)."""

    def __init__(self, file: EventFile, origin: float, system_prefix: str = "system/", step: int = 0) -> None:
        self.file = file
        self.origin = origin
        self.system_prefix = system_prefix
        self.step = step  # the highest step seen: where text and end-of-run values go
        self.last: dict[str, float] = {}
        self.points = 0
        self._texts: dict[str, str] = {}

    def text(self, tag: str, text: str, wall: float) -> None:
        if not text or self._texts.get(tag) == text:
            return
        self._texts[tag] = text
        text = redact_text(text)
        pb = _pb()
        metadata = pb.Metadata(plugin_data=pb.PluginData(plugin_name="text"), data_class=pb.TENSOR)
        tensor = pb.Tensor(dtype=pb.DT_STRING, tensor_shape=pb.scalar_shape, string_val=[text.encode("utf-8")])
        value = pb.Value(tag=tag, metadata=metadata, tensor=tensor)
        self.file.add(pb.Event(wall_time=wall, step=self.step, summary=pb.Summary(value=[value])))

    # -- media: images, histograms, markdown (live records and stored files alike) --------------------
    def _tensor(self, tag: str, plugin: str, step: int, wall: float, tensor: Any, description: str = "") -> None:
        pb = _pb()
        data_class = pb.BLOBS if plugin == "images" else pb.TENSOR
        metadata = pb.Metadata(plugin_data=pb.PluginData(plugin_name=plugin), data_class=data_class,
                               summary_description=description)
        value = pb.Value(tag=tag, metadata=metadata, tensor=tensor)
        self.file.add(pb.Event(wall_time=wall, step=step, summary=pb.Summary(value=[value])))
        self.step = max(self.step, step)

    def images(self, tag: str, step: int, wall: float, images: Sequence[tuple[bytes, int, int]],
               captions: Sequence[str | None] = ()) -> None:
        """A batch of encoded images (bytes, width, height): one step of TensorBoard's images tab."""
        pb = _pb()
        width, height = images[0][1], images[0][2]
        strings = [str(width).encode(), str(height).encode(), *(data for data, _, _ in images)]
        shape = pb.Shape(dim=[pb.Shape.Dim(size=len(strings))])
        tensor = pb.Tensor(dtype=pb.DT_STRING, tensor_shape=shape, string_val=strings)
        self._tensor(tag, "images", step, wall, tensor, " | ".join(c for c in captions if c))

    def histogram(self, tag: str, step: int, wall: float, edges: Sequence[float], counts: Sequence[float]) -> None:
        """Bins as TensorBoard's histograms tab reads them: rows of (left edge, right edge, count)."""
        pb = _pb()
        rows = array("d")
        for i, number in enumerate(counts):
            rows.extend((edges[i], edges[i + 1], number))
        if sys.byteorder != "little":
            rows.byteswap()
        shape = pb.Shape(dim=[pb.Shape.Dim(size=len(counts)), pb.Shape.Dim(size=3)])
        self._tensor(tag, "histograms", step, wall,
                     pb.Tensor(dtype=pb.DT_DOUBLE, tensor_shape=shape, tensor_content=rows.tobytes()))

    def markdown(self, tag: str, step: int, wall: float, text: str) -> None:
        pb = _pb()
        tensor = pb.Tensor(dtype=pb.DT_STRING, tensor_shape=pb.scalar_shape, string_val=[text.encode("utf-8")])
        self._tensor(tag, "text", step, wall, tensor)

    def media(self, records: Iterable[Any]) -> None:
        """Live ``MediaRecord`` batches (see :mod:`epochal.media`)."""
        for record in records:
            items = record.items
            if record.kind == "image":
                self.images(record.key, record.step, record.time, [(i.data(), i.width, i.height) for i in items],
                            [i.caption for i in items])
            elif record.kind == "histogram":
                bins = items[0].histogram()
                self.histogram(record.key, record.step, record.time, bins["edges"], bins["counts"])
            else:
                self.markdown(record.key, record.step, record.time, items[0].data().decode("utf-8"))

    def stored_media(self, run_dir: Path, rows: Sequence[Mapping[str, Any]]) -> None:
        """The media index of a stored run; a batch is the consecutive images of one key, step and time.

        A file that went missing or is unreadable is left out (with a warning), never the whole
        export. Events are written as they are made, so memory holds one batch at a time.
        """
        batch: list[tuple[Mapping[str, Any], bytes]] = []
        for row in [*rows, None]:
            self.file.flush()
            if batch and (row is None or row["type"] != "image" or _batch_of(row) != _batch_of(batch[0][0])):
                first = batch[0][0]
                self.images(first["key"], first["step"], float(first.get("time") or 0.0),
                            [(data, int(r.get("width") or 0), int(r.get("height") or 0)) for r, data in batch],
                            [r.get("caption") for r, _ in batch])
                batch = []
            if row is None:
                break
            try:
                data = (run_dir / row["file"]).read_bytes()
                if row["type"] == "image":
                    batch.append((row, data))
                elif row["type"] == "histogram":
                    bins = json.loads(data)
                    self.histogram(row["key"], row["step"], float(row.get("time") or 0.0), bins["edges"],
                                   bins["counts"])
                else:
                    self.markdown(row["key"], row["step"], float(row.get("time") or 0.0),
                                  data.decode("utf-8", errors="replace"))
            except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
                log.warning("epochal: media file %s of %s is unreadable (%s); left out of the export",
                            row["file"], run_dir, getattr(exc, "strerror", None) or exc)

    def scalars(self, step: int, wall: float, values: Mapping[str, float | int]) -> None:
        event = _pb().Event(wall_time=wall, step=step)
        add = event.summary.value.add
        for tag, value in values.items():
            try:
                add(tag=tag, simple_value=value)
            except OverflowError:  # an int beyond float range
                add(tag=tag, simple_value=math.copysign(math.inf, value))
        if event.summary.value:
            self.points += len(event.summary.value)
            self.file.add(event)

    def metrics(self, records: Iterable[Sequence[Any]]) -> None:
        for step, wall, _epoch, values in records:
            self.scalars(step, wall, values)
            self.last.update(values)
            if step > self.step:
                self.step = step

    def system(self, samples: Iterable[tuple[float, Mapping[str, Any]]]) -> None:
        prefix = self.system_prefix
        for wall, values in samples:
            step = max(0, int(round(wall - self.origin)))
            self.scalars(step, wall, {prefix + name: value for name, value in values.items() if _number(value)})

    def session(self, meta: Mapping[str, Any], config: Mapping[str, Any], summary: Mapping[str, Any],
                status: str, known: Iterable[str] = ()) -> None:
        """The end of the run: summary values TensorBoard would not show otherwise, then the HParams session."""
        wall = meta.get("finished") or time.time()
        known = set(known)
        extras = {}
        for key, value in summary.items():
            if not _number(value):
                continue
            if key in self.last:
                if not _same(self.last[key], value):
                    extras[f"summary/{key}"] = value
            elif key not in known:
                extras[key] = value
        if extras:
            self.scalars(self.step, wall, extras)
        pb = _pb()
        start = pb.hparams.SessionStartInfo(
            group_name=str(meta.get("id", "")), start_time_secs=float(meta.get("created") or wall)
        )
        for name, value in flatten_config(redact(config)).items():
            if isinstance(value, bool):
                start.hparams[name].bool_value = value
            elif isinstance(value, float):
                start.hparams[name].number_value = value
            else:
                start.hparams[name].string_value = value
        end = pb.hparams.SessionEndInfo(status=_SESSION_STATUS.get(status, 0))
        if status != "running":
            end.end_time_secs = float(wall)
        values = [
            self._hparams_value("_hparams_/session_start_info", pb.hparams.HParamsPluginData(session_start_info=start)),
            self._hparams_value("_hparams_/session_end_info", pb.hparams.HParamsPluginData(session_end_info=end)),
        ]
        self.file.add(pb.Event(wall_time=wall, step=self.step, summary=pb.Summary(value=values)))

    @staticmethod
    def _hparams_value(tag: str, data: Any) -> Any:
        pb = _pb()
        data.version = 0
        plugin = pb.PluginData(plugin_name="hparams", content=data.SerializeToString())
        return pb.Value(tag=tag, metadata=pb.Metadata(plugin_data=plugin, data_class=pb.TENSOR), tensor=pb.null_tensor)


def _batch_of(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return row["key"], row["step"], row.get("time")


def _config_text(config: Mapping[str, Any]) -> str:
    if not config:
        return ""
    body = json.dumps(config, indent=2, sort_keys=True, default=repr)
    return "\n".join("    " + line for line in body.splitlines())  # a markdown code block


# -- the live sink --------------------------------------------------------------------------------
class TensorBoardSink:
    """Writes a run's events to ``<run dir>/tensorboard/`` as they are delivered (``sinks=["tensorboard"]``).

    Every hook writes and flushes whole records. A hook that raises is isolated by the
    run's writer like any plugin's (reported, switched off after repeated failures).
    """

    def __init__(self) -> None:
        _pb()  # a missing tensorboard fails at init, naming the extra
        self._events: _RunEvents | None = None
        self._owner = True
        self._meta: Mapping[str, Any] = {}
        self._config: Mapping[str, Any] = {}
        self._summary: Mapping[str, Any] = {}

    def _flush(self) -> None:
        if self._events is not None:
            self._events.file.flush()

    @hookimpl
    def epochal_run_start(self, run: Any) -> None:
        self._owner = run.is_owner
        prefix = system_prefix(system_file_name(run.rank, run.world_size))
        file = EventFile(_new_event_path(folder_inside(Path(run.dir), TB_DIR)))
        self._events = _RunEvents(file, origin=time.time(), system_prefix=prefix, step=max(run.start_step - 1, 0))

    @hookimpl
    def epochal_config(self, config: Mapping[str, Any]) -> None:
        self._config = config
        if self._events is not None and self._owner:
            self._events.text("config", _config_text(config), time.time())
            self._flush()

    @hookimpl
    def epochal_metrics(self, records: Sequence[Any]) -> None:
        if self._events is not None and self._owner:
            self._events.metrics(records)
            self._flush()

    @hookimpl
    def epochal_system(self, records: Sequence[Any]) -> None:
        if self._events is not None:
            self._events.system([(r.time, r.values) for r in records])
            self._flush()

    @hookimpl
    def epochal_media(self, records: Sequence[Any]) -> None:
        if self._events is not None and self._owner:
            self._events.media(records)
            self._flush()

    @hookimpl
    def epochal_summary(self, summary: Mapping[str, Any]) -> None:
        self._summary = summary

    @hookimpl
    def epochal_metadata(self, metadata: Mapping[str, Any]) -> None:
        self._meta = metadata
        if self._events is not None:
            self._events.origin = float(metadata.get("created") or self._events.origin)
            if self._owner:
                self._events.text("notes", str(metadata.get("notes") or ""), time.time())
                self._flush()

    @hookimpl
    def epochal_run_end(self, status: str) -> None:
        if self._events is None:
            return
        events, self._events = self._events, None
        try:
            if self._owner:
                meta = {**self._meta, "finished": self._meta.get("finished") or time.time()}
                events.session(meta, self._config, self._summary, status, self._meta.get("metric_names") or ())
        finally:
            events.file.close()


# -- export of stored runs ------------------------------------------------------------------------
def _event_files(tb_dir: Path) -> list[Path]:
    try:
        return [p for p in tb_dir.iterdir() if "tfevents" in p.name and p.is_file()]
    except OSError:
        return []


def _has_live_events(run_dir: Path) -> bool:
    return any(not p.name.endswith(EXPORT_SUFFIX) for p in _event_files(Path(run_dir) / TB_DIR))


def _needs_export(run_dir: Path) -> bool:
    """True when the run has no live events and its export is missing or older than its records."""
    run_dir = Path(run_dir)
    if _has_live_events(run_dir):
        return False
    exports = _event_files(run_dir / TB_DIR)
    if not exports:
        return True
    sources = [run_dir / n for n in (RUN_FILE, CONFIG_FILE, SUMMARY_FILE, METRICS_FILE)]
    sources += [*run_dir.glob("system*.jsonl"), run_dir / INDEX_FILE]
    newest = max((p.stat().st_mtime for p in sources if p.exists()), default=0.0)
    return min(p.stat().st_mtime for p in exports) < newest


def export_run(run_dir: Path) -> int:
    """(Re)write the export event file of one stored run; returns the number of scalar points written."""
    run_dir = Path(run_dir)
    meta = read_json(run_dir / RUN_FILE)
    if not isinstance(meta, dict):
        raise FileNotFoundError(f"{run_dir} is not an epochal run (no readable {RUN_FILE})")
    tb_dir = folder_inside(run_dir, TB_DIR)
    created = float(meta.get("created") or time.time())
    tmp = tb_dir / f".export-{os.getpid()}.tmp"  # no "tfevents" in the name: TensorBoard ignores it
    try:
        file = EventFile(tmp, wall=created)
        events = _RunEvents(file, origin=created)
        config = read_json(run_dir / CONFIG_FILE, {}) or {}
        events.text("config", _config_text(config), created)
        events.text("notes", str(meta.get("notes") or ""), created)
        rows, _ = read_metrics(run_dir)
        for start in range(0, len(rows), 10_000):
            events.metrics(
                (row.get("step", 0), row.get("time", created), None,
                 {k: v for k, v in row.items() if k not in _RECORD_KEYS and _number(v)})
                for row in rows[start:start + 10_000] if isinstance(row.get("step"), int)
            )
            file.flush()
        for path in sorted(run_dir.glob("system*.jsonl")):
            events.system_prefix = system_prefix(path.name)
            samples, _ = read_jsonl(path)
            events.system(
                (s.get("time", created), {k: v for k, v in s.items() if k not in ("time", "rank")})
                for s in samples
            )
        events.stored_media(run_dir, read_index(run_dir))
        file.flush()
        summary = read_json(run_dir / SUMMARY_FILE, {}) or {}
        events.session(meta, config, summary, effective_status(meta, run_dir))
        file.close()
        os.replace(tmp, tb_dir / f"events.out.tfevents.{int(created):010d}{EXPORT_SUFFIX}")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return events.points


def export_runs(run_dirs: list[Path]) -> int:
    """Write TensorBoard events for runs logged with the sink off; returns how many runs were exported.

    Runs whose live sink already wrote events are skipped; exporting again replaces the
    export's own file, so points are never duplicated.
    """
    _pb()
    exported = 0
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        if _has_live_events(run_dir):
            log.info("epochal: %s already has TensorBoard events from the live sink; skipped", run_dir)
            continue
        try:
            export_run(run_dir)
            exported += 1
        except (OSError, ValueError) as exc:
            log.warning("epochal: exporting %s to TensorBoard failed: %s", run_dir, exc)
    return exported


# -- epochal tb -------------------------------------------------------------------------------------
def _project_runs(root: Path, project: str | None) -> list[tuple[str, Path, dict[str, Any]]]:
    if project:
        projects = [root / project]
    else:
        projects = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    runs = []
    for project_dir in projects:
        if not project_dir.is_dir() or project_dir.name.startswith("."):
            continue
        for run_dir in sorted(project_dir.iterdir()):
            meta = read_json(run_dir / RUN_FILE) if run_dir.is_dir() else None
            if isinstance(meta, dict):
                runs.append((project_dir.name, run_dir, meta))
    return runs


def _label(meta: Mapping[str, Any], run_dir: Path) -> str:
    name = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", str(meta.get("name") or "")).strip(" .")
    return name or run_dir.name


def _link_view(view: Path, runs: list[tuple[str, Path, dict[str, Any]]]) -> None:
    """Symlinks ``<view>/[<project>/]<run name>`` -> ``<run dir>/tensorboard``: TensorBoard names runs after them."""
    several = len({project for project, _, _ in runs}) > 1
    labels = [(f"{project}/" if several else "") + _label(meta, run_dir) for project, run_dir, meta in runs]
    for (project, run_dir, meta), label in zip(runs, labels):
        if labels.count(label) > 1:
            label = f"{label} ({run_dir.name})"
        link = view / label
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(run_dir / TB_DIR, link, target_is_directory=True)


def _free_port(preferred: int = 6006) -> int:
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise OSError("no free port on 127.0.0.1")


def serve(root: Path, project: str | None = None, port: int | None = None) -> int:
    """Export what is missing, then run ``tensorboard`` on 127.0.0.1 over the runs; returns its exit code.

    Runs appear under their names (``<project>/<name>`` when several projects are shown,
    ``<name> (<id>)`` when names repeat). Blocks until TensorBoard exits; Ctrl+C stops it.
    """
    try:
        _pb()
    except ImportError:
        print(f"epochal tb needs tensorboard: {INSTALL_HINT}", file=sys.stderr)
        return 1
    root = Path(root).expanduser().absolute()
    runs = _project_runs(root, project)
    if not runs:
        where = root / project if project else root
        print(f"epochal tb: no runs in {where}", file=sys.stderr)
        return 1
    stale = [run_dir for _, run_dir, _ in runs if _needs_export(run_dir)]
    if stale:
        print(f"exported {export_runs(stale)} run(s) to TensorBoard event files", flush=True)
    port = port or _free_port()
    with tempfile.TemporaryDirectory(prefix="epochal-tb-") as view:
        try:
            _link_view(Path(view), runs)
            logdir = view
        except (OSError, NotImplementedError):  # no symlinks (e.g. Windows without the privilege)
            logdir = str(root / project if project else root)
        cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--host", "127.0.0.1", "--port", str(port)]
        print(f"TensorBoard: http://127.0.0.1:{port}/ ({len(runs)} runs; Ctrl+C to stop)", flush=True)
        process = None
        try:
            process = subprocess.Popen(cmd, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
            return process.wait()
        except KeyboardInterrupt:
            return 0
        finally:  # every way out (Ctrl+C, SIGTERM raised as SystemExit by the CLI, an error) stops the child
            if process is not None:
                _stop(process)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _die_with_parent() -> None:
    """In the TensorBoard child (Linux): get SIGTERM when epochal dies, even by SIGKILL (PR_SET_PDEATHSIG)."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))
