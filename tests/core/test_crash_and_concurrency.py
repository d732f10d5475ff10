"""Crash safety (SIGKILL), many processes under one root, torn lines, rank attach."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import epochal
from epochal.store import effective_status, read_json, read_jsonl, read_metrics

LOGGER = textwrap.dedent("""
    import sys, time, epochal
    root, run_id, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    run = epochal.init(project="p", id=run_id, dir=root, system_interval=0)
    for i in range(n):
        run.log({"i": float(i), "t": time.time()})
    if len(sys.argv) > 4:  # keep logging until killed, one point per millisecond
        print("ready", flush=True)
        i = n
        while True:
            run.log({"i": float(i), "t": time.time()})
            i += 1
            time.sleep(0.001)
    run.finish()
""")


def test_sigkill_keeps_everything_logged_a_second_before(run_root):
    proc = subprocess.Popen([sys.executable, "-c", LOGGER, str(run_root), "killed", "0", "forever"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    run_dir = run_root / "p" / "killed"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(read_metrics(run_dir)[0]) < 1500:
        pass  # wait (with a deadline) until a good stretch has been logged
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    killed_at = time.time()
    rows, skipped = read_metrics(run_dir)
    assert skipped <= 1
    assert len(rows) >= 1500
    logged_before = [r for r in rows if r["t"] < killed_at - 1.0]
    # every point logged more than 1 s before the kill is there, in order, with no gap
    assert [r["i"] for r in logged_before] == [float(i) for i in range(len(logged_before))]
    last_logged = rows[-1]["t"]
    assert killed_at - last_logged < 1.5
    for path in run_dir.glob("*.json"):
        json.loads(path.read_text())
    assert effective_status(read_json(run_dir / "run.json"), run_dir) == "crashed"


def test_torn_or_corrupt_blocks_are_skipped_and_counted(run_root):
    run = epochal.init(system_interval=0)
    run.log({"a": 1.0})
    run.flush()
    run.log({"a": 2.0})
    run.finish()
    path = run.dir / "metrics.bin"
    whole = path.read_bytes()
    second = whole.index(b"EPB1", 1)
    path.write_bytes(whole + whole[second:-3])  # a torn copy of the last block at the end
    rows, skipped = read_metrics(run.dir)
    assert [r["a"] for r in rows] == [1.0, 2.0] and skipped == 1
    corrupt = bytearray(whole)
    corrupt[second - 6] ^= 0xFF  # flip a byte inside the first block: it fails its checksum
    path.write_bytes(bytes(corrupt))
    rows, skipped = read_metrics(run.dir)
    assert [r["a"] for r in rows] == [2.0] and skipped == 1


def test_four_processes_each_50k_steps_under_one_root(run_root):
    procs = [subprocess.Popen([sys.executable, "-c", LOGGER, str(run_root), f"proc{i}", "50000"]) for i in range(4)]
    for proc in procs:
        assert proc.wait(300) == 0
    for i in range(4):
        run_dir = run_root / "p" / f"proc{i}"
        rows, skipped = read_metrics(run_dir)
        assert skipped == 0 and len(rows) == 50000
        assert [r["step"] for r in rows] == list(range(50000))
        assert read_json(run_dir / "run.json")["status"] == "finished"


def test_other_ranks_attach_and_write_only_their_own_files(run_root):
    script = textwrap.dedent("""
        import sys, epochal
        run = epochal.init(project="ddp", dir=sys.argv[1], system_interval=0.2)
        for i in range(100):
            run.log({"loss": float(i)})
        print(run.id, run.is_owner, flush=True)
        run.finish()
    """)
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999", "TORCHELASTIC_RUN_ID": "job-42"}
        procs.append(subprocess.Popen([sys.executable, "-c", script, str(run_root)], env=env,
                                      stdout=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert outputs[0][0] == outputs[1][0] and outputs[0][1] == "True" and outputs[1][1] == "False"
    runs = list((run_root / "ddp").iterdir())
    assert len(runs) == 1
    run_dir = runs[0]
    rows, _ = read_metrics(run_dir)
    assert [r["loss"] for r in rows] == [float(i) for i in range(100)]  # once, from rank 0 only
    for rank in range(2):
        samples, _ = read_jsonl(run_dir / f"system.rank{rank}.jsonl")
        assert samples and all(s["rank"] == rank for s in samples)
    assert read_json(run_dir / "run.json")["status"] == "finished"
