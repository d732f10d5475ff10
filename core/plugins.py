"""Builds the plugin manager of a run: built-ins, requested sinks, entry-point plugins, env switches.

- Built-ins (``store``, ``environment``) are registered like any other plugin.
- Optional sinks (``tensorboard``) join when asked: ``init(sinks=[...])`` or ``EPOCHAL_SINKS``.
- Third-party plugins load from the entry-point group ``epochal`` unless
  ``EPOCHAL_DISABLE_PLUGIN_AUTOLOAD=1``. The installed entry points are looked up once per
  state of ``sys.path`` (its folders and their modification times: an install shows), not at
  every run's open (reading every distribution's metadata costs some 4 ms).
- Which methods of epochal's own plugin classes are hook implementations is worked out once
  per class, not at every run's open (pluggy inspects every attribute of a plugin: a
  millisecond a run, the most of a search candidate's run).
- :func:`collect_run_metadata` calls the one synchronous hook plugin by plugin: one
  that raises is reported and unregistered for that run, which still opens.
- ``EPOCHAL_DISABLE_PLUGINS=a,b`` blocks plugins by name; ``EPOCHAL_TRACE_PLUGINS=1``
  traces every hook call to stderr.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any, Iterable

import pluggy

from . import hookspecs

__all__ = [
    "BUILTIN_PLUGINS", "OPTIONAL_SINKS", "build_plugin_manager", "collect_run_metadata", "plugin_caller",
    "requested_sinks", "register_plugin",
]

log = logging.getLogger("epochal")

#: name -> "module:factory" of plugins every run has.
BUILTIN_PLUGINS = {
    "store": "epochal.store:StoreSink",
    "environment": "epochal.environment:EnvironmentPlugin",
}
#: name -> "module:factory" of sinks a run has only when asked.
OPTIONAL_SINKS = {
    "tensorboard": "epochal.sinks.tensorboard:TensorBoardSink",
    "mlflow": "epochal.sinks.mlflow:MlflowSink",
}
_extra_plugins: list[tuple[str, Any]] = []
_found: dict[str, tuple[Any, tuple[Any, ...]]] = {}  # group -> (sys.path state, its entry points)
_impl_opts: dict[tuple[type, str], Any] = {}  # (epochal plugin class, attribute) -> its hookimpl options or None


class _Manager(pluggy.PluginManager):
    """pluggy's manager, remembering the hookimpl options of epochal's own plugin classes per class."""

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        cls, own = type(plugin), getattr(plugin, "__dict__", None)
        if not cls.__module__.startswith("epochal.") or own is None or name in own:
            return super().parse_hookimpl_opts(plugin, name)  # a module, a class, someone else's: as pluggy does
        key = (cls, name)
        if key not in _impl_opts:
            _impl_opts[key] = super().parse_hookimpl_opts(plugin, name)
        opts = _impl_opts[key]
        return None if opts is None else dict(opts)


def register_plugin(plugin: Any, name: str | None = None) -> None:
    """Add a plugin object to every run started after this call (handy in tests and notebooks)."""
    _extra_plugins.append((name or getattr(plugin, "__name__", None) or repr(plugin), plugin))


def unregister_plugin(plugin: Any) -> None:
    """Undo :func:`register_plugin`."""
    _extra_plugins[:] = [(n, p) for n, p in _extra_plugins if p is not plugin]


def requested_sinks(sinks: Iterable[str] | None) -> list[str]:
    """The optional sinks asked for by argument or ``EPOCHAL_SINKS``; unknown names raise."""
    names = list(sinks) if sinks is not None else _split(os.environ.get("EPOCHAL_SINKS", ""))
    unknown = [n for n in names if n not in OPTIONAL_SINKS]
    if unknown:
        raise ValueError(f"unknown sink(s) {unknown}; choose from {sorted(OPTIONAL_SINKS)}")
    return names


def build_plugin_manager(sinks: Iterable[str] = ()) -> pluggy.PluginManager:
    """A fresh manager with the hookspecs, built-ins, requested sinks and entry-point plugins."""
    pm = _Manager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in _split(os.environ.get("EPOCHAL_DISABLE_PLUGINS", "")):
        pm.set_blocked(name)
    for name in BUILTIN_PLUGINS:
        _register(pm, name, BUILTIN_PLUGINS[name])
    for name in sinks:
        _register(pm, name, OPTIONAL_SINKS[name])
    for name, plugin in _extra_plugins:
        if not pm.is_blocked(name) and not pm.is_registered(plugin):
            pm.register(plugin, name)
    if os.environ.get("EPOCHAL_DISABLE_PLUGIN_AUTOLOAD", "") not in ("1", "true", "yes"):
        try:
            for entry in _entry_points(hookspecs.PROJECT):
                if not pm.has_plugin(entry.name) and not pm.is_blocked(entry.name):
                    pm.register(entry.load(), name=entry.name)
        except Exception as exc:  # a broken third-party plugin never stops a run
            log.warning("epochal: loading entry-point plugins failed: %r", exc)
    if os.environ.get("EPOCHAL_TRACE_PLUGINS", "") in ("1", "true", "yes"):
        pm.trace.root.setwriter(sys.stderr.write)
        pm.enable_tracing()
    return pm


def _entry_points(group: str) -> tuple[Any, ...]:
    """The entry points of ``group`` installed on ``sys.path``, read again only when it changed."""
    state = tuple((folder, _modified(folder)) for folder in sys.path)
    known = _found.get(group)
    if known is None or known[0] != state:
        import importlib.metadata

        known = _found[group] = (state, tuple(importlib.metadata.entry_points(group=group)))
    return known[1]


def _modified(folder: str) -> int | None:
    try:
        return os.stat(folder or ".").st_mtime_ns
    except OSError:
        return None


def plugin_caller(pm: pluggy.PluginManager, plugin: Any, hook: str) -> Any:
    """A caller of ``plugin``'s implementation of ``hook`` alone; None if it implements none."""
    if not any(impl.plugin is plugin for impl in getattr(pm.hook, hook).get_hookimpls()):
        return None
    others = [p for p in pm.get_plugins() if p is not plugin]
    return pm.subset_hook_caller(hook, remove_plugins=others)


def collect_run_metadata(pm: pluggy.PluginManager, run: Any) -> dict[str, Any]:
    """Every plugin's ``epochal_run_metadata(run)`` merged; a plugin that raises is reported and unregistered."""
    merged: dict[str, Any] = {}
    for plugin in list(pm.get_plugins()):
        caller = plugin_caller(pm, plugin, "epochal_run_metadata")
        if caller is None:
            continue
        name = pm.get_name(plugin)
        try:
            for extra in caller(run=run):
                if extra:
                    merged.update(dict(extra))
        except Exception as exc:  # a plugin never stops a run from opening
            log.warning("epochal plugin %r failed in epochal_run_metadata: %r; it is disabled for run %s",
                        name, exc, run.id)
            pm.unregister(plugin)
    return merged


def _register(pm: pluggy.PluginManager, name: str, target: str) -> None:
    if pm.is_blocked(name):
        return
    module_name, _, attr = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
        pm.register(factory(), name)
    except ImportError as exc:
        raise ImportError(f"epochal plugin {name!r} needs a package that is missing: {exc}") from exc


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
