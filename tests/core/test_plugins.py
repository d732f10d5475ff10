"""Plugins: failures and hangs stay inside the plugin; env switches; entry points."""

from __future__ import annotations

import threading

import pytest

import epochal
from epochal import hookimpl, register_plugin, unregister_plugin
from epochal.plugins import build_plugin_manager
from epochal.store import read_json, read_metrics


class Raising:
    def __init__(self):
        self.calls = 0

    @hookimpl
    def epochal_metrics(self, run, records):
        self.calls += 1
        raise RuntimeError("sink exploded")


class Hanging:
    def __init__(self):
        self.release = threading.Event()

    @hookimpl
    def epochal_metrics(self, records):
        self.release.wait(60)


class Collecting:
    def __init__(self):
        self.steps, self.ended, self.started = [], None, False

    @hookimpl
    def epochal_run_start(self, run):
        self.started = True

    @hookimpl
    def epochal_metrics(self, records):
        self.steps.extend(r.step for r in records)

    @hookimpl
    def epochal_run_end(self, status):
        self.ended = status


@pytest.fixture
def plugins():
    added = []

    def add(plugin, name):
        register_plugin(plugin, name)
        added.append(plugin)
        return plugin

    yield add
    for plugin in added:
        unregister_plugin(plugin)


def test_raising_and_hanging_plugins_never_reach_training(plugins, caplog):
    raising = plugins(Raising(), "raising")
    hanging = plugins(Hanging(), "hanging")
    collecting = plugins(Collecting(), "collecting")
    run = epochal.init(system_interval=0, flush_interval=0.05, finish_timeout=2)
    for i in range(2000):
        run.log({"loss": float(i)})
        if i % 500 == 0:
            run.flush(timeout=0.2)  # spread the points over several batches
    run.finish()
    hanging.release.set()
    rows = read_metrics(run.dir)[0]
    assert [r["step"] for r in rows] == list(range(2000))  # the store got everything
    assert collecting.steps == list(range(2000)) and collecting.started and collecting.ended == "finished"
    assert read_json(run.dir / "run.json")["status"] == "finished"
    assert raising.calls == 3  # disabled after 3 failures
    assert run.failures == {"raising": 3}
    assert sum("sink exploded" in r.getMessage() for r in caplog.records) == 1  # reported once
    assert any("did not finish" in r.getMessage() for r in caplog.records)


def test_disable_plugins_env_blocks_by_name(plugins, monkeypatch):
    collecting = plugins(Collecting(), "collecting")
    monkeypatch.setenv("EPOCHAL_DISABLE_PLUGINS", "collecting, environment")
    run = epochal.init(system_interval=0)
    run.log({"a": 1.0})
    run.finish()
    assert collecting.steps == [] and "python" not in read_json(run.dir / "run.json")


def test_builtins_are_plugins_of_the_same_manager():
    pm = build_plugin_manager()
    assert {"store", "environment"} <= {pm.get_name(p) for p in pm.get_plugins()}


def test_entry_point_plugins_load_unless_autoload_disabled(monkeypatch, tmp_path):
    import importlib.metadata as md
    import sys

    module = tmp_path / "my_epochal_plugin.py"
    module.write_text("import epochal\n@epochal.hookimpl\ndef epochal_run_metadata(run):\n    return {'from_plugin': True}\n")
    dist = tmp_path / "my_epochal_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-epochal-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[epochal]\nmine = my_epochal_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("EPOCHAL_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    assert any(ep.name == "mine" for ep in md.entry_points(group="epochal"))
    run = epochal.init(system_interval=0)
    run.finish()
    assert read_json(run.dir / "run.json")["from_plugin"] is True
    monkeypatch.setenv("EPOCHAL_DISABLE_PLUGIN_AUTOLOAD", "1")
    run = epochal.init(system_interval=0)
    run.finish()
    assert "from_plugin" not in read_json(run.dir / "run.json")
    sys.modules.pop("my_epochal_plugin", None)
