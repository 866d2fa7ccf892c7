// The console in a real browser: Debian's Chromium driven by playwright-core against a running
// crossdock (started by tests/console.rs, which passes where it listens and how to reach it).
// Exits non-zero with the reason when something the console should show does not appear.
//
// Environment: CROSSDOCK_URL (http://127.0.0.1:PORT), CROSSDOCK_TOKEN (the admin token),
// CROSSDOCK_REPO (the repository, for fixtures), CROSSDOCK_PROJECT (the project the engine
// serves, a copy this script may edit), CROSSDOCK_SCREENSHOTS (a folder for the PNGs),
// CHROMIUM (the browser's path, /usr/bin/chromium when unset).
import { chromium } from "playwright-core";
import { createHmac } from "node:crypto";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const base = need("CROSSDOCK_URL");
const token = need("CROSSDOCK_TOKEN");
const repo = need("CROSSDOCK_REPO");
const shots = need("CROSSDOCK_SCREENSHOTS");
const projectDir = need("CROSSDOCK_PROJECT");
mkdirSync(shots, { recursive: true });

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

function check(cond, what) {
  if (!cond) throw new Error("console check failed: " + what);
  console.log("ok -", what);
}

// Shopify signs the raw body: base64 HMAC-SHA256 in X-Shopify-Hmac-Sha256, with the secret the
// shipped pipeline uses until SHOPIFY_WEBHOOK_SECRET is set (README, step 6).
async function postShopifyOrder(webhookId) {
  const body = readFileSync(join(repo, "tests/fixtures/shopify/orders-create.json"));
  const sig = createHmac("sha256", "demo-shopify-secret").update(body).digest("base64");
  const r = await fetch(base + "/hooks/shopify/orders", {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-shopify-topic": "orders/create",
      "x-shopify-webhook-id": webhookId,
      "x-shopify-hmac-sha256": sig,
    },
    body,
  });
  const answer = await r.json();
  check(r.status === 202, `the signed webhook is accepted (${r.status} ${JSON.stringify(answer)})`);
  return answer.event_id;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // Root in CI containers has no user namespace for Chromium's sandbox.
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
try {
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error" && !/401|404|422/.test(m.text())) errors.push(m.text()); });
  page.setDefaultTimeout(15000);

  // Without the token: the login form and nothing else.
  await page.goto(base + "/ui/");
  await page.waitForSelector("#login:not([hidden])");
  check(await page.locator("#nav").isHidden(), "the navigation is hidden before log in");
  check((await page.locator("#view").innerText()).trim() === "", "no data is shown before log in");
  await page.fill("#token", "not-the-token");
  await page.click("#login button[type=submit]");
  await page.waitForSelector("#login-error:has-text('token')");
  check(await page.locator("#nav").isHidden(), "a wrong token is refused");
  await page.screenshot({ path: join(shots, "login.png") });

  await page.fill("#token", token);
  await page.click("#login button[type=submit]");
  await page.waitForSelector("#pipelines");
  const names = await page.locator("#pipelines tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.pipeline));
  for (const p of ["bigcommerce-carts", "bigcommerce-orders", "customer-tier", "erp-inventory", "shopify-stock"]) {
    check(names.includes(p), `the overview lists the shipped pipeline ${p}`);
  }
  check((await page.locator("#health").innerText()) === "ok", "the overview shows /health");

  // A signed webhook whose backorder the ERP refuses (the test's ERP fails the first call): it
  // is dead-lettered, and its trail says why.
  const id = await postShopifyOrder("console-1");
  await page.goto(base + "/ui/#/events");
  await page.waitForSelector(`#events tr[data-event="${id}"] .status-dead_lettered`);
  check(true, "the events list shows the event as dead-lettered");
  await page.click(`#events tr[data-event="${id}"] a`);
  await page.waitForSelector("#steps");
  const steps = await page.locator("#steps li").allInnerTexts();
  check(steps.length > 0, `the trail lists the steps in order (${steps.join(", ")})`);
  const ops = await page.locator("#actions tbody td:nth-child(2)").allInnerTexts();
  check(ops.join(",") === "backorder,append", `the trail shows the backorder and the stock log actions (${ops})`);
  check(await page.locator("#actions .status-failed").count() >= 1, "the trail shows the failed call");

  // The overview counts it.
  await page.goto(base + "/ui/#/overview");
  await page.waitForFunction(() => document.querySelector("#dead-letter-count")?.textContent === "1");
  check(true, "the overview counts one dead letter");
  await page.screenshot({ path: join(shots, "overview.png"), fullPage: true });

  // Dead letters: list, show, retry; the ERP answers this time, and the event is processed.
  await page.click("#nav a[href='#/dlq']");
  await page.waitForSelector(`#dead-letters tr[data-event="${id}"]`);
  await page.click(`#dead-letters tr[data-event="${id}"] a`);
  await page.waitForSelector("#dlq-reason");
  check((await page.locator("#dlq-reason").innerText()).length > 0, "the dead letter shows its reason");
  await page.screenshot({ path: join(shots, "dead-letter.png"), fullPage: true });
  await page.click("#retry");
  await page.waitForSelector("#actions .status-ok", { timeout: 30000 });
  await page.waitForSelector(".facts .status-processed");
  check(true, "the retried dead letter is processed and its trail shows the call succeeded");
  await page.screenshot({ path: join(shots, "trail.png"), fullPage: true });
  await page.goto(base + "/ui/#/dlq");
  await page.waitForSelector("#no-dead-letters");
  check(true, "no dead letter is left");

  // Events: filter by outcome.
  await page.goto(base + "/ui/#/events?outcome=processed");
  await page.waitForSelector(`#events tr[data-event="${id}"]`);
  check(true, "the processed filter shows the retried event");
  await page.goto(base + "/ui/#/events?outcome=dead_lettered");
  await page.waitForSelector("text=No finished events match");
  check(true, "the dead-lettered filter shows none now");
  await page.goto(base + "/ui/#/events");
  await page.waitForSelector("#events");
  await page.screenshot({ path: join(shots, "events.png"), fullPage: true });

  // ---- Events search, an event's delivery, retry all matching -------------------------------
  // The retried Shopify order is found by its order id (the pipeline's `keys: { order: $.id }`),
  // and its page shows the delivery with the signature check it passed.
  await page.goto(base + "/ui/#/events");
  await page.waitForSelector("#search-key");
  await page.fill("#search-key", "order:1073459980");
  await page.click("#search button[type=submit]");
  await page.waitForSelector(`#events tr[data-event="${id}"]`);
  const found = await page.locator("#events tbody tr").count();
  check(found === 1, `the search by order id finds the event (${found} rows)`);
  await page.screenshot({ path: join(shots, "events-search.png"), fullPage: true });
  await page.fill("#search-key", "order:1");
  await page.click("#search button[type=submit]");
  await page.waitForSelector("#no-events");
  check(true, "another order id finds nothing");
  await page.goto(base + `/ui/#/events/${id}`);
  await page.waitForSelector("#raw-signature");
  check((await page.locator("#raw-signature").innerText()) === "shopify ok", "the event shows its signature check");
  check((await page.locator("#raw-body").innerText()).includes("1073459980"), "the event shows its body as received");

  // An order the bulk pipeline's remote refuses once: dead-lettered, then retried with every
  // letter of that pipeline from the dead-letter page, and followed to its delivery.
  const bulkPost = await fetch(base + "/hooks/bulk/orders", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ id: 5005, note: "bulk" }),
  });
  const bulkId = (await bulkPost.json()).event_id;
  check(bulkPost.status === 202, "the bulk order is accepted");
  await page.goto(base + "/ui/#/dlq");
  await page.waitForSelector(`#dead-letters tr[data-event="${bulkId}"]`);
  check((await page.locator(`#dead-letters tr[data-event="${bulkId}"]`).innerText()).includes("(live)"),
    "the dead letter shows it failed on the live version");
  await page.selectOption("#retry-matching select[name=pipeline]", "bulk-orders");
  await page.fill("#retry-matching input[name=error]", "400");
  await page.click("#retry-all");
  await page.waitForSelector(`#retried tr[data-event="${bulkId}"] .status-processed`, { timeout: 30000 });
  await page.waitForSelector("#retried-summary:has-text('all finished')");
  check((await page.locator("#retried-summary").innerText()).startsWith("1 retried"), "retry all matching retried the one letter");
  check(true, "the retried letter is shown delivered");
  await page.screenshot({ path: join(shots, "retry-matching.png"), fullPage: true });
  // ---- end of the events search block ------------------------------------------------------

  // A broken mapping: the engine keeps the running version and the overview shows why the
  // edit was refused, at its file, line and column; mending it clears the error.
  const mappingPath = join(projectDir, "mappings/bigcommerce-cart.yaml");
  const mapping = readFileSync(mappingPath, "utf8");
  check(mapping.includes("type: decimal"), "the shipped cart mapping has a decimal field to break");
  writeFileSync(mappingPath, mapping.replace("type: decimal", "type: decimel"));
  await page.goto(base + "/ui/#/overview");
  await page.waitForSelector("#reload-error", { timeout: 30000 });
  const refusal = await page.locator("#reload-error").innerText();
  check(/mappings\/bigcommerce-cart\.yaml:\d+:\d+/.test(refusal), `the refused reload shows its position (${refusal.split("\n")[0]})`);
  await page.screenshot({ path: join(shots, "reload-error.png"), fullPage: true });
  writeFileSync(mappingPath, mapping);
  await page.waitForSelector("#reload-error", { state: "detached", timeout: 30000 });
  check(true, "mending the mapping clears the refusal");

  // Activity and versions (overview.js): the shopify-stock chart counts its event and shows a
  // duration; an edit that goes live is listed with the file it changed.
  await page.waitForSelector('#activity svg.activity[data-pipeline="shopify-stock"] polyline.received');
  const stockRow = page.locator('#activity tr[data-pipeline="shopify-stock"]');
  const received = Number(await stockRow.locator("td.received").innerText());
  check(received >= 1, `the activity chart counts the shopify-stock event (${received} received)`);
  const p50 = await stockRow.locator("td.p50").innerText();
  check(/\d+(\.\d)? (ms|s)$/.test(p50), `the overview shows the p50 duration (${p50})`);
  writeFileSync(mappingPath, mapping + "\n# edited in the console test\n");
  await page.waitForSelector('#versions td div.changed:text-is("~ mappings/bigcommerce-cart.yaml")', { timeout: 30000 });
  const triggers = await page.locator("#versions tbody td:nth-child(3)").allInnerTexts();
  check(triggers[0] === "file change" && triggers.at(-1) === "start", `the version list shows the edit and the start (${triggers})`);
  // The mapping as shipped again, for the playground below, which opens it from disk.
  writeFileSync(mappingPath, mapping);

  // Playground: the shipped carts pipeline on the webhook as BigCommerce sends it (the cart id
  // only), its `fetch` of the cart answered from the "Fetch answers" box; the dry run follows
  // what is typed.
  const cart = readFileSync(join(repo, "tests/fixtures/bigcommerce/cart-high-value.json"), "utf8");
  const hook = readFileSync(join(repo, "tests/fixtures/bigcommerce/webhook-cart-abandoned.json"), "utf8");
  const answer = (c) => `{"bigcommerce.get_cart": ${c}}`;
  await page.goto(base + "/ui/#/playground?pipeline=bigcommerce-carts");
  await page.waitForSelector("#payload");
  await page.fill("#payload", hook);
  await page.fill("#answers", answer(cart));
  await page.waitForSelector("#dry-run-actions td:text-is('Opportunity')");
  check(true, "the playground dry-runs a high-value cart, its fetch answered, to an Opportunity");
  await page.fill("#answers", answer(cart.replace('"cart_amount": 612.5', '"cart_amount": 12.5')));
  await page.waitForSelector("#dry-run-actions td:text-is('Lead')");
  check(true, "changing the fetched amount changes the result to a Lead");
  await page.screenshot({ path: join(shots, "playground.png"), fullPage: true });
  await page.fill("#answers", answer(cart.replace('"email"', '"e_mail"')));
  await page.waitForSelector("#dry-run-errors");
  check((await page.locator("#dry-run-errors").innerText()).includes("bigcommerce.get_customers"), "a cart without an email asks for the customer fetch's answer");
  await page.fill("#answers", answer(cart));
  // Editing the mapping the pipeline runs: the dry run follows the edited text.
  await page.waitForFunction(() => document.querySelector("#playground-file")?.value === "mappings/bigcommerce-cart.yaml");
  check(true, "the playground opens the mapping the pipeline runs");
  await page.waitForSelector("#dry-run-actions td:text-is('Opportunity')");
  const cartMapping = await page.inputValue("#editor");
  check(cartMapping === mapping, "the editor holds the mapping's file");
  const renamed = cartMapping.replace("  customer_id:", "  shopper_id:");
  await page.fill("#editor", renamed);
  await page.waitForSelector("#dry-run-result:has-text('shopper_id')");
  check(true, "renaming a mapping field changes the dry run's record");
  // A mistake: marked at its line in the gutter, with file:line:col.
  const badLine = renamed.split("\n").findIndex((l) => l.includes("type: decimal")) + 1;
  await page.fill("#editor", renamed.replace("type: decimal", "type: decimel"));
  await page.waitForSelector("#editor-gutter .mark");
  const marked = await page.locator("#editor-gutter .mark").evaluateAll((els) => els.map((e) => Number(e.dataset.line)));
  check(marked.includes(badLine), `the error's line ${badLine} is marked (${marked})`);
  const where = await page.locator("#diagnostics").innerText();
  check(where.includes(`mappings/bigcommerce-cart.yaml:${badLine}:`), `the error shows its file:line:col (${where.split("\n")[0]})`);
  await page.screenshot({ path: join(shots, "playground-error.png"), fullPage: true });
  // Saving: refused while the text fails check, then written and reloaded.
  await page.click("#save");
  await page.waitForSelector("#save-status .error");
  check(readFileSync(mappingPath, "utf8") === mapping, "a text that fails check is not saved");
  const versionOf = async () => (await (await fetch(base + "/api/pipelines", { headers: { authorization: "Bearer " + token } })).json()).version;
  const before = await versionOf();
  await page.fill("#editor", renamed);
  await page.waitForSelector("#dry-run-result:has-text('shopper_id')");
  await page.click("#save");
  await page.waitForSelector("#save-status .status-live");
  check(readFileSync(mappingPath, "utf8") === renamed, "the saved text is the file");
  const after = await versionOf();
  check(after !== before, `the reload runs the saved mapping (version ${before.slice(0, 12)} -> ${after.slice(0, 12)})`);
  // The payload and the actions shown, as a test case (tests/console.rs runs `crossdock test`).
  await page.fill("#case-name", "High value cart from the console");
  await page.click("#save-case");
  await page.waitForSelector("#case-status .status-ok");
  const casePath = join(projectDir, "tests/pipelines/bigcommerce-carts-high-value-cart-from-the-console.yaml");
  check(readFileSync(casePath, "utf8").includes("Opportunity"), "save as test case writes the case with the actions shown");
  await page.goto(base + "/ui/#/overview");
  await page.waitForSelector(`text=${after.slice(0, 12)}`);
  check(true, "the overview shows the new version");
  await page.goto(base + "/ui/#/playground?pipeline=bigcommerce-carts");
  await page.waitForSelector("#payload");
  // A fixture of the project as the payload.
  await page.fill("#answers", answer(cart));
  await page.fill("#payload", "{}");
  await page.waitForSelector("text=The trigger did not match");
  await page.selectOption("#payload-source", "fixture:bigcommerce/webhook-cart-abandoned.json");
  await page.waitForSelector("#dry-run-actions td:text-is('Opportunity')");
  check((await page.inputValue("#payload")) === hook, "a fixture picked from tests/fixtures becomes the payload and runs");
  await page.fill("#payload", "{ not json");
  await page.waitForSelector("#dry-run .error:has-text('Not JSON')");
  check(await page.locator("#dry-run-actions").count() === 0, "an old result is not left beside the error");
  check(true, "a payload that is not JSON is marked");

  // ---- An event's explanation (src/server/console/trail.js) --------------------------------
  // The README's abandoned-cart webhook, signed as BigCommerce signs (Standard Webhooks keyed
  // with the demo client secret). The pipeline fetches the cart from the test's BigCommerce API
  // (612.5 USD) and sends to the test's Salesforce org; the trail page alone says why the cart
  // became an Opportunity and not a Lead, and what was sent.
  {
    const body = readFileSync(join(repo, "tests/fixtures/bigcommerce/webhook-cart-abandoned.json"));
    const msgId = "console-cart-1";
    const ts = String(Math.floor(Date.now() / 1000));
    const sig = createHmac("sha256", "demo-bigcommerce-secret").update(`${msgId}.${ts}.`).update(body).digest("base64");
    const r = await fetch(base + "/hooks/bigcommerce/carts", {
      method: "POST",
      headers: { "content-type": "application/json", "webhook-id": msgId, "webhook-timestamp": ts, "webhook-signature": "v1," + sig },
      body,
    });
    const answer = await r.json();
    check(r.status === 202, `the signed cart webhook is accepted (${r.status} ${JSON.stringify(answer)})`);
    const cartEvent = answer.event_id;
    await page.goto(base + "/ui/#/events");
    await page.waitForSelector(`#events tr[data-event="${cartEvent}"] .status-processed`, { timeout: 30000 });
    check(true, "the cart event appears processed in the events list");
    await page.click(`#events tr[data-event="${cartEvent}"] a`);
    await page.waitForSelector("#explain");
    const decision = await page.locator("#explain .explain-switch .decision.taken").innerText();
    check(decision.includes('record.route == "opportunity"') && decision.includes('"opportunity" == "opportunity" → true')
      && decision.includes("send salesforce upsert Opportunity"), `the switch decision is explained with the value it read (${decision})`);
    const script = await page.locator('#explain li[data-step*="script cart-opportunity-or-lead"]').innerText();
    check(script.includes("record.amount = 612.5") && script.includes('+ record.route = "opportunity"'),
      "the script's step shows the amount it read and the route it set");
    const scriptDecision = await page.locator('#explain li[data-step*="script cart-opportunity-or-lead"] .script-decision').first().innerText();
    check(scriptDecision.includes("scripts/cart-opportunity-or-lead.rhai:19:1") && scriptDecision.includes("amount >= 100.0")
      && scriptDecision.includes("(amount = 612.5)") && scriptDecision.includes("→ true"),
      `the script's own decision is shown with where it is, the value it read and what it came to (${scriptDecision})`);
    const send = page.locator("#explain li.explain-send", { hasText: "Opportunity" });
    const payload = JSON.parse(await send.locator("pre.payload").innerText());
    check(payload.Amount === 612.5 && payload.StageName === "Prospecting"
      && payload.External_Id__c === "BC-CART-09346904-4175-44fd-be53-f7e598531b6c", "the Opportunity's payload is shown");
    check(await send.locator(".status-ok").count() === 1 && (await send.locator(".remote-id").innerText()).length >= 15,
      "the Opportunity's send shows Salesforce's answer and the id it gave");
    await page.screenshot({ path: join(shots, "explain.png"), fullPage: true });

    // The same event's body, kept with its delivery, picked as a playground payload.
    await page.goto(base + "/ui/#/playground?pipeline=bigcommerce-carts");
    await page.waitForSelector(`#payload-source option[value="event:${cartEvent}"]`, { state: "attached" });
    await page.selectOption("#payload-source", "event:" + cartEvent);
    await page.waitForFunction((want) => {
      try { return JSON.stringify(JSON.parse(document.querySelector("#payload").value)) === want; } catch { return false; }
    }, JSON.stringify(JSON.parse(body.toString("utf8"))));
    check(true, "a recent event's body becomes the playground's payload");
  }

  // Log out: back to the login form.
  await page.click("#logout");
  await page.waitForSelector("#login:not([hidden])");
  check((await page.locator("#view").innerText()).trim() === "", "logging out leaves nothing shown");

  check(errors.length === 0, "no script errors in the page" + (errors.length ? ": " + errors.join("; ") : ""));
} catch (e) {
  // What the page showed when a check failed, for the test's failure message.
  console.error("page at failure:", page.url());
  console.error(await page.locator("main").innerText().catch(() => "(unreadable)"));
  await page.screenshot({ path: join(shots, "failure.png"), fullPage: true }).catch(() => {});
  throw e;
} finally {
  await browser.close();
}
