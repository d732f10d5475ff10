"""Which runs a report shows: run ids, a project, a ``--where`` expression.

A ``where`` expression is a Python-like condition over a run's row of :func:`epochal.query.list_runs`
(``id``, ``name``, ``status``, ``tags``, ``host``, ``config.*``, ``summary.*`` ...)::

    config.lr > 0.01 and status == "finished"
    "baseline" in tags or config["model.depth"] >= 4
    summary["val/acc"] > 0.9

A bare name that is no column reads ``config.<name>``, then ``summary.<name>``. Only
comparisons, ``and``/``or``/``not``, literals and names are allowed: nothing is executed.
A comparison between values that cannot be compared (a missing key, text against a number)
is false. A name that no run has is an error listing the closest columns.
"""

from __future__ import annotations

import ast
import difflib
import operator
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .query import MISSING, RunNotFoundError, find_run, run_row, root_dir, run_dirs
from .store import RUN_FILE, read_json

__all__ = ["ReportError", "Selected", "select_runs", "compile_where", "close_matches"]


class ReportError(ValueError):
    """A report cannot be made as asked (unknown run, metric or column; bad expression); says how to fix it."""


@dataclass
class Selected:
    """One run chosen for the report: its folder, its runs-table row (``None`` when unreadable) and why not."""

    dir: Path
    row: dict[str, Any] | None
    problem: str | None = None


def _selected(run_dir: Path, now: float) -> Selected:
    try:
        row = run_row(run_dir, now)
    except Exception as exc:  # a run.json of the wrong shape: listed with its problem, never fatal
        return Selected(run_dir, None, f"run.json cannot be listed ({type(exc).__name__}: {exc})")
    return Selected(run_dir, row)


def close_matches(word: str, choices: Sequence[str], what: str) -> str:
    """``"; closest <what>: a, b"`` or a few of the choices when nothing is close."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word, choices, n=5, cutoff=0.5)
    if close:
        return f"; closest {what}: {', '.join(close)}"
    return f"; {len(choices)} {what} known, e.g. {', '.join(choices[:8])}" if choices else f"; no {what} at all"


def select_runs(runs: Sequence[str | os.PathLike[str]] = (), project: str | None = None, where: str | None = None,
                dir: str | os.PathLike[str] | None = None) -> list[Selected]:
    """The runs named (in that order), else every run of ``project`` (or of the root), oldest first; filtered by ``where``.

    Raises :class:`ReportError` naming every unknown run id with its closest ids, or when nothing is left.
    """
    now = time.time()
    if runs:
        dirs, unknown = [], []
        for run in runs:
            try:
                dirs.append(find_run(run, dir=dir, project=project))
            except RunNotFoundError as exc:
                unknown.append(str(exc) + _close_names(os.fspath(run), dir, project))
        if unknown:
            raise ReportError("; ".join(unknown) if len(unknown) == 1 else "unknown runs:\n  " + "\n  ".join(unknown))
        dirs = list(dict.fromkeys(dirs))
    else:
        dirs = list(run_dirs(root_dir(dir), project))
        if not dirs:
            where_text = f"{root_dir(dir)}" + (f" (project {project!r})" if project else "")
            raise ReportError(f"no runs in {where_text}; pass dir=/--dir or set EPOCHAL_DIR to the folder holding your runs")
    chosen = [_selected(d, now) for d in dirs]
    if not runs:
        chosen.sort(key=lambda s: ((s.row or {}).get("start") or 0.0, s.dir.name))
    if where:
        test = compile_where(where, [s.row for s in chosen if s.row is not None])
        chosen = [s for s in chosen if s.row is not None and test(s.row)]
        if not chosen:
            raise ReportError(f"no run matches --where {where!r}; try `epochal ls` to see the runs")
    return chosen


def _close_names(text: str, dir: str | os.PathLike[str] | None, project: str | None) -> str:
    """``"; closest names: ..."`` among the stored runs' names, or ``""``."""
    names = []
    for run_dir in run_dirs(root_dir(dir), project):
        meta = read_json(run_dir / RUN_FILE)
        if isinstance(meta, dict) and isinstance(meta.get("name"), str):
            names.append(meta["name"])
    close = difflib.get_close_matches(text, sorted(set(names)), n=5, cutoff=0.6)
    return f"; closest names: {', '.join(close)}" if close else ""


_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}


def compile_where(expression: str, rows: Sequence[Mapping[str, Any]]) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over runs-table rows for ``expression`` (see the module docstring); checks names against ``rows``."""
    try:
        tree = ast.parse(expression.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        reason = exc.msg if isinstance(exc, SyntaxError) else str(exc) or type(exc).__name__
        raise ReportError(f"--where {expression[:200]!r} is not an expression ({reason}); "
                          "write e.g. config.lr > 0.01 and status == 'finished'") from None
    columns = {k for row in rows for k in row}

    def key_of(node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            base = key_of(node.value)
            return None if base is None else f"{base}.{node.attr}"
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            base = key_of(node.value)
            return None if base is None else f"{base}.{node.slice.value!s}"
        return None

    def column(key: str) -> str:
        for candidate in (key, f"config.{key}", f"summary.{key}"):
            if candidate in columns:
                return candidate
        raise ReportError(f"--where: no run has a column {key!r}" + close_matches(key, sorted(columns), "columns"))

    def build(node: ast.AST) -> Callable[[Mapping[str, Any]], Any]:
        if isinstance(node, ast.BoolOp):
            parts = [build(v) for v in node.values]
            if isinstance(node.op, ast.And):
                return lambda row: all(p(row) for p in parts)
            return lambda row: any(p(row) for p in parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
            inner = build(node.operand)
            if isinstance(node.op, ast.Not):
                return lambda row: not inner(row)
            sign = -1 if isinstance(node.op, ast.USub) else 1
            return lambda row: sign * inner(row)
        if isinstance(node, ast.Compare):
            first = build(node.left)
            rest = [(_COMPARE[type(op)], build(v)) for op, v in zip(node.ops, node.comparators)
                    if type(op) in _COMPARE]
            if len(rest) != len(node.ops):
                raise ReportError(f"--where {expression!r}: use ==, !=, <, <=, >, >=, in, not in")

            def compare(row: Mapping[str, Any]) -> bool:
                left = first(row)
                for op, get in rest:
                    right = get(row)
                    try:
                        if left is MISSING or right is MISSING or not op(left, right):
                            return False
                    except TypeError:
                        return False
                    left = right
                return True
            return compare
        if isinstance(node, ast.Constant):
            constant = node.value
            return lambda row: constant
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = [build(e) for e in node.elts]
            return lambda row: [i(row) for i in items]
        key = key_of(node)
        if key is not None:
            name = column(key)
            return lambda row: row.get(name, MISSING)
        raise ReportError(f"--where {expression!r}: {type(node).__name__} is not allowed; write comparisons "
                          "joined by and/or, e.g. config.lr > 0.01 and 'baseline' in tags")

    predicate = build(tree)

    def test(row: Mapping[str, Any]) -> bool:
        try:
            return bool(predicate(row))
        except TypeError:  # e.g. -"text"
            return False
    return test
