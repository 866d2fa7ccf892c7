// The crossdock console: a single page over the admin API. Every figure comes from /api,
// /health or /metrics at the time it is shown; the page keeps nothing but the token (in
// sessionStorage, for this tab only). Data is put into the page as text nodes, never as HTML,
// so a payload cannot run script here.
"use strict";

const TOKEN_KEY = "crossdock.token";
const REFRESH_MS = 3000;
let timer = null;

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

// h("td", {class: "x"}, "text", child...) builds an element; strings become text nodes.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Replaces what `view` shows; children as for h(), nested arrays and "" allowed.
function show(view, ...children) {
  view.replaceChildren(...children.flat(Infinity).filter((c) => c !== "" && c != null));
}

class Unauthorized extends Error {}

// Calls the admin API with the bearer token; a 401 logs out.
async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + token() }, options.headers || {});
  const r = await fetch(path, Object.assign({}, options, { headers }));
  if (r.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    throw new Unauthorized("the admin API refused the token");
  }
  const text = await r.text();
  let body;
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  if (!r.ok) throw new Error((body && body.error) || `${r.status} ${r.statusText}`);
  return body;
}

function status(word) { return h("span", { class: "status-" + word }, word); }
function eventLink(id) { return h("a", { href: "#/events/" + encodeURIComponent(id), class: "mono" }, id); }
function when(rfc) { return rfc ? new Date(rfc).toLocaleString() : ""; }
function pretty(v) { return typeof v === "string" ? v : JSON.stringify(v, null, 2); }

// Prometheus text → { name: [{labels, value}] } for the few series the overview shows.
function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    const m = /^([a-z_]+)(?:\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const pair of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    (out[m[1]] ||= []).push({ labels, value: Number(m[3]) });
  }
  return out;
}

function perPipeline(metrics, name) {
  const by = {};
  for (const s of metrics[name] || []) {
    const p = s.labels.pipeline || "";
    by[p] = (by[p] || 0) + s.value;
  }
  return by;
}

// ---- views -------------------------------------------------------------------------------

async function overview(view) {
  const [info, health, metricsText] = await Promise.all([
    api("/api/pipelines"),
    fetch("/health").then((r) => r.json()),
    fetch("/metrics").then((r) => r.text()),
  ]);
  const m = parseMetrics(metricsText);
  const panels = await overviewPanels(info); // overview.js
  const received = perPipeline(m, "crossdock_events_received_total");
  const processed = perPipeline(m, "crossdock_events_processed_total");
  const failed = perPipeline(m, "crossdock_events_failed_total");
  const dead = perPipeline(m, "crossdock_events_dead_lettered_total");
  const byConnector = (a, b) => (a.labels.connector || "").localeCompare(b.labels.connector || "");
  const breakers = (m.crossdock_connector_breaker_state || []).sort(byConnector).map((s) =>
    h("tr", {}, h("td", {}, s.labels.connector || ""), h("td", {}, ["closed", "open", "half-open"][s.value] || String(s.value))));
  show(view, 
    h("h1", {}, "Overview"),
    h("div", { class: "cards" },
      h("div", { class: "card" }, "Health", h("b", { id: "health", class: "status-" + (health.status === "ok" ? "ok" : "error") }, health.status)),
      h("div", { class: "card" }, "Version", h("b", { class: "mono" }, String(info.version).slice(0, 12))),
      h("div", { class: "card" }, "Pending", h("b", { id: "pending" }, health.pending)),
      h("div", { class: "card" }, "Dead letters", h("b", { id: "dead-letter-count" }, health.dead_letters)),
      h("div", { class: "card" }, "Live since", h("b", {}, when(info.since)))),
    info.last_reload_error ? h("div", {},
      h("h2", {}, "The last edit was refused at " + when(info.last_reload_error.at) + "; the version above still runs"),
      h("pre", { class: "error", id: "reload-error" }, info.last_reload_error.message)) : "",
    h("h2", {}, "Pipelines"),
    h("table", { id: "pipelines" },
      h("thead", {}, h("tr", {}, ["Pipeline", "Source", "File", "Received", "Processed", "Failed", "Dead-lettered"].map((t) => h("th", {}, t)))),
      h("tbody", {}, info.pipelines.map((p) => h("tr", { "data-pipeline": p.name },
        h("td", {}, h("a", { href: "#/events?pipeline=" + encodeURIComponent(p.name) }, p.name), h("div", { class: "muted" }, p.description || "")),
        h("td", { class: "mono" }, p.source.webhook ? "POST " + p.source.webhook : p.source.kind),
        h("td", { class: "mono" }, p.file),
        h("td", {}, received[p.name] || 0),
        h("td", {}, processed[p.name] || 0),
        h("td", {}, failed[p.name] || 0),
        h("td", {}, dead[p.name] || 0))))),
    panels,
    breakers.length ? [h("h2", {}, "Connector breakers"), h("table", {}, h("tbody", {}, breakers))] : "",
    Object.keys(info.unconfigured_connectors || {}).length ? [
      h("h2", {}, "Connectors not configured"),
      h("table", {}, h("tbody", {}, Object.entries(info.unconfigured_connectors).map(([name, u]) =>
        h("tr", {}, h("td", {}, name), h("td", {}, "calls go to " + u.stand_in + "; unset: " + u.missing.join(", "))))))] : "",
    h("p", { class: "muted" }, "Refreshed every " + REFRESH_MS / 1000 + " s."));
  return true;
}

