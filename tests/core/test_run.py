"""The run API: init, log, steps, config, summary, status, resume, module-level calls."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest

import epochal
from epochal.store import read_json, read_metrics


def metrics_of(run):
    return read_metrics(run.dir)[0]


def test_log_writes_records_with_step_time_epoch(run_root):
    with epochal.init(project="p", name="first", system_interval=0) as run:
        run.log({"train/loss": 1.0})
        run.log({"train/loss": 0.5}, epoch=1)
        run.log({"train/loss": 0.25})
    rows = metrics_of(run)
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert [r["epoch"] for r in rows] == [None, 1, 1]
    assert all(isinstance(r["time"], float) for r in rows)
    assert run.dir == run_root / "p" / run.id
    meta = read_json(run.dir / "run.json")
    assert meta["status"] == "finished" and meta["name"] == "first" and meta["last_step"] == 2


def test_explicit_steps_kept_out_of_order_and_repeated():
    run = epochal.init(system_interval=0)
    for step in (5, 3, 3, 10):
        run.log({"a": float(step)}, step=step)
    run.log({"a": -1.0})  # auto step continues after the highest seen
    run.finish()
    assert [r["step"] for r in metrics_of(run)] == [5, 3, 3, 10, 11]


def test_nan_and_inf_round_trip_exactly():
    run = epochal.init(system_interval=0)
    run.log({"a": float("nan"), "b": float("inf"), "c": float("-inf"), "d": 0.1 + 0.2})
    run.finish()
    row = metrics_of(run)[0]
    assert math.isnan(row["a"]) and row["b"] == math.inf and row["c"] == -math.inf and row["d"] == 0.1 + 0.2


def test_numpy_and_torch_scalars_are_accepted():
    import numpy as np
    import torch
    run = epochal.init(system_interval=0)
    run.log({"np32": np.float32(0.5), "np64": np.float64(0.25), "npi": np.int64(3), "arr0": np.array(2.0),
             "t0": torch.tensor(1.5), "tgrad": torch.tensor(2.0, requires_grad=True) * 2, "flag": True})
    run.finish()
    row = metrics_of(run)[0]
    assert row["np32"] == 0.5 and row["np64"] == 0.25 and row["npi"] == 3 and row["arr0"] == 2.0
    assert row["t0"] == 1.5 and row["tgrad"] == 4.0 and row["flag"] == 1


def test_config_dict_and_attribute_access_and_updates():
    run = epochal.init(config={"lr": 0.1, "model": {"layers": 2}}, system_interval=0)
    run.config.batch_size = 32
    run.config["opt"] = "adam"
    run.config.update({"lr": 0.2}, wd=1e-4)
    assert run.config.lr == 0.2 and run.config["model"] == {"layers": 2}
    with pytest.raises(AttributeError):
        run.config.missing
    run.finish()
    assert read_json(run.dir / "config.json") == {"lr": 0.2, "model": {"layers": 2}, "batch_size": 32,
                                                  "opt": "adam", "wd": 1e-4}


def test_config_values_coerced_and_cycles_stop():
    cyclic: dict = {"name": "c"}
    cyclic["self"] = cyclic
    run = epochal.init(config={"obj": object(), "set": {1}, "cyc": cyclic, "path": __import__("pathlib").Path("/x")},
                       system_interval=0)
    run.finish()
    config = read_json(run.dir / "config.json")
    assert config["obj"].startswith("<object object") and config["set"] == "{1}"
    assert config["cyc"] == {"name": "c", "self": "<cycle>"} and config["path"] == "/x"


def test_summary_holds_last_values_and_overrides():
    run = epochal.init(system_interval=0)
    run.log({"loss": 3.0, "acc": 0.1})
    run.log({"loss": 1.0})
    run.summary["best_acc"] = 0.9
    run.flush()
    assert run.summary["loss"] == 1.0
    run.summary["loss"] = 0.5  # an override wins over the last value
    run.finish()
    assert read_json(run.dir / "summary.json") == {"loss": 0.5, "acc": 0.1, "best_acc": 0.9}


def test_tags_notes_name_are_stored():
    run = epochal.init(tags=["a", "b", "a"], notes="first try", system_interval=0)
    run.tags = [*run.tags, "c"]
    run.notes = "second try"
    run.name = "renamed"
    run.finish()
    meta = read_json(run.dir / "run.json")
    assert meta["tags"] == ["a", "b", "c"] and meta["notes"] == "second try" and meta["name"] == "renamed"


def test_exception_inside_with_marks_failed_with_traceback():
    with pytest.raises(ZeroDivisionError):
        with epochal.init(system_interval=0) as run:
            run.log({"a": 1.0})
            1 / 0
    meta = read_json(run.dir / "run.json")
    assert meta["status"] == "failed" and "ZeroDivisionError" in meta["error"]
    assert len(metrics_of(run)) == 1


def test_module_level_api_uses_current_run():
    with pytest.raises(RuntimeError, match="epochal.init"):
        epochal.log({"a": 1.0})
    run = epochal.init(system_interval=0, config={"x": 1})
    epochal.log({"a": 1.0})
    epochal.config.y = 2
    epochal.summary["z"] = 3
    assert epochal.current_run() is run
    epochal.finish()
    assert epochal.current_run() is None
    assert read_json(run.dir / "config.json") == {"x": 1, "y": 2}
    assert read_json(run.dir / "summary.json")["z"] == 3


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EPOCHAL_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("EPOCHAL_PROJECT", "envproj")
    monkeypatch.setenv("EPOCHAL_RUN_ID", "fixed-id")
    run = epochal.init(system_interval=0)
    run.finish()
    assert run.dir == tmp_path / "elsewhere" / "envproj" / "fixed-id"


def test_disabled_mode_writes_nothing(monkeypatch, run_root):
    monkeypatch.setenv("EPOCHAL_MODE", "disabled")
    run = epochal.init(config={"a": 1})
    for _ in range(20_000):  # past the writer's backlog wake-up, which a disabled run has not
        run.log({"x": 1.0})
    run.summary["y"] = 2
    assert run.log_artifact(__file__) is None
    run.finish()
    assert run.disabled and not run_root.exists()


def test_resume_appends_and_continues_steps():
    run = epochal.init(id="resumable", config={"lr": 0.1}, system_interval=0)
    for _ in range(3):
        run.log({"loss": 1.0})
    run.finish()
    with pytest.raises(FileExistsError, match="resume=True"):
        epochal.init(id="resumable", system_interval=0)
    again = epochal.init(id="resumable", resume=True, system_interval=0)
    assert again.config.lr == 0.1 and again.step == 3
    again.log({"loss": 0.5})
    again.finish()
    assert [r["step"] for r in metrics_of(again)] == [0, 1, 2, 3]
    assert read_json(again.dir / "run.json")["resumed"] == 1


def test_forgotten_finish_is_finished_at_exit(run_root):
    script = textwrap.dedent(f"""
        import epochal
        run = epochal.init(project="p", id="forgot", dir={str(run_root)!r}, system_interval=0)
        run.log({{"a": 1.0}})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    meta = read_json(run_root / "p" / "forgot" / "run.json")
    assert meta["status"] == "finished"
    assert read_metrics(run_root / "p" / "forgot")[0][0]["a"] == 1.0


