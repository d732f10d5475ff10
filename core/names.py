"""Canonical metric names: every framework's naming rules, as one small dialect per framework.

Names are ``{split}/{name}`` with split in ``train | val | test``, plus ``lr`` (and
``lr/<group>``) and ``epoch``. A :class:`Dialect` says how one framework spells them:

==============  ======================================  ==============================
dialect         framework spelling                      canonical name
==============  ======================================  ==============================
(all)           ``loss`` / ``val_loss`` / ``test_acc``  ``train/loss`` / ``val/loss`` / ``test/acc``
(all)           ``learning_rate``, ``lr-Adam``          ``lr``, ``lr/Adam``
(all)           ``epoch``                               the record's epoch, not a chart
``lightning``   ``train_loss_step`` / ``_epoch``        ``train/loss`` / ``train/loss_epoch``
``lightning``   ``prefix="fit"``: ``fit-train_loss``    ``fit/train/loss``
``transformers`` ``eval_loss``                          ``val/loss``
``transformers`` ``train_runtime``, ``total_flos``...   ``run.summary`` only (never a chart)
``keras``       ``val_accuracy``                        ``val/accuracy``
``ultralytics`` ``metrics/mAP50(B)``, bare names        ``val/mAP50(B)``, ``val/<name>``
``sklearn``     ``split0_test_score``, ``mean_test_r2``  fold 0 ``val/score``, ``val/r2``
==============  ======================================  ==============================

A user's own namespace (``gan/d_loss``) is kept. Where two keys of one record would get
the same canonical name, the later one keeps its own name.

:meth:`Dialect.plan` maps a tuple of keys once and memoises the result (the same keys
arrive at every step), so :meth:`epochal.Run.log_native` costs a dict lookup over
:meth:`epochal.Run.log`. The original spellings go to the run's ``name_map``.

The step model: every record carries ``step`` (the framework's global optimizer step, or
the user's), ``time`` and, where known, ``epoch``. Epoch-level trackers without an
optimizer step (YOLO) use :func:`epoch_step` so step 1 is the end of the first epoch.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = [
    "SPLITS", "Dialect", "Plan", "Mapped", "GENERIC", "LIGHTNING", "TRANSFORMERS", "KERAS", "ULTRALYTICS",
    "SKLEARN", "DIALECTS", "dialect", "canonical", "canonicalize", "epoch_step", "lower_is_better"]

SPLITS = ("train", "val", "test")
_SPLIT_WORDS = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "eval": "val",
    "test": "test",
}
_LR_NAMES = frozenset({"lr", "learning_rate", "learningrate"})
_SEPARATOR = re.compile(r"[_/.\-]")
_CV_KEY = re.compile(r"^(?:split(\d+)|(mean|std))_(train|test)_(.+)$")
_MAX_PLANS = 4096  # key tuples remembered per dialect (a run logging ever-new keys stays bounded)


class Plan:
    """How one tuple of keys maps: what :meth:`Dialect.plan` memoises (hashed by identity).

    ``names``: canonical names of the charted values, in order; ``take``: their positions
    among the record's values (None: all of them, in order, and nothing else); ``epoch``:
    position of the ``epoch`` key; ``summary``: (position, key) of summary-only keys;
    ``originals``: canonical -> original name, where they differ.
    """

    __slots__ = ("names", "take", "epoch", "summary", "originals")

    def __init__(self, names: tuple[str, ...], take: tuple[int, ...] | None, epoch: int | None,
                 summary: tuple[tuple[int, str], ...], originals: dict[str, str]) -> None:
        self.names, self.take, self.epoch, self.summary, self.originals = names, take, epoch, summary, originals

    def apply(self, values: Any) -> Mapped:
        """The record's ``values`` (in key order) split by this plan."""
        row = list(values)
        charted = dict(zip(self.names, row if self.take is None else [row[i] for i in self.take]))
        return Mapped(charted, self.originals, None if self.epoch is None else row[self.epoch],
                      {key: row[i] for i, key in self.summary})


class Mapped(NamedTuple):
    """One record in canonical form."""

    values: dict[str, Any]
    originals: dict[str, str]
    epoch: Any
    summary: dict[str, Any]


