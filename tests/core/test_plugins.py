"""Plugins: failures and hangs stay inside the plugin; env switches; entry points."""

from __future__ import annotations

import json
import threading

import pytest

import epochal
from epochal import hookimpl, register_plugin, unregister_plugin
from epochal.plugins import build_plugin_manager
from epochal.records import RunInfo
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


# -- plugins get snapshots (issue 11 item 6, issue 10) ----------------------------------------
class Mutating:
    """Tries to change everything it receives; records which attempts went through."""

    def __init__(self):
        self.changed, self.run = [], None

    def _try(self, what, action):
        try:
            action()
        except (TypeError, AttributeError):
            return
        self.changed.append(what)

    @hookimpl
    def epochal_run_start(self, run):
        self.run = run
        self._try("run.id", lambda: setattr(run, "id", "other"))

    @hookimpl
    def epochal_config(self, config):
        self._try("config", lambda: config.__setitem__("lr", 0.0))
        self._try("config.nested", lambda: config["model"].__setitem__("depth", 0))
        self._try("config.list", lambda: config["layers"].append(99))

    @hookimpl
    def epochal_metrics(self, records):
        self._try("records.runs", lambda: records.runs.clear())
        self._try("records.values", lambda: records[0].values.__setitem__("loss", -1.0))
        self._try("records.values.clear", lambda: records[0].values.clear())

    @hookimpl
    def epochal_summary(self, summary):
        self._try("summary", lambda: summary.clear())

    @hookimpl
    def epochal_metadata(self, metadata):
        self._try("metadata", lambda: metadata.__setitem__("status", "failed"))
        self._try("metadata.tags", lambda: metadata["tags"].append("x"))

    @hookimpl
    def epochal_system(self, records):
        self._try("system", lambda: records[0].values.__setitem__("cpu", -1))


class Seeing:
    def __init__(self):
        self.config, self.losses, self.system = None, [], []

    @hookimpl
    def epochal_config(self, config):
        self.config = json.loads(json.dumps(config))  # a frozen mapping is still JSON-able

    @hookimpl
    def epochal_metrics(self, records):
        self.losses.extend(r.values["loss"] for r in records)

    @hookimpl
    def epochal_system(self, records):
        self.system.extend(r.values["cpu"] for r in records)


def test_plugins_get_a_frozen_run_info_and_read_only_payloads(plugins):
    mutating = plugins(Mutating(), "a-mutating")
    seeing = plugins(Seeing(), "z-seeing")
    config = {"lr": 0.1, "model": {"depth": 4}, "layers": [1, 2]}
    run = epochal.init(config=config, tags=["t"], system_interval=0, flush_interval=0.05)
    for i in range(5):
        run.log({"loss": float(i)})
    run.log_system({"cpu": 50.0})
    run.flush()
    run.config["extra"] = 1  # another config event
    run.finish()
    assert mutating.changed == []
    info = mutating.run
    assert isinstance(info, RunInfo) and not isinstance(info, epochal.Run)
    assert (info.id, info.project, info.dir, info.root, info.rank, info.world_size, info.is_owner) == (
        run.id, run.project, run.dir, run.root, 0, 1, True)
    assert (info.start_step, info.resumed, info.name) == (0, 0, run.name)
    assert seeing.losses == [0.0, 1.0, 2.0, 3.0, 4.0] and seeing.system == [50.0]
    assert seeing.config == {**config, "extra": 1}
    assert read_json(run.dir / "config.json") == {**config, "extra": 1}
    meta = read_json(run.dir / "run.json")
    assert meta["status"] == "finished" and meta["tags"] == ["t"]
    assert [r["loss"] for r in read_metrics(run.dir)[0]] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert read_json(run.dir / "summary.json") == {"loss": 4.0}


def test_resumed_run_info_says_where_it_starts(plugins):
    mutating = plugins(Mutating(), "mutating")
    run = epochal.init(id="again", system_interval=0)
    run.log({"loss": 1.0}, step=6)
    run.finish()
    run = epochal.init(id="again", resume=True, system_interval=0)
    run.finish()
    assert (mutating.run.start_step, mutating.run.resumed) == (7, 1)


