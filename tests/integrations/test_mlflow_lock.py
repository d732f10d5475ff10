"""One party at a time sends a run to MLflow: a live mirror, ``epochal sync``, or another sync.

Real processes against a real ``mlflow server``; a relay in front of it (``mlflow_gate``)
holds one chosen request so a test knows where a sender is (no sleeps), and counts how
often each point was sent (the server's SQL store would hide a point sent twice).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import epochal
from epochal.sinks.mlflow_mirror import MIRROR_LOCK_FILE
from epochal.store import read_json
from mlflow_gate import Gate
from mlflow_server import MlflowServer
import test_mlflow
from test_mlflow import points

server = test_mlflow.server  # the session's MLflow server
WAIT = 240  # seconds: a bound for a slow machine, never a synchronisation


@pytest.fixture
def env(run_root, monkeypatch):
    """The environment of child processes: this test's run root, no MLflow settings of the caller."""
    for name in ("EPOCHAL_SINKS", "EPOCHAL_MLFLOW_URI", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    return {**os.environ, "EPOCHAL_DIR": str(run_root), "PYTHONUNBUFFERED": "1"}


def record(project: str, run_id: str, steps: int, start: int = 0, **init) -> Path:
    run = epochal.init(project=project, id=run_id, system_interval=0, resume="allow", **init)
    for step in range(start, start + steps):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
    run.finish()
    return run.dir


def sync(uri: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "epochal", "sync", "--to", uri, *args], capture_output=True,
                          text=True, timeout=WAIT, env=env)


