"""The `epochal` command: ls, show, diff, best, export tensorboard, tb, and its errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

import epochal
from epochal.cli import main


@pytest.fixture
def two_runs(tmp_path):
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"w")
    runs = []
    for lr, acc, loss in ((0.1, 0.7, 0.9), (0.01, 0.9, 0.3)):
        with epochal.init(project="cls", name=f"lr{lr}", config={"lr": lr, "layers": 2}, tags=["cli"],
                          system_interval=0) as run:
            run.log({"val/accuracy": acc, "val/loss": loss})
            run.log_artifact(weights, name="model", aliases=["best"])
        runs.append(run)
    with epochal.init(project="other", config={"lr": 1.0}, system_interval=0) as run:
        run.log({"val/accuracy": 0.99})
    runs.append(run)
    return runs


def test_ls_table_and_json(two_runs, capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    header, *lines = out.strip().splitlines()
    assert header.split() == ["ID", "PROJECT", "NAME", "STATUS", "STARTED", "DURATION", "TAGS"]
    assert len(lines) == 3 and all(run.id in out for run in two_runs)
    assert main(["ls", "--project", "cls", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["lr0.1", "lr0.01"] and rows[0]["config.lr"] == 0.1
    assert main(["ls", "--status", "failed"]) == 1
    assert "no runs" in capsys.readouterr().err


def test_show(two_runs, capsys):
    run = two_runs[1]
    assert main(["show", run.id]) == 0
    out = capsys.readouterr().out
    assert f"run cls/{run.id}" in out and "lr0.01" in out and "finished" in out
    assert "\nconfig\n  lr      0.01" in out and "val/accuracy  0.9" in out
    assert "model:v0 [best, latest]" in out and "artifacts/model/v0/w.bin" in out
    assert main(["show", "lr0.1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["config"]["lr"] == 0.1 and data["artifacts"][0]["aliases"] == ["best", "latest"]


def test_diff(two_runs, capsys):
    a, b = two_runs[0], two_runs[1]
    assert main(["diff", a.id, b.id]) == 0
    out = capsys.readouterr().out
    assert "lr  0.1 -> 0.01" in out and "val/accuracy  0.7 -> 0.9" in out and "packages: same" in out
    assert main(["diff", a.id, b.id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"] == {"lr": [0.1, 0.01]}


def test_best(two_runs, capsys):
    assert main(["best", "--metric", "val/accuracy", "--max", "--project", "cls"]) == 0
    assert capsys.readouterr().out.startswith(f"cls/{two_runs[1].id}  val/accuracy = 0.9")
    assert main(["best", "--metric", "val/accuracy", "--min", "--project", "cls", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == two_runs[0].id
    assert main(["best", "--metric", "val/loss"]) == 0  # lower is better, guessed from the name
    out = capsys.readouterr().out
    assert out.startswith(f"cls/{two_runs[1].id}") and "lowest (guessed" in out
    assert main(["best", "--metric", "val/accuracy"]) == 0  # every project
    assert capsys.readouterr().out.startswith(f"other/{two_runs[2].id}")
    assert main(["best", "--metric", "val/f1"]) == 1
    assert "no run has a summary value for 'val/f1'; metrics seen: val/accuracy, val/loss" in capsys.readouterr().err


def test_unknown_run_lists_closest_ids(two_runs, capsys):
    wrong = two_runs[0].id[:-1] + ("0" if two_runs[0].id[-1] != "0" else "1")
    assert main(["show", wrong]) == 1
    err = capsys.readouterr().err
    assert f"no run {wrong!r}" in err and "closest ids" in err and two_runs[0].id in err
    assert main(["diff", two_runs[0].id, "nope-nope"]) == 1
    assert "no run 'nope-nope'" in capsys.readouterr().err


def test_empty_directory_is_a_clear_error(tmp_path, capsys):
    for argv in (["ls"], ["show", "x"], ["best", "--metric", "a"], ["export", "tensorboard"]):
        assert main([*argv, "--dir", str(tmp_path / "nothing")]) == 1
        err = capsys.readouterr().err
        assert "no runs in" in err and str(tmp_path / "nothing") in err


def test_bad_usage_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["best"])
    assert info.value.code == 2 and "--metric" in capsys.readouterr().err


def test_export_and_tb_delegate_to_the_tensorboard_module(two_runs, monkeypatch, capsys, run_root):
    calls = []
    fake = types.SimpleNamespace(
        export_runs=lambda dirs: calls.append(("export", list(dirs))) or 7,
        serve=lambda root, project, port: calls.append(("serve", root, project, port)) or 3,
    )
    monkeypatch.setitem(sys.modules, "epochal.sinks.tensorboard", fake)
    assert main(["export", "tensorboard", two_runs[0].id, f"other/{two_runs[2].id}"]) == 0
    assert calls[-1] == ("export", [two_runs[0].dir, two_runs[2].dir]) and "(7 written" in capsys.readouterr().out
    assert main(["export", "tensorboard", "--project", "cls"]) == 0
    assert calls[-1] == ("export", [r.dir for r in sorted(two_runs[:2], key=lambda r: r.id)])
    assert main(["tb", "--project", "cls", "--port", "6100"]) == 3
    assert calls[-1] == ("serve", run_root.absolute(), "cls", 6100)


def test_real_tensorboard_export(two_runs, capsys):
    assert main(["export", "tensorboard", two_runs[0].id]) == 0
    assert "TensorBoard export of 1 run(s) done" in capsys.readouterr().out
    assert any("tfevents" in p.name for p in two_runs[0].dir.rglob("*"))


def test_console_script(two_runs):
    script = Path(sys.executable).with_name("epochal")
    command = [str(script)] if script.exists() else [shutil.which("epochal") or "epochal"]
    out = subprocess.run([*command, "ls", "--project", "cls"], capture_output=True, text=True, check=True).stdout
    assert two_runs[0].id in out and two_runs[1].id in out


def _default_sigint() -> None:
    """In the child: SIGINT back to its default. A shell's background job (how CI may start us) ignores SIGINT, the
    ignore is inherited through exec, and Python then installs no KeyboardInterrupt: Ctrl+C would never arrive."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGINT", "SIGKILL"])
def test_tb_stops_its_tensorboard_child_on_every_way_out(two_runs, run_root, sig):
    """A real `epochal tb` with a real TensorBoard child; a real signal to epochal; the child must be gone."""
    import os
    import signal
    import socket
    import time

    import psutil

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    parent = subprocess.Popen([sys.executable, "-m", "epochal", "tb", "--dir", str(run_root), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"},
                              preexec_fn=_default_sigint)  # as from a terminal, even when we run in the background
    try:
        for line in parent.stdout:
            if line.startswith("TensorBoard: http://127.0.0.1:"):
                break
        deadline = time.monotonic() + 60
        child = None
        while child is None:  # forked, then exec'd: wait for the TensorBoard command line
            assert parent.poll() is None and time.monotonic() < deadline, "no TensorBoard child started"
            child = next((c for c in psutil.Process(parent.pid).children()
                          if "tensorboard.main" in " ".join(c.cmdline())), None)
        parent.send_signal(getattr(signal, sig))
        parent.wait(60)
        gone, alive = psutil.wait_procs([child], timeout=60)
        assert not alive or all(p.status() == psutil.STATUS_ZOMBIE for p in alive), f"TensorBoard {child.pid} survived"
        if sig != "SIGKILL":
            assert parent.returncode in (0, 128 + getattr(signal, sig))
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
