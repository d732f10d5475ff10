"""The ``epochal`` command: list, show, compare and rank stored runs; export to and serve TensorBoard.

    epochal ls [--project P] [--status S] [--json]
    epochal show RUN [--json]
    epochal diff RUN_A RUN_B [--json]
    epochal best --metric val/accuracy [--max | --min] [--project P] [--json]
    epochal export tensorboard [RUN ... | --project P]
    epochal tb [--project P] [--port N]
    epochal report [RUN ...] [--project P] [--where EXPR] [--metric M ...] [--step N] [-o report.html]
    epochal sync --to URI [RUN ...] [--project P]

Every command takes ``--dir D`` (default ``EPOCHAL_DIR`` or ``./epochal-runs``). Exit
status: 0 done, 1 error (unknown run, no runs, ...), 2 bad usage. Needs no pandas.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import signal
import sys
import time
from typing import Any, Iterator, Sequence, TextIO

from .names import lower_is_better
from .query import RunNotFoundError, find_run, list_runs, open_run, root_dir, run_dirs

__all__ = ["main", "build_parser"]

class CommandError(Exception):
    """An error to report on stderr with exit status 1."""


# -- formatting ---------------------------------------------------------------------------------
def _when(stamp: Any) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if isinstance(stamp, (int, float)) else "-"
    except (OverflowError, OSError, ValueError):  # a timestamp no clock can show
        return "-"


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or not math.isfinite(float(min(max(seconds, -1e300), 1e300))):
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=repr)
    return str(value)


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() + "\n")


def _section(title: str, values: dict[str, Any], out: TextIO) -> None:
    out.write(f"\n{title}\n")
    if not values:
        out.write("  (none)\n")
        return
    width = min(max(len(k) for k in values), 40)
    for key, value in values.items():
        out.write(f"  {key.ljust(width)}  {_value(value)}\n")


def _json(data: Any, out: TextIO) -> None:
    out.write(json.dumps(data, indent=1, default=repr) + "\n")


# -- commands -----------------------------------------------------------------------------------
def _cmd_ls(args: argparse.Namespace, out: TextIO) -> int:
    filters = {"status": args.status} if args.status else {}
    rows = list_runs(project=args.project, dir=args.dir, **filters)
    if not rows:
        where = str(root_dir(args.dir)) + (f" (project {args.project!r})" if args.project else "")
        raise CommandError(f"no runs in {where}; pass --dir or set EPOCHAL_DIR to the folder holding your runs")
    if args.limit:
        rows = rows[-args.limit:]
    if args.json:
        _json(rows, out)
        return 0
    table = [["ID", "PROJECT", "NAME", "STATUS", "STARTED", "DURATION", "TAGS"]]
    for row in rows:
        table.append([row["id"], row["project"], str(row["name"]), row["status"], _when(row["start"]),
                      _duration(row["duration"]), ",".join(row["tags"])])
    _table(table, out)
    damaged = [row for row in rows if row["problems"]]
    for row in damaged:
        out.write(f"note: {row['project']}/{row['id']}: {'; '.join(row['problems'])} "
                  f"(epochal show {row['id']} for details)\n")
    return 0


def _cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    run = open_run(args.run, dir=args.dir, project=args.project)
    meta, env = run.metadata, run.environment
    artifacts = run.artifacts()
    problems = run.problems()
    if args.json:
        _json({"dir": str(run.dir), "metadata": meta, "config": run.config, "summary": run.summary,
               "artifacts": [dataclasses.asdict(a) for a in artifacts], "environment": env,
               "media": _media_counts(run), "problems": problems}, out)
        return 0
    git = {**_mapping(env.get("git")), **(meta.get("git") or {})}
    facts = {
        "id": meta.get("id", run.id), "name": meta.get("name"), "project": run.project, "status": meta.get("status"),
        "started": _when(meta.get("started")), "finished": _when(meta.get("finished")),
        "duration": _duration((meta.get("finished") or time.time()) - meta["created"]) if meta.get("created") else "-",
        "tags": ", ".join(meta.get("tags") or []), "notes": meta.get("notes") or "", "host": meta.get("host"),
        "dir": str(run.dir),
    }
    if git.get("repo"):
        facts["git"] = f"{(git.get('commit') or '?')[:12]} on {git.get('branch') or '(detached)'}" + (
            " (dirty)" if git.get("dirty") else "")
    if _mapping(env.get("frameworks")):
        facts["frameworks"] = ", ".join(f"{k} {v}" for k, v in env["frameworks"].items() if k != "epochal")
    out.write(f"run {run.project}/{run.id}\n")
    _section("metadata", facts, out)
    _section("config", _flat(run.config), out)
    _section("summary", run.summary, out)
    _section("datasets", {k: f"{v.get('kind')} sha256 {str(v.get('sha256'))[:12]}" for k, v in run.datasets.items()}, out)
    out.write("\nartifacts\n")
    if not artifacts:
        out.write("  (none)\n")
    for a in artifacts:
        aliases = f" [{', '.join(a.aliases)}]" if a.aliases else ""
        out.write(f"  {a.name}:{a.version}{aliases}  {a.type}  {a.files} file(s) {a.size} bytes  {a.path}\n")
    _show_media(run, out)
    if meta.get("error"):
        out.write("\nerror\n  " + str(meta["error"]).strip().replace("\n", "\n  ") + "\n")
    if problems:
        out.write("\nproblems (shown: what could be read)\n" + "".join(f"  {p}\n" for p in problems))
    return 0


def _media_counts(run: Any) -> dict[str, dict[str, Any]]:
    """The media keys of a run: ``{key: {"type": ..., "files": n}}``."""
    from ._media_store import read_index

    counts: dict[str, dict[str, Any]] = {}
    for row in read_index(run.dir):
        entry = counts.setdefault(row["key"], {"type": row["type"], "files": 0})
        entry["files"] += 1
    return dict(sorted(counts.items()))


def _show_media(run: Any, out: TextIO) -> None:
    counts = _media_counts(run)
    if counts:
        out.write("\nmedia\n")
        for key, entry in counts.items():
            out.write(f"  {key}  {entry['type']}  {entry['files']} file(s)\n")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _flat(values: dict[str, Any]) -> dict[str, Any]:
    from .query import flatten

    return flatten(values)


def _cmd_diff(args: argparse.Namespace, out: TextIO) -> int:
    from .query import diff

    result = diff(open_run(args.a, dir=args.dir), open_run(args.b, dir=args.dir))
    if args.json:
        _json(result, out)
        return 0
    out.write(f"a: {result['a']}\nb: {result['b']}\n")
    for section in ("config", "summary", "datasets", "git", "packages"):
        changes = result[section]
        out.write(f"\n{section}" + ("" if changes else ": same") + "\n")
        if changes:
            width = min(max(len(k) for k in changes), 40)
            for key, (va, vb) in changes.items():
                out.write(f"  {key.ljust(width)}  {_value(va)} -> {_value(vb)}\n")
    if result.get("git_diff"):
        out.write("\ngit diff of the two runs' uncommitted changes\n" + result["git_diff"])
    return 0


def _cmd_best(args: argparse.Namespace, out: TextIO) -> int:
    metric = args.metric
    if args.max or args.min:
        maximize = bool(args.max)
        how = "--max" if maximize else "--min"
    else:
        maximize = not lower_is_better(metric)
        how = f"{'highest' if maximize else 'lowest'} (guessed from the name; pass --max or --min)"
    rows = list_runs(project=args.project, dir=args.dir)
    if not rows:
        raise CommandError(f"no runs in {root_dir(args.dir)}" + (f" (project {args.project!r})" if args.project else ""))
    key = f"summary.{metric}"
    scored = [r for r in rows if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
              and not math.isnan(r[key])]
    if not scored:
        known = sorted({k[len("summary."):] for r in rows for k in r if k.startswith("summary.")})
        raise CommandError(f"no run has a summary value for {metric!r}; metrics seen: {', '.join(known) or 'none'}")
    best = (max if maximize else min)(scored, key=lambda r: r[key])
    if args.json:
        _json({"id": best["id"], "project": best["project"], "name": best["name"], "metric": metric,
               "value": best[key], "maximize": maximize, "runs_compared": len(scored)}, out)
        return 0
    out.write(f"{best['project']}/{best['id']}  {metric} = {_value(best[key])}  "
              f"({how}, best of {len(scored)} run(s); name {best['name']})\n")
    return 0


def _chosen_runs(args: argparse.Namespace) -> list:
    """The run folders named by ``RUN ...``, else every run (of ``--project``); at least one."""
    if args.runs:
        return [find_run(r, dir=args.dir, project=args.project) for r in args.runs]
    dirs = list(run_dirs(root_dir(args.dir), args.project))
    if not dirs:
        raise CommandError(f"no runs in {root_dir(args.dir)}" + (f" (project {args.project!r})" if args.project else ""))
    return dirs


def _cmd_export(args: argparse.Namespace, out: TextIO) -> int:
    if args.format != "tensorboard":
        raise CommandError(f"unknown export format {args.format!r}; choose: tensorboard")
    from .sinks.tensorboard import export_runs

    dirs = _chosen_runs(args)
    try:
        written = export_runs(dirs)
    except ImportError as exc:
        raise CommandError(f"TensorBoard export is unavailable ({exc}); pip install 'epochal[tensorboard]'") from None
    out.write(f"TensorBoard export of {len(dirs)} run(s) done ({written} written; each run's tensorboard/ folder)\n")
    return 0


def _cmd_tb(args: argparse.Namespace, out: TextIO) -> int:
    try:
        from .sinks.tensorboard import serve
    except ImportError as exc:
        raise CommandError(f"TensorBoard is unavailable ({exc}); pip install 'epochal[tensorboard]'") from None
    with _signals_exit(*[getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]):  # so serve() stops its TensorBoard child on the way out
        return int(serve(root_dir(args.dir), args.project, args.port) or 0)


@contextlib.contextmanager
def _signals_exit(*signals: int) -> Iterator[None]:
    """While inside, each of ``signals`` raises ``SystemExit(128 + signal)`` in the main thread."""
    def leave(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, leave) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    from .reporting import report

    path = report(args.runs, project=args.project, where=args.where, metrics=args.metric, output=args.output,
                  dir=args.dir, step=args.step, title=args.title)
    out.write(f"report of {path.stat().st_size / 1e6:.1f} MB written: {path}\n")
    return 0


def _add_report(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("report", parents=[common], help="compare runs in one offline HTML file")
    p.add_argument("runs", nargs="*", metavar="RUN", help="run ids (default: every run, or --project's)")
    p.add_argument("--project", "-p")
    p.add_argument("--where", "-w", help="keep runs matching e.g. \"config.lr > 0.01 and 'baseline' in tags\"")
    p.add_argument("--metric", "-m", action="append", help="a metric to show (repeat); NAME:min or NAME:max "
                   "says which way is better (default: all metrics, direction guessed from the name)")
    p.add_argument("--step", type=int, help="compare values at this step, exactly (default: the last step all runs reached); the page lets a reader choose another")
    p.add_argument("--title")
    p.add_argument("--output", "-o", default="report.html", help="the HTML file to write (default report.html)")
    p.set_defaults(func=_cmd_report)


def _cmd_sync(args: argparse.Namespace, out: TextIO) -> int:
    from .sinks.mlflow_rest import resolve_uri
    from .sync import SyncError, sync_runs

    uri = resolve_uri(args.to)
    if not uri:
        raise CommandError("no server given: pass --to URI (e.g. http://127.0.0.1:5000) or set EPOCHAL_MLFLOW_URI")
    dirs = _chosen_runs(args)
    try:
        sync_runs(uri, dirs, out)
    except SyncError as exc:
        raise CommandError(str(exc)) from None
    return 0


def _add_sync(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("sync", parents=[common], help="push stored runs to an MLflow tracking server")
    p.add_argument("--to", metavar="URI", help="the server (default: $EPOCHAL_MLFLOW_URI or $MLFLOW_TRACKING_URI)")
    p.add_argument("runs", nargs="*", metavar="RUN", help="run ids (default: every run, or --project's)")
    p.add_argument("--project", "-p")
    p.set_defaults(func=_cmd_sync)


# -- the parser -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", help="the run root (default: $EPOCHAL_DIR or ./epochal-runs)")
    parser = argparse.ArgumentParser(prog="epochal", description="Look at runs recorded by epochal.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("ls", parents=[common], help="list runs as a table")
    p.add_argument("--project", "-p")
    p.add_argument("--status", choices=["running", "finished", "failed", "crashed"])
    p.add_argument("--limit", "-n", type=int, help="show only the newest N runs")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_ls)

    p = sub.add_parser("show", parents=[common], help="metadata, config, summary and artifacts of a run")
    p.add_argument("run", help="run id (or project/id, a unique id prefix, a run name, a run folder)")
    p.add_argument("--project", "-p")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("diff", parents=[common], help="what differs between two runs")
    p.add_argument("a", metavar="RUN_A")
    p.add_argument("b", metavar="RUN_B")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_diff)

    p = sub.add_parser("best", parents=[common], help="the best run of a project by a summary metric")
    p.add_argument("--metric", "-m", required=True, help="e.g. val/accuracy")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--max", action="store_true", help="higher is better")
    group.add_argument("--min", action="store_true", help="lower is better")
    p.add_argument("--project", "-p")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_best)

    p = sub.add_parser("export", parents=[common], help="export runs to another format (tensorboard)")
    p.add_argument("format", choices=["tensorboard"])
    p.add_argument("runs", nargs="*", metavar="RUN", help="run ids (default: every run, or --project's)")
    p.add_argument("--project", "-p")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("tb", parents=[common], help="serve the runs in TensorBoard")
    p.add_argument("--project", "-p")
    p.add_argument("--port", type=int)
    p.set_defaults(func=_cmd_tb)
    _add_report(sub, common)
    _add_sync(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``epochal`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args, sys.stdout)
    except (CommandError, RunNotFoundError, KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        sys.stderr.write(f"epochal {args.command}: error: {message}\n")
        return 1
    except ImportError as exc:
        sys.stderr.write(f"epochal {args.command}: error: {exc}\n")
        return 1
    except BrokenPipeError:  # `epochal ls | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
