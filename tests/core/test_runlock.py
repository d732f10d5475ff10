"""The one lock mechanism (epochal.runlock.OwnedLock): who holds it, and that forked children never keep it."""

from __future__ import annotations

import os
import re
import socket

import pytest

from epochal.runlock import LockHeld, OwnedLock, RunInUseError, RunLock


def test_a_held_lock_names_its_holder_and_role_and_is_free_once_released(tmp_path):
    first = OwnedLock(tmp_path / "x.lock", "live mirror")
    first.acquire()
    holder = rf"pid {os.getpid()} on host {re.escape(socket.gethostname())} \(live mirror\) since \d{{4}}-"
    with pytest.raises(LockHeld, match=holder) as caught:
        OwnedLock(tmp_path / "x.lock", "epochal sync").acquire()  # another open file: flock refuses it
    assert caught.value.holder["role"] == "live mirror" and caught.value.holder["pid"] == os.getpid()
    first.release()
    second = OwnedLock(tmp_path / "x.lock", "epochal sync")
    second.acquire()
    assert second.held and not first.held
    second.release()


def test_the_run_lock_is_one_of_them(tmp_path):
    run = RunLock(tmp_path, "r1")
    run.acquire()
    try:
        with pytest.raises(LockHeld, match=r"(?s)is held by pid \d+ .*\(run\)"):
            OwnedLock(tmp_path / "lock", "epochal sync").acquire()
        with pytest.raises(RunInUseError, match=r"run 'r1' is open in another process \(pid \d+ on host .* \(run\)"):
            RunLock(tmp_path, "r1").acquire()
    finally:
        run.release()


def test_a_forked_child_does_not_keep_its_parents_lock(tmp_path):
    lock = OwnedLock(tmp_path / "x.lock", "live mirror")
    lock.acquire()
    read_end, write_end = os.pipe()
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child lives on (a data-loader worker, say) until the parent closes the pipe
        os.close(write_end)
        os.write(ready_write, b"r")  # fork() returned here: the at-fork hooks have run
        os.read(read_end, 1)
        os._exit(0)
    os.close(read_end)
    os.close(ready_write)
    try:
        assert os.read(ready_read, 1) == b"r"
        lock.release()
        other = OwnedLock(tmp_path / "x.lock", "epochal sync")
        other.acquire()  # free although the child, which inherited the file, is still running
        other.release()
    finally:
        os.close(write_end)
        os.close(ready_read)
        os.waitpid(pid, 0)
