// canary dashboard: live updates over server-sent events, the charts of a
// revision's timeline (uPlot), and small conveniences. The server renders all
// HTML; this file only swaps the parts it sends and draws the charts.
"use strict";

window.canaryCharts = {};

const COLORS = {
  value: "#546e7a",
  pass: "#2e7d32",
  fail: "#c62828",
  stable: "#1565c0",
  threshold: "#ef6c00",
  nodata: "#9e9e9e",
};

function seconds(s) {
  s = Math.max(0, Math.floor(s));
  if (s < 120) return s + "s";
  if (s < 7200) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
}

function tick() {
  const now = Date.now() / 1000;
  for (const el of document.querySelectorAll(".since[data-since]")) {
    el.textContent = seconds(now - parseFloat(el.dataset.since));
  }
}

function noDataMarks(u, xs) {
  // A check without a value has nothing to plot; mark its time at the bottom.
  const ctx = u.ctx;
  const bottom = u.bbox.top + u.bbox.height;
  const size = 6 * devicePixelRatio;
  ctx.save();
  ctx.fillStyle = COLORS.nodata;
  for (const x of xs) {
    const cx = u.valToPos(x, "x", true);
    ctx.beginPath();
    ctx.moveTo(cx, bottom - size * 1.6);
    ctx.lineTo(cx - size, bottom);
    ctx.lineTo(cx + size, bottom);
    ctx.closePath();
    ctx.fill();
  }
  ctx.restore();
}

function fixedThresholds(u, d) {
  // A threshold that did not change is drawn across the whole chart, not only
  // between the first and the last check.
  const ctx = u.ctx;
  ctx.save();
  ctx.strokeStyle = COLORS.threshold;
  ctx.lineWidth = 2 * devicePixelRatio;
  ctx.setLineDash([10 * devicePixelRatio, 5 * devicePixelRatio]);
  for (const key of ["min", "max"]) {
    const values = (d[key] || []).filter((v) => v !== null);
    if (!values.length || values.some((v) => v !== values[0])) continue;
    const y = u.valToPos(values[0], "y", true);
    ctx.beginPath();
    ctx.moveTo(u.bbox.left, y);
    ctx.lineTo(u.bbox.left + u.bbox.width, y);
    ctx.stroke();
  }
  ctx.restore();
}

function buildChart(el, d) {
  const series = [{}];
  const data = [d.x];
  const keys = ["x"]; // which column is which, for anyone reading the chart back
  const noLine = () => null;
  const add = (key, opts) => {
    if (d[key]) {
      series.push(opts);
      data.push(d[key]);
      keys.push(key);
    }
  };
  add("value", { label: d.metric, stroke: COLORS.value, width: 1.5, spanGaps: true, points: { show: false } });
  add("pass", { label: "pass", stroke: COLORS.pass, paths: noLine, points: { show: true, size: 9, fill: COLORS.pass, stroke: COLORS.pass } });
  add("fail", { label: "fail", stroke: COLORS.fail, paths: noLine, points: { show: true, size: 12, fill: COLORS.fail, stroke: COLORS.fail } });
  add("stable", { label: "stable", stroke: COLORS.stable, width: 1.5, dash: [4, 4], spanGaps: true, points: { show: true, size: 5 } });
  add("min", { label: "threshold (min)", stroke: COLORS.threshold, width: 2, dash: [10, 5], spanGaps: true, points: { show: false } });
  add("max", { label: "threshold (max)", stroke: COLORS.threshold, width: 2, dash: [10, 5], spanGaps: true, points: { show: false } });
  add("limit", { label: "limit vs stable", stroke: COLORS.threshold, width: 2, dash: [3, 3], spanGaps: true, points: { show: false } });
  // A margin on both sides (at least 3 s, so one check has an axis).
  const pad = (min, max) => {
    const margin = Math.max((max - min) * 0.08, 3);
    return [min - margin, max + margin];
  };
  const hms = uPlot.fmtDate("{HH}:{mm}:{ss}");
  const utc = (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
  const opts = {
    width: Math.max(320, el.clientWidth || 800),
    height: 240,
    series,
    tzDate: utc,
    scales: { x: { time: true, range: (u, min, max) => pad(min, max) } },
    axes: [
      {
        // Whole seconds at least: the checks are seconds apart, and labels must not repeat.
        incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400],
        values: (u, splits) => splits.map((v) => hms(utc(v))),
        space: 70,
      },
      { size: 60 },
    ],
    hooks: { draw: [(u) => noDataMarks(u, d.nodata || []), (u) => fixedThresholds(u, d)] },
  };
  const chart = new uPlot(opts, data, el);
  chart.keys = keys;
  el.chart = chart;
  window.canaryCharts[d.metric] = chart;
}

