"""The report opened in a real headless Chromium with the network off (Debian's chromium, see _chromium.py).

Checks what a reader sees: no console error and no request leaving the page, one trace per run
in every chart with the logged (or the documented downsampled) number of points, minimum and
maximum kept, NaN/inf marked, hover text, sorting, the config table's differing keys, the x-axis
switch, the parallel-coordinates view, and a screenshot that is not blank.
"""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import epochal
from epochal._report_data import downsample, points_per_trace
from epochal.query import flatten

from _chromium import Browser

CONFIGS = {
    "long": {"lr": 0.1, "model": {"depth": 4, "act": "relu"}, "seed": 0},
    "short": {"lr": 0.01, "model": {"depth": 4, "act": "gelu"}, "seed": 0},
    "nan": {"lr": 0.5, "model": {"depth": 2, "act": "relu"}, "seed": 0},
    "empty": {"lr": 0.1, "model": {"depth": 4, "act": "relu"}, "seed": 0, "note": "no metrics"},
}
LONG = 5_000


@pytest.fixture(scope="module")
def browser():
    with Browser() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Five runs (long and downsampled, short, NaN/inf, no metrics, killed) and their report, made once."""
    root = tmp_path_factory.mktemp("report-runs")
    init = lambda **kw: epochal.init(project="web", dir=root, system_interval=0, **kw)  # noqa: E731
    rng = np.random.default_rng(1)
    long_loss = np.exp(-np.arange(LONG) / 1000) + rng.normal(0, 0.01, LONG)
    long_loss[1234] = 9.0  # a spike the downsampling must keep
    long_loss[4321] = -3.0
    with init(name="long", config=CONFIGS["long"]) as run:
        for step, loss in enumerate(long_loss.tolist()):
            run.log({"train/loss": loss, "val/acc": 1 - loss / 10}, step=step, epoch=step // 1000)
        for i in range(5):
            run.log_system({"cpu/percent": 10.0 * i, "memory/percent": 50.0 + i})
        run.log({"samples": epochal.Image(np.zeros((8, 8, 3), np.uint8))}, step=LONG)
        run.log({"samples": epochal.Image(np.full((16, 12, 3), 200, np.uint8), caption="last")}, step=LONG + 1)
    with init(name="short", config=CONFIGS["short"]) as run:
        for step in range(50):
            run.log({"train/loss": 1.0 / (step + 1), "val/acc": step / 50}, step=step)
        run.log_system({"cpu/percent": 5.0, "memory/percent": 40.0})
    with init(name="nan", config=CONFIGS["nan"]) as run:
        for step, loss in enumerate([2.0, math.nan, 1.5, math.inf, -math.inf, 1.0]):
            run.log({"train/loss": loss}, step=step)
    with init(name="empty", config=CONFIGS["empty"]):
        pass
    child = subprocess.run([sys.executable, "-c", (
        "import os, signal, epochal\n"
        "run = epochal.init(project='web', name='crashed', config={'lr': 0.3, 'model': {'depth': 4, 'act': 'relu'},"
        " 'seed': 0}, system_interval=0)\n"
        "for step in range(10): run.log({'train/loss': 1.0 - step / 10}, step=step)\n"
        "run.flush(); os.kill(os.getpid(), signal.SIGKILL)\n")], env={**os.environ, "EPOCHAL_DIR": str(root)})
    assert child.returncode == -signal.SIGKILL
    path = epochal.report(project="web", dir=root, output=root / "report.html")
    return path, {"long": long_loss}


def _js(browser, expression):
    return browser.evaluate(f"(async () => {{ {expression} }})()")


def test_report_renders_offline_with_every_point_accounted_for(browser, report):
    path, series = report
    browser.errors.clear()
    browser.blocked.clear()
    browser.open(path)
    assert _js(browser, "return await window.epochal.renderAll();") == 5  # 2 metrics, 2 hardware figures, parallel coordinates
    traces = _js(browser, """
        const out = {};
        for (const el of document.querySelectorAll('.chart')) {
          out[el.dataset.title || el.id] = (el._fullData || []).map((t) => ({
            name: t.name, kind: t.meta ? t.meta.kind : t.type, n: t.x ? t.x.length : 0,
            y: t.y ? Array.from(t.y) : null, text: t.text || null}));
        }
        return out;""")
    runs = lambda chart: [t["name"] for t in traces[chart] if t["kind"] == "run"]  # noqa: E731
    assert runs("train/loss") == ["long", "short", "nan", "crashed"]
    assert runs("val/acc") == ["long", "short"]
    loss = {t["name"]: t for t in traces["train/loss"] if t["kind"] == "run"}
    assert loss["short"]["n"] == 50 and loss["crashed"]["n"] == 10 and loss["nan"]["n"] == 6
    expected = len(downsample(series["long"], points_per_trace(5, 2)))
    assert loss["long"]["n"] == expected < LONG
    kept = np.array(loss["long"]["y"], dtype=np.float32)
    assert kept.max() == np.float32(9.0) and kept.min() == np.float32(-3.0)
    assert kept[0] == np.float32(series["long"][0]) and kept[-1] == np.float32(series["long"][-1])
    assert [v is None for v in loss["nan"]["y"]] == [False, True, False, True, True, False]  # gaps, not breaks
    marks = [t for t in traces["train/loss"] if t["kind"] == "nonfinite"]
    assert [(t["name"], t["text"]) for t in marks] == [("nan (nan/inf)", ["nan", "inf", "-inf"])]
    assert [t["name"] for t in traces["cpu/percent"]] == ["long", "short"] and traces["cpu/percent"][0]["n"] == 5
    assert browser.errors == [] and browser.blocked == []


def test_hover_sort_config_and_axes(browser, report):
    path, _ = report
    browser.errors.clear()
    browser.open(path)
    _js(browser, "await window.epochal.renderAll();")
    hover = _js(browser, """
        const gd = document.querySelector('.chart[data-title="train/loss"]');
        Plotly.Fx.hover(gd, [{curveNumber: 1, pointNumber: 3}]);
        return Array.from(gd.querySelectorAll('.hovertext')).map((n) => n.textContent).join('|');""")
    assert "short" in hover and "0.25" in hover and "step 3" in hover

    visible = """return Array.from(document.querySelectorAll('#config-table tbody tr'))
        .filter((tr) => getComputedStyle(tr).display !== 'none').map((tr) => tr.cells[0].textContent);"""
    flat = [flatten(c) for c in CONFIGS.values()] + [flatten({"lr": 0.3, "model": {"depth": 4, "act": "relu"},
                                                             "seed": 0})]
    keys = sorted({k for c in flat for k in c})
    differing = [k for k in keys if len({repr(c.get(k, "<missing>")) for c in flat}) > 1]
    assert differing == ["lr", "model.act", "model.depth", "note"]
    assert _js(browser, visible) == differing
    _js(browser, "document.getElementById('config-all').click();")
    assert _js(browser, visible) == keys

    names = "return Array.from(document.querySelectorAll('#runs-table tbody tr')).map((tr) => tr.cells[0].childNodes[1].textContent);"
    assert _js(browser, names) == ["long", "short", "nan", "empty", "crashed"]
    _js(browser, "document.querySelector('#runs-table thead th').click();")
    assert _js(browser, names) == ["crashed", "empty", "long", "nan", "short"]
    _js(browser, "document.querySelector('#runs-table thead th').click();")
    assert _js(browser, names) == ["short", "nan", "long", "empty", "crashed"]
    statuses = _js(browser, "return Array.from(document.querySelectorAll('#runs-table td.status')).map((td) => td.textContent);")
    assert "crashed" in statuses and statuses.count("finished") == 4

    _js(browser, "window.epochal.setMode('epoch'); await new Promise((r) => requestAnimationFrame(r));")
    epoch_runs = _js(browser, """const gd = document.querySelector('.chart[data-title="train/loss"]');
        return [gd.layout.xaxis.title.text, gd._fullData.map((t) => t.name)];""")
    assert epoch_runs == ["epoch", ["long"]]
    _js(browser, "window.epochal.setMode('time'); await new Promise((r) => requestAnimationFrame(r));")
    assert _js(browser, """const gd = document.querySelector('.chart[data-title="train/loss"]');
        return gd._fullData.filter((t) => t.meta.kind === 'run').length;""") == 4
    _js(browser, "document.querySelector('#runs-table tbody tr[data-run=\"1\"]').click();")  # "short"
    widths = """return document.querySelector('.chart[data-title="val/acc"]')._fullData
        .map((t) => [t.name, t.line.width, t.opacity]);"""
    assert _js(browser, widths) == [["long", 1.4, 0.3], ["short", 3, 1]]
    _js(browser, "document.querySelector('#runs-table tbody tr[data-run=\"1\"]').click();")
    assert _js(browser, widths) == [["long", 1.4, 1], ["short", 1.4, 1]]
    _js(browser, "window.epochal.filter('sh');")  # short and crashed
    shown = """return [Array.from(document.querySelectorAll('#runs-table tbody tr'))
          .filter((tr) => getComputedStyle(tr).display !== 'none').map((tr) => tr.cells[0].childNodes[1].textContent),
        Array.from(document.querySelectorAll('#config-table thead th[data-run]'))
          .filter((th) => getComputedStyle(th).display !== 'none').map((th) => th.textContent),
        document.querySelector('.chart[data-title="train/loss"]')._fullData.filter((t) => t.visible === true)
          .map((t) => t.name)];"""
    assert _js(browser, shown) == [["short", "crashed"], ["short", "crashed"], ["short", "crashed"]]
    _js(browser, "window.epochal.filter('/^l.ng$/');")
    assert _js(browser, shown) == [["long"], ["long"], ["long"]]
    _js(browser, "window.epochal.filter('');")
    assert len(_js(browser, shown)[2]) == 5  # four runs and the NaN markers
    dims = _js(browser, "return document.getElementById('parcoords')._fullData[0].dimensions.map((d) => d.label);")
    assert dims[:4] == differing[:4] and dims[-2:] == ["train/loss (last)", "val/acc (last)"]
    images = _js(browser, """return Array.from(document.querySelectorAll('#media-table tbody tr')).map((tr) =>
        [tr.cells[0].textContent, Array.from(tr.cells).slice(1).map((td) => {
          const img = td.querySelector('img');
          return img ? [img.naturalWidth, img.naturalHeight, td.textContent] : td.textContent; })]);""")
    assert images == [["samples", [[12, 16, "step 5001: last"], "—", "—", "—", "—"]]]
    assert browser.errors == [] and browser.blocked == []


def test_screenshot_is_not_blank(browser, report):
    path, _ = report
    browser.open(path)
    _js(browser, "await window.epochal.renderAll();")
    image = Image.open(io.BytesIO(browser.screenshot())).convert("RGB")
    pixels = np.asarray(image)
    assert image.width >= 1000 and image.height >= 1500
    ink = (pixels < 200).any(axis=2).mean()
    colours = len(np.unique(pixels.reshape(-1, 3)[::7], axis=0))
    assert ink > 0.01 and colours > 50, (ink, colours)
    assert browser.errors == []


def test_bench_topic_measures_a_small_report(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `benchmarks` is a folder of the repo
    from benchmarks.report import epochal_report

    result = epochal_report(runs=2, metrics=3, steps=50, tmp=str(tmp_path))
    assert result["files"] == 1 and 4 < result["mb"] < 8  # plotly.js is most of a small report
    assert result["seconds"] > 0 and result["load_s"] > 0 and result["charts_s"] >= result["load_s"]
    assert result["blocked"] == 0 and result["errors"] == 0


AT_STEP = """return [Array.from(document.querySelectorAll('#runs-table thead th.at')).map((th) => th.textContent),
    Object.fromEntries(Array.from(document.querySelectorAll('#runs-table tbody tr')).map((tr) =>
      [tr.cells[0].childNodes[1].textContent, Array.from(tr.querySelectorAll('td.at')).map((td) =>
        [td.textContent, td.classList.contains('approx'), td.title, td.dataset.sort])])),
    document.getElementById('at-step').value];"""


def _choose(browser, step):
    """Type a step into the page's field as a reader does (the field commits on blur), wait for the charts."""
    _js(browser, "const f = document.getElementById('at-step'); f.focus(); f.select();")
    browser.call("Input.insertText", text=str(step))
    _js(browser, "document.getElementById('at-step').blur(); await new Promise((r) => requestAnimationFrame(r));")
    return _js(browser, AT_STEP)


