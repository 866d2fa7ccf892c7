// The overview's activity and history panels: per pipeline, a bar chart of the last hour's
// events per minute and the p50/p99 duration (from `activity` in GET /api/pipelines), and
// the project's last versions with the files each changed (GET /api/versions). Loaded before
// app.js, whose h() and when() it uses when the overview calls overviewPanels().
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const VERSIONS_SHOWN = 5;
// Bar colours, as presentation attributes: the page's policy allows no inline styles.
const FILL = { processed: "#1f7a3d", failed: "#8a5a00", dead_lettered: "#b3261e" };

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function millis(v) {
  if (v === null || v === undefined) return "–";
  if (v < 10) return v.toFixed(1) + " ms";
  if (v < 10000) return Math.round(v) + " ms";
  return (v / 1000).toFixed(1) + " s";
}

function total(series) { return series.reduce((a, b) => a + b, 0); }

// One column per minute: processed, failed and dead-lettered stacked, received as a line.
function activityChart(name, a) {
  const m = a.per_minute;
  const n = m.received.length;
  const step = 4, width = n * step, height = 36;
  const stacked = m.processed.map((p, i) => p + m.failed[i] + m.dead_lettered[i]);
  const top = Math.max(1, ...m.received, ...stacked);
  const scale = (v) => (v / top) * (height - 2);
  const chart = svg("svg", {
    class: "activity", "data-pipeline": name, width, height, viewBox: `0 0 ${width} ${height}`,
    role: "img", "aria-label": `${name}: ${total(m.received)} received in the last hour`,
  });
  chart.append(svg("line", { x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5, stroke: "#d8dde5" }));
  for (let i = 0; i < n; i++) {
    const at = new Date((m.start_minute + i * 60) * 1000);
    const label = `${at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}: ${m.received[i]} in, `
      + `${m.processed[i]} processed, ${m.failed[i]} failed, ${m.dead_lettered[i]} dead-lettered`;
    const column = svg("g", { "data-minute": i }, svg("title", {}, label));
    let y = height;
    for (const kind of ["processed", "failed", "dead_lettered"]) {
      const h = scale(m[kind][i]);
      if (h <= 0) continue;
      y -= h;
      column.append(svg("rect", { x: i * step, y, width: step - 1, height: h, fill: FILL[kind], class: kind }));
    }
    // A transparent column, so the minute's title shows wherever the pointer is on it.
    column.append(svg("rect", { x: i * step, y: 0, width: step, height, fill: "transparent" }));
    chart.append(column);
  }
  const points = m.received.map((v, i) => `${i * step + step / 2},${height - scale(v)}`).join(" ");
  chart.append(svg("polyline", { points, fill: "none", stroke: "#2456b8", "stroke-width": 1, class: "received" }));
  return chart;
}

function activityTable(info) {
  return h("table", { id: "activity" },
    h("thead", {}, h("tr", {}, ["Pipeline", "Last hour, per minute", "In", "Processed", "Failed", "Dead-lettered", "p50", "p99"]
      .map((t) => h("th", {}, t)))),
    h("tbody", {}, info.pipelines.filter((p) => p.activity).map((p) => {
      const a = p.activity, m = a.per_minute;
      return h("tr", { "data-pipeline": p.name },
        h("td", {}, p.name),
        h("td", {}, activityChart(p.name, a)),
        h("td", { class: "received" }, total(m.received)),
        h("td", {}, total(m.processed)),
        h("td", {}, total(m.failed)),
        h("td", {}, total(m.dead_lettered)),
        h("td", { class: "p50" }, millis(a.latency_ms.p50)),
        h("td", { class: "p99" }, millis(a.latency_ms.p99)));
    })));
}

function fileList(v) {
  // The first version has every file as added: their number says enough.
  if (v.trigger === "start") return h("span", { class: "muted" }, `${v.added.length} files`);
  const parts = [];
  for (const [key, sign] of [["added", "+"], ["changed", "~"], ["removed", "−"]]) {
    for (const f of v[key]) parts.push(h("div", { class: "mono " + key }, sign + " " + f));
  }
  return parts.length ? parts : h("span", { class: "muted" }, "no file changed");
}

function versionTable(versions) {
  return h("table", { id: "versions" },
    h("thead", {}, h("tr", {}, ["Version", "Live from", "By", "Files"].map((t) => h("th", {}, t)))),
    h("tbody", {}, versions.slice(0, VERSIONS_SHOWN).map((v) => h("tr", { "data-version": v.version },
      h("td", { class: "mono" }, String(v.version).slice(0, 12)),
      h("td", {}, when(v.at)),
      h("td", {}, v.trigger),
      h("td", {}, fileList(v))))));
}

// The overview's panels after the pipelines table; a version list the API cannot give (an
// older engine) is left out rather than failing the page.
async function overviewPanels(info) {
  const history = await api("/api/versions").catch(() => null);
  return [
    h("h2", {}, "Activity"),
    activityTable(info),
    h("p", { class: "muted" }, "Bars: processed, failed attempts, dead-lettered; line: received. "
      + "p50/p99: event duration since the engine started."),
    history ? [h("h2", {}, "Versions"), versionTable(history.versions),
      history.versions.length > VERSIONS_SHOWN ? h("p", { class: "muted" },
        `The last ${VERSIONS_SHOWN} of ${history.versions.length}; GET /api/versions has them all.`) : ""] : "",
  ];
}
