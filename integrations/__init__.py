"""Framework integrations, and :func:`autolog` that turns on every one whose framework is installed.

One module per framework, each with ``autolog(disable=False, **kwargs)``:

=================================  =================================================
``epochal.integrations.lightning``  ``EpochalLogger`` added to every ``Trainer``
``...transformers``                 ``EpochalCallback`` added to every HF ``Trainer``
``...keras``                        ``EpochalCallback`` added to every ``Model.fit``
``...ultralytics``                  callbacks added to every YOLO trainer
``...sklearn``                      ``fit`` of estimators, searches and pipelines
=================================  =================================================

``epochal.autolog()`` imports no framework itself: a framework already imported is
switched on at once, one imported later is switched on the moment its import finishes
(a post-import hook), so the call costs nothing for frameworks a script never uses.
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.metadata
import importlib.util
import logging
import re
import sys
import threading
import warnings
from typing import Any, Callable

__all__ = ["FRAMEWORKS", "OPTIONS", "autolog", "enabled", "Patches", "after_init", "InitAutolog"]

log = logging.getLogger("epochal")

#: integration module -> (top-level import name, distribution, oldest supported version)
FRAMEWORKS: dict[str, tuple[str, str, str]] = {
    "lightning": ("lightning", "lightning", "2.2"),
    "transformers": ("transformers", "transformers", "4.40"),
    "keras": ("keras", "keras", "3.0"),
    "ultralytics": ("ultralytics", "ultralytics", "8.1"),
    "sklearn": ("sklearn", "scikit-learn", "1.3"),
}
#: What each integration's ``autolog`` takes besides :func:`epochal.init`'s arguments. ``epochal.autolog()``
#: gives each integration only the options it takes, and rejects an option that no integration takes.
OPTIONS: dict[str, frozenset[str]] = {
    "lightning": frozenset({"checkpoints", "keep_last", "prefix"}),
    "transformers": frozenset({"checkpoints", "keep_last"}),
    "keras": frozenset({"checkpoints", "keep_last", "log_every_n_batches", "histogram_freq"}),
    "ultralytics": frozenset({"checkpoints", "keep_last"}),
    "sklearn": frozenset({"log_models", "max_child_runs", "log_datasets", "log_post_training_metrics", "log_plots"}),
}
_lock = threading.RLock()
_enabled: set[str] = set()
_warned: set[str] = set()
_options: dict[str, Any] = {}


def enabled() -> list[str]:
    """The integrations :func:`autolog` has switched on so far."""
    return sorted(_enabled)


def _switched(name: str, on: bool) -> None:
    """An integration's own ``autolog()`` switched it on or off: :func:`enabled` says so."""
    with _lock:
        (_enabled.add if on else _enabled.discard)(name)


def autolog(disable: bool = False, **kwargs: Any) -> None:
    """Track every training of every installed framework; ``disable=True`` undoes it all.

    ``kwargs`` are :func:`epochal.init` arguments (``project=``, ``dir=``, ``tags=``...), given to
    every integration, and integration options (:data:`OPTIONS`: ``checkpoints=`` for the four
    that save checkpoints, ``log_plots=`` for sklearn...), given to those that take them.
    Frameworks not installed are skipped silently; one older than supported gets a warning.
    """
    with _lock:
        _finder.hooks.clear()
        if disable:
            for name in sorted(_enabled):
                try:
                    importlib.import_module(f"{__name__}.{name}").autolog(disable=True)
                except Exception as exc:
                    log.warning("epochal: turning off %s autolog failed: %r", name, exc)
            _enabled.clear()
            _options.clear()
            if _finder in sys.meta_path:
                sys.meta_path.remove(_finder)
            return
        _check_options(kwargs)
        _options.clear()
        _options.update(kwargs)
        for name, (module, dist, oldest) in FRAMEWORKS.items():
            if not _installed(module) or not _supported(name, dist, oldest):
                continue
            if module in sys.modules:
                _enable(name)
            else:
                _finder.hooks[module] = name
        if _finder.hooks and _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)


def _init_arguments() -> frozenset[str]:
    import inspect

    from epochal.run import init

    return frozenset(inspect.signature(init).parameters)


def _check_options(kwargs: dict[str, Any]) -> None:
    known = _init_arguments().union(*OPTIONS.values())
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(f"epochal.autolog() got unexpected argument(s) {unknown}; it takes epochal.init's "
                        f"arguments and these integration options: {sorted(known - _init_arguments())}")


