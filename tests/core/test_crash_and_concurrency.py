"""Crash safety (SIGKILL), many processes under one root, torn lines, rank attach."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

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


# -- issue 11 item 1: a forked child never inherits the parent's run ---------------------------------
FORK_SCRIPT = textwrap.dedent("""
    import multiprocessing, os, sys
    import epochal

    def child(run, root, out):
        out.put((epochal.current_run() is None, run.failures, run.flush(timeout=5)))
        run.log({"x": -1.0})  # a no-op that warns once
        run.log({"x": -2.0})
        run.config["from_child"] = 1
        with epochal.init(project="p", id="child-own", dir=root, system_interval=0) as own:
            own.log({"y": 1.0})
        sys.exit(0)

    root = sys.argv[1]
    run = epochal.init(project="p", id="parent", dir=root, system_interval=0.01, flush_interval=0.01)
    for i in range(500):
        run.log({"x": float(i)})
    pid = os.fork()
    if pid == 0:
        print("os.fork child sees a run:", epochal.current_run() is not None, flush=True)
        run.log({"x": -1.0})
        run.log({"x": -2.0})
        epochal.log({"x": -3.0})  # the module-level call is the same no-op, never an error in a worker
        run.config["from_child"] = 1
        sys.exit(0)  # runs the exit handlers: they must not wait for the parent's threads
    print("os.fork child exit code", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
    for i in range(500, 1000):
        run.log({"x": float(i)})
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    proc = ctx.Process(target=child, args=(run, root, out))
    proc.start()
    print("multiprocessing child saw", out.get(timeout=60), flush=True)
    proc.join(60)
    print("multiprocessing child exit code", proc.exitcode, flush=True)
    for i in range(1000, 1500):
        run.log({"x": float(i)})
    run.finish()
""")


def test_a_forked_child_drops_the_parents_run_and_exits(run_root):
    proc = subprocess.run([sys.executable, "-c", FORK_SCRIPT, str(run_root)], capture_output=True, text=True,
                          timeout=120)  # before: the os.fork child hung in its exit handler
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "os.fork child sees a run: False",
        "os.fork child exit code 0",
        "multiprocessing child saw (True, {}, True)",
        "multiprocessing child exit code 0",
    ]
    assert proc.stderr.count("belongs to the parent of this forked process") == 2  # once per child
    parent = run_root / "p" / "parent"
    assert [r["x"] for r in read_metrics(parent)[0]] == [float(i) for i in range(1500)]
    assert read_json(parent / "config.json") == {}
    assert read_json(parent / "run.json")["status"] == "finished"
    child_own = run_root / "p" / "child-own"
    assert [r["y"] for r in read_metrics(child_own)[0]] == [1.0]
    assert read_json(child_own / "run.json")["status"] == "finished"


# -- issue 11 item 2: threads registering new sets of names at once ----------------------------------
def _widen_races(frame, event, arg):
    """A profile hook: after every ``append`` made by epochal's code, let other threads run for a while."""
    if event == "c_return" and getattr(arg, "__name__", "") == "append" and \
            frame.f_globals.get("__name__", "").startswith("epochal"):
        time.sleep(0.0002)  # releases the GIL inside what would otherwise be a few bytecodes


def test_threads_logging_new_names_at_once_keep_their_own_names(run_root):
    threads, rows_each = 6, 40
    run = epochal.init(system_interval=0)
    start = threading.Barrier(threads)
    errors = []

    def logger(t):
        start.wait()
        try:
            for j in range(rows_each):  # a new set of names on every call; thread t logs t + 1 names
                run.log({f"t{t}/r{j}/{k}": t * 10_000 + j for k in range(t + 1)}, step=j)
        except Exception as exc:  # noqa: BLE001 - the assertion below names it
            errors.append(exc)

    threading.setprofile(_widen_races)
    try:
        workers = [threading.Thread(target=logger, args=(t,)) for t in range(threads)]
        for worker in workers:
            worker.start()
    finally:
        threading.setprofile(None)
    for worker in workers:
        worker.join()
    run.finish()
    assert errors == []  # before: struct.error from a row packed by another thread's format
    rows = read_metrics(run.dir)[0]
    assert len(rows) == threads * rows_each
    for row in rows:
        names = sorted(k for k in row if k not in ("step", "time", "epoch"))
        t, j = (int(part[1:]) for part in names[0].split("/")[:2])
        assert names == [f"t{t}/r{j}/{k}" for k in range(t + 1)] and row["step"] == j
        assert all(row[name] == t * 10_000 + j for name in names)


# -- issue 11 item 8: one process writes a run at a time ------------------------------------------
HOLDER = textwrap.dedent("""
    import os, sys, epochal
    root = sys.argv[1]
    sys.stdin.readline()  # "go": every process opens at once
    try:
        run = epochal.init(project="p", id="job-42", dir=root, resume="allow", config={"pid": os.getpid()},
                           system_interval=0)
    except Exception as exc:
        print("refused", type(exc).__name__, str(exc), flush=True)
        sys.exit(3)
    print("opened", os.getpid(), run.step, flush=True)
    for i in range(1000):
        run.log({"x": float(i)})
    run.flush()
    print("logged", flush=True)
    if sys.stdin.readline().strip() == "finish":
        run.finish()
        print("finished", flush=True)
""")


def _holders(run_root, count):
    procs = [subprocess.Popen([sys.executable, "-c", HOLDER, str(run_root)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(count)]
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    return procs


def test_a_run_open_in_one_process_is_refused_to_another_naming_the_owner(run_root):
    import socket

    procs = _holders(run_root, 2)
    first = {proc: proc.stdout.readline().split() for proc in procs}
    opened = [p for p, words in first.items() if words[:1] == ["opened"]]
    refused = [p for p, words in first.items() if words[:1] == ["refused"]]
    assert len(opened) == 1 and len(refused) == 1, first  # before: both opened at step 0
    owner, other = opened[0], refused[0]
    assert first[owner][2] == "0"
    assert other.wait(60) == 3
    message = " ".join(first[other])
    assert "RunInUseError" in message and f"pid {owner.pid} on host {socket.gethostname()}" in message
    assert owner.stdout.readline().strip() == "logged"
    owner.stdin.write("finish\n")
    owner.stdin.flush()
    assert owner.stdout.readline().strip() == "finished" and owner.wait(60) == 0
    run_dir = run_root / "p" / "job-42"
    assert [r["step"] for r in read_metrics(run_dir)[0]] == list(range(1000))
    assert read_json(run_dir / "config.json") == {"pid": owner.pid}

    # released at finish: the next process resumes where the first stopped
    (later,) = _holders(run_root, 1)
    assert later.stdout.readline().split()[::2] == ["opened", "1000"]
    assert later.stdout.readline().strip() == "logged"
    later.stdin.write("finish\n")
    later.stdin.flush()
    assert later.wait(60) == 0
    assert [r["step"] for r in read_metrics(run_dir)[0]] == list(range(2000))


def test_a_killed_owner_releases_the_run_at_once(run_root):
    (owner,) = _holders(run_root, 1)
    assert owner.stdout.readline().startswith("opened")
    assert owner.stdout.readline().strip() == "logged"
    owner.send_signal(signal.SIGKILL)
    owner.wait(10)
    run_dir = run_root / "p" / "job-42"
    assert effective_status(read_json(run_dir / "run.json"), run_dir) == "crashed"
    run = epochal.init(project="p", id="job-42", dir=str(run_root), resume="allow", system_interval=0)
    assert run.step == 1000  # found from the step column of what the killed process stored
    run.log({"x": 1000.0})
    run.finish()
    assert [r["step"] for r in read_metrics(run_dir)[0]] == list(range(1001))


def test_the_same_run_twice_in_one_process_is_refused_until_finished(run_root):
    from epochal.runlock import RunInUseError

    first = epochal.init(id="twice", system_interval=0)
    with pytest.raises(RunInUseError, match=r"run 'twice' is open in another process \(pid \d+"):
        epochal.init(id="twice", resume="allow", system_interval=0)
    first.log({"a": 1.0})
    first.finish()
    again = epochal.init(id="twice", resume="allow", system_interval=0)
    assert again.step == 1
    again.finish()


# -- issue 11, memory: the rows between log() and the plugins stay bounded --------------------------
class _NeverWakes:
    """Stands in for the writer's wake-up event: the writer thread sleeps as if starved of the GIL."""

    def set(self):
        pass

    def wait(self, timeout=None):
        return False

    def clear(self):
        pass


def test_a_starved_writer_never_lets_the_backlog_grow_past_its_bound():
    from epochal.backlog import LIMIT_BYTES, WAKE_BYTES

    run = epochal.init(system_interval=0, flush_interval=3600)
    metrics = {f"m{k}": float(k) for k in range(10)}
    run.log(metrics)
    writer = run._writer
    real, writer._wake = writer._wake, _NeverWakes()  # from now on only the training thread moves rows on
    peak = 0
    for i in range(1, 300_000):  # 31 MB of packed rows
        run.log(metrics)
        if not i % 1000:
            peak = max(peak, writer._sealed + writer.backlog.pending_bytes())
    assert peak <= WAKE_BYTES + LIMIT_BYTES
    writer._wake = real  # the writer thread waits on it: finish() wakes it
    run.finish()
    rows = read_metrics(run.dir)[0]
    assert len(rows) == 300_000 and [r["step"] for r in rows] == list(range(300_000))


def test_rows_logged_after_finish_are_dropped_not_kept():
    from epochal.backlog import WAKE_BYTES

    run = epochal.init(system_interval=0)
    run.log({"a": 1.0})
    run.finish()
    for _ in range(100_000):  # 3.2 MB of rows nobody will write
        run.log({"a": 2.0})
    assert run._writer._sealed == 0 and run._writer.backlog.pending_bytes() <= WAKE_BYTES
    assert [r["a"] for r in read_metrics(run.dir)[0]] == [1.0]


def test_a_run_another_host_is_writing_is_refused_until_its_heartbeat_goes_stale(run_root):
    from epochal.runlock import RunInUseError

    run_dir = run_root / "default" / "shared-fs"
    run_dir.mkdir(parents=True)
    now = time.time()
    (run_dir / "run.json").write_text(json.dumps({  # flock is not shared across hosts on some network file systems
        "id": "shared-fs", "name": "shared-fs", "project": "default", "status": "running", "created": now,
        "started": now, "host": "elsewhere", "pid": 4242, "flush_interval": 1.0, "resumed": 0,
        "tags": [], "notes": "", "name_map": {}, "datasets": {}}))
    (run_dir / "heartbeat").touch()
    with pytest.raises(RunInUseError, match=r"pid 4242 on host elsewhere"):
        epochal.init(id="shared-fs", resume="allow", system_interval=0)
    os.utime(run_dir / "heartbeat", (now - 3600, now - 3600))  # the other host went quiet: crashed
    run = epochal.init(id="shared-fs", resume="allow", system_interval=0)
    run.finish()
    assert read_json(run_dir / "run.json")["status"] == "finished"
