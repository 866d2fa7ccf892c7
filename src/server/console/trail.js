// An event's explanation on its trail page: each step in the order it ran with what it saw and
// did (the trail's `explanation`, docs/runtime.md). Conditions read as
// `when`: the same with the values it read → result → where it went; a script's `if`s with their
// file:line:col, the values they read and what they came to; record and state changes
// as +/−/~ lines; each send with its payload and the remote's answer from the trail's actions.
// Uses h() from app.js; data goes into the page as text, never as HTML.
"use strict";

// The parenthesised part of a step label: "steps[4].switch[0].steps[0] (send salesforce upsert
// Opportunity)" → "send salesforce upsert Opportunity".
function stepKind(label) {
  const m = /\(([^()]*)\)\s*$/.exec(label || "");
  return m ? m[1] : label || "";
}

function quote(v) {
  return JSON.stringify(v === undefined ? null : v);
}

// "`when`: with values → result", the line a person reads to see why.
function testLine(test) {
  const outcome = test.error !== undefined ? "error: " + test.error : String(test.result);
  return [h("code", {}, test.when), ": ", h("span", { class: "mono" }, test.with_values), " → ", h("b", {}, outcome)];
}

function readsLine(reads) {
  if (!(reads || []).length) return "";
  return h("div", { class: "muted reads" }, "read ",
    reads.map((r, i) => [i ? ", " : "", h("span", { class: "mono" }, r.read + " = " + (r.missing ? "(missing)" : quote(r.value)))]));
}

// A script's `if`s as it evaluated them: "scripts/x.rhai:19:1  amount >= 100.0  (amount = 612.5)
// → true", the line that says why a script went the way it did.
function decisionLines(x) {
  const ds = x.decisions || [];
  if (!ds.length) return "";
  const line = (d) => {
    const outcome = d.error !== undefined ? "error: " + d.error : String(d.result);
    const reads = (d.reads || []).map((r) => r.read + " = " + (r.missing ? "(missing)" : quote(r.value))).join(", ");
    return h("div", { class: "decision script-decision" }, h("span", { class: "mono muted" }, d.at), "  ",
      h("code", {}, d.when), reads ? h("span", { class: "mono" }, "  (" + reads + ")") : "", " → ", h("b", {}, outcome));
  };
  return h("div", { class: "decisions" }, ds.map(line),
    x.decisions_omitted ? h("div", { class: "muted" }, `…and ${x.decisions_omitted} more decisions`) : "");
}

// One +/−/~ line per change, "…N more changes" after the last shown.
function diffLines(diff, what) {
  const changes = (diff && diff.changes) || [];
  if (!changes.length) return what === "record" ? h("div", { class: "muted" }, "the record did not change") : "";
  const line = (c) => {
    if (c.op === "+") return h("div", { class: "diff-add" }, "+ " + c.path + " = " + quote(c.new));
    if (c.op === "-") return h("div", { class: "diff-del" }, "− " + c.path + " (was " + quote(c.old) + ")");
    return h("div", { class: "diff-mod" }, "~ " + c.path + ": " + quote(c.old) + " → " + quote(c.new));
  };
  return h("div", { class: "diff mono" }, changes.map(line),
    diff.omitted ? h("div", { class: "muted" }, `…${diff.omitted} more changes`) : "");
}

function entryBody(x, trail) {
  switch (x.kind) {
    case "condition":
      return [h("div", { class: "decision" }, testLine(x.test), " → ", x.then), readsLine(x.test.reads)];
    case "switch": {
      const arms = (x.arms || []).map((test, i) => h("div", { class: i === x.taken ? "decision taken" : "decision" },
        testLine(test), i === x.taken ? [" → ", h("b", {}, stepKind(x.then))] : ""));
      const otherwise = x.otherwise ? h("div", { class: "decision taken" }, "otherwise → ", h("b", {}, stepKind(x.then))) : "";
      const none = x.taken === undefined ? h("div", { class: "muted" }, "no arm matched: the switch did nothing") : "";
      return [arms, otherwise, none, (x.arms || []).map((t) => readsLine(t.reads))];
    }
    case "change":
      return [
        x.call ? h("div", {}, "called ", h("span", { class: "mono" }, `${x.call.connector} ${x.call.op} ${quote(x.call.params)}`),
          x.call.error ? h("span", { class: "error" }, " → " + x.call.error) : "") : "",
        readsLine(x.reads),
        decisionLines(x),
        diffLines(x.diff, "record"),
        (x.state || []).map((w) => h("div", { class: "state" }, "state ", h("span", { class: "mono" }, w.key), diffLines(w.diff, "state"))),
      ];
    case "send": {
      const a = (trail.actions || [])[x.action] || {};
      const answer = [a.status ? status(a.status) : "not called",
        a.remote_status !== undefined ? ` ${a.remote_status}` : "",
        a.remote_id ? [" id ", h("span", { class: "mono remote-id" }, a.remote_id)] : "",
        a.at ? ` at ${when(a.at)}` : "", a.ms !== undefined ? ` in ${a.ms} ms` : "",
        a.error ? h("div", { class: "error" }, a.error) : ""];
      return [
        h("div", {}, "sent to ", h("b", {}, [x.connector, x.op, x.object].filter(Boolean).join(" ")), " → ", h("span", { class: "answer" }, answer)),
        h("pre", { class: "payload" }, JSON.stringify(x.payload, null, 2)),
      ];
    }
    case "each":
      return h("div", {}, `its steps ran for ${x.elements} elements (marked #0, #1, …)`);
    case "failed":
      return h("div", { class: "error" }, x.message);
    default:
      return h("pre", {}, JSON.stringify(x, null, 2));
  }
}

// The explanation's section of a trail page; nothing when the trail has none.
function explanationView(t) {
  const e = t && t.explanation;
  if (!e || !(e.entries || []).length) return "";
  return [
    h("h2", {}, "Why: what each step saw and did"),
    h("ol", { class: "explain", id: "explain" }, e.entries.map((x) =>
      h("li", { class: "explain-" + x.kind, "data-step": x.step }, h("div", { class: "mono step" }, x.step), entryBody(x, t)))),
    e.omitted ? h("p", { class: "muted", id: "explain-omitted" }, `…${e.omitted} more entries omitted (an explanation is kept to 64 KB)`) : "",
  ];
}
