// The console's events and dead-letter pages: the events list, one event's trail, the dead
// letters and one letter. Loaded before app.js, whose helpers (h, show, api, status, eventLink,
// when, pretty) these use when they run; app.js routes to them.
"use strict";

async function events(view, params) {
  const pipeline = params.get("pipeline") || "";
  const outcome = params.get("outcome") || "";
  const cursor = params.get("cursor") || "";
  const q = new URLSearchParams({ limit: "50" });
  if (pipeline) q.set("pipeline", pipeline);
  if (outcome) q.set("outcome", outcome);
  if (cursor) q.set("cursor", cursor);
  const [page, info] = await Promise.all([api("/api/events?" + q), api("/api/pipelines")]);
  const go = (changes) => {
    const next = new URLSearchParams({ pipeline, outcome });
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
        [["", "all"], ...["processed", "skipped", "filtered", "retrying", "dead_lettered", "failed", "dropped"].map((o) => [o, o])], "outcome"))),
    page.items.length ? h("table", { id: "events" },
      h("thead", {}, h("tr", {}, ["Event", "Pipeline", "Outcome", "Received", "Attempts", "Actions", "ms", "Last error"].map((t) => h("th", {}, t)))),
      h("tbody", {}, page.items.map((e) => h("tr", { "data-event": e.event_id },
        h("td", {}, eventLink(e.event_id)), h("td", {}, e.pipeline), h("td", {}, status(e.status)),
        h("td", {}, when(e.received_at)), h("td", {}, e.attempts), h("td", {}, e.actions), h("td", {}, e.total_ms),
        h("td", { class: "error" }, e.last_error || "")))))
      : h("p", { class: "muted" }, "No finished events match" + (page.next ? " in this stretch." : ".")),
    h("div", { class: "actions" },
      cursor ? h("button", { type: "button", onclick: () => go({ cursor: "" }) }, "Newest") : "",
      page.next ? h("button", { type: "button", id: "older", onclick: () => go({ cursor: page.next }) }, "Older") : ""),
    h("p", { class: "muted" }, "Newest first, from the stored trails (kept keep_trails). Events still queued are under Overview → Pending."));
  return !cursor;
}

function trailView(t) {
  return [
    h("table", { class: "facts" }, h("tbody", {},
      [["Pipeline", t.pipeline], ["Outcome", status(t.status)], ["Project version", h("span", { class: "mono" }, t.version)],
        ["Received", when(t.received_at)], ["Finished", when(t.finished_at)], ["Attempts", t.attempts],
        ["Time in the flow", (t.flow_us / 1000).toFixed(2) + " ms"], ["Receipt to end", t.total_ms + " ms"]]
        .map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v))))),
    h("h2", {}, "Steps, in the order they ran"),
    (t.steps || []).length ? h("ol", { class: "steps", id: "steps" }, t.steps.map((s) => h("li", { class: "mono" }, s)))
      : h("p", { class: "muted" }, "No step ran."),
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
      : trailView(t));
  return t.status === "queued" || t.status === "retrying";
}

async function dlqList(view) {
  const page = await api("/api/dlq?limit=200");
  show(view, h("h1", {}, "Dead letters ", h("span", { class: "muted" }, `(${page.total})`)),
    page.items.length ? h("table", { id: "dead-letters" },
      h("thead", {}, h("tr", {}, ["Event", "Pipeline", "Dead since", "Attempts", "Reason"].map((t) => h("th", {}, t)))),
      h("tbody", {}, page.items.map((l) => h("tr", { "data-event": l.event_id },
        h("td", {}, h("a", { href: "#/dlq/" + encodeURIComponent(l.event_id), class: "mono" }, l.event_id)),
        h("td", {}, l.pipeline), h("td", {}, when(l.dead_at)), h("td", {}, l.attempts), h("td", { class: "error" }, l.reason)))))
      : h("p", { id: "no-dead-letters" }, "No dead letters."));
  return true;
}

async function dlqPage(view, id) {
  const path = "/api/dlq/" + encodeURIComponent(id);
  const [letter, trail] = await Promise.all([api(path), api("/api/events/" + encodeURIComponent(id)).catch(() => null)]);
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
    h("p", { class: "muted" }, `Pipeline ${letter.event.pipeline}, failed on version ${letter.version}, ${letter.event.attempts} attempts, dead since ${when(letter.dead_at)}. A retry runs on the live version.`),
    h("div", { class: "actions" },
      h("button", { type: "button", id: "retry", onclick: () => act("Retry", "POST", path + "/retry") }, "Retry"),
      h("button", { type: "button", id: "drop", onclick: () => confirm("Drop this dead letter for good?") && act("Drop", "DELETE", path) }, "Drop")),
    outcome,
    h("h2", {}, "Body as received"), h("pre", {}, pretty(letter.body)),
    h("h2", {}, "Headers"), h("pre", {}, pretty(letter.event.headers)),
    trail ? [h("h2", {}, "Trail of the last attempt"), trailView(trail)] : "");
  return false;
}
