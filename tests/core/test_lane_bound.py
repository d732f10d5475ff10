"""The rows queued for the store's lane are bounded: log() keeps pace with a store that falls behind, and stops
waiting for one that does not catch up (real writer and lane threads; the store held by an event, not a sleep)."""

from __future__ import annotations

import logging
import threading

import epochal
from epochal import writer
from epochal.hookspecs import hookimpl
from epochal.store import StoreSink, read_metrics

ROW = {f"m{i}": float(i) for i in range(10)}


def _hold_the_store(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """The store's first metrics write waits for ``release``; ``held`` says it is waiting."""
    held, release = threading.Event(), threading.Event()
    original = StoreSink.epochal_metrics

    @hookimpl
    def held_write(self, run, records):
        if not release.is_set():
            held.set()
            release.wait()
        return original(self, run, records)

    monkeypatch.setattr(StoreSink, "epochal_metrics", held_write)
    return held, release


def test_log_waits_for_a_store_behind_by_more_than_the_bound_and_loses_nothing(monkeypatch):
    monkeypatch.setattr(writer, "LANE_LIMIT_BYTES", 1 << 20)
    held, release = _hold_the_store(monkeypatch)
    parked = threading.Event()  # the training thread has entered its wait for the store
    keep_up = writer.Writer._keep_up

    def parking(self, lane):
        parked.set()
        return keep_up(self, lane)

    monkeypatch.setattr(writer.Writer, "_keep_up", parking)
    run = epochal.init(project="p", system_interval=0, flush_interval=0.05)
    store = next(lane for lane in run._writer.lanes if lane.name == "store")
    logged = [0]

    def train():
        for _ in range(200_000):  # ~20 MB of packed rows: far past the bound
            run.log(ROW)
            logged[0] += 1

    trainer = threading.Thread(target=train)
    trainer.start()
    assert held.wait(30) and parked.wait(30)  # log() is waiting for the store ...
    assert trainer.is_alive() and logged[0] < 200_000
    assert store.pending <= 4 * (1 << 20)  # ... with the queue near its bound, not the whole run
    release.set()
    trainer.join(60)
    assert not trainer.is_alive()
    run.finish()
    assert len(read_metrics(run.dir)[0]) == 200_000


def test_a_store_that_never_catches_up_is_not_waited_for_again(monkeypatch, caplog):
    monkeypatch.setattr(writer, "LANE_LIMIT_BYTES", 1 << 20)
    monkeypatch.setattr(writer, "LANE_WAIT_SECONDS", 0.2)
    held, release = _hold_the_store(monkeypatch)
    run = epochal.init(project="p", system_interval=0, flush_interval=0.05)
    with caplog.at_level(logging.WARNING, logger="epochal"):
        for _ in range(100_000):
            run.log(ROW)  # returns: the store is given up on after one wait
    assert held.is_set() and "no longer waits" in caplog.text
    assert caplog.text.count("no longer waits") == 1
    release.set()
    run.finish()
    assert len(read_metrics(run.dir)[0]) == 100_000
