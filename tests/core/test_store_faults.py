"""The store under faults: a full disk (a real tmpfs), symlinks planted in the run folder, a SIGKILL
during log_artifact and the stale temp files it leaves."""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import epochal
from epochal.artifacts import list_versions
from epochal.store import read_json, read_metrics


@pytest.fixture()
def tmpfs(tmp_path):
    """A real 4 MiB tmpfs mounted for this test (CI runs as root), unmounted after."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True)
    assert done.returncode == 0, f"mounting a tmpfs needs root: {done.stderr}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    """Write ``path`` until the filesystem has not one byte left."""
    with open(path, "wb", buffering=0) as handle:
        for chunk in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    handle.write(b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    with pytest.raises(OSError):
        (path.parent / "probe").write_bytes(b"x" * 8192)


def test_full_disk_keeps_rows_in_memory_and_writes_them_when_space_returns(tmpfs, tmp_path, caplog):
    run = epochal.init(project="p", dir=tmpfs / "runs", config={"lr": 0.1}, system_interval=0, flush_interval=0.05)
    run.log({"loss": 0.0})
    run.flush()
    weights = tmp_path / "weights.bin"  # on the real disk; the copy into the run cannot fit
    weights.write_bytes(os.urandom(1 << 20))
    _fill(tmpfs / "filler")
    with caplog.at_level(logging.WARNING, logger="epochal"):
        for step in range(1, 20_001):  # 20k rows: far beyond any slack left in the last page
            run.log({"loss": float(step), "acc": step / 2})
        run.config["batch"] = 32
        run.summary["note"] = "during the full disk"
        run.log_system({"cpu/percent": 50.0})
        assert run.flush(timeout=30)
        assert run.log_artifact(weights, name="model") is None  # a warning, never an exception
        for step in range(20_001, 20_101):
            run.log({"loss": float(step), "acc": step / 2})
        assert run.flush(timeout=30)
    failing = [r.getMessage() for r in caplog.records if "failed" in r.getMessage() and "kept in memory" in r.getMessage()]
    assert len(failing) == 1, caplog.text  # warned once
    assert any("artifact 'model' was not stored" in r.getMessage() for r in caplog.records)
    assert len(read_metrics(run.dir)[0]) < 20_101  # the disk really refused
    (tmpfs / "filler").unlink()
    run.finish()
    rows = read_metrics(run.dir)[0]
    assert [r["step"] for r in rows] == list(range(20_101))
    assert rows[-1]["loss"] == 20_100.0
    meta = read_json(run.dir / "run.json")
    assert meta["status"] == "finished" and "store_dropped" not in meta
    assert read_json(run.dir / "config.json") == {"lr": 0.1, "batch": 32}
    assert read_json(run.dir / "summary.json")["note"] == "during the full disk"
    assert run.failures == {}
    assert epochal.open_run(run.id, dir=tmpfs / "runs").status == "finished"
    assert any("takes writes again" in r.getMessage() for r in caplog.records)


def test_init_on_an_already_full_disk_opens_the_run_and_writes_it_when_space_returns(tmpfs, caplog):
    (tmpfs / "runs").mkdir()
    _fill(tmpfs / "filler")
    with caplog.at_level(logging.WARNING, logger="epochal"):
        run = epochal.init(project="p", id="full", dir=tmpfs / "runs", config={"lr": 0.1}, system_interval=0,
                           flush_interval=0.05)  # training goes on: no OSError into the caller
        for step in range(100):
            run.log({"loss": float(step)})
        run.summary["best"] = 0.5
        assert run.flush(timeout=30)
    assert "opened on a disk that refuses writes" in caplog.text
    assert read_metrics(run.dir)[0] == [] and not (run.dir / "run.json").exists()  # the disk really refused
    (tmpfs / "filler").unlink()
    run.finish()
    rows = read_metrics(run.dir)[0]
    assert [r["step"] for r in rows] == list(range(100))
    reader = epochal.open_run("full", dir=tmpfs / "runs")
    assert reader.status == "finished" and reader.config == {"lr": 0.1} and reader.summary["best"] == 0.5


def test_backlog_past_its_bound_drops_whole_batches_and_says_so(tmpfs, monkeypatch, caplog):
    from epochal import store

    monkeypatch.setattr(store, "BUFFER_LIMIT_BYTES", 64 << 10)
    run = epochal.init(project="p", dir=tmpfs / "runs", system_interval=0, flush_interval=0.05)
    run.log({"loss": 0.0})
    run.flush()
    _fill(tmpfs / "filler")
    with caplog.at_level(logging.WARNING, logger="epochal"):
        for step in range(1, 10_001):
            run.log({"loss": float(step)})
            if step % 500 == 0:
                run.flush()
    (tmpfs / "filler").unlink()
    run.finish()
    rows = read_metrics(run.dir)[0]
    meta = read_json(run.dir / "run.json")
    assert meta["status"] == "finished"
    assert 1 <= len(rows) < 10_001 and meta["store_dropped"]["metrics.bin"] == 10_001 - len(rows)
    assert [r["step"] for r in rows] == sorted(r["step"] for r in rows)  # whole batches, in order
    assert "backlog is full" in caplog.text


# -- symlinks planted inside the run folder ---------------------------------------------------
@pytest.fixture()
def elsewhere(tmp_path):
    folder = tmp_path / "elsewhere"
    (folder / "v0").mkdir(parents=True)
    (folder / "v0" / "keep.txt").write_text("precious")
    (folder / "keep.bin").write_text("precious")
    return folder


def _untouched(folder: Path) -> None:
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == ["keep.bin", "v0", "v0/keep.txt"]
    assert (folder / "v0" / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("link", ["artifacts/model", "artifacts/.blobs", "artifacts"])
def test_artifact_writes_never_follow_a_planted_link(tmp_path, elsewhere, link, caplog):
    source = tmp_path / "w.bin"
    source.write_bytes(b"weights")
    run = epochal.init(project="p", system_interval=0)
    (run.dir / "artifacts").mkdir(exist_ok=True)
    if link == "artifacts":
        (run.dir / "artifacts").rmdir()
    (run.dir / link).symlink_to(elsewhere, target_is_directory=True)
    with caplog.at_level(logging.WARNING, logger="epochal"):
        assert run.log_artifact(source, name="model", keep_last=1) is None
    run.finish()
    _untouched(elsewhere)
    assert "symlink" in caplog.text and "outside the run folder" in caplog.text
    assert list_versions(run.dir) == []


def test_a_link_planted_after_a_version_is_not_followed_by_retention(tmp_path, elsewhere, caplog):
    source = tmp_path / "w.bin"
    run = epochal.init(project="p", system_interval=0)
    source.write_bytes(b"one")
    run.log_artifact(source, name="model")
    run.flush()
    blobs = run.dir / "artifacts" / ".blobs"
    for blob in blobs.iterdir():
        blob.unlink()
    blobs.rmdir()
    blobs.symlink_to(elsewhere, target_is_directory=True)  # garbage collection would delete inside it
    source.write_bytes(b"two")
    with caplog.at_level(logging.WARNING, logger="epochal"):
        assert run.log_artifact(source, name="model", keep_last=1) is None
    run.finish()
    _untouched(elsewhere)


@pytest.mark.parametrize("name", ["metrics.bin", "system.jsonl", "config.json", "run.json", "summary.json"])
def test_store_files_never_write_through_a_planted_link(elsewhere, name, caplog):
    run = epochal.init(project="p", system_interval=0, flush_interval=0.05)
    target = run.dir / name
    target.unlink(missing_ok=True)
    target.symlink_to(elsewhere / "keep.bin")  # before the store first opens it
    with caplog.at_level(logging.WARNING, logger="epochal"):
        run.log({"loss": 2.0})
        run.log_system({"cpu/percent": 1.0})
        run.config["x"] = 1
        run.summary["y"] = 2
        run.finish()
    _untouched(elsewhere)
    assert f"refusing to write through the symlink {target}" in caplog.text and "remove the link" in caplog.text
    assert len(read_metrics(run.dir)[0]) == (0 if name == "metrics.bin" else 1)  # the other files go on


# -- a SIGKILL during log_artifact, and the temp files it leaves -----------------------------------
def test_kill_during_log_artifact_lists_no_half_version_and_cleans_its_temp_files(tmp_path, run_root):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1 << 20))
    # The child's copy writes its first half, says so and waits: the SIGKILL lands mid-copy every time,
    # whatever the filesystem's copy speed (a reflink or a fast sendfile would otherwise finish first).
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import shutil, sys, epochal

        def half_then_wait(src, dst, **_):
            with open(src, "rb") as source, open(dst, "wb") as target:
                target.write(source.read(1 << 19))
                target.flush()
            print("copying", flush=True)
            sys.stdin.read()

        shutil.copyfile = half_then_wait
        run = epochal.init(project="p", id="killed", system_interval=0)
        run.log({{"loss": 1.0}})
        run.flush()
        run.log_artifact({str(big)!r}, name="model")
        print("returned", flush=True)
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "EPOCHAL_DIR": str(run_root), "EPOCHAL_ARTIFACT_LINK": "copy"})
    assert child.stdout.readline().strip() == "copying"
    staging = run_root / "p" / "killed" / "artifacts" / ".staging"
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdin.close()
    child.stdout.close()
    run_dir = run_root / "p" / "killed"
    assert [p.stat().st_size for p in staging.rglob("big.bin")] == [1 << 19]  # the partial copy is there ...
    assert list_versions(run_dir) == []  # ... but no version is listed
    reader = epochal.open_run("killed")
    assert reader.artifacts() == [] and reader.status == "crashed"
    dead = child.pid  # reaped: no process has this pid now
    (run_dir / "artifacts" / f".manifest.json.{dead}.abc123.tmp").write_text("{}")  # a dead writer's temp files
    (run_dir / "environment").mkdir(exist_ok=True)
    (run_dir / "environment" / f".git.diff.{dead}.w.tmp").write_text("x")
    live = run_dir / "environment" / f".other.txt.{os.getpid()}.w.tmp"  # a live writer's (ours)
    live.write_text("x")
    run = epochal.init(project="p", id="killed", resume="allow", system_interval=0)
    run.flush()
    assert list(staging.iterdir()) == []
    assert not (run_dir / "artifacts" / f".manifest.json.{dead}.abc123.tmp").exists()
    assert not (run_dir / "environment" / f".git.diff.{dead}.w.tmp").exists()
    assert live.exists()
    ours = run_dir / "artifacts" / ".staging" / f"{os.getpid()}-999999"  # our own leftover: gone at the end
    ours.mkdir()
    run.finish()
    assert not ours.exists() and live.exists()  # another lane may still be writing its own temp file
    live.unlink()
    assert [p.name for p in run_dir.rglob("*.tmp")] == []
    assert epochal.open_run("killed").status == "finished"


@pytest.mark.parametrize("folder", ["environment", "tensorboard"])
def test_other_run_folders_never_write_through_a_planted_link(elsewhere, folder, caplog, run_root):
    run_dir = run_root / "p" / "planted"  # made before init, with the link in it
    run_dir.mkdir(parents=True)
    (run_dir / folder).symlink_to(elsewhere, target_is_directory=True)
    with caplog.at_level(logging.WARNING, logger="epochal"):
        run = epochal.init(project="p", id="planted", sinks=["tensorboard"], system_interval=0)
        run.log({"loss": 1.0})
        run.finish()
    _untouched(elsewhere)
    assert run.dir == run_dir and "symlink" in caplog.text
    assert len(read_metrics(run_dir)[0]) == 1 and read_json(run_dir / "run.json")["status"] == "finished"
