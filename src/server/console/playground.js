// The console's playground (#/playground): a dry run of a pipeline that follows the payload as
// it is typed. Loaded before app.js, whose helpers (h, show, api, pretty) it calls at run time.
"use strict";

// What a dry run decided, before its full JSON: whether the trigger matched, the steps that ran,
// the actions it would send and its errors.
function dryRunSummary(r) {
  const errors = r.errors || [];
  return [
    h("p", {}, r.triggered ? (r.filtered ? "Triggered, then dropped by a filter." : "Triggered.") : "The trigger did not match: the event would be skipped."),
    errors.length ? h("div", { class: "error", id: "dry-run-errors" }, errors.map(pretty).join("\n")) : "",
    (r.steps || []).length ? h("ol", { class: "steps" }, r.steps.map((st) => h("li", { class: "mono" }, st))) : "",
    h("table", { id: "dry-run-actions" },
      h("thead", {}, h("tr", {}, ["Would send to", "Operation", "Object"].map((x) => h("th", {}, x)))),
      h("tbody", {}, (r.actions || []).map((a) => h("tr", {}, h("td", {}, a.connector), h("td", {}, a.op), h("td", {}, a.object || ""))))),
  ];
}

async function playground(view, params) {
  const info = await api("/api/pipelines");
  const pick = params.get("pipeline") || (info.pipelines[0] && info.pipelines[0].name) || "";
  const input = h("textarea", { id: "payload", spellcheck: "false" }, sessionStorage.getItem("crossdock.payload") || "{}");
  const out = h("div", { id: "dry-run" });
  const select = h("select", { id: "playground-pipeline" }, info.pipelines.map((p) => h("option", { value: p.name, selected: p.name === pick }, p.name)));
  let seq = 0, debounce = null;
  const run = async () => {
    const mine = ++seq;
    sessionStorage.setItem("crossdock.payload", input.value);
    try {
      JSON.parse(input.value);
    } catch (e) {
      show(out, h("p", { class: "error" }, "Not JSON: " + e.message));
      return;
    }
    try {
      const r = await api("/api/pipelines/" + encodeURIComponent(select.value) + "/dry-run", { method: "POST", body: input.value });
      if (mine !== seq) return;
      show(out, dryRunSummary(r), h("h2", {}, "Full result"), h("pre", {}, pretty(r)));
    } catch (e) {
      if (mine === seq) show(out, h("p", { class: "error" }, e.message));
    }
  };
  const soon = () => { clearTimeout(debounce); debounce = setTimeout(run, 300); };
  input.addEventListener("input", soon);
  select.addEventListener("change", run);
  show(view, h("h1", {}, "Playground"),
    h("p", { class: "muted" }, "A dry run on the live version: nothing is sent and no state is written. Fetch steps cannot be answered here."),
    h("div", { class: "filters" }, h("label", {}, "Pipeline", select)),
    h("div", { class: "split" }, h("div", {}, h("h2", {}, "Payload"), input), h("div", {}, h("h2", {}, "Dry run"), out)));
  run();
  return false;
}
