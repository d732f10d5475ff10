"""Lightning training overhead: the rows of ``benchmarks/lightning_overhead.py`` (its ``run()``) as a table.

That module belongs to the Lightning integration; this one only runs it in a fresh interpreter
(with a timeout) and prints what it returns: a list of dicts (one per logger), or an object with
``headers``/``rows``. The target (epochal within 1% of a no-op Logger's wall time) is judged on the epochal row's
overhead, read from a field named like ``vs_noop_pct`` (percent over a no-op Logger), else ``overhead`` (percent) or ``ratio``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
from typing import Any

from ._harness import Report, failed, fmt, in_subprocess, target

__all__ = ["rows", "run"]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def rows(quick: bool, tmp: str) -> dict[str, Any]:
    """Subprocess side: call ``benchmarks.lightning_overhead.run`` and return its rows as plain data."""
    from . import lightning_overhead

    func = lightning_overhead.run
    result = func(quick=quick) if "quick" in inspect.signature(func).parameters else func()
    if hasattr(result, "rows") and hasattr(result, "headers"):
        return {"headers": [str(h) for h in result.headers], "rows": _plain(result.rows)}
    return {"rows": _plain(list(result))}


def _overhead_pct(row: dict[str, Any]) -> float | None:
    """The row's overhead in percent of the no-logger wall time, from whichever field it gives."""
    for key, value in row.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        name = key.lower()
        if "overhead" in name:
            return float(value) * (100 if "pct" not in name and "%" not in name and abs(value) < 1 else 1)
    for key, value in row.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and "ratio" in key.lower():
            return (float(value) - 1) * 100
    return None


def run(quick: bool = False) -> Report:
    if importlib.util.find_spec("benchmarks.lightning_overhead") is None:
        report = Report("Lightning training overhead", ["status"], [["missing: benchmarks/lightning_overhead.py"]])
        report.targets.append(target(None, "Lightning overhead under 2%: benchmarks/lightning_overhead.py missing"))
        return report
    result = in_subprocess("lightning_table:rows", 900, quick=quick)
    if failed(result):
        report = Report("Lightning training overhead", ["status"], [[f"failed: {result['error']}"]])
        report.targets.append(target(None, "Lightning overhead under 2%: not measured"))
        return report
    data = result["rows"]
    if "headers" in result:
        report = Report("Lightning training overhead", result["headers"],
                        [[fmt(v) if isinstance(v, float) else str(v) for v in r] for r in data])
        return report
    headers = list(dict.fromkeys(k for r in data for k in r))
    report = Report("Lightning training overhead (benchmarks/lightning_overhead.py)", headers)
    for r in data:
        report.rows.append([fmt(r.get(h)) if isinstance(r.get(h), float) else str(r.get(h, "")) for h in headers])
    epochal_rows = [r for r in data if any("epochal" in str(v).lower() for v in r.values() if isinstance(v, str))]
    versus = epochal_rows[0].get("vs_noop_pct") if epochal_rows else None
    overhead = _overhead_pct(epochal_rows[0]) if epochal_rows else None
    if isinstance(versus, (int, float)):
        report.targets.append(target(versus < 1, f"Lightning 1000-step fit: epochal within 1% of a no-op Logger: "
                                                 f"{versus:+.2f}%"))
    elif overhead is None:
        report.targets.append(target(None, "Lightning overhead under 1%: no epochal overhead figure in its rows"))
    else:
        report.targets.append(target(overhead < 1, f"Lightning overhead under 1%: epochal adds {overhead:.2f}%"))
    return report