def test_uncaught_exception_marks_failed(run_root):
    script = textwrap.dedent(f"""
        import epochal
        run = epochal.init(project="p", id="crashy", dir={str(run_root)!r}, system_interval=0)
        run.log({{"a": 1.0}})
        raise RuntimeError("boom in training")
    """)
    result = subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True, text=True)
    assert result.returncode != 0 and "boom in training" in result.stderr
    meta = read_json(run_root / "p" / "crashy" / "run.json")
    assert meta["status"] == "failed" and "boom in training" in meta["error"]


def test_log_native_maps_names_and_keeps_originals():
    run = epochal.init(system_interval=0)
    logged = run.log_native({"eval_loss": 0.3, "loss": 0.5, "learning_rate": 1e-3, "epoch": 1.5}, step=7)
    run.finish()
    assert logged == ("val/loss", "train/loss", "lr")
    row = metrics_of(run)[0]
    assert row["step"] == 7 and row["epoch"] == 1.5 and row["val/loss"] == 0.3 and row["lr"] == 1e-3
    assert read_json(run.dir / "run.json")["name_map"] == {"val/loss": "eval_loss", "train/loss": "loss",
                                                          "lr": "learning_rate"}


def test_resume_after_a_crash_reads_only_the_step_column(monkeypatch):
    from epochal import blocks, store

    run = epochal.init(id="crashed-run", system_interval=0)
    for step in (3, 150, 7):
        run.log({"loss": 1.0, "acc": 0.5}, step=step)
    run.log({"other": 2.0}, step=20)
    run.flush()
    meta = read_json(run.dir / "run.json")
    run.finish()
    store.write_json_atomic(run.dir / "run.json", {**meta, "status": "running", "pid": -1})  # as if killed

    def no_full_read(*args, **kwargs):
        raise AssertionError("resume decoded every record")

    monkeypatch.setattr(blocks, "read_records", no_full_read)
    monkeypatch.setattr(store, "read_metrics", no_full_read)
    again = epochal.init(id="crashed-run", resume="allow", system_interval=0)
    assert again.step == 151
    again.finish()
    assert blocks.last_step(again.dir / "nothing.bin") == -1
