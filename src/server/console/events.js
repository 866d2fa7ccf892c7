// The console's events and dead-letter pages: the events list, one event's trail, the dead
// letters and one letter. Loaded before app.js, whose helpers (h, show, api, status, eventLink,
// when, pretty) these use when they run; app.js routes to them.
"use strict";

// A `datetime-local` input's value (the browser's time zone) as RFC 3339 for the API, and back.
function toRfc3339(local) {
  const t = local ? new Date(local) : null;
  return t && !isNaN(t) ? t.toISOString() : "";
}
function toLocalInput(rfc3339) {
  const t = rfc3339 ? new Date(rfc3339) : null;
  if (!t || isNaN(t)) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())}T${pad(t.getHours())}:${pad(t.getMinutes())}`;
}

async function events(view, params) {
  // The refresh leaves the page alone while the user types in a search box.
  const typing = document.activeElement && ["search-key", "search-tenant", "search-since", "search-until"].includes(document.activeElement.id);
  if (typing && view.querySelector("#events, #no-events")) return true;
  const pipeline = params.get("pipeline") || "";
  const outcome = params.get("outcome") || "";
  const cursor = params.get("cursor") || "";
  const key = params.get("key") || "";
  const tenant = params.get("tenant") || "";
  const since = params.get("since") || "";
  const until = params.get("until") || "";
  const q = new URLSearchParams({ limit: "50" });
  if (pipeline) q.set("pipeline", pipeline);
  if (outcome) q.set("outcome", outcome);
  if (cursor) q.set("cursor", cursor);
  if (key) q.set("key", key);
  if (tenant) q.set("tenant", tenant);
  if (since) q.set("since", since);
  if (until) q.set("until", until);
  const [page, info, refused] = await Promise.all([api("/api/events?" + q), api("/api/pipelines"), api("/api/refused")]);
  const go = (changes) => {
    const next = new URLSearchParams({ pipeline, outcome, key, tenant, since, until });
    for (const [k, v] of Object.entries(changes)) next.set(k, v);
    for (const [k, v] of [...next]) if (!v) next.delete(k);
    location.hash = "#/events?" + next;
  };
  const select = (id, value, options, key) => h("select", { id, onchange: (e) => go({ [key]: e.target.value }) },
    options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
  show(view, 
    h("h1", {}, "Events"),
    h("div", { class: "filters" },
      h("label", {}, "Pipeline", select("filter-pipeline", pipeline, [["", "all"], ...info.pipelines.map((p) => [p.name, p.name])], "pipeline")),
      h("label", {}, "Outcome", select("filter-outcome", outcome,
        [["", "all"], ...["processed", "skipped", "filtered", "retrying", "dead_lettered", "failed", "dropped"].map((o) => [o, o])], "outcome")),
      h("form", { id: "search", class: "filters", onsubmit: (e) => {
        e.preventDefault();
        go({ key: document.getElementById("search-key").value.trim(), tenant: document.getElementById("search-tenant").value.trim(),
          since: toRfc3339(document.getElementById("search-since").value), until: toRfc3339(document.getElementById("search-until").value), cursor: "" });
      } },
        h("label", {}, "Business key", h("input", { id: "search-key", type: "search", placeholder: "order:1001", value: key, size: 28 })),
        h("label", {}, "Tenant", h("input", { id: "search-tenant", type: "search", value: tenant, size: 12 })),
        h("label", {}, "From", h("input", { id: "search-since", type: "datetime-local", value: toLocalInput(since) })),
        h("label", {}, "To", h("input", { id: "search-until", type: "datetime-local", value: toLocalInput(until) })),
        h("button", { type: "submit" }, "Search"))),
    page.items.length ? h("table", { id: "events" },
      h("thead", {}, h("tr", {}, ["Event", "Pipeline", "Keys", "Outcome", "Received", "Attempts", "Actions", "ms", "Last error"].map((t) => h("th", {}, t)))),
      h("tbody", {}, page.items.map((e) => h("tr", { "data-event": e.event_id },
        h("td", {}, eventLink(e.event_id)), h("td", {}, e.pipeline, e.tenant ? h("div", { class: "muted" }, "tenant " + e.tenant) : ""),
        h("td", { class: "mono" }, Object.entries(e.keys || {}).map(([k, v]) => h("div", {}, k + ":" + v))), h("td", {}, status(e.status)),
        h("td", {}, when(e.received_at)), h("td", {}, e.attempts), h("td", {}, e.actions), h("td", {}, e.total_ms),
        h("td", { class: "error" }, e.last_error || "")))))
      : h("p", { class: "muted", id: "no-events" }, "No finished events match" + (page.next ? " in this stretch." : ".")),
    h("div", { class: "actions" },
      cursor ? h("button", { type: "button", onclick: () => go({ cursor: "" }) }, "Newest") : "",
      page.next ? h("button", { type: "button", id: "older", onclick: () => go({ cursor: page.next }) }, "Older") : ""),
    h("p", { class: "muted" }, "Newest first, from the stored trails (kept keep_trails). A business key is one of a pipeline's keys: (order:1001, sku:OAK-CH-01). Events still queued are under Overview → Pending."),
    refused.items.length ? [
      h("h2", {}, `Deliveries refused for their signature (the last ${refused.items.length}, kept in memory up to ${refused.kept_at_most})`),
      h("table", { id: "refused" },
        h("thead", {}, h("tr", {}, ["At", "Pipeline", "Scheme", "Why", "Bytes", "Delivery"].map((t) => h("th", {}, t)))),
        h("tbody", {}, refused.items.map((r) => h("tr", {},
          h("td", {}, when(r.at)), h("td", {}, r.pipeline), h("td", {}, r.scheme), h("td", { class: "error" }, r.reason), h("td", {}, r.bytes),
          h("td", {}, h("details", {}, h("summary", {}, "headers and body"), h("pre", {}, pretty(r.headers)), h("pre", {}, r.body)))))))] : "");
  return !cursor;
}

// An event's delivery as received: the signature check, headers (secrets masked) and the first
// 4 KB of the body; "Load all" fetches the rest only when asked.
async function rawView(id) {
  const raw = await api("/api/events/" + encodeURIComponent(id) + "/raw").catch(() => null);
  if (!raw) return h("p", { class: "muted" }, "No delivery kept (forgotten with the trail, or never received).");
  const body = h("pre", { id: "raw-body" }, raw.preview);
  const all = async (e) => {
    e.preventDefault();
    const r = await fetch("/api/events/" + encodeURIComponent(id) + "/body", { headers: { Authorization: "Bearer " + token() } });
    body.textContent = r.ok ? await r.text() : "could not load: " + r.status;
    e.target.remove();
  };
  return [
    h("p", {}, h("b", {}, "Signature: "), h("span", { id: "raw-signature" }, raw.signature)),
    h("h3", {}, "Headers"), h("pre", { id: "raw-headers" }, pretty(raw.headers)),
    h("h3", {}, "Body ", h("span", { class: "muted" }, raw.truncated ? `(first ${raw.preview.length} of ${raw.bytes} bytes)` : `(${raw.bytes} bytes)`)),
    body,
    raw.truncated ? h("a", { href: "#", id: "raw-load-all", onclick: all }, raw.kept < raw.bytes ? `Load all kept (${raw.kept} bytes)` : "Load all") : "",
  ];
}

function trailView(t) {
  return [
    h("table", { class: "facts" }, h("tbody", {},
      [["Pipeline", t.pipeline], ["Outcome", status(t.status)], ["Project version", h("span", { class: "mono" }, t.version)],
        ["Received", when(t.received_at)], ["Finished", when(t.finished_at)], ["Attempts", t.attempts],
        ["Keys", h("span", { class: "mono" }, Object.entries(t.keys || {}).map(([k, v]) => k + ":" + v).join("  "))], ["Tenant", t.tenant || ""],
        ["Time in the flow", (t.flow_us / 1000).toFixed(2) + " ms"], ["Receipt to end", t.total_ms + " ms"]]
        .map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v))))),
    h("h2", {}, "Steps, in the order they ran"),
    (t.steps || []).length ? h("ol", { class: "steps", id: "steps" }, t.steps.map((s) => h("li", { class: "mono" }, s)))
      : h("p", { class: "muted" }, "No step ran."),
    explanationView(t), // trail.js
    h("h2", {}, "Actions"),
    (t.actions || []).length ? h("table", { id: "actions" },
      h("thead", {}, h("tr", {}, ["Connector", "Operation", "Object", "Status", "Remote status", "Remote id", "ms", "Error"].map((x) => h("th", {}, x)))),
      h("tbody", {}, t.actions.map((a) => h("tr", {},
        h("td", {}, a.connector), h("td", {}, a.op), h("td", {}, a.object || ""), h("td", {}, status(a.status)),
        h("td", {}, a.remote_status ?? ""), h("td", { class: "mono" }, a.remote_id || ""), h("td", {}, a.ms),
        h("td", { class: "error" }, a.error || "")))))
      : h("p", { class: "muted" }, "No action was sent."),
    (t.errors || []).length ? [h("h2", {}, "Errors, every attempt"),
      h("ol", { id: "errors" }, t.errors.map((e) => h("li", {}, h("span", { class: "muted" }, when(e.at) + " "), h("span", { class: "error" }, e.message))))] : "",
  ];
}

async function eventPage(view, id) {
  const t = await api("/api/events/" + encodeURIComponent(id));
  show(view, h("h1", {}, "Event ", h("span", { class: "mono" }, t.event_id || id)),
    t.last_attempt !== undefined
      ? [h("p", {}, "Still in the inbox: ", status(t.status), `, ${t.attempts} attempts.`), t.last_attempt ? trailView(t.last_attempt) : ""]
      : trailView(t),
    h("h2", {}, "Delivery as received"), await rawView(id));
  return t.status === "queued" || t.status === "retrying";
}

const RETRIED_KEY = "crossdock.retried";

async function dlqList(view, params) {
  if (params && params.get("retried")) return retriedView(view);
  // The refresh leaves the page alone while the user fills in the retry form.
  const form = view.querySelector("#retry-matching");
  const editing = form && (form.contains(document.activeElement) ||
    [...form.elements].some((e) => e.name && (e.name === "version" ? e.value !== "live" : e.value)));
  if (editing) return true;
  const [page, info] = await Promise.all([api("/api/dlq?limit=200"), api("/api/pipelines")]);
  const outcome = h("p", { id: "retry-matching-outcome", role: "status" });
  const retryMatching = async (e) => {
    e.preventDefault();
    const form = e.target;
    const filter = { version: form.elements.version.value };
    for (const name of ["pipeline", "error", "key", "since", "until"]) {
      const v = form.elements[name].value.trim();
      if (v) filter[name] = name === "since" || name === "until" ? new Date(v).toISOString() : v;
    }
    try {
      const r = await api("/api/dlq/retry", { method: "POST", body: JSON.stringify(filter), headers: { "Content-Type": "application/json" } });
      sessionStorage.setItem(RETRIED_KEY, JSON.stringify({ at: new Date().toISOString(), ...r }));
      location.hash = "#/dlq?retried=1";
    } catch (err) { outcome.replaceChildren(h("span", { class: "error" }, err.message)); }
  };
  show(view, h("h1", {}, "Dead letters ", h("span", { class: "muted" }, `(${page.total})`)),
    h("form", { id: "retry-matching", class: "filters", onsubmit: retryMatching },
      h("label", {}, "Pipeline", h("select", { name: "pipeline" }, h("option", { value: "" }, "all"), info.pipelines.map((p) => h("option", { value: p.name }, p.name)))),
      h("label", {}, "Reason contains", h("input", { name: "error", type: "search", size: 18 })),
      h("label", {}, "Business key", h("input", { name: "key", type: "search", placeholder: "order:1001", size: 16 })),
      h("label", {}, "Dead since", h("input", { name: "since", type: "datetime-local" })),
      h("label", {}, "Dead before", h("input", { name: "until", type: "datetime-local" })),
      h("label", {}, "Run on", h("select", { name: "version", id: "retry-version" },
        h("option", { value: "live" }, "the live version (" + String(info.version).slice(0, 12) + ")"),
        h("option", { value: "failed" }, "the version each failed on, where it is still the live one"))),
      h("button", { type: "submit", id: "retry-all" }, "Retry all matching")),
    outcome,
    h("p", { class: "muted" }, "Only the live version can run: after a reload the version a letter failed on is gone, so " +
      "\"the version each failed on\" retries only the letters that failed on the live one and lists the others."),
    page.items.length ? h("table", { id: "dead-letters" },
      h("thead", {}, h("tr", {}, ["Event", "Pipeline", "Keys", "Dead since", "Failed on version", "Attempts", "Reason"].map((t) => h("th", {}, t)))),
      h("tbody", {}, page.items.map((l) => h("tr", { "data-event": l.event_id },
        h("td", {}, h("a", { href: "#/dlq/" + encodeURIComponent(l.event_id), class: "mono" }, l.event_id)),
        h("td", {}, l.pipeline), h("td", { class: "mono" }, Object.entries(l.keys || {}).map(([k, v]) => h("div", {}, k + ":" + v))),
        h("td", {}, when(l.dead_at)),
        h("td", { class: "mono" }, String(l.version || "").slice(0, 12), l.version === info.version ? h("span", { class: "muted" }, " (live)") : ""),
        h("td", {}, l.attempts), h("td", { class: "error" }, l.reason)))))
      : h("p", { id: "no-dead-letters" }, "No dead letters."));
  return true;
}

// The dead letters a "retry all matching" put back, followed to their outcomes as they finish.
async function retriedView(view) {
  const r = JSON.parse(sessionStorage.getItem(RETRIED_KEY) || "null");
  if (!r) { location.hash = "#/dlq"; return false; }
  const shown = r.event_ids.slice(0, 100);
  const now = await Promise.all(shown.map((id) => api("/api/events/" + encodeURIComponent(id)).catch((e) => ({ status: "unknown", error: e.message }))));
  const waiting = now.filter((t) => t.status === "queued" || t.status === "retrying").length;
  show(view, h("h1", {}, "Retried dead letters"),
    h("p", { id: "retried-summary" }, `${r.retried} retried on version ${String(r.version).slice(0, 12)} at ${when(r.at)}; `,
      waiting ? `${waiting} still running.` : "all finished.",
      r.more ? " More matched than one call retries: retry all matching again for the next ones." : ""),
    r.retried > shown.length ? h("p", { class: "muted" }, `The first ${shown.length} are followed here.`) : "",
    (r.not_retried || []).length ? [h("h2", {}, "Not retried"), h("ul", { id: "not-retried" }, r.not_retried.map((n) => h("li", {}, eventLink(n.event_id), " ", n.reason)))] : "",
    h("table", { id: "retried" },
      h("thead", {}, h("tr", {}, ["Event", "Pipeline", "Outcome", "Error (unless processed)"].map((t) => h("th", {}, t)))),
      h("tbody", {}, shown.map((id, i) => {
        const t = now[i];
        const last = t.last_attempt || t;
        return h("tr", { "data-event": id }, h("td", {}, eventLink(id)), h("td", {}, t.pipeline || ""), h("td", {}, status(t.status)),
          h("td", { class: "error" }, t.error || (t.status === "processed" ? "" : ((last.errors || []).slice(-1)[0] || {}).message || "")));
      }))),
    h("div", { class: "actions" }, h("a", { href: "#/dlq" }, "Back to the dead letters")));
  return waiting > 0;
}

async function dlqPage(view, id) {
  const path = "/api/dlq/" + encodeURIComponent(id);
  const [letter, trail, live] = await Promise.all([api(path), api("/api/events/" + encodeURIComponent(id)).catch(() => null), api("/api/pipelines")]);
  const outcome = h("p", { id: "dlq-outcome", role: "status" });
  const act = async (what, method, url) => {
    try {
      const r = await api(url, { method });
      outcome.replaceChildren(`${what}: ${r.status}. `, r.status === "queued" ? eventLink(id) : "");
      if (r.status === "queued") location.hash = "#/events/" + encodeURIComponent(id);
      else location.hash = "#/dlq";
    } catch (e) { outcome.replaceChildren(h("span", { class: "error" }, e.message)); }
  };
  show(view, 
    h("h1", {}, "Dead letter ", h("span", { class: "mono" }, id)),
    h("p", {}, h("b", {}, "Reason: "), h("span", { class: "error", id: "dlq-reason" }, letter.reason)),
    h("p", { class: "muted" }, `Pipeline ${letter.event.pipeline}, failed on version ${letter.version}, ${letter.event.attempts} attempts, dead since ${when(letter.dead_at)}. A retry runs on the live version` + (letter.version === live.version ? " (the one it failed on)." : "; the version it failed on is no longer live.")),
    h("div", { class: "actions" },
      h("button", { type: "button", id: "retry", onclick: () => act("Retry", "POST", path + "/retry") }, "Retry"),
      h("button", { type: "button", id: "drop", onclick: () => confirm("Drop this dead letter for good?") && act("Drop", "DELETE", path) }, "Drop")),
    outcome,
    h("h2", {}, "Body as received"), h("pre", {}, pretty(letter.body)),
    h("h2", {}, "Headers"), h("pre", {}, pretty(letter.event.headers)),
    trail ? [h("h2", {}, "Trail of the last attempt"), trailView(trail)] : "");
  return false;
}
