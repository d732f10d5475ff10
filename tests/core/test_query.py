"""The query API: open_run (lookup, history, system, artifacts, status), runs(), diff()."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

import epochal
from epochal import query
from epochal.store import read_json, write_json_atomic


def make_run(project="p", config=None, metrics=(), tags=(), name=None, **kwargs):
    run = epochal.init(project=project, config=config or {}, tags=tags, name=name, system_interval=0, **kwargs)
    for values in metrics:
        run.log(values)
    run.finish()
    return run


def fake_run(root, project, run_id, *, status="finished", config=None, summary=None, started=1.7e9, **meta):
    """A run directory written directly (for listing tests: thousands of runs in little time)."""
    folder = root / project / run_id
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({
        "id": run_id, "name": run_id, "project": project, "status": status, "created": started, "started": started,
        "finished": started + 60, "tags": [], **meta}))
    (folder / "config.json").write_text(json.dumps(config or {}))
    (folder / "summary.json").write_text(json.dumps(summary or {}))
    return folder


def test_history_has_step_time_epoch_and_metric_columns():
    run = epochal.init(project="p", system_interval=0)
    for step in range(4):
        run.log({"train/loss": 1.0 / (step + 1)}, epoch=step // 2)
    run.log({"val/accuracy": 0.75}, step=3)
    run.finish()
    reader = epochal.open_run(run.id)
    frame = reader.history()
    assert list(frame.columns) == ["step", "time", "epoch", "train/loss", "val/accuracy"]
    assert frame["step"].tolist() == [0, 1, 2, 3, 3]
    assert frame["train/loss"].iloc[3] == 0.25 and pd.isna(frame["val/accuracy"].iloc[0])
    only = reader.history(keys=["val/accuracy"])
    assert list(only.columns) == ["step", "time", "epoch", "val/accuracy"] and len(only) == 1
    assert reader.history("train/loss")["train/loss"].tolist() == [1.0, 0.5, 1 / 3, 0.25]


def test_history_survives_a_torn_tail():
    run = make_run(metrics=[{"a": 1.0}, {"a": 2.0}])
    reader = epochal.open_run(run.id)
    metrics_file = run.dir / query.METRICS_FILE
    with open(metrics_file, "ab") as handle:
        handle.write(metrics_file.read_bytes()[:7])  # a record cut in the middle by a kill
    assert reader.history()["a"].tolist() == [1.0, 2.0]


def test_small_files_and_environment_and_artifacts(tmp_path):
    source = tmp_path / "w.bin"
    source.write_bytes(b"w")
    with epochal.init(project="p", name="nice", config={"lr": 0.1, "opt": {"name": "sgd"}}, tags=["a"],
                      system_interval=0) as run:
        run.log({"val/accuracy": 0.5})
        run.summary["best"] = 0.9
        run.log_artifact(source, name="model", aliases=["best"])
    reader = epochal.open_run(run.id)
    assert reader.config == {"lr": 0.1, "opt": {"name": "sgd"}}
    assert reader.summary == {"val/accuracy": 0.5, "best": 0.9}
    assert reader.metadata["tags"] == ["a"] and reader.status == "finished" and reader.name == "nice"
    assert reader.environment["cpu"]["count"] >= 1 and reader.dir == run.dir
    [artifact] = reader.artifacts()
    assert (artifact.name, artifact.version, artifact.aliases) == ("model", "v0", ("best", "latest"))
    assert reader.path("model", "best").read_bytes() == b"w"
    with pytest.raises(KeyError, match="no alias or version 'v9'"):
        reader.path("model", "v9")
    with pytest.raises(KeyError, match="no artifact 'other'"):
        reader.path("other")


def test_running_run_with_a_dead_process_reads_as_crashed(run_root):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = fake_run(run_root, "p", "ghost", status="running", started=time.time() - 5, pid=dead.pid,
                      host=socket.gethostname(), flush_interval=1.0)
    (folder / "heartbeat").touch()
    reader = epochal.open_run("ghost")
    assert reader.status == "crashed" and reader.metadata["status"] == "crashed"
    assert query.list_runs()[0]["status"] == "crashed"
    live = make_run()
    assert epochal.open_run(live.id).status == "finished"


def test_finding_runs_by_id_prefix_name_project_and_path(run_root):
    a = make_run(project="p1", name="alpha")
    b = make_run(project="p2", name="beta")
    assert epochal.open_run(a.id).dir == a.dir
    assert epochal.open_run(f"p2/{b.id}").dir == b.dir
    assert epochal.open_run(b.id, project="p2").dir == b.dir
    assert epochal.open_run("beta").dir == b.dir
    assert epochal.open_run(str(a.dir)).dir == a.dir
    if not b.id.startswith(a.id[:-2]):  # a unique prefix is enough
        assert epochal.open_run(a.id[:-2]).dir == a.dir
    with pytest.raises(query.RunNotFoundError, match=f"closest ids: {a.id}"):
        epochal.open_run(a.id[:-1] + ("x" if a.id[-1] != "x" else "y"))
    with pytest.raises(query.RunNotFoundError):
        epochal.open_run(a.id, project="p2")
    for bad in ("../p1", "..", "", "a\x00b", "/etc"):
        with pytest.raises(query.RunNotFoundError):
            epochal.open_run(bad)


def test_ambiguous_and_empty(run_root, tmp_path):
    fake_run(run_root, "x", "same-1")
    fake_run(run_root, "y", "same-1")
    with pytest.raises(query.RunNotFoundError, match="matches several runs"):
        epochal.open_run("same-1")
    assert epochal.open_run("same-1", project="y").project == "y"
    with pytest.raises(query.NoRunsError, match="no runs in"):
        epochal.open_run("anything", dir=tmp_path / "empty")


def test_runs_table_and_filters(run_root):
    make_run(config={"lr": 0.1, "model": {"depth": 2}}, metrics=[{"val/accuracy": 0.6}], tags=["base"])
    make_run(config={"lr": 0.01, "model": {"depth": 4}}, metrics=[{"val/accuracy": 0.8}], tags=["base", "deep"])
    make_run(project="other", config={"lr": 0.5})
    frame = epochal.runs(project="p")
    assert len(frame) == 2
    for column in ("id", "name", "project", "status", "start", "duration", "tags", "config.lr",
                   "config.model.depth", "summary.val/accuracy"):
        assert column in frame.columns
    assert frame["config.lr"].tolist() == [0.1, 0.01] and frame["status"].tolist() == ["finished"] * 2
    assert pd.api.types.is_datetime64_any_dtype(frame["start"]) and (frame["duration"] >= 0).all()
    assert len(epochal.runs()) == 3
    assert epochal.runs(tags="deep")["config.model.depth"].tolist() == [4]
    assert len(epochal.runs(config__lr=0.5)) == 1
    assert len(epochal.runs(config__lr=[0.1, 0.5])) == 2
    assert epochal.runs(**{"summary.val/accuracy": lambda v: v > 0.7})["config.lr"].tolist() == [0.01]
    assert epochal.runs(status="crashed").empty


def test_runs_lists_thousands_of_runs_fast(run_root):
    for i in range(2000):
        fake_run(run_root, "big", f"run-{i:05d}", config={"lr": i / 1000, "seed": i}, summary={"val/loss": 1 / (i + 1)},
                 started=1.7e9 + i)
    start = time.perf_counter()
    frame = epochal.runs(project="big")
    elapsed = time.perf_counter() - start
    assert len(frame) == 2000 and frame["id"].iloc[-1] == "run-01999"
    assert elapsed / 2000 < 0.002, f"{elapsed / 2000 * 1e3:.2f} ms per run"


def test_diff_of_two_runs(run_root, tmp_path):
    import numpy as np

    a = epochal.init(config={"lr": 0.1, "opt": {"name": "sgd"}, "same": 1}, system_interval=0)
    a.log({"val/loss": 0.5})
    a.log_dataset(np.arange(10), "train")
    a.finish()
    b = epochal.init(config={"lr": 0.2, "opt": {"name": "adam"}, "same": 1, "new": True}, system_interval=0)
    b.log({"val/loss": 0.4})
    b.log_dataset(np.arange(11), "train")
    b.finish()
    meta = read_json(b.dir / "run.json")
    meta["git"] = {"repo": True, "commit": "f" * 40, "branch": "main"}
    write_json_atomic(b.dir / "run.json", meta)
    requirements = b.dir / "environment" / "requirements.txt"
    requirements.write_text(requirements.read_text().replace("pluggy==", "pluggy==0.0.0+"))
    (b.dir / "environment" / "git.diff").write_text("diff --git a/x b/x\n+change\n")
    result = epochal.diff(a.id, b.id)
    assert result["config"] == {"lr": [0.1, 0.2], "opt.name": ["sgd", "adam"], "new": [query.MISSING, True]}
    assert result["summary"] == {"val/loss": [0.5, 0.4]}
    assert list(result["packages"]) == ["pluggy"] and result["packages"]["pluggy"][1].startswith("0.0.0+")
    assert result["git"]["commit"][1] == "f" * 40 and result["git"]["diff"][1].startswith("1 file(s)")
    assert "+change" in result["git_diff"]
    assert set(result["datasets"]) == {"train"}
    json.dumps(result)  # JSON-able for the CLI
    assert epochal.diff(a.id, a.id)["config"] == {}


def test_reading_imports_no_pandas(run_root):
    run = make_run(metrics=[{"a": 1.0}])
    code = ("import sys, epochal; from epochal import query; r = epochal.open_run(sys.argv[1]); "
            "assert r.records()[0]['a'] == 1.0 and r.config == {} and query.list_runs(); "
            "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, run.id], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
