"""`epochal report` / `epochal.report()`: run selection, figures, downsampling, bad input (no browser here).

The page itself is opened in a real Chromium by tests/integrations/test_report_browser.py.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import epochal
from epochal._report_data import MAX_POINTS, downsample, points_per_trace
from epochal.cli import main
from epochal.reporting import ReportError


def _payload(path):
    text = path.read_text(encoding="utf-8")
    found = re.search(r'<script type="application/json" id="epochal-data">(.*?)</script>', text, re.S)
    return json.loads(found.group(1)), text


def _decode(spec):
    import base64

    return np.frombuffer(base64.b64decode(spec["bdata"]), dtype="<" + spec["dtype"])


@pytest.fixture
def runs():
    made = []
    for lr, depth, losses in ((0.1, 2, [1.0, 0.5, 0.4]), (0.01, 2, [1.0, 0.8, 0.2, 0.3]), (0.01, 3, [0.9, 0.6])):
        with epochal.init(project="cmp", name=f"lr{lr}-d{depth}", config={"lr": lr, "model": {"depth": depth},
                          "seed": 7}, tags=["sweep"], system_interval=0) as run:
            for step, loss in enumerate(losses):
                run.log({"train/loss": loss, "val/acc": 1 - loss}, step=step)
        made.append(run)
    return made


def test_downsample_keeps_everything_that_fits_and_min_max_of_every_bucket():
    values = np.array([3.0, 1.0, 2.0])
    assert downsample(values, 10).tolist() == [0, 1, 2]
    rng = np.random.default_rng(0)
    values = rng.normal(size=100_000)
    values[31_337] = 50.0  # a spike
    values[77_000] = -50.0
    kept = downsample(values, 1000)
    assert len(kept) <= 1000 and kept[0] == 0 and kept[-1] == len(values) - 1
    assert 31_337 in kept and 77_000 in kept
    assert np.all(np.diff(kept) > 0)
    # every bucket's extremes are there
    size = -(-len(values) // ((1000 - 2) // 2))
    for lo in range(0, len(values), size):
        hi = lo + size
        part = values[lo:hi]
        assert values[kept[(kept >= lo) & (kept < hi)]].max() == part.max()
        assert values[kept[(kept >= lo) & (kept < hi)]].min() == part.min()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e9, 1e9), min_size=1, max_size=3000), st.integers(4, 500))
def test_downsample_never_exceeds_its_budget_and_keeps_the_extremes(values, max_points):
    values = np.array(values)
    kept = downsample(values, max_points)
    assert len(kept) <= max_points and np.all(np.diff(kept) > 0)
    assert kept[0] == 0 and kept[-1] == len(values) - 1
    assert values[kept].min() == values.min() and values[kept].max() == values.max()


def test_point_budget_is_shared_between_runs_and_metrics():
    assert points_per_trace(1, 1) == MAX_POINTS
    assert points_per_trace(200, 20) == 200
    assert points_per_trace(10_000, 100) == 100  # never fewer than MIN_POINTS


def test_report_tables_and_traces(runs, tmp_path):
    out = epochal.report(project="cmp", output=tmp_path / "r.html")
    again = epochal.report(project="cmp", output=tmp_path / "r2.html")  # the module never hides the function
    assert out.is_file() and again.is_file()
    data, text = _payload(out)
    assert [r["name"] for r in data["runs"]] == [r.name for r in runs]
    charts = {c["title"]: c for c in data["charts"] if c["kind"] == "metric"}
    assert sorted(charts) == ["train/loss", "val/acc"]
    loss = charts["train/loss"]
    assert loss["direction"] == "min" and charts["val/acc"]["direction"] == "max"
    assert [t["logged"] for t in loss["traces"]] == [3, 4, 2] == [t["kept"] for t in loss["traces"]]
    assert _decode(loss["traces"][1]["y"]).astype(float).round(6).tolist() == [1.0, 0.8, 0.2, 0.3]
    assert _decode(loss["traces"][1]["x"]["step"]).tolist() == [0, 1, 2, 3]
    # runs table: last, best (min for a loss), value at the last step every run reached (1)
    row = re.search(r'<tr data-run="1">(.*?)</tr>', text).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[5:8] == ["0.3", "0.2", "0.8"]  # train/loss: last, best, at step 1
    assert "at step 1</th>" in text
    # config: lr and model.depth differ, seed does not
    assert re.findall(r'<tr class="differs"><th>(.*?)</th>', text) == ["lr", "model.depth"]
    assert re.findall(r'<tr class="same"><th>(.*?)</th>', text) == ["seed"]
    assert "http://" not in text.split("<script>")[0] and "<script src" not in text
    assert data["parcoords"]["dimensions"][0]["label"] == "lr"
    git = epochal.open_run(runs[0].id).environment["git"]  # the tests run inside this repository's checkout
    where = re.search(r'<tr data-run="0">.*?</tr>', text.split('id="where-table"')[1]).group(0)
    origin = git.get("remote") or git["root"]  # a clone shows where it came from
    assert str(runs[0].dir) in where and git["commit"][:12] in where and origin in where
    assert ("(dirty: uncommitted changes)" if git["dirty"] else "(clean)") in where


def test_one_run_without_metrics(tmp_path):
    with epochal.init(project="solo", config={"a": 1, "b": {"c": "x"}}, system_interval=0):
        pass
    data, text = _payload(epochal.report(project="solo", output=tmp_path / "r.html"))
    assert data["charts"] == [] and data["parcoords"] is None
    assert "No metrics were logged" in text and "One run: nothing to compare" in text
    assert re.findall(r'<tr class="same"><th>(.*?)</th>', text) == ["a", "b.c"]
    assert 'id="config-table" class="show-all"' in text


def test_chosen_step_metric_direction_and_where(runs, tmp_path):
    out = epochal.report(project="cmp", metrics=["train/loss:max"], step=0, where="config.lr < 0.05",
                         output=tmp_path / "r.html")
    data, text = _payload(out)
    assert [r["name"] for r in data["runs"]] == ["lr0.01-d2", "lr0.01-d3"]
    assert [c["title"] for c in data["charts"] if c["kind"] == "metric"] == ["train/loss"]
    assert "best (max)" in text and "at step 0</th>" in text
    row = re.findall(r"<td[^>]*>(.*?)</td>", re.search(r'<tr data-run="0">(.*?)</tr>', text).group(1))
    assert row[5:8] == ["0.3", "1", "1"]
    out = epochal.report(project="cmp", where="'sweep' in tags and model.depth == 3", output=tmp_path / "r.html")
    assert [r["name"] for r in _payload(out)[0]["runs"]] == ["lr0.01-d3"]


def test_bad_input_lists_close_matches(runs, tmp_path):
    with pytest.raises(ReportError, match=r"no run 'zzz'"):
        epochal.report(["zzz"], output=tmp_path / "r.html")
    with pytest.raises(ReportError, match=r"'train/los'.*closest metrics: train/loss"):
        epochal.report(metrics=["train/los"], output=tmp_path / "r.html")
    with pytest.raises(ReportError, match=r"no run has a column 'config.lrr'.*closest columns: config.lr"):
        epochal.report(where="config.lrr > 0", output=tmp_path / "r.html")
    with pytest.raises(ReportError, match="Call is not allowed"):
        epochal.report(where="__import__('os').system('true')", output=tmp_path / "r.html")
    with pytest.raises(ReportError, match="not an expression"):
        epochal.report(where="lr >", output=tmp_path / "r.html")
    with pytest.raises(ReportError, match="no run matches"):
        epochal.report(where="lr > 5", output=tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_cli(runs, tmp_path, capsys):
    target = tmp_path / "out" / "cmp.html"
    assert main(["report", runs[0].id, runs[2].name, "-m", "val/acc", "-o", str(target)]) == 0
    assert str(target) in capsys.readouterr().out
    data, _ = _payload(target)
    assert [r["id"] for r in data["runs"]] == [runs[0].id, runs[2].id]
    id_typo = runs[0].id[:-1] + ("x" if runs[0].id[-1] != "x" else "y")
    assert main(["report", id_typo, "-o", str(tmp_path / "bad.html")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("epochal report: error: no run") and runs[0].id in err
    assert main(["report", "--metric", "val/ac", "-o", str(tmp_path / "bad.html")]) == 1
    assert "closest metrics: val/acc" in capsys.readouterr().err


def test_nan_inf_empty_crashed_and_malformed_runs_render(tmp_path, run_root):
    with epochal.init(project="odd", name="nan", system_interval=0) as run:
        for step, value in enumerate([1.0, math.nan, 2.0, math.inf, -math.inf, 0.5]):
            run.log({"loss": value}, step=step)
    with epochal.init(project="odd", name="empty", config={"x": 1}, system_interval=0):
        pass
    crashed = subprocess.run([sys.executable, "-c", (
        "import os, signal, epochal\n"
        "run = epochal.init(project='odd', name='crashed', system_interval=0)\n"
        "run.log({'loss': 3.0}, step=0); run.log({'loss': 2.0}, step=1); run.flush()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")], env={**os.environ, "EPOCHAL_DIR": str(run_root)})
    assert crashed.returncode == -9
    broken = run_root / "odd" / "broken"
    broken.mkdir(parents=True)
    (broken / "run.json").write_text("{not json")
    (broken / "config.json").write_text("[1, 2")
    (broken / "metrics.bin").write_bytes(b"EPB1 garbage that is no block")
    out = epochal.report(project="odd", output=tmp_path / "r.html")
    data, text = _payload(out)
    names = [r["name"] for r in data["runs"]]
    assert sorted(names) == ["broken", "crashed", "empty", "nan"]
    assert "run.json: not valid JSON" in text and "config.json: not valid JSON" in text
    assert "damaged stretch" in text
    loss = next(c for c in data["charts"] if c["title"] == "loss")
    by_run = {data["runs"][t["run"]]["name"]: t for t in loss["traces"]}
    assert sorted(by_run) == ["crashed", "nan"]
    nan = by_run["nan"]
    assert nan["logged"] == nan["kept"] == 6
    assert nan["nonfinite"]["label"] == ["nan", "inf", "-inf"] and nan["nonfinite"]["step"] == [1, 3, 4]
    y = _decode(nan["y"])
    assert np.isnan(y[[1, 3, 4]]).all() and y[[0, 2, 5]].tolist() == [1.0, 2.0, 0.5]
    assert re.search(r'class="status crashed">crashed', text)
    assert loss["range"] == [0.5, 3.0]


def test_import_epochal_imports_no_charting_library():
    code = "import sys, epochal; print([m for m in ('plotly', 'numpy', 'pandas') if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_wrong_shaped_run_json_and_misspelt_name(runs, tmp_path, run_root):
    odd = run_root / "cmp" / "odd-run"
    odd.mkdir()
    (odd / "run.json").write_text(json.dumps({"name": "odd", "tags": 5, "created": "yesterday"}))
    out = epochal.report(project="cmp", output=tmp_path / "r.html")
    data, text = _payload(out)
    assert len(data["runs"]) == 4 and "run.json: &#x27;tags&#x27; holds a int" in text
    with pytest.raises(ReportError, match=r"closest names: lr0.01-d3, lr0.01-d2"):
        epochal.report(["lr0.01-d"], output=tmp_path / "r.html")


def test_missing_plotly_says_how_to_install(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "plotly.offline", None)
    with pytest.raises(ImportError, match=r"pip install 'epochal\[report\]'"):
        epochal.report(output=tmp_path / "r.html")
    assert main(["report", "-o", str(tmp_path / "r.html")]) == 1
    assert "epochal[report]" in capsys.readouterr().err


def test_read_series_keeps_logged_nan_apart_and_logging_order(run_root):
    from epochal.blocks import read_records, read_series

    with epochal.init(project="mix", system_interval=0) as run:
        for i in range(300):
            run.log({"a": float(i), **({"b": -float(i)} if i % 7 == 0 else {})}, step=i)
            if i % 5 == 0:
                run.log({"b": math.nan}, step=i)
    records = read_records(run.dir / "metrics.bin")[0]
    series, names, skipped = read_series(run.dir / "metrics.bin")
    assert names == ["a", "b"] and skipped == 0
    for key in names:
        expected = [(r["step"], r[key]) for r in records if key in r]
        got = list(zip(series[key]["step"].tolist(), series[key]["value"].tolist()))
        assert [s for s, _ in got] == [s for s, _ in expected]
        assert [repr(v) for _, v in got] == [repr(v) for _, v in expected]
    assert int(np.isnan(series["b"]["value"]).sum()) == 60  # logged NaN, not "absent"
    only_b, _, _ = read_series(run.dir / "metrics.bin", ["b"])
    assert list(only_b) == ["b"]


ROWS = [{"id": "a", "name": "x", "status": "finished", "tags": ["t"], "config.lr": 0.1, "config.opt": "adam"},
        {"id": "b", "name": "y", "status": "failed", "tags": [], "config.lr": "high", "summary.val/acc": 0.5}]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(st.sampled_from(
    ["lr", "config.lr", "status", "tags", "'t'", "0.1", "1", "and", "or", "not", "in", "==", "<", ">=", "(", ")",
     "-", "[", "]", ",", "summary['val/acc']", "name", "None", ".", "f(", "**", "+"]), max_size=12).map(" ".join)))
def test_where_either_compiles_to_a_total_predicate_or_says_why(expression):
    from epochal._report_select import compile_where

    try:
        test = compile_where(expression, ROWS)
    except ReportError as exc:
        assert "--where" in str(exc)
        return
    assert all(test(row) in (True, False) for row in ROWS)


def test_where_semantics():
    from epochal._report_select import compile_where

    pick = lambda expression: [r["id"] for r in ROWS if compile_where(expression, ROWS)(r)]  # noqa: E731
    assert pick("lr > 0.05") == ["a"]  # "high" > 0.05 cannot be compared: false, not an error
    assert pick("'t' in tags or status == 'failed'") == ["a", "b"]
    assert pick("not summary['val/acc'] >= 0.5") == ["a"]
    assert pick("0 < config.lr < 1 and opt in ['adam', 'sgd']") == ["a"]
    assert pick("-lr < 0") == ["a"]


def test_float32_fixes_are_exactly_the_values_float32_would_print_differently():
    from epochal._report_step import float32_fixes, shown

    rng = np.random.default_rng(3)
    values = np.concatenate([
        rng.normal(size=50_000) * 10.0 ** rng.integers(-30, 30, 50_000),
        1.0 + rng.normal(0, 0.01, 20_000).cumsum(),
        10.0 ** rng.integers(-8, 9, 2_000) * (1 + rng.normal(0, 1e-7, 2_000)),  # around powers of ten
        np.arange(1, 20_000) / 3.0, [0.0, -0.0, 2.0 ** -10, 123456.5, 9.9999995, 0.1, math.nan, math.inf, -math.inf],
    ])
    fixes = float32_fixes(values)
    stored = values.astype(np.float32)
    expected = [i for i, (v, s) in enumerate(zip(values.tolist(), stored.tolist())) if shown(v) != shown(s)]
    assert fixes.tolist() == expected and 0.001 < len(expected) / len(values) < 0.05
    assert float32_fixes(np.array([0.5, 1.0, math.nan])).size == 0


def test_page_holds_what_the_step_field_needs(tmp_path, run_root):
    from epochal._report_step import float32_fixes

    rng = np.random.default_rng(5)
    noise = 1 + rng.normal(0, 0.01, 400).cumsum()
    with epochal.init(project="steps", name="a", system_interval=0) as run:
        for step, value in enumerate(noise.tolist()):
            run.log({"loss": value}, step=step)
    with epochal.init(project="steps", name="again", system_interval=0) as run:  # a step logged twice
        for step in (0, 1, 2, 2, 3):
            run.log({"loss": 1.0 / (step + 1)}, step=step)
    data, text = _payload(epochal.report(project="steps", step=2, output=tmp_path / "r.html"))
    assert data["table"]["metrics"] == ["loss"] and data["table"]["steps"] == [2] and data["table"]["initial"] == 2
    assert 'id="at-step" type="number" step="1" size="10" value="2"' in text
    assert re.findall(r'<th class="num at">(.*?)</th>', text) == ["at step 2"]
    assert len(re.findall(r'<td class="num at"', text)) == 2
    lines = data["charts"][0]["traces"]
    assert "rewinds" not in lines[0] and lines[1]["rewinds"] is True
    at = _decode(data["table"]["exact"]["at"]).reshape(-1, 2)
    fixes = float32_fixes(noise)
    assert at[:, 0].tolist() == [0] * len(fixes) and at[:, 1].tolist() == fixes.tolist()
    assert _decode(data["table"]["exact"]["value"]).tolist() == noise[fixes].tolist()
    data, text = _payload(epochal.report(project="steps", output=tmp_path / "r.html"))
    assert data["table"]["initial"] is None and data["table"]["steps"] == [3]
    assert 'value=' not in re.search(r'<input id="at-step"[^>]*>', text).group(0)