def _options_for(name: str) -> dict[str, Any]:
    """The options :func:`autolog` was given that integration ``name`` takes."""
    takes = _init_arguments() | OPTIONS.get(name, frozenset())
    return {key: value for key, value in _options.items() if key in takes}


def _installed(module: str) -> bool:
    try:
        return module in sys.modules or importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _supported(name: str, dist: str, oldest: str) -> bool:
    try:
        found = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return True  # importable without metadata (a source checkout): give it a try
    if _version_tuple(found) >= _version_tuple(oldest):
        return True
    if name not in _warned:
        _warned.add(name)
        warnings.warn(
            f"epochal.autolog(): {dist} {found} is older than the {oldest} epochal supports, so its trainings "
            f"are not tracked; upgrade it: pip install -U 'epochal[{name}]'",
            stacklevel=3,
        )
    return False


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


def _enable(name: str) -> None:
    """Switch one integration on (never raises: a framework that fails to hook is logged and skipped)."""
    with _lock:
        try:
            importlib.import_module(f"{__name__}.{name}").autolog(**_options_for(name))
        except TypeError:
            raise  # an argument this integration does not take: the user's to fix
        except Exception as exc:
            log.warning("epochal: autolog for %s is off: %r", name, exc)
            return
        _enabled.add(name)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader of a watched top-level module to enable its integration."""

    def __init__(self) -> None:
        self.hooks: dict[str, str] = {}  # import name -> integration name

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        name = self.hooks.get(fullname)
        if name is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        del self.hooks[fullname]
        spec.loader = _HookedLoader(spec.loader, name)
        return spec


class _HookedLoader(importlib.abc.Loader):
    """Runs the real loader, puts it back on the module, then enables the integration."""

    def __init__(self, loader: Any, integration: str) -> None:
        self.loader, self.integration = loader, integration

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        module.__loader__ = self.loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        if not _finder.hooks and _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
        try:
            _enable(self.integration)
        except Exception as exc:  # the user's import never fails because of tracking
            log.warning("epochal: autolog for %s is off: %r", self.integration, exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


_finder = _PostImportFinder()


# -- what an integration's autolog swaps on a framework, and the way back ----------------------------
_MISSING = object()


class Patches:
    """Attributes one integration's autolog replaced on framework classes or modules, and putting back
    the very objects it found (``Class.__dict__`` entries, so an inherited method stays inherited)."""

    def __init__(self) -> None:
        self.saved: list[tuple[Any, str, Any]] = []

    def __bool__(self) -> bool:
        return bool(self.saved)

    def swap(self, owner: Any, name: str, wrap: Callable[[Any], Any]) -> None:
        """Replace ``owner.name`` with ``wrap(current)``."""
        before = vars(owner).get(name, _MISSING) if isinstance(owner, type) else getattr(owner, name, _MISSING)
        self.saved.append((owner, name, before))
        setattr(owner, name, wrap(getattr(owner, name)))

    def restore(self) -> None:
        for owner, name, before in reversed(self.saved):
            if before is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, before)
        self.saved.clear()


def after_init(original: Callable[..., None], hook: Callable[[Any], None], what: str) -> Callable[..., None]:
    """An ``__init__`` running ``original`` then ``hook(self)``; a failing hook is logged, never raised."""

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        try:
            hook(self)
        except Exception as exc:
            log.warning("epochal: autolog could not add %s to %s: %r", what, type(self).__name__, exc)

    return __init__


class InitAutolog:
    """An integration's ``autolog`` that adds its callback or logger to every new instance of a framework class.

    ``make(**options)`` builds the callback (called once by :meth:`switch` so argument errors
    surface there); ``add(instance, options)`` puts one on a new instance unless it has one.
    """

    def __init__(self, name: str, target: Callable[[], type], make: Callable[..., Any],
                 add: Callable[[Any, dict[str, Any]], None]) -> None:
        self.name, self.target, self.make, self.add = name, target, make, add
        self.patches = Patches()
        self.options: dict[str, Any] = {}

    def switch(self, disable: bool = False, **options: Any) -> None:
        if disable:
            self.patches.restore()
            _switched(self.name, False)
            return
        self.make(**options)  # argument errors surface here, not in every instance
        self.options.clear()
        self.options.update(options)
        if not self.patches:
            what = getattr(self.make, "__name__", self.name)
            self.patches.swap(self.target(), "__init__",
                              lambda init: after_init(init, lambda obj: self.add(obj, self.options), what))
        _switched(self.name, True)