// ---- routing -----------------------------------------------------------------------------

const ROUTES = [
  [/^#\/overview$/, overview],
  [/^#\/events$/, events],
  [/^#\/events\/([^?]+)$/, eventPage],
  [/^#\/dlq$/, dlqList],
  [/^#\/dlq\/([^?]+)$/, dlqPage],
  [/^#\/playground$/, playground],
];

let slot = null;
let slotHash = null;

async function render() {
  clearTimeout(timer);
  const loggedIn = token() !== "";
  document.getElementById("login").hidden = loggedIn;
  document.getElementById("nav").hidden = !loggedIn;
  const view = document.getElementById("view");
  if (!loggedIn) { show(view); document.getElementById("token").focus(); return; }
  const [path, query] = (location.hash || "#/overview").split("?");
  const params = new URLSearchParams(query || "");
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", path.startsWith(a.getAttribute("href")));
  const route = ROUTES.find(([re]) => re.test(path));
  if (!route) { location.hash = "#/overview"; return; }
  const arg = route[0].exec(path)[1];
  const here = location.hash;
  // Each page renders into a slot of its own: a render still waiting for the API when the
  // user moves on (a poll of the overview, say) then fills a slot no longer shown instead of
  // drawing over the page that replaced it. A poll of the same page reuses its slot.
  if (slotHash !== here || !slot || !slot.isConnected) {
    slot = h("div", {});
    slotHash = here;
    view.replaceChildren(slot);
  }
  const mine = slot;
  try {
    const again = await route[1](mine, arg !== undefined ? decodeURIComponent(arg) : params, params);
    // Live pages poll; a page with a form the user is editing does not.
    if (again && location.hash === here) timer = setTimeout(render, REFRESH_MS);
  } catch (e) {
    if (e instanceof Unauthorized) { render(); return; }
    show(mine, h("p", { class: "error", id: "view-error" }, e.message));
  }
}

document.getElementById("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value);
  try {
    await api("/api/pipelines");
    document.getElementById("login-error").textContent = "";
    document.getElementById("token").value = "";
    if (!location.hash) location.hash = "#/overview"; else render();
  } catch (err) {
    sessionStorage.removeItem(TOKEN_KEY);
    document.getElementById("login-error").textContent = err.message;
  }
});
document.getElementById("logout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); render(); });
window.addEventListener("hashchange", render);
render();
