"""The report page: tables rendered here as HTML, charts drawn in the browser by plotly.js from embedded JSON.

The page holds plotly.js once (from the installed ``plotly`` package), the report's data as one
``<script type="application/json">`` block and a small script of its own; it loads nothing else.
Charts are drawn when they scroll into view, so a report of hundreds of runs opens quickly;
``window.epochal.renderAll()`` draws every chart at once (printing, tests).
"""

from __future__ import annotations

import html
import json
import time
from typing import Any, Sequence

from ._report_data import (
    MAX_NONFINITE, MAX_POINTS, MIN_POINTS, POINT_BUDGET, MetricFigures, RunData, config_value, number,
)
from ._report_step import exact_values, shown, step_controls
from ._report_page_assets import PAGE_CSS, PAGE_JS
from ._report_step_js import STEP_JS

__all__ = ["render_page", "run_color"]


def run_color(index: int) -> str:
    """A distinct colour per run, the same in every chart and table (golden-angle hues)."""
    return f"hsl({(index * 137.508) % 360:.0f},65%,42%)"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp)) if isinstance(stamp, (int, float)) else "—"


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or seconds != seconds:
        return "—"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


_num = shown


def _sort_key(value: Any) -> str:
    """``data-sort`` of a cell: numbers as numbers; NaN, missing and text sort after them."""
    if isinstance(value, (int, float)) and value == value and abs(value) != float("inf"):
        return repr(float(value))
    if isinstance(value, float) and value == float("inf"):
        return "1e308"
    if isinstance(value, float) and value == float("-inf"):
        return "-1e308"
    return ""


