"""The runs table's "at step" column, chosen in the page: a step field (or a click on a chart point) updates it live.

Exactness. The page can only look values up in what it embeds: each run's chart line of each
metric (see :mod:`epochal._report_data` for the downsampling). The rule is the one of
:func:`epochal._report_data.value_at` (the value last logged at or before the step), and a cell is
shown as exact only when the page holds that very point:

- the line keeps every logged point (it was not downsampled): every step is exact;
- the line was downsampled but its steps rise strictly in logging order, and one of the points it
  kept lies exactly at the chosen step: exact;
- otherwise the cell shows the nearest kept point at or before the step, marked ``≈`` and
  followed by that point's step (``≈ 0.4137 (step 1187)``; its title says how many points the
  chart keeps); ``--step`` / ``step=`` computes the exact figure from every logged point, and the
  page shows those cells again whenever the step chosen is the one the report was written for.

The page's script (:data:`epochal._report_step_js.STEP_JS`) mirrors :func:`shown` and
:func:`epochal._report_data.value_at`. Chart values are float32: where a value's float32 copy
would print differently at the table's 6 significant digits, the exact float64 value rides
along (:func:`float32_fixes`, about 1 % of the points, in one table for the whole page:
:func:`exact_values`), so an exact cell reads like the Python-written table, digit for digit.
"""

from __future__ import annotations

import html
from typing import Any, Sequence

import numpy as np

from ._report_data import Trace, encode_array

__all__ = ["DIGITS", "shown", "float32_fixes", "exact_values", "step_controls"]

DIGITS = 6


def shown(value: float | None) -> str:
    """A figure as the runs table prints it: 6 significant digits (``"—"`` for none); the page's script mirrors it."""
    return "—" if value is None else f"{value:.{DIGITS}g}"


def float32_fixes(values: np.ndarray) -> np.ndarray:
    """Indices of the finite ``values`` whose float32 copy :func:`shown` would print differently."""
    values = np.asarray(values, dtype=np.float64)
    stored = values.astype(np.float32).astype(np.float64)
    at = np.flatnonzero(np.isfinite(values) & (values != 0) & (stored != values))
    if not at.size:
        return at
    exact, rounded = np.abs(values[at]), np.abs(stored[at])
    unit = 10.0 ** (np.floor(np.log10(exact)) - (DIGITS - 1))
    low, high = np.minimum(exact, rounded) / unit, np.maximum(exact, rounded) / unit
    # a rounding boundary (n + 0.5) units lies between the two, or log10 may have missed a decade
    near = ((np.floor(low - 0.5 - 1e-6) != np.floor(high - 0.5 + 1e-6)) | (low < 10.0 ** (DIGITS - 1) * 1.000001)
            | (high > 10.0 ** DIGITS * 0.999999))
    return np.array([i for i in at[near].tolist() if shown(values[i]) != shown(stored[i])], dtype=np.int64)


def exact_values(traces: Sequence[Trace]) -> dict[str, Any] | None:
    """The float64 values the page needs beside the float32 ones of ``traces`` (the metric charts' lines, in page order).

    ``{"at": i4 pairs (line number in ``traces``, point number in its line), "value": f8}``; ``None`` when none.
    """
    where, values = [], []
    for number, trace in enumerate(traces):
        if trace.values is None or trace.y.get("dtype") != "f4":
            continue
        fixes = float32_fixes(trace.values)
        if fixes.size:
            where.append(np.stack([np.full(fixes.size, number), fixes], axis=1).ravel())
            values.append(trace.values[fixes])
    if not where:
        return None
    return {"at": encode_array(np.concatenate(where), "i4"), "value": encode_array(np.concatenate(values), "f8")}


def step_controls(initial: int | None) -> str:
    """The step field above the runs table; empty when the report compares each metric at its own default step."""
    value = "" if initial is None else f' value="{html.escape(str(initial))}"'
    return ('<p class="controls"><label>value at step <input id="at-step" type="number" step="1" size="10"'
            f'{value} placeholder="last step all reached"></label> <button type="button" id="at-step-reset">'
            'as written</button> <span class="note">type a step or click a point of a metric chart; '
            '"≈" marks a value the page can only approximate (hover it for why)</span></p>')
