"""TensorBoard export against the real thing: event files read back by EventAccumulator, and the
`tensorboard` server (launched by `serve`) read back through its HTTP API."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as reference_crc
from tensorboard.plugins.hparams import metadata as hp_metadata

import epochal
from epochal.sinks import tensorboard as tb
from epochal.store import read_json, read_metrics

PROJECT = "tb"
SPECIAL = [(3, math.nan), (4, math.inf), (5, -math.inf), (5, 2.5), (2, 7.0), (9, 1e300)]  # repeats, back, overflow


def train(run, lr: float, steps: int = 20, seed: int = 0) -> None:
    """A tiny linear regression fitted by gradient descent on synthetic data, logged every step."""
    rng = np.random.default_rng(seed)
    x, xv = rng.normal(size=(64, 3)), rng.normal(size=(32, 3))
    w_true = np.array([1.0, -2.0, 0.5])
    y, yv = x @ w_true + 0.1 * rng.normal(size=64), xv @ w_true
    w = np.zeros(3)
    for step in range(steps):
        w -= lr * 2 * x.T @ (x @ w - y) / len(y)
        run.log({"train/loss": float(np.mean((x @ w - y) ** 2)), "lr": lr}, step=step, epoch=step // 5)
        if step % 5 == 4:
            run.log({"val/loss": float(np.mean((xv @ w - yv) ** 2))}, step=step)


def log_special(run) -> None:
    for step, value in SPECIAL:
        run.log({"train/odd": value}, step=step)


def f32(value: float) -> float:
    if abs(value) > 3.5e38 and math.isfinite(value):
        return math.copysign(math.inf, value)
    return struct.unpack("<f", struct.pack("<f", value))[0]


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def accumulator(path: Path) -> EventAccumulator:
    ea = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return ea


def assert_matches_history(ea: EventAccumulator, run_dir: Path) -> int:
    """Every logged point is in the event files: same step, wall time and (float32) value, in order."""
    rows, skipped = read_metrics(run_dir)
    assert skipped == 0 and rows
    tags = {k for row in rows for k in row} - {"step", "time", "epoch"}
    points = 0
    for tag in sorted(tags):
        expected = [(r["step"], r["time"], f32(r[tag])) for r in rows if tag in r]
        got = [(s.step, s.wall_time, s.value) for s in ea.Scalars(tag)]
        assert len(got) == len(expected), tag
        for (es, ew, ev), (gs, gw, gv) in zip(expected, got):
            assert (es, ew) == (gs, gw) and same(ev, gv), (tag, (es, ew, ev), (gs, gw, gv))
        points += len(expected)
    return points


def session_info(ea: EventAccumulator):
    start = hp_metadata.parse_session_start_info_plugin_data(
        ea.SummaryMetadata("_hparams_/session_start_info").plugin_data.content)
    end = hp_metadata.parse_session_end_info_plugin_data(
        ea.SummaryMetadata("_hparams_/session_end_info").plugin_data.content)
    return start, end


def event_files(run_dir: Path) -> list[Path]:
    return sorted(p for p in (run_dir / "tensorboard").iterdir() if "tfevents" in p.name)


CONFIG = {"lr": 0.1, "model": {"depth": 2, "act": "relu"}, "layers": [8, 4], "amp": False, "ckpt": None}


def test_live_sink_writes_history_text_system_and_hparams():
    run = epochal.init(project=PROJECT, name="live", config=CONFIG, notes="first try", sinks=["tensorboard"],
                       system_interval=0)
    train(run, lr=0.1)
    log_special(run)
    run.log_system({"cpu/percent": 12.5, "proc/rss_mb": 100.0})
    run.config.update({"batch": 32})
    run.summary["val/loss"] = -1.0  # an override differing from the last logged value
    run.summary["test/accuracy"] = 0.875  # never logged as a metric
    run.finish()
    assert run.failures == {}

    files = event_files(run.dir)
    assert len(files) == 1 and not files[0].name.endswith(".epochal-export")
    ea = accumulator(run.dir / "tensorboard")
    assert assert_matches_history(ea, run.dir) == 20 + 4 + 20 + len(SPECIAL)
    assert [s.value for s in ea.Scalars("system/cpu/percent")] == [12.5]
    assert [s.value for s in ea.Scalars("test/accuracy")] == [0.875]
    assert [s.value for s in ea.Scalars("summary/val/loss")] == [-1.0]
    assert [t for t in ea.Tags()["scalars"] if t.startswith("summary/")] == ["summary/val/loss"]

    config_text = ea.Tensors("config")[-1].tensor_proto.string_val[0].decode()
    assert json.loads(config_text.replace("\n    ", "\n")) == {**CONFIG, "batch": 32}
    assert ea.Tensors("notes")[-1].tensor_proto.string_val[0].decode() == "first try"

    start, end = session_info(ea)
    hparams = {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
    assert hparams == {"lr": 0.1, "model.depth": 2.0, "model.act": "relu", "layers": "[8, 4]", "amp": False,
                       "ckpt": "None", "batch": 32.0}
    assert start.group_name == run.id
    meta = read_json(run.dir / "run.json")
    assert start.start_time_secs == meta["created"] and end.end_time_secs == meta["finished"]
    assert end.status == 1  # STATUS_SUCCESS


def test_env_var_turns_the_sink_on(monkeypatch):
    monkeypatch.setenv("EPOCHAL_SINKS", "tensorboard")
    with epochal.init(project=PROJECT, system_interval=0) as run:
        train(run, lr=0.05, steps=6)
    assert len(event_files(run.dir)) == 1
    assert assert_matches_history(accumulator(run.dir / "tensorboard"), run.dir) == 12 + 1


def test_failed_run_status_reaches_the_session():
    with pytest.raises(RuntimeError):
        with epochal.init(project=PROJECT, sinks=["tensorboard"], system_interval=0) as run:
            train(run, lr=0.1, steps=3)
            raise RuntimeError("diverged")
    assert session_info(accumulator(run.dir / "tensorboard"))[1].status == 2  # STATUS_FAILURE


def test_export_matches_history_and_twice_adds_nothing():
    run = epochal.init(project=PROJECT, name="offline", config=CONFIG, system_interval=0)
    train(run, lr=0.1)
    log_special(run)
    run.log_system({"cpu/percent": 3.0})
    run.finish()
    assert not (run.dir / "tensorboard").exists()
    live = epochal.init(project=PROJECT, sinks=["tensorboard"], system_interval=0)
    train(live, lr=0.1, steps=3)
    live.finish()

    assert tb.export_runs([run.dir, live.dir]) == 1  # the live-sink run is left alone
    assert len(event_files(live.dir)) == 1
    first = event_files(run.dir)
    assert [p.name for p in first] == [f"events.out.tfevents.{int(read_json(run.dir / 'run.json')['created']):010d}"
                                       ".epochal-export"]
    ea = accumulator(run.dir / "tensorboard")
    points = assert_matches_history(ea, run.dir)
    assert [s.value for s in ea.Scalars("system/cpu/percent")] == [3.0]
    assert not tb._needs_export(run.dir)

    assert tb.export_runs([run.dir]) == 1
    assert event_files(run.dir) == first and sorted(os.listdir(run.dir / "tensorboard")) == [first[0].name]
    again = accumulator(run.dir / "tensorboard")
    assert assert_matches_history(again, run.dir) == points
    assert session_info(again)[0].hparams["model.act"].string_value == "relu"


def test_failures_stay_inside_the_sink(run_root, caplog):
    blocked = run_root / PROJECT / "blocked"
    blocked.mkdir(parents=True)
    (blocked / "tensorboard").write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="epochal"):
        with epochal.init(project=PROJECT, id="blocked", sinks=["tensorboard"], system_interval=0) as run:
            train(run, lr=0.1, steps=5)
    assert run.failures == {"tensorboard": 1}  # the writer's lane isolates it, as for any plugin
    assert "plugin 'tensorboard' failed in epochal_run_start" in caplog.text
    assert len(read_metrics(run.dir)[0]) == 6 and read_json(run.dir / "run.json")["status"] == "finished"


class _DiskFull:
    """A file whose next write stores half the data, then fails (a full disk)."""

    def __init__(self, handle):
        self.handle = handle

    def write(self, data):
        self.handle.write(bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.handle, name)


def test_event_file_rolls_back_a_torn_write(tmp_path):
    pb = tb._pb()
    path = tmp_path / "events.out.tfevents.1.test"
    file = tb.EventFile(path)
    file.add(pb.Event(step=1, wall_time=1.0, summary=pb.Summary(value=[pb.Value(tag="a", simple_value=1.0)])))
    file.flush()
    good = path.stat().st_size
    real, file._handle = file._handle, _DiskFull(file._handle)
    file.add(pb.Event(step=2, wall_time=2.0, summary=pb.Summary(value=[pb.Value(tag="a", simple_value=2.0)])))
    with pytest.raises(OSError):
        file.flush()
    file._handle = real
    assert path.stat().st_size == good
    file.add(pb.Event(step=3, wall_time=3.0, summary=pb.Summary(value=[pb.Value(tag="a", simple_value=3.0)])))
    file.close()
    assert [(s.step, s.value) for s in accumulator(tmp_path).Scalars("a")] == [(1, 1.0), (3, 3.0)]


def test_crc_matches_tensorboard():
    rng = np.random.default_rng(0)
    for size in [*range(0, 40), 255, 4097]:
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert tb.masked_crc32c(data) == reference_crc(data)


def test_flatten_config():
    flat = tb.flatten_config({"a": {"b": {"c": 1}, "d": []}, "e": {}, "f": math.nan, "g": "x", "h": True})
    assert flat == {"a.b.c": 1.0, "a.d": "[]", "e": "{}", "f": "NaN", "g": "x", "h": True}


def test_missing_tensorboard_names_the_extra(monkeypatch, capsys, run_root):
    tb._pb.cache_clear()
    for name in [m for m in sys.modules if m.split(".")[0] == "tensorboard"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    try:
        assert tb.serve(run_root, PROJECT, None) == 1
        assert "pip install 'epochal[tensorboard]'" in capsys.readouterr().err
        with pytest.raises(ImportError, match=r"epochal\[tensorboard\]"):
            tb.export_runs([run_root])
        with pytest.raises(ImportError, match=r"epochal\[tensorboard\]"):
            epochal.init(project=PROJECT, sinks=["tensorboard"], system_interval=0)
    finally:
        monkeypatch.undo()
        tb._pb.cache_clear()


def test_view_names_runs_by_name(run_root, tmp_path):
    made = [epochal.init(project=p, name=n, system_interval=0) for p, n in
            (("a", "base"), ("a", "base"), ("a", "x/y"), ("b", "base"))]
    for run in made:
        run.finish()
    runs = tb._project_runs(run_root, None)
    assert len(runs) == 4
    tb._link_view(tmp_path / "all", runs)
    links = sorted(str(p.relative_to(tmp_path / "all")) for p in (tmp_path / "all").rglob("*") if p.is_symlink())
    a1, a2 = sorted(r.id for r in made[:2])
    assert links == sorted([f"a/base ({a1})", f"a/base ({a2})", "a/x_y", "b/base"])
    tb._link_view(tmp_path / "one", tb._project_runs(run_root, "b"))
    assert (tmp_path / "one" / "base").resolve() == (made[3].dir / "tensorboard").resolve()


# -- the real server --------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _poll(check, proc, log: Path, deadline: float):
    """Call ``check()`` until it returns a truthy value; fail at the deadline or if the server died."""
    while True:
        assert proc.poll() is None, f"serve exited with {proc.returncode}:\n{log.read_text()}"
        try:
            result = check()
            if result:
                return result
        except OSError:  # not listening yet, or still loading
            pass
        assert time.monotonic() < deadline, f"tensorboard did not answer in time:\n{log.read_text()}"
        _wait(proc, 0.25)  # the pause between polls


def _wait(proc, seconds: float) -> None:
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        pass


@contextlib.contextmanager
def serving(run_root: Path, project: str, tmp_path: Path):
    """``epochal tb``'s ``serve`` in a process of its own; yields (base URL, process, log file); stops it after."""
    port = _free_port()
    log = tmp_path / "serve.log"
    code = ("import sys; from pathlib import Path; from epochal.sinks.tensorboard import serve; "
            "sys.exit(serve(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", code, str(run_root), project, str(port)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}", proc, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its tensorboard child
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