def test_writer_hooks_are_the_hookspecs():
    from epochal import hookspecs, writer

    assert not hasattr(writer, "EVENT_HOOKS")
    stubs = {n for n in dir(hookspecs) if n.startswith("epochal_")}
    assert set(hookspecs.delivered_hooks()) == stubs - {"epochal_run_metadata"}


# -- failures are counted per plugin and hook (issue 11 items 3, 4, 7) --------------------------
class ConfigBroken(Collecting):
    def __init__(self):
        super().__init__()
        self.config_calls = 0

    @hookimpl
    def epochal_config(self, config):
        self.config_calls += 1
        raise OSError(28, "No space left on device")


def test_a_failing_hook_never_stops_the_plugins_other_hooks(plugins, caplog):
    broken = plugins(ConfigBroken(), "broken")
    run = epochal.init(config={"a": 1}, system_interval=0, flush_interval=0.05)
    for i in range(5):
        run.config[f"k{i}"] = i  # 6 config events: switched off after the third
        run.log({"loss": float(i)})
        run.flush()
    run.finish()
    assert broken.config_calls == 3
    assert broken.steps == list(range(5)) and broken.ended == "finished"
    assert run.failures == {"broken": 3}
    assert sum("failed in epochal_config" in r.getMessage() for r in caplog.records) == 1
    assert any("epochal_config switched off" in r.getMessage() for r in caplog.records)


def test_a_config_file_that_cannot_be_written_loses_no_metric(run_root):
    blocked = run_root / "default" / "blocked"
    (blocked / "config.json").mkdir(parents=True)  # every config write of the store fails
    run = epochal.init(id="blocked", config={"seed": 1}, system_interval=0, flush_interval=0.05)
    for i in range(100):
        run.log({"loss": float(i)})
        run.config[f"k{i % 5}"] = i
    run.finish()
    assert len(read_metrics(run.dir)[0]) == 100
    assert read_json(run.dir / "run.json")["status"] == "finished"
    assert read_json(run.dir / "summary.json") == {"loss": 99.0}
    assert run.failures == {"store": 3}


class MetadataRaising(Collecting):
    @hookimpl
    def epochal_run_metadata(self, run):
        raise RuntimeError("metadata exploded")


def test_a_plugin_raising_in_run_metadata_is_disabled_and_the_run_opens(plugins, caplog):
    raising = plugins(MetadataRaising(), "meta-raising")
    run = epochal.init(config={"a": 1}, system_interval=0)
    run.log({"loss": 1.0})
    run.finish()
    assert "python" in read_json(run.dir / "run.json")  # the other plugins' metadata is there
    assert read_json(run.dir / "run.json")["status"] == "finished" and len(read_metrics(run.dir)[0]) == 1
    assert not raising.started and raising.steps == []  # unregistered for this run
    assert any("'meta-raising' failed in epochal_run_metadata" in r.getMessage()
               and "metadata exploded" in r.getMessage() for r in caplog.records)


def test_built_in_plugins_register_the_same_hooks_as_pluggy_finds():
    import pluggy

    from epochal import hookspecs

    def hooks(pm):
        return sorted((pm.get_name(p), h.name, impl.function.__qualname__, impl.wrapper, impl.hookwrapper)
                      for p in pm.get_plugins() for h in pm.get_hookcallers(p) or () for impl in h.get_hookimpls()
                      if impl.plugin is p)

    ours = [build_plugin_manager(["tensorboard"]) for _ in range(2)]  # the second from the per-class memo
    plain = pluggy.PluginManager(hookspecs.PROJECT)
    plain.add_hookspecs(hookspecs)
    for plugin in ours[0].get_plugins():
        plain.register(type(plugin)(), ours[0].get_name(plugin))
    assert hooks(ours[0]) == hooks(ours[1]) == hooks(plain)
    assert {"epochal_metrics", "epochal_run_start", "epochal_run_metadata"} <= {h for _, h, *_ in hooks(plain)}