function hydrate(root) {
  if (typeof uPlot === "undefined") return;
  for (const el of root.querySelectorAll(".chart")) {
    const source = el.nextElementSibling;
    if (!source || !source.classList.contains("chart-data")) continue;
    try {
      buildChart(el, JSON.parse(source.textContent));
    } catch (err) {
      el.textContent = "this chart could not be drawn: " + err;
    }
  }
}

function release(root) {
  for (const el of root.querySelectorAll(".chart")) {
    if (el.chart) el.chart.destroy();
  }
}

function fromHTML(html) {
  const template = document.createElement("template");
  template.innerHTML = html.trim();
  return template.content.firstElementChild;
}

function replacePart(id, html) {
  const old = document.getElementById(id);
  if (!old) return;
  const fresh = fromHTML(html);
  if (!fresh) return;
  release(old);
  old.replaceWith(fresh);
  hydrate(fresh);
}

function rowOrder(tr) {
  return [tr.dataset.namespace, tr.dataset.key.slice(tr.dataset.namespace.length + 1)];
}

function before(a, b) {
  return a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
}

function upsertRow(tbody, key, html) {
  const old = tbody.querySelector(`tr[data-key="${CSS.escape(key)}"]`);
  if (html === null) {
    if (old) old.remove();
    return;
  }
  const fresh = fromHTML(`<table><tbody>${html}</tbody></table>`).querySelector("tr");
  if (old) {
    old.replaceWith(fresh);
    return;
  }
  const order = rowOrder(fresh);
  const next = Array.from(tbody.rows).find((tr) => before(order, rowOrder(tr)));
  tbody.insertBefore(fresh, next || null);
}

function apply(update) {
  for (const [id, html] of Object.entries(update.parts || {})) replacePart(id, html);
  const tbody = document.getElementById("rows");
  if (tbody && typeof update.tbody === "string") {
    tbody.innerHTML = update.tbody;
  }
  if (tbody && update.rows) {
    for (const r of update.rows) upsertRow(tbody, r.key, r.html);
  }
  const empty = document.getElementById("empty");
  if (empty && tbody) empty.hidden = tbody.rows.length > 0;
  document.body.dataset.updates = String(parseInt(document.body.dataset.updates || "0", 10) + 1);
  tick();
}

function connect() {
  const url = document.body.dataset.stream;
  const live = document.getElementById("live");
  const show = (state) => {
    if (!live) return;
    live.dataset.state = state;
    live.textContent = state;
  };
  if (!url || url.includes("view=none")) {
    show("static");
    return;
  }
  const source = new EventSource(url);
  source.addEventListener("hello", () => show("live"));
  source.onmessage = (event) => apply(JSON.parse(event.data));
  source.onerror = () => show("reconnecting");
}

document.addEventListener("DOMContentLoaded", () => {
  for (const select of document.querySelectorAll("select.autosubmit")) {
    select.addEventListener("change", () => select.form.submit());
  }
  hydrate(document);
  tick();
  setInterval(tick, 1000);
  window.addEventListener("resize", () => {
    for (const el of document.querySelectorAll(".chart")) {
      if (el.chart) el.chart.setSize({ width: Math.max(320, el.clientWidth), height: 240 });
    }
  });
  connect();
});
