"""``python -m benchmarks [--quick] [--only TOPIC[,TOPIC]]``: every topic, one side-by-side table each."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from importlib import metadata

from ._harness import Report

TOPICS = {
    "hotpath": "hotpath",
    "import": "imports",
    "readback": "readback",
    "rss": "rss",
    "sampler": "sampler",
    "listing": "listing",
    "export": "export",
    "lightning": "lightning_table",
    "media": "media",
    "report": "report",
    "mlflow": "mirror",
    "sklearn": "sklearn_autolog",
    "artifact": "artifacts",
}
ANCHOR_DISTS = ("epochal", "trackio", "wandb", "mlflow", "dvclive", "tensorboard", "torch", "lightning", "pandas")


def _versions() -> str:
    found = []
    for dist in ANCHOR_DISTS:
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            found.append(f"{dist} missing")
    return ", ".join(found)


def _topics(only: list[str] | None) -> list[str]:
    if not only:
        return list(TOPICS)
    chosen = [t.strip() for part in only for t in part.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in TOPICS]
    if unknown:
        raise SystemExit(f"unknown topic(s) {', '.join(unknown)}; choose from {', '.join(TOPICS)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run of every topic")
    parser.add_argument("--only", action="append", metavar="TOPIC",
                        help=f"run only these topics (comma-separated, repeatable): {', '.join(TOPICS)}")
    args = parser.parse_args(argv)
    topics = _topics(args.only)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"epochal benchmarks{' (quick)' if args.quick else ''}: python {platform.python_version()}, "
          f"{os.cpu_count()} cores, load average {load}")
    print(_versions())
    print()
    started = time.perf_counter()
    reports: list[Report] = []
    for topic in topics:
        t0 = time.perf_counter()
        try:
            report = importlib.import_module(f"benchmarks.{TOPICS[topic]}").run(quick=args.quick)
        except Exception as exc:  # one topic's crash never hides the others
            report = Report(topic, ["topic"], [[f"failed: {exc!r}"[:120]]])
        report.notes.append(f"{topic} took {time.perf_counter() - t0:.0f} s")
        reports.append(report)
        print(report.render(), flush=True)
        print(flush=True)
    print(f"== targets ({time.perf_counter() - started:.0f} s in all) ==")
    for report in reports:
        for ok, text in report.targets:
            print(f"{'PASS' if ok else 'MISS' if ok is False else 'n/a '}  {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