def _click(browser, title, x, y):
    """A real mouse click at (x, y) on chart ``title``, synchronised on plotly's own hover and click events."""
    chart = f"document.querySelector('.chart[data-title=\"{title}\"]')"
    browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=1, y=1)
    _js(browser, f"window.hovered = new Promise((r) => {chart}.once('plotly_hover', r));")
    browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
    _js(browser, f"await window.hovered; window.clicked = new Promise((r) => {chart}.once('plotly_click', r));")
    for kind in ("mousePressed", "mouseReleased"):
        browser.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
    _js(browser, "await window.clicked; await window.epochal.setStep(document.getElementById('at-step').value);")
    return _js(browser, AT_STEP)


def test_step_chosen_in_the_page_updates_the_at_step_column(browser, report):
    from epochal._report_data import value_at
    from epochal._report_step import float32_fixes, shown

    path, series = report
    long_loss = series["long"]
    browser.errors.clear()
    browser.blocked.clear()
    browser.open(path)
    _js(browser, "await window.epochal.renderAll();")
    heads, cells, field = _js(browser, AT_STEP)
    assert heads == ["at step 5", "at step 49"] and field == ""  # as written: the last step all runs reached
    assert [c[0] for c in cells["short"]] == ["0.166667", "0.98"] and cells["empty"] == [["—", False, "", ""]] * 2
    written = cells

    kept = downsample(long_loss, points_per_trace(5, 2))  # the points the page holds of run "long"
    steps = np.arange(LONG)
    missing = int(next(i for i in range(1, LONG) if i not in kept and i - 1 in kept))
    nearest = int(kept[kept <= missing][-1])
    fixed = kept[float32_fixes(long_loss[kept])]  # float32 would print these differently: float64 rides along
    assert fixed.size
    acc = 1 - long_loss / 10

    heads, cells, field = _choose(browser, 3)
    assert heads == ["at step 3", "at step 3"] and field == "3"
    assert cells["short"][0][:3] == ["0.25", False, "logged at step 3"] and cells["short"][1][0] == "0.06"
    assert [c[0] for c in (cells["nan"][0], cells["crashed"][0])] == ["inf", "0.7"]
    assert cells["nan"][0][3] == "1e308" and cells["nan"][1][0] == "—"
    before = int(kept[kept <= 3][-1])
    expected = shown(long_loss[3]) if 3 in kept else f"≈ {shown(long_loss[before])} (step {before})"
    assert cells["long"][0][0] == expected

    heads, cells, _ = _choose(browser, missing)  # run "long" was downsampled: this step is not in the page
    text, approx, title, sort = cells["long"][0]
    assert (text, approx) == (f"≈ {shown(long_loss[nearest])} (step {nearest})", True)
    assert f"kept point at step {nearest}" in title
    assert f"--step {missing}" in title and np.float32(sort) == np.float32(long_loss[nearest])
    assert cells["long"][1][:2] == [f"≈ {shown(acc[nearest])} (step {nearest})", True]
    assert cells["short"][0][:2] == [shown(1 / (min(missing, 49) + 1)), False]  # a whole line: exact

    for step in [1234, *fixed[:5].tolist()]:  # kept points: exact, digit for digit as Python prints them
        heads, cells, _ = _choose(browser, step)
        assert cells["long"][0][:3] == [shown(value_at(steps, long_loss, step)[0]), False, f"logged at step {step}"]
    assert any(shown(np.float32(long_loss[i])) != shown(long_loss[i]) for i in fixed[:5])

    # sorted by the "at step" column of train/loss: the order follows the step chosen
    order = """return Array.from(document.querySelectorAll('#runs-table tbody tr'))
        .map((tr) => tr.cells[0].childNodes[1].textContent);"""
    _js(browser, "document.querySelector('#runs-table thead th.at').click();")
    _choose(browser, 1)
    assert _js(browser, order)[:3] == ["short", "crashed", "long"]  # 0.5, 0.9, ~1 (then NaN and none)
    _choose(browser, 4)
    assert _js(browser, order)[:4] == ["nan", "short", "crashed", "long"]  # -inf, 0.2, 0.6, ~1

    # clicking a point of a chart chooses its step (the spike of run "long", zoomed in as a reader would)
    box = _js(browser, """const gd = document.querySelector('.chart[data-title="train/loss"]');
        gd.scrollIntoView();
        await Plotly.relayout(gd, {'xaxis.range': [1220, 1250], 'yaxis.range': [-4, 10]});
        const r = gd.getBoundingClientRect(), s = gd._fullLayout._size;
        return [r.left + s.l + gd._fullLayout.xaxis.l2p(1234), r.top + s.t + gd._fullLayout.yaxis.l2p(9)];""")
    heads, cells, field = _click(browser, "train/loss", *box)
    assert field == "1234" and heads == ["at step 1234"] * 2 and cells["long"][0][:2] == ["9", False]
    line = """return Array.from(document.querySelectorAll('.chart')).filter((gd) => gd.layout && gd.layout.shapes &&
        gd.layout.shapes.length).map((gd) => [gd.dataset.title, gd.layout.shapes[0].x0]);"""
    assert _js(browser, line) == [["train/loss", 1234], ["val/acc", 1234]]

    _js(browser, "window.epochal.setMode('time'); await new Promise((r) => requestAnimationFrame(r));")
    # another chart (plotly would take a second click on one chart within 300 ms for a double click)
    box = _js(browser, """const gd = document.querySelector('.chart[data-title="val/acc"]');
        gd.scrollIntoView();
        const line = gd._fullData.find((t) => t.name === 'long'), y = Array.from(line.y);
        const top = Math.max(...y), x = line.x[y.indexOf(top)];  // the dip of the loss: 1 - (-3) / 10
        await Plotly.relayout(gd, {'xaxis.range': [x - 0.002, x + 0.002], 'yaxis.range': [0, 1.5]});
        const r = gd.getBoundingClientRect(), s = gd._fullLayout._size;
        return [r.left + s.l + gd._fullLayout.xaxis.l2p(x), r.top + s.t + gd._fullLayout.yaxis.l2p(top)];""")
    heads, cells, field = _click(browser, "val/acc", *box)  # wall-time axis: the point's step all the same
    assert field == "4321" and [c[:2] for c in cells["long"]] == [["-3", False], ["1.3", False]]
    assert _js(browser, line) == []  # no step line on a wall-time axis
    _js(browser, "window.epochal.setMode('step'); await new Promise((r) => requestAnimationFrame(r));")
    assert _js(browser, line) == [["train/loss", 4321], ["val/acc", 4321]]

    _js(browser, "document.getElementById('at-step-reset').click();")
    heads, cells, field = _js(browser, AT_STEP)
    assert heads == ["at step 5", "at step 49"] and field == "" and cells == written
    assert browser.errors == [] and browser.blocked == []