@dataclasses.dataclass(frozen=True, eq=False)
class Dialect:
    """One framework's spelling of metric names (see the module table).

    ``default_split``: the split of a bare name (``loss``); ``aliases``: a namespace that
    means a split (``{"metrics": "val"}``); ``drop_suffixes``: endings that add nothing
    (``_step``); ``summary_keys`` / ``summary_pattern``: end-of-training figures that go to
    the summary and never to a chart; ``prefix``: a namespace put before every canonical
    name (written ``prefix-key`` in the framework, as Lightning's loggers join it);
    ``numbers_only``: values that are not numbers are dropped rather than refused.
    """

    name: str
    default_split: str = "train"
    aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)
    drop_suffixes: tuple[str, ...] = ()
    summary_keys: frozenset[str] = frozenset()
    summary_pattern: str | None = None
    prefix: str = ""
    numbers_only: bool = False
    plans: dict[tuple[str, ...], Plan] = dataclasses.field(default_factory=dict, repr=False, compare=False)
    _variants: dict[tuple[str, str], Dialect] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.default_split not in SPLITS:
            raise ValueError(f"split {self.default_split!r} is not one of {SPLITS}")

    # -- variants ------------------------------------------------------------------------------
    def with_split(self, split: str) -> Dialect:
        """This dialect with bare names going to ``split`` (``"test"`` for an evaluation); memoised."""
        return self._variant("default_split", split)

    def with_prefix(self, prefix: str) -> Dialect:
        """This dialect with every name under ``prefix`` (Lightning's ``prefix=``); memoised."""
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        return self._variant("prefix", prefix.strip("/-"))

    def _variant(self, field: str, value: str) -> Dialect:
        if getattr(self, field) == value:
            return self
        found = self._variants.get((field, value))
        if found is None:
            found = dataclasses.replace(self, **{field: value, "plans": {}, "_variants": {}})  # type: ignore[arg-type]
            self._variants[(field, value)] = found
        return found

    # -- names ---------------------------------------------------------------------------------
    def joined(self, key: str) -> str:
        """``key`` as the framework writes it under this dialect's prefix (Lightning's ``prefix-key``)."""
        return f"{self.prefix}-{key}" if self.prefix else key

    def is_summary(self, key: str) -> bool:
        return key in self.summary_keys or bool(self.summary_pattern and re.search(self.summary_pattern, key))

    def canonical(self, key: str) -> str:
        """The canonical name of one framework key (``epoch`` stays ``epoch``)."""
        name = key
        for suffix in self.drop_suffixes:
            if name.endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
        out = _canonical(name, self.default_split, self.aliases)
        if self.prefix and out != "epoch":
            return f"{self.prefix}/{out}"
        return out

    def plan(self, keys: tuple[str, ...]) -> Plan:
        """How a record with these keys maps; memoised per key tuple."""
        found = self.plans.get(keys)
        if found is not None:
            return found
        names: list[str] = []
        take: list[int] = []
        epoch: int | None = None
        summary: list[tuple[int, str]] = []
        originals: dict[str, str] = {}
        for index, key in enumerate(keys):
            if not isinstance(key, str):
                key = str(key)
            if self.is_summary(key):
                summary.append((index, key))
                continue
            name = self.canonical(key)
            if name == "epoch":
                if epoch is None:
                    epoch = index
                continue
            if name in originals or name in names:  # a clash: the later key keeps its own name
                name = self.joined(key) if self.prefix else key
            names.append(name)
            take.append(index)
            if name != key:
                originals[name] = self.joined(key)
        simple = len(take) == len(keys)
        result = Plan(tuple(names), None if simple else tuple(take), epoch, tuple(summary), originals)
        if len(self.plans) >= _MAX_PLANS:
            self.plans.clear()
        self.plans[keys] = result
        return result

    def map(self, metrics: Mapping[str, Any]) -> Mapped:
        """``metrics`` in canonical form: charted values, originals, epoch, summary-only values."""
        return self.plan(tuple(metrics)).apply(metrics.values())

    def cv_result(self, key: str) -> tuple[int | str, str] | None:
        """A scikit-learn ``cv_results_`` column: ``(fold, name)``, ``("mean"|"std", name)`` or None.

        ``split0_test_r2`` -> ``(0, "val/r2")`` (a CV test fold is a validation split);
        ``std_train_r2`` -> ``("std", "train/r2_std")``; timing, rank and params columns -> None.
        """
        match = _CV_KEY.match(key)
        if match is None:
            return None
        fold, stat, split, metric = match.groups()
        name = _canonical(metric, "val" if split == "test" else "train", self.aliases)
        if name == "epoch" or name.startswith("lr"):
            name = f"{'val' if split == 'test' else 'train'}/{metric}"
        if stat == "std":
            name += "_std"
        return (int(fold) if fold is not None else stat), name


