"""How an epochal run reads in MLflow: names, tags, params, limits. Pure functions, no I/O.

MLflow's rules, honoured here so the server never has to refuse a record:

- a log-batch request carries at most 1000 metrics, 100 params and 100 tags, and 1 MB of JSON;
- keys (metric, param and tag names) hold at most 250 characters of letters, digits and
  ``_ - . : / space``, and must not read as a different path (``a//b``, ``./a``, ``/a``, ``a/``);
- param values hold at most 6000 characters, tag values 5000 (truncated here with a marker;
  the full value stays in the run directory).

A name MLflow would refuse is mapped (bad characters become ``_``, paths are normalised,
long names are cut and given a short hash so two names never meet); the mapping is kept
in the mirror's cursor and sent as the tag ``epochal.name_map``.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import re
from typing import Any, Iterable, Iterator, Mapping

from ..query import flatten

__all__ = [
    "MAX_METRICS", "MAX_PARAMS", "MAX_TAGS", "MAX_REQUEST_BYTES", "MAX_KEY", "MAX_PARAM_VALUE", "MAX_TAG_VALUE",
    "TRUNCATED", "STATUS", "NameMapper", "truncate", "param_values", "run_tags", "alias_tag", "summary_records",
    "chunks",
]

MAX_METRICS = 1000
MAX_PARAMS = 100
MAX_TAGS = 100
MAX_REQUEST_BYTES = 900_000  # MLflow's limit is 1 MB of JSON; keep a margin for the envelope
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 5000
TRUNCATED = "...[truncated by epochal]"
#: epochal status -> MLflow run status (a crashed run: its process died without finishing).
STATUS = {"finished": "FINISHED", "failed": "FAILED", "crashed": "KILLED", "running": "RUNNING"}
_BAD = re.compile(r"[^/\w.\- :]")


def truncate(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters, ending with :data:`TRUNCATED` when it was cut."""
    return value if len(value) <= limit else value[: limit - len(TRUNCATED)] + TRUNCATED


def _valid(name: str) -> bool:
    if not name or len(name) > MAX_KEY or _BAD.search(name):
        return False
    norm = posixpath.normpath(name)
    return norm == name and norm != "." and not norm.startswith("..") and not norm.startswith("/")


def _repair(name: str) -> str:
    name = _BAD.sub("_", name)
    parts = [p if p not in (".", "..") else "_" * len(p) for p in name.split("/") if p]
    return "/".join(parts) or "_"


class NameMapper:
    """Maps epochal names to names MLflow accepts; remembers every mapping (``mapped``) so it never changes."""

    def __init__(self, mapped: Mapping[str, str] | None = None) -> None:
        self.mapped: dict[str, str] = dict(mapped or {})
        self._taken = set(self.mapped.values())
        self._ok: set[str] = set()

    def __call__(self, name: str) -> str:
        if name in self._ok:
            return name
        found = self.mapped.get(name)
        if found is not None:
            return found
        if _valid(name) and name not in self._taken:
            self._ok.add(name)
            return name
        key = _repair(name)
        if len(key) > MAX_KEY or key in self._taken or key in self._ok:
            digest = hashlib.sha1(name.encode()).hexdigest()[:8]
            key = key[: MAX_KEY - 9].rstrip("/") + "-" + digest
        self.mapped[name] = key
        self._taken.add(key)
        return key


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, default=repr, separators=(",", ":"))


def param_values(config: Mapping[str, Any]) -> dict[str, str]:
    """The config flattened to dotted names, each value as the text MLflow stores (truncated to 6000)."""
    return {key: truncate(_text(value), MAX_PARAM_VALUE) for key, value in flatten(config).items()}


def run_tags(meta: Mapping[str, Any]) -> dict[str, str]:
    """The MLflow tags of a run from its ``run.json``: epochal's ids, host, git, source, notes, labels."""
    git: Mapping[str, Any] = meta["git"] if isinstance(meta.get("git"), Mapping) else {}
    argv = meta.get("argv") if isinstance(meta.get("argv"), (list, tuple)) else ()
    tags = {
        "epochal.run_id": meta.get("id"), "epochal.project": meta.get("project"), "mlflow.runName": meta.get("name"),
        "epochal.host": meta.get("host") or meta.get("hostname"), "mlflow.user": meta.get("user"),
        "mlflow.source.type": "LOCAL", "mlflow.source.name": argv[0] if argv else None,
        "mlflow.source.git.commit": git.get("commit"), "mlflow.source.git.branch": git.get("branch"),
        "mlflow.source.git.repoURL": git.get("remote"), "mlflow.note.content": meta.get("notes") or None,
        "epochal.status": meta.get("status"),
    }
    if meta.get("world_size", 1) not in (1, None):
        tags["epochal.world_size"] = meta.get("world_size")
    if meta.get("error"):
        tags["epochal.error"] = meta["error"]
    for label in meta.get("tags") or ():
        tags[str(label)] = "true"
    return {k: truncate(_text(v), MAX_TAG_VALUE) for k, v in tags.items() if v not in (None, "")}


def alias_tag(name: str, alias: str) -> str:
    """The tag naming the version an artifact alias points at: ``epochal.artifact.<name>.<alias>``."""
    return f"epochal.artifact.{name}.{alias}"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def summary_records(summary: Mapping[str, Any], last: Mapping[str, float]) -> tuple[dict[str, float], dict[str, str]]:
    """The summary as MLflow holds it: ``(metrics, tags)``.

    A number never logged as a metric becomes a metric (so MLflow's run table shows it);
    one that overrides a logged metric's last value becomes ``summary/<name>``; anything
    else becomes the tag ``epochal.summary.<name>``. Last values equal to the summary send nothing.
    """
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    for key, value in flatten(summary).items():
        if _number(value) and math.isfinite(value):
            if key not in last:
                metrics[key] = float(value)
            elif float(value) != last[key]:
                metrics[f"summary/{key}"] = float(value)
        elif not (key in last and _number(value)):
            tags[f"epochal.summary.{key}"] = truncate(_text(value), MAX_TAG_VALUE)
    return metrics, tags


def chunks(items: Iterable[dict[str, Any]], count: int, size: int = MAX_REQUEST_BYTES) -> Iterator[list[dict[str, Any]]]:
    """``items`` in lists of at most ``count`` items and about ``size`` bytes of JSON each."""
    batch: list[dict[str, Any]] = []
    used = 0
    for item in items:
        cost = 16 + sum(len(str(k)) + len(str(v)) + 8 for k, v in item.items())
        if batch and (len(batch) >= count or used + cost > size):
            yield batch
            batch, used = [], 0
        batch.append(item)
        used += cost
    if batch:
        yield batch
