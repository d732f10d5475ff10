"""The run's two mappings: ``Config`` (hyperparameters) and ``Summary`` (final figures).

Both keep their values writable (:func:`epochal.values.jsonable`, on the caller's
thread) with secrets redacted, and report every change through ``on_change``.
"""

from __future__ import annotations

import threading
from collections.abc import MutableMapping
from typing import Any, Iterator, Mapping

from .redact import redact
from .values import jsonable

__all__ = ["Config", "Summary"]


class Config(MutableMapping):
    """The run's hyperparameters: a dict with attribute access; every change reaches the store.

    Values are kept JSON-able (anything else by ``repr``, nested dicts stay nested) and
    keys that look like secrets (``token``, ``password``, ``api_key``...) are stored as ``***``.
    """

    def __init__(self, on_change: Any = None) -> None:
        object.__setattr__(self, "_data", {})
        object.__setattr__(self, "_on_change", on_change)

    @staticmethod
    def _clean(key: Any, value: Any) -> Any:
        return redact(jsonable(value, str(key)), key)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self._data)  # the writer freezes a copy on this thread

    def update(self, *args: Any, **kwargs: Any) -> None:  # one store write for many keys, none if nothing changed
        data, changed = self._data, False
        for key, value in dict(*args, **kwargs).items():
            clean = self._clean(key, value)
            if str(key) not in data or data[str(key)] != clean:
                data[str(key)] = clean
                changed = True
        if changed:
            self._changed()

    def setdefaults(self, values: Mapping[str, Any]) -> None:
        """Add the keys not yet present (integrations use this to never overwrite the user's values)."""
        self.update({k: v for k, v in values.items() if k not in self._data})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[str(key)] = self._clean(key, value)
        self._changed()

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._changed()

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def to_dict(self) -> dict[str, Any]:
        import copy

        return copy.deepcopy(self._data)

    def __repr__(self) -> str:
        return f"Config({self._data!r})"


class Summary(MutableMapping):
    """The run's final figures: the last logged value of every metric, overridable by the user."""

    def __init__(self, on_change: Any = None) -> None:
        self._auto: dict[str, Any] = {}
        self._overrides: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._on_change = on_change

    def absorb(self, last_values: Mapping[str, Any]) -> dict[str, Any]:
        """Take the last logged values (writer thread); returns the whole summary."""
        with self._lock:
            self._auto.update(last_values)
        return self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {**self._auto, **self._overrides}

    def __getitem__(self, key: str) -> Any:
        with self._lock:
            if key in self._overrides:
                return self._overrides[key]
            return self._auto[key]

    def __setitem__(self, key: str, value: Any) -> None:
        with self._lock:
            self._overrides[str(key)] = Config._clean(key, value)
        if self._on_change is not None:
            self._on_change(self.to_dict())

    def update(self, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            for key, value in dict(*args, **kwargs).items():
                self._overrides[str(key)] = Config._clean(key, value)
        if self._on_change is not None:
            self._on_change(self.to_dict())

    def __delitem__(self, key: str) -> None:
        with self._lock:
            self._overrides.pop(key, None)
            self._auto.pop(key, None)
        if self._on_change is not None:
            self._on_change(self.to_dict())

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    def __repr__(self) -> str:
        return f"Summary({self.to_dict()!r})"
