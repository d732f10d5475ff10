"""The page's script behind the step field of the runs table (the rules it follows: :mod:`epochal._report_step`).

``window.epochalSteps(data, hooks)`` is called once by the report's main script, which draws the
charts; it returns ``set`` (choose a step), ``shapes`` (the dotted line at the step on a chart),
``listen`` (a click on a chart point chooses its step), ``format`` (Python's ``.6g``) and ``lookup``.
"""

from __future__ import annotations

__all__ = ["STEP_JS"]

STEP_JS = r"""
window.epochalSteps = function (data, hooks) {
  "use strict";
  const table = data.table;  // {metrics: [name...], steps: [written step per metric], initial: step or null}
  const field = document.getElementById("at-step");
  const rows = () => Array.from(document.querySelectorAll("#runs-table tbody tr"));
  const heads = Array.from(document.querySelectorAll("#runs-table thead th.at"));
  const written = new Map();  // the cells as Python wrote them (exact, from every logged point)
  const lines = new Map();    // "run:metric" -> chart trace
  const cache = new Map();
  const fixes = new Map();    // chart trace -> [[point, float64 value]...]
  const order = data.charts.filter((c) => c.kind === "metric").flatMap((c) => c.traces);
  data.charts.forEach((c) => { if (c.kind === "metric") c.traces.forEach((t) => lines.set(t.run + ":" + c.id, t)); });
  rows().forEach((tr) => tr.querySelectorAll("td.at").forEach((td) => written.set(td, [td.textContent, td.title,
    td.dataset.sort, td.className])));
  let current = table.initial;
  const stub = {set: () => Promise.resolve(null), shapes: () => [], listen: () => {}};

  const width = {i4: 4, f4: 4, f8: 8};
  function decode(spec) {  // a plotly typed-array spec {dtype, bdata: base64 little-endian} -> Float64Array
    const bytes = atob(spec.bdata), size = width[spec.dtype];
    if (!size) throw new Error("epochal report: unknown dtype " + spec.dtype);
    const view = new DataView(new ArrayBuffer(bytes.length));
    for (let i = 0; i < bytes.length; i++) view.setUint8(i, bytes.charCodeAt(i));
    const out = new Float64Array(bytes.length / size);
    for (let i = 0; i < out.length; i++) {
      out[i] = spec.dtype === "i4" ? view.getInt32(4 * i, true) : spec.dtype === "f4" ? view.getFloat32(4 * i, true)
        : view.getFloat64(8 * i, true);
    }
    return out;
  }

  function series(t) {  // a line's steps and values (float64 fixes applied, NaN/inf restored from the markers)
    if (!cache.has(t)) {
      const step = decode(t.x.step), y = decode(t.y);
      (fixes.get(t) || []).forEach(([i, v]) => { y[i] = v; });
      const labels = t.nonfinite ? t.nonfinite.label : [], odd = {nan: NaN, inf: Infinity, "-inf": -Infinity};
      let k = 0;
      for (let i = 0; i < y.length; i++) if (Number.isNaN(y[i])) y[i] = odd[labels[k++]];
      cache.set(t, {step: step, y: y});
    }
    return cache.get(t);
  }

  function lookup(t, s) {  // value_at over the kept points; exact when they hold the answer (see _report_step)
    const {step, y} = series(t), whole = t.kept === t.logged, steady = !t.rewinds;
    let at = -1;
    if (steady) {
      let lo = 0, hi = step.length;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (step[mid] <= s) lo = mid + 1; else hi = mid; }
      at = lo - 1;
    } else {
      for (let i = 0; i < step.length; i++) if (step[i] <= s) at = i;
    }
    if (at < 0) return {value: null, exact: whole || steady};
    return {value: y[at], step: step[at], exact: whole || (steady && step[at] === s)};
  }

  function format(v) {  // Python's f"{v:.6g}" (round half to even on the exact binary value)
    if (v === null || v === undefined) return "—";
    if (Number.isNaN(v)) return "nan";
    if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
    if (v === 0) return Object.is(v, -0) ? "-0" : "0";
    const sign = v < 0 ? "-" : "", a = Math.abs(v);
    const parts = (Number.isInteger(a) && a >= 1e21 ? BigInt(a).toString().replace(/^(\d)/, "$1.") + "e+" +
      (BigInt(a).toString().length - 1) : a.toExponential(100)).split("e");
    const all = parts[0].replace(".", "");
    let digits = all.slice(0, 6), exp = Number(parts[1]);
    const rest = all.slice(6).replace(/0+$/, "");
    if (rest > "5" || (rest === "5" && Number(digits[5]) % 2 === 1)) {
      digits = String(Number(digits) + 1);
      if (digits.length > 6) { digits = digits.slice(0, 6); exp += 1; }
    }
    const trim = (text) => (text.includes(".") ? text.replace(/0+$/, "").replace(/\.$/, "") : text);
    if (exp < -4 || exp >= 6) {
      return sign + trim(digits[0] + "." + digits.slice(1)) + "e" + (exp < 0 ? "-" : "+") +
        String(Math.abs(exp)).padStart(2, "0");
    }
    return sign + trim(exp >= 0 ? digits.slice(0, exp + 1) + "." + digits.slice(exp + 1)
      : "0." + "0".repeat(-exp - 1) + digits);
  }

  const sortKey = (v) => (v === null || Number.isNaN(v) ? "" : v === Infinity ? "1e308" : v === -Infinity ? "-1e308"
    : String(v));

  function fill(td, t, s) {
    const r = lookup(t, s);
    td.dataset.sort = sortKey(r.value);
    td.classList.toggle("approx", !r.exact);
    if (r.exact) {
      td.textContent = format(r.value);
      td.title = r.value === null ? "not reached" : "logged at step " + r.step;
      return;
    }
    td.textContent = "≈ " + format(r.value);
    if (r.value !== null) {  // the step the approximation comes from, in sight
      const where = document.createElement("span");
      where.className = "sub";
      where.textContent = " (step " + r.step + ")";
      td.appendChild(where);
    }
    td.title = "≈: the page does not hold the point logged at or before step " + s + " (the chart keeps " + t.kept +
      " of " + t.logged + " points); " + (r.value === null ? "no kept point lies at or before it" :
      "shown: the kept point at step " + r.step) + ". epochal report --step " + s + " gives the exact value.";
  }

  const stepOf = (i) => (current === null ? table.steps[i] : current);
  function shapes(chart, axis) {  // a dotted line at the chosen step on a metric chart drawn against steps
    const i = Number(chart.id.split("-")[1]);
    if (chart.kind !== "metric" || axis !== "step" || stepOf(i) === null || stepOf(i) === undefined) return [];
    return [{type: "line", xref: "x", yref: "paper", x0: stepOf(i), x1: stepOf(i), y0: 0, y1: 1,
      line: {color: "#5b6475", width: 1, dash: "dot"}}];
  }

  function set(value) {  // a step (number or text), or null / "" for the step(s) the report was written for
    const n = value === null || value === undefined || String(value).trim() === "" ? NaN : Math.floor(Number(value));
    current = Number.isFinite(n) ? n : table.initial;
    field.value = current === null ? "" : String(current);
    const all = rows();
    table.metrics.forEach((name, i) => {
      const s = stepOf(i);
      heads[i].textContent = "at step " + (s === null ? "—" : s);
      for (const tr of all) {
        const td = tr.querySelectorAll("td.at")[i], t = lines.get(tr.dataset.run + ":metric-" + i);
        if (s === table.steps[i] || !t) {
          const w = written.get(td);
          [td.textContent, td.title, td.dataset.sort, td.className] = w;
        } else {
          fill(td, t, s);
        }
      }
    });
    hooks.resort();
    return Promise.all(hooks.drawnMetricCharts().map(([el, chart]) =>
      Plotly.relayout(el, {shapes: shapes(chart, hooks.axis())}))).then(() => current);
  }

  function listen(el, chart) {  // clicking a point of a metric chart (any x axis) chooses its step
    if (chart.kind !== "metric") return;
    el.on("plotly_click", (ev) => {
      const p = ev.points && ev.points[0], meta = p && p.data.meta;
      if (!meta) return;
      const t = chart.traces.find((c) => c.run === meta.run);
      if (meta.kind === "run") set(series(t).step[p.pointNumber]);
      else if (meta.kind === "nonfinite") set(t.nonfinite.step[p.pointNumber]);
    });
  }

  if (table.exact) {
    const at = decode(table.exact.at), v = decode(table.exact.value);
    for (let k = 0; k < v.length; k++) {
      const t = order[at[2 * k]];
      if (!fixes.has(t)) fixes.set(t, []);
      fixes.get(t).push([at[2 * k + 1], v[k]]);
    }
  }
  if (!field) return Object.assign(stub, {format: format, lookup: lookup});  // no metric: no step to choose
  field.addEventListener("change", () => set(field.value));
  document.getElementById("at-step-reset").addEventListener("click", () => set(null));
  return {set: set, shapes: shapes, listen: listen, format: format, lookup: lookup};
};
"""