def _runs_table(runs: Sequence[RunData], metrics: Sequence[str], lower: dict[str, bool], steps: dict[str, int | None]) -> str:
    head1 = ['<th rowspan="2">run</th>', '<th rowspan="2">status</th>', '<th rowspan="2">start</th>',
             '<th rowspan="2">duration</th>', '<th rowspan="2">tags</th>']
    head2 = []
    for metric in metrics:
        arrow = "min" if lower[metric] else "max"
        head1.append(f'<th colspan="3" class="metric">{_e(metric)}</th>')
        at = steps.get(metric)
        head2 += ['<th class="num">last</th>', f'<th class="num" title="best by {arrow}imum">best ({arrow})</th>',
                  f'<th class="num at">at step {_e(at if at is not None else "—")}</th>']
    rows = []
    for run in runs:
        cells = [
            f'<td data-sort="{_e(run.name)}"><span class="swatch" style="background:{run_color(run.index)}"></span>'
            f'{_e(run.name)}<div class="sub">{_e(run.project)}/{_e(run.id)}</div></td>',
            f'<td class="status {_e(run.status)}">{_e(run.status)}{" ⚠" if run.problems else ""}</td>',
            f'<td data-sort="{_e(run.start or "")}">{_e(_when(run.start))}</td>',
            f'<td class="num" data-sort="{_e(_sort_key(run.duration))}">{_e(_duration(run.duration))}</td>',
            f'<td>{"".join(f"<span class=tag>{_e(t)}</span>" for t in run.tags)}</td>',
        ]
        for metric in metrics:
            figures: MetricFigures | None = run.metrics.get(metric)
            if figures is None:
                cells += ['<td class="num" data-sort="">—</td>'] * 2 + ['<td class="num at" data-sort="">—</td>']
                continue
            counted = f"step {figures.last_step}; {figures.count} points logged" + (
                f", {figures.nonfinite} of them NaN/inf" if figures.nonfinite else "")
            cells.append(f'<td class="num" data-sort="{_e(_sort_key(figures.last))}" title="{_e(counted)}">'
                         f'{_e(_num(figures.last))}</td>')
            best_title = f"step {figures.best_step}" if figures.best_step is not None else "no finite value"
            cells.append(f'<td class="num" data-sort="{_e(_sort_key(figures.best))}" title="{_e(best_title)}">'
                         f'{_e(_num(figures.best))}</td>')
            at_title = f"logged at step {figures.at_step}" if figures.at_step is not None else "not reached"
            cells.append(f'<td class="num at" data-sort="{_e(_sort_key(figures.at))}" title="{_e(at_title)}">'
                         f'{_e(_num(figures.at))}</td>')
        rows.append(f'<tr data-run="{run.index}">{"".join(cells)}</tr>')
    return (f'<div class="scroll"><table id="runs-table" class="sortable"><thead><tr>{"".join(head1)}</tr>'
            f'<tr>{"".join(head2)}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def config_differences(runs: Sequence[RunData]) -> tuple[list[str], list[str]]:
    """Every config key (sorted) and those whose value is not the same in every run (absent counts as a value)."""
    keys = sorted({k for run in runs for k in run.config})
    missing = object()
    differing = []
    for key in keys:
        seen = {config_value(run.config[key]) if key in run.config else missing for run in runs}
        if len(seen) > 1:
            differing.append(key)
    return keys, differing


def _config_table(runs: Sequence[RunData], keys: list[str], differing: list[str]) -> str:
    if not keys:
        return '<p class="note">No run has a config.</p>'
    changed = set(differing)
    head = "".join(f'<th data-run="{r.index}"><span class="swatch" style="background:{run_color(r.index)}"></span>'
                   f'{_e(r.name)}</th>' for r in runs)
    rows = []
    for key in keys:
        cells = "".join(f'<td data-run="{r.index}">{_e(config_value(r.config[key]))}</td>' if key in r.config
                        else f'<td data-run="{r.index}" class="missing">—</td>' for r in runs)
        rows.append(f'<tr class="{"differs" if key in changed else "same"}"><th>{_e(key)}</th>{cells}</tr>')
    note = (f"{len(differing)} of {len(keys)} keys differ between the runs." if len(runs) > 1
            else "One run: nothing to compare, every key is listed.")
    show_all = " show-all" if len(runs) < 2 else ""
    return (f'<p class="note">{note} <label><input type="checkbox" id="config-all"{" checked" if show_all else ""}> '
            f'show all keys</label></p><div class="scroll"><table id="config-table" class="{show_all.strip()}">'
            f'<thead><tr><th>key</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def _where_table(runs: Sequence[RunData]) -> str:
    rows = []
    for run in runs:
        git = run.git or {}
        commit = str(git.get("commit") or "")
        if commit:
            dirty = git.get("dirty")
            flag = " (dirty: uncommitted changes)" if dirty else (" (clean)" if dirty is False else "")
            repo = f" on {git['branch']}" if git.get("branch") else ""
            where = f"{commit[:12]}{repo}{flag}"
        else:
            where = "not in a git repository"
        origin = git.get("remote") or git.get("root")
        remote = f'<div class="sub">{_e(origin)}</div>' if origin else ""
        rows.append(f'<tr data-run="{run.index}"><td><span class="swatch" style="background:{run_color(run.index)}"></span>{_e(run.name)}</td>'
                    f'<td><code>{_e(run.dir)}</code></td><td><code>{_e(where)}</code>{remote}</td>'
                    f'<td>{_e(run.host or "—")}</td></tr>')
    return ('<div class="scroll"><table id="where-table"><thead><tr><th>run</th><th>path</th><th>git commit</th>'
            f'<th>host</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def _problems(runs: Sequence[RunData]) -> str:
    items = [f"<li><b>{_e(r.name)}</b> ({_e(r.project)}/{_e(r.id)}): {_e(p)}</li>" for r in runs for p in r.problems]
    if not items:
        return ""
    return f'<section id="problems"><h2>Problems</h2><ul>{"".join(items)}</ul></section>'


def _charts(runs: Sequence[RunData], names: Sequence[str], kind: str, lower: dict[str, bool]) -> list[dict[str, Any]]:
    charts = []
    for position, name in enumerate(names):
        traces = [getattr(r, "traces" if kind == "metric" else "system")[name] for r in runs
                  if name in getattr(r, "traces" if kind == "metric" else "system")]
        lows = [t.low for t in traces if t.low is not None]
        highs = [t.high for t in traces if t.high is not None]
        charts.append({
            "id": f"{kind}-{position}", "title": name, "kind": kind,
            "direction": ("min" if lower.get(name) else "max") if kind == "metric" else None,
            "range": [min(lows) if lows else 0.0, max(highs) if highs else 1.0],
            "traces": [t.as_json() for t in traces],
        })
    return charts


def _parcoords(runs: Sequence[RunData], differing: Sequence[str], metrics: Sequence[str]) -> dict[str, Any] | None:
    dimensions = []
    for key in list(differing)[:40]:
        raw = [r.config.get(key) for r in runs]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw if v is not None)
        if numeric and any(v is not None for v in raw):
            dimensions.append({"label": key, "values": [number(float(v)) if v is not None else "nan" for v in raw]})
        else:
            labels = sorted({config_value(v) if v is not None else "—" for v in raw})
            codes = {label: i for i, label in enumerate(labels)}
            dimensions.append({"label": key, "tickvals": list(range(len(labels))), "ticktext": labels,
                               "values": [codes[config_value(v) if v is not None else "—"] for v in raw]})
    for metric in metrics:
        values = [r.metrics[metric].last if metric in r.metrics else None for r in runs]
        if any(v is not None for v in values):
            dimensions.append({"label": f"{metric} (last)", "values": [number(v) if v is not None else "nan" for v in values]})
    if len(dimensions) < 2:
        return None
    return {"dimensions": dimensions[:60], "color": dimensions[-1]["values"], "color_label": dimensions[-1]["label"]}


def render_page(runs: Sequence[RunData], metrics: Sequence[str], system: Sequence[str], lower: dict[str, bool],
                steps: dict[str, int | None], plotly_js: str, title: str, media: str = "",
                step: int | None = None) -> str:
    """The whole report as one HTML document; ``step`` is the one asked for (``--step``), else ``None``."""
    keys, differing = config_differences(runs)
    parcoords = _parcoords(runs, differing, metrics)
    payload = {
        "runs": [{"index": r.index, "id": r.id, "name": r.name, "tags": r.tags, "color": run_color(r.index)}
                 for r in runs],
        "charts": _charts(runs, metrics, "metric", lower) + _charts(runs, system, "system", lower),
        "parcoords": parcoords,
        "table": {"metrics": list(metrics), "steps": [steps.get(m) for m in metrics], "initial": step,
                  "exact": exact_values([r.traces[m] for m in metrics for r in runs if m in r.traces])},
        "downsampling": {"budget": POINT_BUDGET, "max": MAX_POINTS, "min": MIN_POINTS, "nonfinite": MAX_NONFINITE},
    }
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    metric_divs = "".join(f'<div class="chart" id="metric-{i}" data-title="{_e(m)}"></div>' for i, m in enumerate(metrics))
    system_divs = "".join(f'<div class="chart" id="system-{i}" data-title="{_e(m)}"></div>' for i, m in enumerate(system))
    generated = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="epochal report">
<title>{_e(title)}</title><style>{PAGE_CSS}</style><style id="run-filter-style"></style></head>
<body>
<header><h1>{_e(title)}</h1><p class="note">{len(runs)} run(s), {len(metrics)} metric(s); made {generated} by
<code>epochal report</code>. Opens offline: nothing on this page comes from the network.</p></header>
{_problems(runs)}
<section id="runs"><h2>Runs</h2><p class="controls">show runs whose name, id or tags contain
<input id="run-filter" type="search" placeholder="text, or /regular expression/" size="32">
<span id="run-count" class="note"></span></p><p class="note">Click a column heading to sort, a run to make it stand out in every chart. Best is the lowest value of metrics
whose name says loss, error or time, else the highest; "at step" is the value last logged at or before that step.</p>
{step_controls(step) if metrics else ""}
{_runs_table(runs, metrics, lower, steps)}</section>
<section id="config"><h2>Config</h2>{_config_table(runs, keys, differing)}</section>
<section id="metrics"><h2>Metrics</h2>
<p class="controls">x axis: <select id="x-mode"><option value="step">step</option>
<option value="time">wall time (s since the run started)</option><option value="epoch">epoch</option></select>
<span class="note">Drag to zoom, double-click to reset; hover for run and value. NaN and ±inf are gaps in a line,
marked ✕ (nan) and ▲/▼ (+inf/−inf) at the top or bottom of the chart.</span></p>
{f'<div class="grid">{metric_divs}</div>' if metric_divs else '<p class="note">No metrics were logged by these runs.</p>'}</section>
<section id="hardware"><h2>Hardware</h2>
{f'<div class="grid small">{system_divs}</div>' if system_divs else '<p class="note">No hardware samples were recorded for these runs.</p>'}</section>
<section id="parallel"><h2>Config against metrics</h2>
{'<div id="parcoords" class="chart tall"></div>' if parcoords else
 '<p class="note">Needs at least two differing config keys or metrics.</p>'}</section>
{media}
<section id="where"><h2>Where each run lives</h2>{_where_table(runs)}</section>
<footer class="note">Charts keep at most {MAX_POINTS} points per run and metric (an equal share of
{POINT_BUDGET:,} points per report, at least {MIN_POINTS}): each bucket of logged points keeps its minimum and
maximum, so spikes and the extremes stay exact; the tables use every logged point. Up to {MAX_NONFINITE} NaN/inf
points per line are marked. A step chosen in the page is looked up in the charted points: exact where they hold
the point logged at or before it, else the nearest charted one, marked ≈.</footer>
<script>{plotly_js}</script>
<script type="application/json" id="epochal-data">{data}</script>
<script>{STEP_JS}</script>
<script>{PAGE_JS}</script>
</body></html>
"""