def test_serve_shows_two_exported_runs_with_metrics_and_hparams(run_root, tmp_path):
    runs = {}
    for name, lr, act in (("lr-0.1", 0.1, "relu"), ("lr-0.05", 0.05, "tanh")):
        config = {"lr": lr, "model": {"depth": 2, "act": act}, "layers": [8, 4]}
        with epochal.init(project=PROJECT, name=name, config=config, system_interval=0) as run:
            train(run, lr=lr, seed=1)
            run.summary["test/accuracy"] = 0.5 + lr
        runs[name] = run
    with serving(run_root, PROJECT, tmp_path) as (base, proc, log):
        deadline = time.monotonic() + 120
        tags = _poll(lambda: (t := _get(f"{base}/data/plugin/scalars/tags")) and all(
            "val/loss" in t.get(n, {}) for n in runs) and t, proc, log, deadline)
        assert set(tags) == set(runs)  # runs named by run name
        assert f"TensorBoard: {base}/" in log.read_text()
        for name, run in runs.items():
            assert all(p.name.endswith(".epochal-export") for p in event_files(run.dir))  # serve exported them
            assert {"train/loss", "val/loss", "lr", "test/accuracy"} <= set(tags[name])
            rows = read_metrics(run.dir)[0]
            points = _get(f"{base}/data/plugin/scalars/scalars?run={name}&tag=train/loss")
            assert [(p[1], p[2]) for p in points] == [(r["step"], f32(r["train/loss"])) for r in rows
                                                      if "train/loss" in r]

        experiment = _poll(lambda: _get(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""}),
                           proc, log, deadline)
        infos = {h["name"]: h for h in experiment["hparamInfos"]}
        assert set(infos) == {"lr", "model.depth", "model.act", "layers"}
        assert infos["lr"]["type"] == "DATA_TYPE_FLOAT64" and infos["lr"]["differs"]
        assert sorted(infos["model.act"]["domainDiscrete"]) == ["relu", "tanh"]
        metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
        assert {"train/loss", "val/loss", "lr", "test/accuracy"} <= metrics

        request = {"experimentName": "", "allowedStatuses": STATUSES, "colParams": [], "startIndex": 0,
                   "sliceSize": 100}
        groups = _poll(lambda: (g := _get(f"{base}/data/plugin/hparams/session_groups", request))
                       and len(g.get("sessionGroups", [])) == 2 and g, proc, log, deadline)["sessionGroups"]
        by_id = {g["name"]: g for g in groups}
        for name, run in runs.items():
            group = by_id[run.id]
            assert group["hparams"] == {"lr": run.config["lr"], "model.depth": 2,
                                        "model.act": run.config["model"]["act"], "layers": "[8, 4]"}
            assert group["sessions"][0]["name"] == name and group["sessions"][0]["status"] == "STATUS_SUCCESS"
            values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
            summary = read_json(run.dir / "summary.json")
            for tag in ("train/loss", "val/loss", "lr", "test/accuracy"):
                assert values[tag] == f32(summary[tag]), tag  # real final values, no placeholder
