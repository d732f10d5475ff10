"""Smoke test of the benchmark harness: the hot-path loops of epochal and the floor run and report figures.

Tiny counts; only the shape of the results is asserted, never the timing.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `benchmarks` is a folder of the repo, not an installed package
    sys.path.insert(0, str(REPO))

from benchmarks import hotpath  # noqa: E402
from benchmarks._harness import Report, in_subprocess  # noqa: E402

KEYS = {"n", "hot_us", "total_us", "init_s"}


def _check(result: dict, n: int) -> None:
    assert set(result) >= KEYS, result
    assert result["n"] == n
    assert result["hot_us"] > 0
    assert result["total_us"] >= result["hot_us"]


def test_floor_and_epochal_hot_path_report_per_call_figures(tmp_path):
    floor = hotpath.measure("floor", n=500, tmp=str(tmp_path))
    _check(floor, 500)
    assert floor["total_us"] == floor["hot_us"]  # nothing to finish

    result = hotpath.measure("epochal", n=500, tmp=str(tmp_path))
    _check(result, 500)
    runs = list((tmp_path / "bench").iterdir())
    assert len(runs) == 1
    assert len(hotpath.stored_records(runs[0])) == 500 + hotpath.WARMUP


def test_subprocess_harness_returns_figures_or_a_reason():
    result = in_subprocess("hotpath:measure", 120, name="floor", n=200)
    _check(result, 200)
    broken = in_subprocess("hotpath:measure", 120, name="no such tracker", n=1)
    assert set(broken) == {"error"} and "KeyError" in broken["error"]


def test_report_renders_targets_as_pass_or_miss():
    report = Report("t", ["tracker", "us"], [["a", "1.0"], ["b", "failed: boom"]],
                    targets=[(True, "fast"), (False, "slow"), (None, "unknown")])
    text = report.render()
    assert "PASS  fast" in text and "MISS  slow" in text and "n/a   unknown" in text
    assert "failed: boom" in text


def test_media_loop_of_epochal_reports_per_call_figures(tmp_path):
    from benchmarks import media

    for kind in ("image", "histogram"):
        result = media.measure("epochal", kind, n=3, tmp=str(tmp_path / kind))
        assert result["n"] == 3 and 0 < result["one_us"] and 0 < result["hot_us"] <= result["total_us"]


def test_sklearn_autolog_bench_measures_a_search(tmp_path):
    from benchmarks import sklearn_autolog

    result = sklearn_autolog.measure("epochal, log_plots=False", tmp=str(tmp_path), repeats=1)
    assert result["seconds"] > 0 and result["cpu"] > 0
    assert result["runs"] == 2 * 6  # the untimed and the timed search: each its run + 5 child runs
