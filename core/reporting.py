"""Compare runs in one self-contained HTML file (``epochal.report``): tables, overlaid metric charts, config differences.

The module is ``reporting`` so that importing it never hides the function ``epochal.report``.

>>> import epochal
>>> epochal.report(project="demo", metrics=["val/loss", "val/acc:max"], output="report.html")

The file embeds plotly.js (from the ``plotly`` package: ``pip install 'epochal[report]'``) and the
runs' data, and fetches nothing: it opens offline in any browser, can be mailed or attached to a
pull request. How charts are downsampled is described in :mod:`epochal._report_data`; how the page
looks a value up at a step chosen by its reader, in :mod:`epochal._report_step`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from ._report_select import ReportError, close_matches, select_runs

__all__ = ["report", "ReportError"]


def _plotly_js() -> str:
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise ImportError("the report needs plotly (its JavaScript is embedded in the page): "
                          "pip install 'epochal[report]'") from None
    return get_plotlyjs()


def _metric_specs(metrics: Iterable[str] | str | None) -> tuple[list[str], dict[str, bool]]:
    """``["val/acc:max", "loss"]`` -> names and the directions given (``:min`` / ``:max``)."""
    if metrics is None:
        return [], {}
    names, lower = [], {}
    for spec in [metrics] if isinstance(metrics, str) else list(metrics):
        name, sep, goal = str(spec).rpartition(":")
        if sep and goal in ("min", "max") and name:
            lower[name] = goal == "min"
        else:
            name = str(spec)
        names.append(name)
    return list(dict.fromkeys(names)), lower


def report(runs: Sequence[str | os.PathLike[str]] | str | None = None, *, project: str | None = None,
           where: str | None = None, metrics: Iterable[str] | str | None = None,
           output: str | os.PathLike[str] = "report.html", dir: str | os.PathLike[str] | None = None,
           step: int | None = None, title: str | None = None) -> Path:
    """Write an HTML report comparing runs; returns its path.

    Args:
        runs: run ids (or ``project/id``, unique prefixes or names, run folders); default every run of
            ``project``, or of the run root.
        project: the project whose runs to compare (and in which to look the ids up).
        where: keep runs matching a condition such as ``config.lr > 0.01 and status == "finished"``
            (see :mod:`epochal._report_select`).
        metrics: the metrics to show (default all); ``"name:min"`` / ``"name:max"`` sets which way is better
            (otherwise guessed from the name: loss, error, time... are minimised).
        output: the HTML file to write.
        dir: the run root (default ``EPOCHAL_DIR`` or ``./epochal-runs``).
        step: the step at which the runs table compares values (default per metric: the last step
            every run reached), computed exactly from every logged point. A reader can choose another
            step in the page (a step field, or a click on a chart point); the page looks it up in the
            points it charts: exact where they hold the point logged at or before that step, else the
            nearest charted point, marked "≈" (see :mod:`epochal._report_step`).
        title: the page title.

    Raises:
        ReportError: an unknown run or metric (the message lists the closest ones), a bad ``where``.
        ImportError: plotly is not installed.
    """
    from ._report_data import compare_at, load_run
    from .names import lower_is_better
    from ._report_html import render_page
    from ._report_media import media_section

    plotly_js = _plotly_js()
    chosen = select_runs([runs] if isinstance(runs, (str, os.PathLike)) else list(runs or ()), project, where, dir)
    wanted, lower = _metric_specs(metrics)
    loaded, seen = [], {}
    for index, selected in enumerate(chosen):
        data, names = load_run(index, selected.dir, selected.row, len(chosen), wanted or None, lower, selected.problem)
        loaded.append(data)
        seen.update(dict.fromkeys(names))
    unknown = [m for m in wanted if m not in seen]
    if unknown:
        raise ReportError("; ".join(f"no run logged metric {m!r}" + close_matches(m, list(seen), "metrics")
                                    for m in unknown))
    names = wanted or sorted({k for run in loaded for k in run.traces})
    directions = {m: lower.get(m, lower_is_better(m)) for m in names}
    steps = compare_at(loaded, names, step)
    system = sorted({k for run in loaded for k in run.system})
    media = media_section(loaded)  # before the page: it may note problems on runs
    page = render_page(loaded, names, system, directions, steps, plotly_js, title or _title(loaded, project), media,
                       step)
    return _write(Path(output), page)


def _title(runs: Sequence[Any], project: str | None) -> str:
    projects = sorted({r.project for r in runs})
    where = project or (projects[0] if len(projects) == 1 else f"{len(projects)} projects")
    return f"epochal report: {len(runs)} run(s) of {where}"


def _write(path: Path, text: str) -> Path:
    """Write the page next to its final name, then rename: a reader never sees half a report."""
    path = path.expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
