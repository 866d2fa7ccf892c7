// The console's playground (#/playground): a dry run of a pipeline that follows the payload
// and the pipeline's mapping or script as they are typed (compiled on the server as `check`
// does, errors marked at their line), and saves the edited file through the checked API. Loaded before app.js, whose helpers (h, show, api, pretty) it calls at run time.
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

// The files a pipeline runs: its own file and the mappings and scripts it names.
function filesOf(pipelineText, pipelineFile, all) {
  const used = new Set([pipelineFile]);
  for (const m of pipelineText.matchAll(/\b(map|script):\s*["']?([\w.-]+)/g)) {
    const folder = m[1] === "map" ? "mappings/" : "scripts/";
    for (const f of all) if (f.startsWith(folder) && f.slice(folder.length).replace(/\.(ya?ml|rhai)$/, "") === m[2]) used.add(f);
  }
  const mine = all.filter((f) => used.has(f));
  // The first mapping or script, else the pipeline's own file, is what one edits first.
  return { mine, first: mine.find((f) => f !== pipelineFile) || pipelineFile };
}

// A plain textarea with a gutter of line numbers; mark(line) highlights one of them.
function editor() {
  const gutter = h("pre", { id: "editor-gutter", class: "gutter", "aria-hidden": "true" });
  const area = h("textarea", { id: "editor", spellcheck: "false", wrap: "off" });
  let marked = new Set();
  const paint = () => {
    const n = area.value.split("\n").length;
    gutter.replaceChildren(...Array.from({ length: n }, (_, i) =>
      h("div", { class: marked.has(i + 1) ? "mark" : null, "data-line": i + 1 }, String(i + 1))));
    gutter.scrollTop = area.scrollTop;
  };
  area.addEventListener("input", paint);
  area.addEventListener("scroll", () => { gutter.scrollTop = area.scrollTop; });
  return {
    el: h("div", { class: "editor" }, gutter, area),
    area,
    set(text) { area.value = text; marked = new Set(); paint(); },
    mark(lines) { marked = new Set(lines); paint(); },
  };
}

function diagnosticList(diags, file) {
  return h("ol", { id: "diagnostics", class: "error" }, diags.map((d) =>
    h("li", { class: d.file === file ? "here" : null },
      h("span", { class: "mono" }, `${d.file}:${d.line}:${d.col}`), ": " + d.message + (d.help ? ` (${d.help})` : ""))));
}

async function playground(view, params) {
  const [info, files] = await Promise.all([api("/api/pipelines"), api("/api/files")]);
  const pick = params.get("pipeline") || (info.pipelines[0] && info.pipelines[0].name) || "";
  const input = h("textarea", { id: "payload", spellcheck: "false" }, sessionStorage.getItem("crossdock.payload") || "{}");
  const answers = h("textarea", { id: "answers", spellcheck: "false", class: "short" }, "{}");
  const out = h("div", { id: "dry-run" });
  const select = h("select", { id: "playground-pipeline" }, info.pipelines.map((p) => h("option", { value: p.name, selected: p.name === pick }, p.name)));
  const fileSelect = h("select", { id: "playground-file" });
  const ed = editor();
  const saveStatus = h("span", { id: "save-status", role: "status" });
  const saveButton = h("button", { type: "button", id: "save", disabled: !files.save }, "Save");
  const source = h("select", { id: "payload-source" }, h("option", { value: "" }, "pasted"));
  const caseName = h("input", { id: "case-name", placeholder: "name of the case", size: 28 });
  const caseStatus = h("span", { id: "case-status", role: "status" });
  const caseButton = h("button", { type: "button", id: "save-case", disabled: !files.save }, "Save as test case");
  const original = {};
  let seq = 0, debounce = null;

  const run = async () => {
    const mine = ++seq;
    sessionStorage.setItem("crossdock.payload", input.value);
    let payload, given;
    try { payload = JSON.parse(input.value); } catch (e) {
      show(out, h("p", { class: "error" }, "Not JSON: " + e.message));
      return;
    }
    try { given = JSON.parse(answers.value || "{}"); } catch (e) {
      show(out, h("p", { class: "error" }, "Fetch answers are not JSON: " + e.message));
      return;
    }
    const file = fileSelect.value;
    const body = { payload, answers: given };
    // The live version runs unless the file differs from what was loaded.
    if (file && ed.area.value !== original[file]) Object.assign(body, { file, text: ed.area.value });
    try {
      const r = await api("/api/playground/" + encodeURIComponent(select.value), {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      if (mine !== seq) return;
      const diags = r.diagnostics || [];
      ed.mark(diags.filter((d) => d.file === file && d.severity === "error").map((d) => d.line));
      if (!r.result) {
        show(out, h("p", { class: "error" }, "The project does not compile with this text:"), diagnosticList(diags, file));
        return;
      }
      show(out, dryRunSummary(r.result), h("h2", {}, "Full result"), h("pre", { id: "dry-run-result" }, pretty(r.result)));
    } catch (e) {
      if (mine === seq) show(out, h("p", { class: "error" }, e.message));
    }
  };
  const soon = () => { clearTimeout(debounce); debounce = setTimeout(run, 300); };

  const loadFile = async (path) => {
    if (!(path in original)) original[path] = (await api("/api/files/" + path)).text;
    ed.set(original[path]);
    saveStatus.replaceChildren();
  };
  const choosePipeline = async () => {
    const p = info.pipelines.find((x) => x.name === select.value);
    const own = p ? String(p.file).replace(/\\/g, "/") : "";
    let text = "";
    try { text = (await api("/api/files/" + own)).text; } catch { /* a pipeline outside pipelines/ */ }
    const { mine, first } = filesOf(text, own, files.files);
    const others = files.files.filter((f) => !mine.includes(f));
    fileSelect.replaceChildren(
      h("optgroup", { label: "This pipeline" }, mine.map((f) => h("option", { value: f, selected: f === first }, f))),
      others.length ? h("optgroup", { label: "Other files" }, others.map((f) => h("option", { value: f }, f))) : "");
    if (first) await loadFile(fileSelect.value);
    run();
  };
  saveButton.addEventListener("click", async () => {
    const path = fileSelect.value;
    saveStatus.replaceChildren("Saving…");
    try {
      const r = await api("/api/files/" + path, { method: "PUT", body: ed.area.value });
      original[path] = ed.area.value;
      saveStatus.replaceChildren(h("span", { class: "status-" + (r.status === "live" ? "live" : "error") }, r.status), ` (version ${String(r.version).slice(0, 12)})`);
    } catch (e) {
      saveStatus.replaceChildren(h("span", { class: "error" }, e.message));
    }
  });

  // Payloads to start from: the project's fixtures, this pipeline's recent events (the body
  // each kept with its delivery) and the bodies of its dead letters.
  const fillSources = async () => {
    const [fixtures, dead, recent] = await Promise.all([
      api("/api/fixtures").catch(() => ({ fixtures: [] })),
      api("/api/dlq?limit=50").catch(() => ({ items: [] })),
      api("/api/events?limit=20&pipeline=" + encodeURIComponent(select.value)).catch(() => ({ items: [] })),
    ]);
    const letters = dead.items.filter((l) => l.pipeline === select.value);
    source.replaceChildren(h("option", { value: "" }, "pasted"),
      fixtures.fixtures.length ? h("optgroup", { label: "Fixtures (tests/fixtures)" },
        fixtures.fixtures.map((f) => h("option", { value: "fixture:" + f }, f))) : "",
      recent.items.length ? h("optgroup", { label: "Recent events" },
        recent.items.map((e) => h("option", { value: "event:" + e.event_id }, `${e.event_id} (${e.status}, ${when(e.received_at)})`))) : "",
      letters.length ? h("optgroup", { label: "Dead letters" },
        letters.map((l) => h("option", { value: "dead:" + l.event_id }, `${l.event_id} (${l.reason})`))) : "");
  };
  source.addEventListener("change", async () => {
    const [kind, ...rest] = source.value.split(":");
    const what = rest.join(":");
    try {
      if (kind === "fixture") input.value = (await api("/api/fixtures/" + what.split("/").map(encodeURIComponent).join("/"))).text;
      else if (kind === "event") {
        const body = await api("/api/events/" + encodeURIComponent(what) + "/body");
        input.value = typeof body === "string" ? body : JSON.stringify(body, null, 2);
      } else if (kind === "dead") {
        const body = (await api("/api/dlq/" + encodeURIComponent(what))).body;
        input.value = typeof body === "string" ? body : JSON.stringify(body, null, 2);
      } else return;
      run();
    } catch (e) { show(out, h("p", { class: "error" }, e.message)); }
  });
  // The case expects what the live version does, so an unsaved edit is saved first.
  caseButton.addEventListener("click", async () => {
    if (fileSelect.value && ed.area.value !== original[fileSelect.value]) {
      caseStatus.replaceChildren(h("span", { class: "error" }, "Save the edited file first: a test case runs the saved project."));
      return;
    }
    caseStatus.replaceChildren("Writing…");
    try {
      const r = await api("/api/test-cases/" + encodeURIComponent(select.value), {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name: caseName.value, payload: JSON.parse(input.value), answers: JSON.parse(answers.value || "{}") }),
      });
      caseStatus.replaceChildren(h("span", { class: "status-ok" }, "written"), " ", h("span", { class: "mono" }, r.path), ` (${r.actions} actions expected)`);
    } catch (e) {
      caseStatus.replaceChildren(h("span", { class: "error" }, e.message));
    }
  });
  input.addEventListener("input", soon);
  answers.addEventListener("input", soon);
  ed.area.addEventListener("input", soon);
  select.addEventListener("change", () => { fillSources(); choosePipeline(); });
  fileSelect.addEventListener("change", async () => { await loadFile(fileSelect.value); run(); });
  show(view, h("h1", {}, "Playground"),
    h("p", { class: "muted" }, "A dry run of the project as edited here: nothing is sent and no state is written. The live version runs until you save."),
    h("div", { class: "filters" }, h("label", {}, "Pipeline", select), h("label", {}, "File", fileSelect),
      saveButton, saveStatus),
    files.save ? "" : h("p", { class: "muted", id: "save-off" }, "Saving is off for this engine (server.console_save in crossdock.yaml)."),
    h("div", { class: "split" },
      h("div", {}, h("h2", {}, "Payload"), h("div", { class: "filters" }, h("label", {}, "Start from", source)), input,
        h("h2", {}, "Fetch answers"), h("p", { class: "muted" }, 'By connector.op, e.g. {"bigcommerce.get_cart": {...}}'), answers),
      h("div", {}, h("h2", {}, "Mapping or script"), ed.el, h("h2", {}, "Dry run"),
        h("div", { class: "actions" }, caseName, caseButton, caseStatus), out)));
  await Promise.all([fillSources(), choosePipeline()]);
  return false;
}