def start_sync(uri: str, *args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "epochal", "sync", "--to", uri, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def live(script: str, uri: str, env: dict) -> subprocess.Popen:
    """A training process mirroring live to ``uri``; it talks to the test over its stdin and stdout."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env={**env, "EPOCHAL_SINKS": "mlflow", "EPOCHAL_MLFLOW_URI": uri, "EPOCHAL_MLFLOW_INIT_TIMEOUT": "120",
             "EPOCHAL_MLFLOW_FINISH_TIMEOUT": "240"})


def exactly_once(server: MlflowServer, gate: Gate, run_dir: Path, project: str) -> dict:
    """The run reads back whole from the server and every point went through the relay exactly once."""
    got = server.read_run(run_dir.name, project, artifacts=False)
    assert got["runs_found"] == 1
    stored = points(run_dir)
    assert got["metrics"]["loss"] == stored["loss"]
    sent = gate.sent(got["info"]["run_id"])
    assert [count for key, count in sent.items() if count != 1] == []  # no point was sent twice
    assert sorted(step for key, step in sent if key == "loss") == [p[0] for p in stored["loss"]]
    return got


def test_a_sync_while_the_live_mirror_is_still_sending_skips_the_run_and_says_who_sends_it(server, env):
    """The run reads ``finished`` while its mirror is still sending: the sync must not send it too."""
    with Gate(server.uri, hold="runs/log-batch") as gate:
        child = live("""
            import sys, epochal
            run = epochal.init(project="live", id="job-1", system_interval=0, finish_timeout=3)
            for step in range(200):
                run.log({"loss": 1.0 / (step + 1)}, step=step)
            run.summary["best"] = 0.25  # a figure of its own: sent by each sender with its own timestamp
            print("logged", flush=True)
            sys.stdin.readline()
            run.finish()  # the mirror is held at the relay: finish gives up waiting, the run is finished
            print("finished", flush=True)
            sys.stdin.readline()
            for lane in run._writer.lanes:  # once released, let the mirror send everything before exiting
                lane.thread.join()
            print("mirrored", flush=True)
        """, gate.uri, env)
        try:
            assert child.stdout.readline().strip() == "logged"
            assert gate.held.wait(WAIT)  # the live mirror is mid-run, holding the run
            child.stdin.write("finish\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "finished"
            run_dir = Path(env["EPOCHAL_DIR"]) / "live" / "job-1"
            assert read_json(run_dir / "run.json")["status"] == "finished"  # a sync's status check passes

            out = sync(gate.uri, "job-1", env=env)
            assert out.returncode == 0, out.stderr
            assert f"live/job-1: skipped: pid {child.pid} on host" in out.stdout and "(live mirror)" in out.stdout

            gate.release()
            child.stdin.close()
            assert child.stdout.readline().strip() == "mirrored" and child.wait(WAIT) == 0
        finally:
            child.kill()
        again = sync(gate.uri, "job-1", env=env)
        assert again.returncode == 0 and "0 points sent" in again.stdout, again.stdout + again.stderr
        got = exactly_once(server, gate, run_dir, "live")
    assert len(got["metrics"]["best"]) == 1 and got["info"]["status"] == "FINISHED"


def test_two_concurrent_syncs_send_every_point_once(server, env):
    runs = [record("pair", f"pair-{i}", 150) for i in range(2)]
    with Gate(server.uri, hold="runs/create") as gate:
        first = start_sync(gate.uri, "--project", "pair", env=env)
        try:
            assert gate.held.wait(WAIT)  # the first sync is making the MLflow run of one of them
            second = sync(gate.uri, "--project", "pair", env=env)
            assert second.returncode == 0, second.stderr
            skipped = [line for line in second.stdout.splitlines() if "skipped" in line]
            assert len(skipped) == 1 and f"pid {first.pid} on host" in skipped[0] and "(epochal sync)" in skipped[0]
            gate.release()
            assert first.wait(WAIT) == 0, first.stderr.read()
        finally:
            first.kill()
        for run_dir in runs:
            got = exactly_once(server, gate, run_dir, "pair")
            assert got["info"]["status"] == "FINISHED"


def test_a_sigkilled_live_mirror_frees_the_run_and_a_later_sync_sends_everything(server, env):
    with Gate(server.uri, hold="runs/log-batch") as gate:
        child = live("""
            import sys, epochal
            run = epochal.init(project="kill", id="job-9", system_interval=0)
            for step in range(120):
                run.log({"loss": 1.0 / (step + 1)}, step=step)
            print("logged", flush=True)
            sys.stdin.readline()
        """, gate.uri, env)
        try:
            assert child.stdout.readline().strip() == "logged"
            assert gate.held.wait(WAIT)  # the mirror is mid-request: nothing of the points acknowledged
            busy = sync(gate.uri, "job-9", env=env)
            assert f"kill/job-9: skipped: pid {child.pid}" in busy.stdout, busy.stdout + busy.stderr
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(WAIT) == -signal.SIGKILL
        finally:
            child.kill()
        run_dir = Path(env["EPOCHAL_DIR"]) / "kill" / "job-9"
        assert (run_dir / MIRROR_LOCK_FILE).exists()  # left behind, but the kernel dropped the lock
        out = sync(gate.uri, "job-9", env=env)
        assert out.returncode == 0 and "kill/job-9: crashed, 120 points sent" in out.stdout, out.stdout + out.stderr
        got = exactly_once(server, gate, run_dir, "kill")
    assert got["info"]["status"] == "KILLED"


def test_a_run_resumed_while_a_sync_sends_it_is_left_to_a_later_sync(server, env, monkeypatch, caplog):
    run_dir = record("resumed", "job-3", 100)
    with Gate(server.uri, hold="runs/create") as gate:
        syncing = start_sync(gate.uri, "job-3", env=env)
        try:
            assert gate.held.wait(WAIT)
            monkeypatch.setenv("EPOCHAL_MLFLOW_URI", gate.uri)
            with caplog.at_level(logging.WARNING, logger="epochal"):
                record("resumed", "job-3", 50, start=100, sinks=["mlflow"])  # training goes on, unmirrored
            warning = next(r.getMessage() for r in caplog.records if "not mirrored live" in r.getMessage())
            assert f"pid {syncing.pid} on host" in warning and "(epochal sync)" in warning
            assert f"epochal sync --to {gate.uri} job-3" in warning
            gate.release()
            assert syncing.wait(WAIT) == 0, syncing.stderr.read()
        finally:
            syncing.kill()
        assert sync(gate.uri, "job-3", env=env).returncode == 0
        got = exactly_once(server, gate, run_dir, "resumed")
        assert len(got["metrics"]["loss"]) == 150 and got["info"]["status"] == "FINISHED"


def test_a_resumed_run_mirrors_on_from_the_cursor_not_from_the_start(server, env, monkeypatch):
    """Part one synced, part two recorded unmirrored, part three resumed with the mirror on:
    the live mirror sends parts two and three, never part one again."""
    run_dir = record("cursor", "job-5", 100)
    with Gate(server.uri) as gate:
        assert sync(gate.uri, "job-5", env=env).returncode == 0
        record("cursor", "job-5", 60, start=100)
        monkeypatch.setenv("EPOCHAL_MLFLOW_URI", gate.uri)
        monkeypatch.setenv("EPOCHAL_MLFLOW_FINISH_TIMEOUT", "240")
        record("cursor", "job-5", 40, start=160, sinks=["mlflow"], finish_timeout=300)
        got = exactly_once(server, gate, run_dir, "cursor")
        assert len(got["metrics"]["loss"]) == 200 and got["info"]["status"] == "FINISHED"
        assert read_json(run_dir / "mlflow.json")["servers"][gate.uri]["metrics"][0] == (run_dir / "metrics.bin").stat().st_size