def test_the_page_prints_numbers_as_the_python_table_does(browser, report):
    from epochal._report_step import shown

    path, _ = report
    browser.open(path)
    rng = np.random.default_rng(7)
    values = [2.0 ** -10, 123456.5, 999999.5, 9.9999995, 0.5, -0.0, 0.0, 1e-5, 1.5e-5, 1e-4, 0.00012345650000000001,
              1e16, 1e21, 1e22 + 2 ** 30, 2.0 ** 80, 1.2345e300, 5e-324, 3 * 5e-324, 0.1 + 0.2, -1234567.0, 1e6,
              999999.0, 100000.0, 0.30000000000000004, 2.5e-7, 1 / 3]
    values += (rng.normal(size=2000) * 10.0 ** rng.integers(-12, 12, 2000)).tolist()
    values += (rng.integers(0, 2 ** 20, 500) / 2.0 ** rng.integers(0, 30, 500)).tolist()  # many exact ties
    got = browser.evaluate(f"{json.dumps(values)}.map((v) => window.epochal.format(v))")
    assert got == [shown(v) for v in values]
    assert browser.errors == []


def test_a_report_without_metrics_has_no_step_field_and_no_error(browser, tmp_path):
    root = tmp_path / "runs"
    with epochal.init(project="bare", dir=root, config={"a": 1}, system_interval=0):
        pass
    path = epochal.report(project="bare", dir=root, output=tmp_path / "bare.html")
    browser.errors.clear()
    browser.open(path)
    assert _js(browser, "await window.epochal.renderAll(); return [document.getElementById('at-step'), "
                        "await window.epochal.setStep(3)];") == [None, None]
    assert browser.errors == []


