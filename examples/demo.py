"""The epochal demo: every framework example on tiny models and synthetic data, into one project.

    python examples/demo.py [--dir ./epochal-runs] [--only sklearn,keras] [--tensorboard] [--verbose]

Runs examples/<framework>_example.py for scikit-learn, Keras, Lightning, Hugging Face
Transformers and Ultralytics YOLO (each in its own process, ``EPOCHAL_DIR`` and
``EPOCHAL_PROJECT=demo`` set; a framework that is not installed is skipped), then prints
the runs table and the command that opens them in TensorBoard (``--tensorboard`` starts it).
About 2-4 minutes on 2 CPU cores; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLES = {  # example -> the module it needs
    "sklearn": "sklearn",
    "keras": "keras",
    "lightning": "lightning",
    "transformers": "transformers",
    "ultralytics": "ultralytics",
}
PROJECT = "demo"
HEADLINE = ("best/val/mAP50(B)", "val/mAP50(B)", "val/accuracy", "test/accuracy", "val/score", "train/accuracy",
            "val/loss", "test/loss", "train/loss")
# Ultralytics turns on MLflow/DVC/... logging when those are installed; the demo records with epochal only.
_YOLO_SETTINGS = '{"sync": false, "clearml": false, "comet": false, "dvc": false, "mlflow": false, ' \
                 '"raytune": false, "tensorboard": false, "wandb": false}'


def _environment(root: Path, scratch: Path) -> dict[str, str]:
    (scratch / "Ultralytics").mkdir(parents=True, exist_ok=True)
    (scratch / "Ultralytics" / "settings.json").write_text(_YOLO_SETTINGS)
    env = dict(os.environ, EPOCHAL_DIR=str(root), EPOCHAL_PROJECT=PROJECT, YOLO_CONFIG_DIR=str(scratch),
               YOLO_OFFLINE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.setdefault("KERAS_BACKEND", "torch")  # tensorflow is not needed
    return env


def run_example(name: str, env: dict[str, str], cwd: Path, verbose: bool) -> tuple[str, float, str]:
    """Run one example in its own process: (outcome, seconds, output)."""
    script = Path(__file__).resolve().parent / f"{name}_example.py"
    if not script.is_file():
        return "missing", 0.0, f"{script} does not exist"
    if importlib.util.find_spec(EXAMPLES[name]) is None:
        return "skipped", 0.0, f"{EXAMPLES[name]} is not installed: pip install 'epochal[{name}]'"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(script)], check=False, env=env, cwd=cwd, text=True,
                          stdout=None if verbose else subprocess.PIPE, stderr=subprocess.STDOUT)
    return ("ok" if done.returncode == 0 else "failed"), time.perf_counter() - start, done.stdout or ""


def runs_table(root: Path, since: float):
    """The runs this demo made: project, name, status, seconds and one headline metric each."""
    import epochal

    frame = epochal.runs(dir=str(root))
    if frame.empty:
        return frame
    frame = frame[frame["start"] >= _timestamp(since)].copy()

    def headline(row) -> str:
        for key in HEADLINE:  # sklearn names post-fit metrics after their data set: test/accuracy@X_test
            for column in [f"summary.{key}", *sorted(c for c in row.index if c.startswith(f"summary.{key}@"))]:
                value = row.get(column)
                if isinstance(value, (int, float)) and not math.isnan(value):
                    return f"{column.removeprefix('summary.')} = {value:.4g}"
        return ""

    frame["metric"] = frame.apply(headline, axis=1)
    frame["seconds"] = frame["duration"].round(1)
    return frame[["project", "id", "name", "status", "seconds", "metric"]].reset_index(drop=True)


def _timestamp(seconds: float):
    import pandas

    return pandas.to_datetime(seconds - 1, unit="s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=os.environ.get("EPOCHAL_DIR") or "epochal-runs", help="run root")
    parser.add_argument("--only", help="comma-separated subset of: " + ", ".join(EXAMPLES))
    parser.add_argument("--tensorboard", action="store_true", help="serve the runs in TensorBoard at the end")
    parser.add_argument("--verbose", "-v", action="store_true", help="show each example's own output")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(EXAMPLES)
    unknown = sorted(set(names) - set(EXAMPLES))
    if unknown:
        parser.error(f"unknown example(s) {unknown}; choose from {', '.join(EXAMPLES)}")

    root = Path(args.dir).expanduser().absolute()
    started = time.time()
    outcomes = {}
    with tempfile.TemporaryDirectory(prefix="epochal-demo-") as scratch:
        env = _environment(root, Path(scratch) / "ultralytics")
        for index, name in enumerate(names, 1):
            print(f"[{index}/{len(names)}] {name:<13}", end=" ", flush=True)
            outcome, seconds, output = run_example(name, env, Path(scratch), args.verbose)
            outcomes[name] = outcome
            print(f"{outcome} ({seconds:.1f} s)" if seconds else f"{outcome}: {output}", flush=True)
            if outcome == "failed" and not args.verbose:
                print("    " + "\n    ".join(output.rstrip().splitlines()[-25:]))

    table = runs_table(root, started)
    print(f"\n{len(table)} run(s) in {root} ({time.time() - started:.0f} s in all):")
    print(table.to_string(index=False) if len(table) else "  (none)")
    projects = sorted(set(table["project"])) if len(table) else [PROJECT]
    command = [_epochal_command(), "tb"] + (["--project", PROJECT] if projects == [PROJECT] else [])
    if root != Path("epochal-runs").absolute():
        command += ["--dir", str(root)]
    print("\nsee them in TensorBoard:  " + " ".join(command))
    where = f" --dir {root}" if "--dir" in command else ""
    cli_name = command[0]
    ids = list(table["id"]) if len(table) else ["RUN_A", "RUN_B"]
    print(f"list, inspect, compare:   {cli_name} ls{where}")
    print(f"                          {cli_name} show {ids[-1]}{where}")
    if len(ids) > 1:
        print(f"                          {cli_name} diff {' '.join(_diff_pair(root, ids))}{where}")
    if os.environ.get("NOX_CURRENT_SESSION"):
        print("                          (or run the demo again, TensorBoard at the end: python -m nox -s demo -- --tensorboard)")
    reported = write_report(root, table, f"{cli_name} report --project {PROJECT}{where} -o OTHER.html")
    if args.tensorboard:
        from epochal.cli import main as cli

        cli(command[1:])
    return 1 if any(o in ("failed", "missing") for o in outcomes.values()) or not reported else 0


def _diff_pair(root: Path, ids: list[str]) -> tuple[str, str]:
    """Two runs worth diffing: the first pair with the same config keys and some value apart (else the first two)."""
    import epochal

    configs = {}
    for run_id in ids:
        try:
            configs[run_id] = epochal.open_run(f"{PROJECT}/{run_id}", dir=str(root)).config
        except (OSError, LookupError, ValueError):  # an unreadable run is simply not offered
            continue
    for index, a in enumerate(configs):
        for b in list(configs)[index + 1:]:
            if configs[a].keys() == configs[b].keys() and configs[a] != configs[b]:
                return a, b
    return ids[0], ids[1]


def _epochal_command() -> str:
    """The ``epochal`` command as the user's own shell runs it.

    ``epochal`` when the user's PATH finds this environment's copy; else its full path. nox puts its
    venv first on the PATH of this process only (``NOX_CURRENT_SESSION`` is set), so that folder does
    not count: after ``python -m nox -s demo`` a plain ``epochal`` is not found in the user's shell.
    """
    local = Path(sys.executable).parent / "epochal"
    if not local.exists():
        return f"{sys.executable} -m epochal"
    path = os.environ.get("PATH", "")
    if os.environ.get("NOX_CURRENT_SESSION"):
        path = os.pathsep.join(p for p in path.split(os.pathsep) if p and Path(p).absolute() != local.parent.absolute())
    found = shutil.which("epochal", path=path)
    return "epochal" if found and Path(found).resolve() == local.resolve() else str(local)


def write_report(root: Path, table, command: str) -> bool:
    """One offline HTML page comparing the demo's runs; prints its path."""
    if not len(table):
        return True
    import epochal

    try:
        path = epochal.report([f"{p}/{i}" for p, i in zip(table["project"], table["id"])], dir=root,
                              output=root / "report.html", title="epochal demo: every framework, one page")
    except (ImportError, ValueError) as exc:
        print(f"report not written: {exc}")
        return False
    print(f"compare them offline:     {path}  (open it in a browser; another: {command})")
    return True


if __name__ == "__main__":
    sys.exit(main())
