"""The report page's stylesheet and main script (charts drawn lazily by plotly.js, sortable tables, x-axis mode).

The step field's script is :mod:`epochal._report_step_js`; the HTML around both is :mod:`epochal._report_html`.
"""

from __future__ import annotations

__all__ = ["PAGE_CSS", "PAGE_JS"]

PAGE_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1400px;padding:0 24px 40px;color:#1d2330}
h1{font-size:22px;margin:20px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #dde1e8;padding-bottom:4px}
.note{color:#5b6475;font-size:13px}.sub{color:#7a8294;font-size:11px}code{font-size:12px}
.scroll{overflow:auto;max-height:70vh;border:1px solid #e4e7ee;border-radius:6px}
table{border-collapse:collapse;font-size:13px;width:max-content;min-width:100%}
th,td{padding:4px 8px;border-bottom:1px solid #eef0f4;text-align:left;vertical-align:top;white-space:nowrap}
thead th{position:sticky;top:0;background:#f6f7fa;z-index:1}thead tr+tr th{top:27px}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}th.metric{text-align:center;border-left:1px solid #e4e7ee}
table.sortable thead th{cursor:pointer}th.asc:after{content:" ▲"}th.desc:after{content:" ▼"}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
.tag{background:#eef1f7;border-radius:3px;padding:0 5px;margin-right:3px;font-size:12px}
.status.failed,.status.crashed{color:#b42318;font-weight:600}.status.running{color:#175cd3}
#config-table tr.same{display:none}#config-table.show-all tr.same{display:table-row}#config-table tr.same td{color:#7a8294}
td.missing{color:#aab}td.approx{color:#8a5a00;font-style:italic}#at-step{width:9em}#runs-table tbody tr{cursor:pointer}#runs-table tr.picked td{background:#fff7d6}#problems{background:#fff4e5;border:1px solid #f5c27a;border-radius:6px;padding:4px 16px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:12px}.grid.small{grid-template-columns:repeat(auto-fill,minmax(380px,1fr))}
.chart{height:340px;margin:0;border:1px solid #eef0f4;border-radius:6px;min-width:0}.chart.tall{height:460px}.grid.small .chart{height:280px}
.media figure{margin:0}.media img{max-width:240px;max-height:240px;min-width:64px;image-rendering:pixelated}
"""

PAGE_JS = r"""
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("epochal-data").textContent);
  const charts = new Map(data.charts.map((c) => [c.id, c]));
  const drawn = new Map();
  const labels = {step: "step", time: "seconds since the run started", epoch: "epoch"};
  let mode = "step";
  let hidden = new Set();
  let picked = null;
  const steps = window.epochalSteps(data, {
    axis: () => mode, resort: () => resort(),
    drawnMetricCharts: () => Array.from(drawn.keys()).filter((id) => charts.has(id) && charts.get(id).kind === "metric")
      .map((id) => [document.getElementById(id), charts.get(id)]),
  });
  const esc = (s) => String(s).replace(/[&<>]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;"}[c]));
  const copy = (spec) => (spec && spec.bdata !== undefined ? {dtype: spec.dtype, bdata: spec.bdata} : spec);

  function tracesOf(chart, axis) {
    const out = [];
    const span = chart.range[1] - chart.range[0] || Math.abs(chart.range[1]) || 1;
    const top = chart.range[1] + 0.04 * span, bottom = chart.range[0] - 0.04 * span;
    for (const t of chart.traces) {
      const run = data.runs[t.run];
      const x = t.x[axis];
      if (!x) continue;
      out.push({type: "scatter", mode: t.kept > 1 ? "lines" : "markers", name: run.name, x: copy(x), y: copy(t.y),
        visible: hidden.has(t.run) ? false : true,
        line: {color: run.color, width: picked === t.run ? 3 : 1.4}, marker: {color: run.color, size: 6},
        opacity: picked === null || picked === t.run ? 1 : 0.3, legendgroup: run.id,
        connectgaps: false, meta: {kind: "run", run: t.run, logged: t.logged, kept: t.kept},
        hovertemplate: "<b>" + esc(run.name) + "</b><br>" + labels[axis] + " %{x}<br>" + esc(chart.title) +
          " %{y:.6g}<extra></extra>"});
      const odd = t.nonfinite;
      if (odd && odd[axis]) {
        out.push({type: "scatter", mode: "markers", name: run.name + " (nan/inf)", showlegend: false,
          visible: hidden.has(t.run) ? false : true,
          legendgroup: run.id, x: odd[axis], text: odd.label,
          y: odd.label.map((l) => (l === "-inf" ? bottom : top)),
          marker: {color: run.color, size: 9, symbol: odd.label.map((l) => (l === "nan" ? "x" : l === "inf" ? "triangle-up" : "triangle-down"))},
          meta: {kind: "nonfinite", run: t.run, total: odd.total},
          hovertemplate: "<b>" + esc(run.name) + "</b><br>" + labels[axis] + " %{x}<br>" + esc(chart.title) +
            " %{text}<extra></extra>"});
      }
    }
    return out;
  }

  function draw(el) {
    const chart = charts.get(el.id);
    if (!chart) return Promise.resolve();
    const axis = chart.kind === "system" ? "time" : mode;
    const traces = tracesOf(chart, axis);
    const layout = {title: {text: esc(chart.title) + (chart.direction ? " <span style='font-size:11px'>(" +
        (chart.direction === "min" ? "lower" : "higher") + " is better)</span>" : ""), font: {size: 14},
        x: 0.01, xanchor: "left"},
      margin: {l: 60, r: 20, t: 36, b: 44}, hovermode: "closest",
      showlegend: chart.kind === "metric" && data.runs.length <= 25,
      xaxis: {title: {text: labels[axis]}, zeroline: false}, yaxis: {zeroline: false, exponentformat: "e"},
      annotations: traces.length ? [] : [{text: axis === "epoch" ? "no epochs logged" : "no points",
        showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5}], shapes: steps.shapes(chart, axis)};
    const first = !drawn.has(el.id);
    const done = (first ? Plotly.newPlot : Plotly.react)(el, traces, layout, {responsive: true, displaylogo: false});
    drawn.set(el.id, axis);
    return first ? done.then(() => steps.listen(el, chart)) : done;
  }

  function drawParcoords() {
    const el = document.getElementById("parcoords");
    if (!el || drawn.has("parcoords")) return Promise.resolve();
    drawn.set("parcoords", true);
    const canvas = document.createElement("canvas");
    if (!(canvas.getContext("webgl") || canvas.getContext("experimental-webgl"))) {
      el.innerHTML = "<p class='note'>This browser has WebGL turned off; the parallel-coordinates view needs it.</p>";
      return Promise.resolve();
    }
    const p = data.parcoords;
    const num = (v) => (typeof v === "number" ? v : NaN);
    const dims = p.dimensions.map((d) => Object.assign({label: d.label, values: d.values.map(num)},
      d.tickvals ? {tickvals: d.tickvals, ticktext: d.ticktext} : {}));
    return Plotly.newPlot(el, [{type: "parcoords", dimensions: dims,
      line: {color: p.color.map(num), colorscale: "Viridis", showscale: true,
        colorbar: {title: {text: p.color_label}}}}],
      {margin: {l: 80, r: 80, t: 60, b: 30}}, {responsive: true, displaylogo: false});
  }

  const pending = (el) => (el.id === "parcoords" ? drawParcoords() : draw(el));
  const observer = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
    for (const e of entries) if (e.isIntersecting) { observer.unobserve(e.target); pending(e.target); }
  }, {rootMargin: "400px"}) : null;
  const all = Array.from(document.querySelectorAll(".chart"));
  all.forEach((el) => (observer ? observer.observe(el) : pending(el)));

  document.getElementById("x-mode").addEventListener("change", (ev) => {
    mode = ev.target.value;
    for (const [id, axis] of drawn) if (charts.has(id) && charts.get(id).kind === "metric") draw(document.getElementById(id));
  });

  const filter = document.getElementById("run-filter");
  function applyFilter() {
    const text = filter.value.trim();
    let test = (s) => s.toLowerCase().includes(text.toLowerCase());
    const re = /^\/(.*)\/$/.exec(text);
    if (re) { try { const r = new RegExp(re[1], "i"); test = (s) => r.test(s); } catch (e) { return; } }
    hidden = new Set(data.runs.filter((r) => text && ![r.name, r.id].concat(r.tags).some(test)).map((r) => r.index));
    document.getElementById("run-filter-style").textContent =
      Array.from(hidden).map((i) => '[data-run="' + i + '"]').join(",") + (hidden.size ? "{display:none}" : "");
    document.getElementById("run-count").textContent = hidden.size ? (data.runs.length - hidden.size) + " of " +
      data.runs.length + " runs shown" : "";
    for (const id of drawn.keys()) if (charts.has(id)) draw(document.getElementById(id));
  }
  filter.addEventListener("input", applyFilter);

  function pick(index) {  // a run clicked in the runs table stands out in every chart; click again to clear
    picked = picked === index ? null : index;
    document.querySelectorAll("#runs-table tbody tr").forEach((tr) =>
      tr.classList.toggle("picked", Number(tr.dataset.run) === picked));
    for (const id of drawn.keys()) if (charts.has(id)) draw(document.getElementById(id));
  }
  document.querySelectorAll("#runs-table tbody tr").forEach((tr) =>
    tr.addEventListener("click", () => pick(Number(tr.dataset.run))));

  const toggle = document.getElementById("config-all");
  if (toggle) toggle.addEventListener("change", () =>
    document.getElementById("config-table").classList.toggle("show-all", toggle.checked));

  function sortBy(table, th, ascending = !th.classList.contains("asc")) {
    const row = th.parentElement, head = table.tHead;
    let column = 0;
    if (row === head.rows[0]) {
      for (const cell of row.cells) { if (cell === th) break; column += cell.colSpan; }
    } else {
      column = Array.from(head.rows[0].cells).filter((c) => c.rowSpan > 1).length + th.cellIndex;
    }
    table.querySelectorAll("th").forEach((h) => h.classList.remove("asc", "desc"));
    th.classList.add(ascending ? "asc" : "desc");
    const key = (tr) => { const c = tr.cells[column]; return c ? (c.dataset.sort !== undefined ? c.dataset.sort : c.textContent) : ""; };
    const rows = Array.from(table.tBodies[0].rows);
    rows.sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === "" || y === "") return x === y ? 0 : x === "" ? 1 : -1;
      const nx = Number(x), ny = Number(y);
      const c = !isNaN(nx) && !isNaN(ny) ? nx - ny : x.localeCompare(y);
      return ascending ? c : -c;
    });
    rows.forEach((r) => table.tBodies[0].appendChild(r));
  }
  function resort() {  // keep the runs table's order when its cells change
    const th = document.querySelector("#runs-table th.asc, #runs-table th.desc");
    if (th) sortBy(th.closest("table"), th, th.classList.contains("asc"));
  }
  document.querySelectorAll("table.sortable thead th").forEach((th) => {
    if (th.colSpan === 1) th.addEventListener("click", () => sortBy(th.closest("table"), th));
  });

  window.epochal = {
    data: data,
    renderAll: () => Promise.all(all.map((el) => { if (observer) observer.unobserve(el); return pending(el); }))
      .then(() => drawn.size),
    renderOne: (el) => pending(el).then(() => true),
    filter: (text) => { filter.value = text; applyFilter(); },
    pick: pick,
    setStep: steps.set,
    format: steps.format,
    setMode: (m) => { const s = document.getElementById("x-mode"); s.value = m; s.dispatchEvent(new Event("change")); },
  };
})();
"""