def test_steps_logged_out_of_order_are_looked_up_as_python_does(browser, tmp_path):
    from epochal._report_data import value_at
    from epochal._report_step import shown

    root = tmp_path / "runs"
    order = {"again": np.array([0, 1, 2, 2, 3, 1, 4, 6]), "resumed": np.r_[np.arange(3000), np.arange(1000, 1100)]}
    logged = {name: np.random.default_rng(len(steps)).normal(size=len(steps)) for name, steps in order.items()}
    for name, steps in order.items():
        with epochal.init(project="order", name=name, dir=root, system_interval=0) as run:
            for step, value in zip(steps.tolist(), logged[name].tolist()):
                run.log({"loss": value}, step=step)
    path = epochal.report(project="order", dir=root, output=tmp_path / "order.html")
    kept = downsample(logged["resumed"], points_per_trace(2, 1))  # in logging order
    browser.errors.clear()
    browser.open(path)
    for step in (0, 1, 2, 5, 1050, 1099, 2500):
        cells = _choose(browser, step)[1]
        assert cells["again"][0][:2] == [shown(value_at(order["again"], logged["again"], step)[0]), False]
        before = kept[order["resumed"][kept] <= step][-1]  # the last kept point at or before, in logging order
        text, approx = cells["resumed"][0][:2]
        assert approx and text == f"≈ {shown(logged['resumed'][before])} (step {order['resumed'][before]})"
    assert browser.errors == []