def _canonical(name: str, default_split: str, aliases: Mapping[str, str]) -> str:
    if name == "epoch":
        return "epoch"
    lowered = name.lower()
    if lowered in _LR_NAMES:
        return "lr"
    if lowered.startswith(("lr-", "lr_", "lr/")) and len(name) > 3:
        return "lr/" + name[3:]
    head, sep, rest = name.partition("/")
    if sep and rest:
        if head in SPLITS:
            return name
        if head in aliases:
            return f"{aliases[head]}/{rest}"
        if head.lower() in _SPLIT_WORDS:
            return f"{_SPLIT_WORDS[head.lower()]}/{rest}"
        return name  # a namespace of the user's own, e.g. "gan/d_loss"
    match = _SEPARATOR.search(name)
    if match:
        split = _SPLIT_WORDS.get(name[: match.start()].lower())
        rest = name[match.end():]
        if split and rest:
            return f"{split}/{rest}"
    return f"{default_split}/{name}"


GENERIC = Dialect("generic")
LIGHTNING = Dialect("lightning", drop_suffixes=("_step",))
TRANSFORMERS = Dialect(
    "transformers",
    summary_keys=frozenset({
        "train_runtime", "train_samples_per_second", "train_steps_per_second", "train_tokens_per_second",
        "total_flos", "train_loss",
    }),
    summary_pattern=r"_mem_(cpu|gpu|accelerator)_",  # the memory tracker's end-of-stage deltas
    numbers_only=True,
)
KERAS = Dialect("keras")
ULTRALYTICS = Dialect("ultralytics", default_split="val", aliases={"metrics": "val"})
SKLEARN = Dialect("sklearn")
DIALECTS: dict[str, Dialect] = {d.name: d for d in (GENERIC, LIGHTNING, TRANSFORMERS, KERAS, ULTRALYTICS, SKLEARN)}


def dialect(name: str | Dialect = "generic", split: str | None = None) -> Dialect:
    """The dialect called ``name`` (optionally with bare names going to ``split``)."""
    found = name if isinstance(name, Dialect) else DIALECTS.get(name)
    if found is None:
        raise ValueError(f"no naming dialect {name!r}; choose from {sorted(DIALECTS)}")
    return found if split is None else found.with_split(split)


def canonical(name: str, default_split: str = "train", *, step_suffixes: bool = False) -> str:
    """The canonical name of one metric ``name`` (``step_suffixes``: Lightning's ``_step``)."""
    return (LIGHTNING if step_suffixes else GENERIC).with_split(default_split).canonical(name)


def canonicalize(
    metrics: Mapping[str, Any], default_split: str = "train", *, step_suffixes: bool = False,
    dialect: Dialect | None = None,
) -> tuple[dict[str, Any], dict[str, str], Any]:
    """``(canonical metrics, {canonical: original}, epoch or None)`` of a framework's metrics dict.

    Memoised per key tuple. Summary-only keys of the dialect are left out (see :meth:`Dialect.map`).
    """
    chosen = dialect or (LIGHTNING if step_suffixes else GENERIC).with_split(default_split)
    mapped = chosen.map(metrics)
    return mapped.values, dict(mapped.originals), mapped.epoch


def epoch_step(epoch_index: int) -> int:
    """The step of an epoch-level point: the 0-based epoch index + 1 (step 1 ends the first epoch)."""
    return int(epoch_index) + 1


#: Words that mark a metric where lower is better (losses, errors, times); the rest go up.
LOWER_IS_BETTER = ("loss", "error", "err", "mse", "mae", "rmse", "perplexity", "wer", "cer", "time", "latency")


def lower_is_better(metric: str) -> bool:
    """The direction of a metric guessed from its name: losses, errors and times go down."""
    name = metric.lower()
    return any(word in name for word in LOWER_IS_BETTER)
