// Browser tests of openkv serve's web console (/console), everything real: the openkv binary
// serving two databases of a --data-dir, the Deno CLI and the npm client @deno/kv as the other
// clients, the openkv CLI as the reference (export, import, get, list), and Debian's Chromium
// driven by playwright-core. The UI's ids and the API are the contract in the console's
// source (crates/openkv-server), which these tests hold it to.
//
// Run by crates/openkv-cli/tests/console.rs, or by hand:
//   OPENKV_BIN=target/debug/openkv DENO_BIN=tests/deno/node_modules/.bin/deno \
//     node --test tests/console/console.test.mjs
// Environment:
//   OPENKV_BIN      the openkv binary (required)
//   DENO_BIN        the Deno CLI (required)
//   CHROMIUM        the browser (default /usr/bin/chromium)
//   SCRATCH_DIR     where the data directory, logs and files go (default: a new temp dir)
//   SCREENSHOT_DIR  where each scenario's screenshot NN-name.png goes (default SCRATCH_DIR/screenshots)
//   CONSOLE_ONLY    run only the scenarios whose letters it lists (e.g. "a,b"), for quick runs

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";
import { openKv } from "@deno/kv";

const here = path.dirname(fileURLToPath(import.meta.url));

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} must name ${name === "OPENKV_BIN" ? "the openkv binary" : "the Deno CLI"}`);
  return path.resolve(value);
}
const OPENKV_BIN = required("OPENKV_BIN");
const DENO_BIN = required("DENO_BIN");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SCRATCH = process.env.SCRATCH_DIR
  ? path.resolve(process.env.SCRATCH_DIR)
  : fs.mkdtempSync(path.join(os.tmpdir(), "openkv-console-"));
fs.mkdirSync(SCRATCH, { recursive: true });
const SCREENSHOT_DIR = path.resolve(process.env.SCREENSHOT_DIR || path.join(SCRATCH, "screenshots"));
fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
const ONLY = process.env.CONSOLE_ONLY ? new Set(process.env.CONSOLE_ONLY.split(",").map((s) => s.trim())) : null;
const AXE_PATH = path.join(here, "node_modules/axe-core/axe.min.js");

// Waits in the browser: the console talks to a local server, so seconds are plenty.
const TIMEOUT = 15_000;

// The markup a value and a key part carry in the XSS scenario.
const MARKUP = `<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">`;
// The write controls a read token must not see (the contract's list).
const WRITE_CONTROLS = [
  "#new-entry", "#entry-edit", "#entry-delete", "#delete-prefix",
  ".message-delete", ".message-due-now", "#import-run", "#import-file",
];

// --- processes ------------------------------------------------------------------------------

/** Runs a program to its end: {code, stdout, stderr}. */
function run(cmd, args, { env = {}, input, cwd } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd,
      env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", ...env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? "");
  });
}

/** Like run, but fails unless the exit status is 0; returns stdout. */
async function ok(cmd, args, options) {
  const out = await run(cmd, args, options);
  assert.equal(out.code, 0, `${path.basename(cmd)} ${args.join(" ")} exited ${out.code}\n${out.stdout}\n${out.stderr}`);
  return out.stdout;
}

const ROOT = `console-root-${randomBytes(16).toString("hex")}`;
let server; // the openkv serve child
let serverLog = ""; // its stderr (JSON lines)
let origin; // http://127.0.0.1:PORT
let tokens; // {write, read}: {token, id, secret}
const urls = []; // every URL a page of the browser requested or navigated to
const pageErrors = []; // uncaught exceptions in the console's pages
let browser;

const connect = (db) => `${origin}/databases/${db}/connect`;
const apiUrl = (db, endpoint) => `${origin}/databases/${db}/console/api/${endpoint}`;

/** `openkv --db <db's connect URL> --access-token <token> ARGS…`. */
const cli = (args, { db = "app", token = ROOT, ...options } = {}) =>
  run(OPENKV_BIN, ["--db", connect(db), "--access-token", token, ...args], options);
const cliOk = async (args, options) => {
  const out = await cli(args, options);
  assert.equal(out.code, 0, `openkv ${args.join(" ")} exited ${out.code}\n${out.stdout}\n${out.stderr}`);
  return out.stdout;
};
/** The stored value of `key` (key syntax) as typed JSON, or undefined when there is none. */
async function stored(key, db = "app") {
  const out = await cli(["get", key], { db });
  if (out.code === 3) return undefined;
  assert.equal(out.code, 0, `openkv get ${key}: ${out.stderr}`);
  return JSON.parse(out.stdout);
}
/** The keys (key syntax) `openkv list ARGS…` prints, in order. */
async function listKeys(args, db = "app") {
  const out = await cliOk(["list", ...args], { db });
  return out.split("\n").filter(Boolean).map((l) => JSON.parse(l).key);
}
async function count(prefix, db = "app") {
  return Number((await cliOk(["count", "--prefix", prefix], { db })).trim());
}

/** `deno run --unstable-kv deno_client.ts <connect URL> ARGS…` with the write token. */
const deno = (db, args) =>
  ok(DENO_BIN, ["run", "-A", "--unstable-kv", path.join(here, "deno_client.ts"), connect(db), ...args], {
    env: { DENO_KV_ACCESS_TOKEN: tokens.write.token },
  });

/** A POST to the console's API from Node. */
async function api(db, endpoint, body, token) {
  const headers = { "content-type": "application/json" };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const url = db === null ? `${origin}/console/api/${endpoint}` : apiUrl(db, endpoint);
  const response = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
  const text = await response.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

async function startServer() {
  const dataDir = path.join(SCRATCH, "data");
  fs.rmSync(dataDir, { recursive: true, force: true });
  server = spawn(
    OPENKV_BIN,
    ["serve", "--data-dir", dataDir, "--access-token", ROOT, "--addr", "127.0.0.1:0", "--log-format", "json"],
    // Requests are logged at debug: the log then has a line per request to check for secrets.
    { env: { ...process.env, RUST_LOG: "info,openkv_server=debug" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  const logFile = fs.createWriteStream(path.join(SCRATCH, "server.log"));
  server.stderr.on("data", (d) => {
    serverLog += d;
    logFile.write(d);
  });
  const lines = readline.createInterface({ input: server.stdout });
  const first = await new Promise((resolve, reject) => {
    lines.once("line", resolve);
    server.once("exit", (code) => reject(new Error(`openkv serve exited (${code}) before printing its URL:\n${serverLog}`)));
  });
  // "openkv: serving … at http://127.0.0.1:PORT/databases/NAME/connect"
  const word = first.trim().split(/\s+/).pop();
  origin = word.replace(/\/databases\/NAME\/connect$/, "");
  assert.match(origin, /^http:\/\/127\.0\.0\.1:\d+$/, `unexpected first line ${JSON.stringify(first)}`);
}

async function createToken(scope) {
  const out = await run(OPENKV_BIN, [
    "--db", origin, "--access-token", ROOT,
    "token", "create", "--database", "app", "--database", "staging", "--scope", scope,
    "--description", `console tests, ${scope}`,
  ]);
  assert.equal(out.code, 0, `token create: ${out.stderr}`);
  const token = out.stdout.trim();
  // okv_<12 hex of id>_<secret>
  const match = /^okv_([0-9a-f]{12})_(.+)$/.exec(token);
  assert.ok(match, `unexpected token ${token.slice(0, 20)}…`);
  return { token, id: match[1], secret: match[2] };
}

// --- the browser ------------------------------------------------------------------------------

async function newPage({ bypassCSP = false } = {}) {
  const context = await browser.newContext({ acceptDownloads: true, bypassCSP, viewport: { width: 1280, height: 900 } });
  context.on("request", (r) => urls.push(r.url()));
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("framenavigated", (f) => urls.push(f.url()));
  page.on("pageerror", (e) => {
    pageErrors.push(String(e));
    console.log(`page error: ${e}`);
  });
  page.on("console", (m) => {
    if (m.type() === "error") console.log(`browser console error: ${m.text()}`);
  });
  // CSP violations are recorded (an injected script or handler blocked by the CSP means the
  // console built markup from data: a bug even though the CSP caught it).
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener("securitypolicyviolation", (e) =>
      window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`));
  });
  return page;
}

async function shot(page, name) {
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
}

async function signIn(page, token) {
  await page.goto(`${origin}/console`);
  await page.locator("form#signin").waitFor();
  await page.fill("#token", token);
  await page.click("#signin-submit");
  await page.locator("#whoami").waitFor();
}

/** Signs in with `token` and selects `db`. */
async function openConsole(token, db = "app", options) {
  const page = await newPage(options);
  await signIn(page, token);
  const picker = page.locator("select#database");
  if ((await picker.count()) > 0 && (await picker.inputValue()) !== db) {
    await picker.selectOption(db);
  }
  await page.locator("section#view-browse").waitFor();
  return page;
}

/** The data-key of every `tr.entry` in the table, in order. */
const rowKeys = (page) => page.$$eval("table#entries tbody tr.entry", (rows) => rows.map((r) => r.dataset.key));
const childKeys = (page) => page.$$eval("ul#children button.child", (bs) => bs.map((b) => b.dataset.key));
const byKey = (selector, key) => `${selector}[data-key=${JSON.stringify(key)}]`;

/** Runs a typed query and waits for its answer (the rows of `expect` keys, or a change). */
async function query(page, { mode = "list", key = "", start = "", end = "", limit = "", reverse = false, request = true }) {
  await page.selectOption("#query-mode", mode);
  await page.fill("#query-key", key);
  for (const [id, v] of [["#query-start", start], ["#query-end", end], ["#query-limit", limit]]) {
    const field = page.locator(id);
    if (await field.isEditable().catch(() => false)) await field.fill(String(v));
    else assert.equal(v, "", `${id} is not editable in ${mode} mode`);
  }
  const reverseBox = page.locator("#query-reverse");
  if (await reverseBox.isEnabled().catch(() => false)) await reverseBox.setChecked(reverse);
  else assert.equal(reverse, false, "#query-reverse is not enabled");
  // The answer is in when the API call this query makes has answered (a malformed key may
  // make none: then `request` is false).
  const answered = request && page.waitForResponse((r) => /\/console\/api\/(get|list)$/.test(new URL(r.url()).pathname));
  await page.click("#query-run");
  if (answered) await answered;
  // The console marks the table when its rows answer the query (or the query failed).
  await page.waitForSelector('table#entries:not([data-state="loading"])');
}

/** Resolves when the next watch stream of the console has answered (its headers are in). */
const nextWatch = (page) => page.waitForResponse((r) => new URL(r.url()).pathname.endsWith("/console/api/watch"));

async function waitRows(page, expected, message) {
  try {
    await page.waitForFunction(
      (want) => {
        const got = [...document.querySelectorAll("table#entries tbody tr.entry")].map((r) => r.dataset.key);
        return JSON.stringify(got) === JSON.stringify(want);
      },
      expected,
      { timeout: TIMEOUT },
    );
  } catch {
    assert.deepEqual(await rowKeys(page), expected, message);
  }
}

async function runAxe(page, label) {
  if (!(await page.evaluate(() => typeof window.axe === "object"))) {
    await page.addScriptTag({ path: AXE_PATH });
  }
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({
      id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5),
    }));
  });
  for (const v of result) {
    console.log(`axe ${label}: [${v.impact}] ${v.id}: ${v.help} — ${v.nodes.join(", ")}`);
  }
  return result.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => ({ page: label, ...v }));
}

/** Clicks `selector` and, if a confirmation opens, answers it (yes/no). */
async function confirmDialog(page, answer) {
  const dialog = page.locator("dialog#confirm");
  await dialog.waitFor({ state: "visible" });
  const text = await page.locator("#confirm-text").innerText();
  await page.click(answer ? "#confirm-yes" : "#confirm-no");
  await dialog.waitFor({ state: "hidden" });
  return text;
}

// --- setup --------------------------------------------------------------------------------------

let queueIds; // job name → message id, from the queue API

before(async () => {
  assert.ok(fs.existsSync(OPENKV_BIN), `OPENKV_BIN ${OPENKV_BIN} does not exist`);
  assert.ok(fs.existsSync(DENO_BIN), `DENO_BIN ${DENO_BIN} does not exist`);
  assert.ok(fs.existsSync(CHROMIUM), `CHROMIUM ${CHROMIUM} does not exist`);
  await startServer();
  for (const name of ["app", "staging"]) {
    await ok(OPENKV_BIN, ["--db", origin, "--access-token", ROOT, "db", "create", name]);
  }
  tokens = { write: await createToken("write"), read: await createToken("read") };
  // app: what the Deno CLI writes (every type), then the queue through @deno/kv.
  const seeded = await deno("app", ["seed"]);
  assert.match(seeded, /^seeded \d+/);
  await cliOk(["set", '["staging-only"]', '"only in staging"'], { db: "staging" });
  const kv = await openKv(connect("app"), { accessToken: tokens.write.token });
  await kv.enqueue({ job: "ready-1" });
  await kv.enqueue({ job: "ready-2", n: 2 });
  await kv.enqueue({ job: "delayed-1" }, { delay: 3_600_000, keysIfUndelivered: [["dead", "delayed-1"]] });
  await kv.enqueue({ job: "delayed-2" }, { delay: 7_200_000 });
  kv.close();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    chromiumSandbox: false,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  console.log(`openkv serve at ${origin}; scratch ${SCRATCH}; screenshots ${SCREENSHOT_DIR}`);
});

after(async () => {
  await browser?.close().catch(() => {});
  if (server && server.exitCode === null) {
    server.kill("SIGTERM");
    await new Promise((resolve) => server.once("exit", resolve));
  }
});

/** A scenario: `letter` for CONSOLE_ONLY; a failure leaves a screenshot of the open pages. */
function scenario(letter, name, fn) {
  test(`${letter}. ${name}`, { skip: ONLY && !ONLY.has(letter) ? "not in CONSOLE_ONLY" : false }, async () => {
    const pages = [];
    try {
      await fn(pages);
    } catch (e) {
      for (const [i, p] of pages.entries()) {
        await shot(p, `failed-${letter}-${i}`).catch(() => {});
      }
      throw e;
    } finally {
      for (const p of pages) await p.context().close().catch(() => {});
    }
  });
}

// --- scenarios --------------------------------------------------------------------------------

scenario("a", "sign in with a typed token (never in a URL or the log), the database picker, sign out", async (pages) => {
  const page = await newPage();
  pages.push(page);
  await page.goto(`${origin}/console`);
  await page.locator("form#signin").waitFor();
  assert.equal(await page.getAttribute("#token", "type"), "password");
  await shot(page, "01-signin");
  // A bad token: an error, still signed out.
  await page.fill("#token", "okv_000000000000_not-a-real-secret");
  await page.click("#signin-submit");
  await page.locator("#signin-error").waitFor({ state: "visible" });
  assert.notEqual((await page.locator("#signin-error").innerText()).trim(), "", "#signin-error is empty");
  assert.equal(await page.getAttribute("#signin-error", "role"), "alert");
  // The write token.
  await page.fill("#token", tokens.write.token);
  await page.click("#signin-submit");
  await page.locator("#whoami").waitFor();
  const whoami = await page.locator("#whoami").innerText();
  assert.ok(whoami.includes(tokens.write.id), `#whoami ${JSON.stringify(whoami)} lacks the token id`);
  assert.ok(whoami.includes("write"), `#whoami ${JSON.stringify(whoami)} lacks the scope`);
  assert.ok(!page.url().includes(tokens.write.secret), `the URL holds the secret: ${page.url()}`);
  const storage = await page.evaluate(() => ({
    session: JSON.stringify(sessionStorage), local: JSON.stringify(localStorage), cookie: document.cookie,
  }));
  assert.ok(storage.session.includes(tokens.write.secret), "the token is not kept in sessionStorage");
  assert.ok(!storage.local.includes(tokens.write.secret), "the token is in localStorage");
  assert.ok(!storage.cookie.includes(tokens.write.secret), "the token is in a cookie");
  // The picker: labelled "Database", both databases, switching shows the other's keys.
  const picker = page.getByLabel("Database");
  assert.equal(await picker.evaluate((e) => e.id), "database", 'the control labelled "Database" is not select#database');
  const options = await page.$$eval("select#database option", (os) => os.map((o) => o.value || o.textContent));
  assert.deepEqual([...options].sort(), ["app", "staging"]);
  await page.locator(byKey("button.child", '["values"]')).waitFor();
  await page.selectOption("select#database", "staging");
  await page.locator(byKey("button.child", '["staging-only"]')).waitFor();
  assert.equal(await page.locator(byKey("button.child", '["values"]')).count(), 0, "staging shows app's keys");
  await shot(page, "02-database-picker");
  await page.selectOption("select#database", "app");
  await page.locator(byKey("button.child", '["values"]')).waitFor();
  assert.equal(await page.locator(byKey("button.child", '["staging-only"]')).count(), 0, "app shows staging's keys");
  assert.ok(!page.url().includes(tokens.write.secret), `the URL holds the secret: ${page.url()}`);
  // Sign out: the sign-in form again, the token forgotten.
  await page.click("#signout");
  await page.locator("form#signin").waitFor({ state: "visible" });
  assert.ok(!(await page.evaluate(() => JSON.stringify(sessionStorage))).includes(tokens.write.secret),
    "the token stays in sessionStorage after sign-out");
  // The server's log: lines for the console's requests, none with a secret.
  assert.match(serverLog, /console/, "the server logged no request of the console (RUST_LOG=openkv_server=debug)");
  for (const t of [tokens.write, tokens.read]) {
    assert.ok(!serverLog.includes(t.secret), `the server's log holds the ${t === tokens.write ? "write" : "read"} token's secret`);
  }
  assert.ok(!serverLog.includes(ROOT), "the server's log holds the access token");
});

scenario("b", "browse what the Deno CLI wrote: tree, entries of every type, typed queries, paging past 1,000, filter", async (pages) => {
  const page = await openConsole(tokens.write.token);
  pages.push(page);
  // The root's children: the first parts of every key, with counts.
  await page.locator(byKey("button.child", '["values"]')).waitFor();
  const roots = await childKeys(page);
  for (const k of ['["values"]', '["parts"]', '["many"]', '["edit"]', '["live"]', '["doomed"]']) {
    assert.ok(roots.includes(k), `root children ${JSON.stringify(roots)} lack ${k}`);
  }
  const countOf = (k) => page.locator(`ul#children li:has(${byKey("button.child", k)}) span.count`).innerText();
  assert.equal((await countOf('["values"]')).trim(), "15");
  assert.match((await countOf('["many"]')).trim(), /^(100\+|1250)$/);
  // Into ["values"]: its children and its entries, each opened and compared with the CLI's get.
  const valueKeys = await listKeys(["--prefix", '["values"]']);
  assert.equal(valueKeys.length, 15);
  await page.click(byKey("button.child", '["values"]'));
  await page.locator(byKey("button.child", '["values", "long"]')).waitFor();
  assert.deepEqual((await childKeys(page)).sort(), [...valueKeys].sort());
  const crumbs = await page.$$eval("nav#breadcrumbs a", (as) => as.map((a) => a.textContent.trim()));
  assert.equal(crumbs.length, 2, `breadcrumbs ${JSON.stringify(crumbs)}`);
  assert.match(crumbs[0], /root/i);
  assert.match(crumbs[1], /values/);
  await waitRows(page, valueKeys, "the entries under [\"values\"] (in the CLI's order)");
  for (const key of valueKeys) {
    await page.click(`${byKey("tr.entry", key)} td.key`);
    await page.locator("section#entry").waitFor({ state: "visible" });
    await page.waitForFunction((k) => document.querySelector("#entry-key")?.textContent.includes(k), key);
    const expected = await stored(key);
    const text = await page.locator("pre#entry-value").textContent();
    let shown;
    try {
      shown = JSON.parse(text);
    } catch (e) {
      assert.fail(`#entry-value of ${key} is not the typed JSON: ${JSON.stringify(text.slice(0, 300))} (${e.message})`);
    }
    assert.deepEqual(shown, expected, `#entry-value of ${key}`);
    const encoding = (await page.locator("#entry-encoding").innerText()).trim();
    const wantEncoding = key.includes('"bytes"') ? "bytes" : key.includes('"u64"') ? "u64" : "v8";
    assert.ok(encoding.includes(wantEncoding), `#entry-encoding of ${key}: ${encoding}`);
    if (key === '["values", "long"]') {
      assert.ok(expected.length > 10_000 && expected.endsWith("THE-END-OF-THE-LONG-STRING"));
      assert.ok(text.includes(expected), "the long string is truncated in #entry-value");
      await shot(page, "03-browse-long-value");
    }
    if (key === '["values", "bytes"]') {
      // A hex dump, with or without an offset column ("00000000  00 01 02 fe ff").
      const hex = (await page.locator("#entry-hex").innerText()).split("\n")
        .map((l) => l.replace(/^\s*[0-9a-fA-F]{4,}(:\s*|\s{2,})/, "").replace(/[^0-9a-fA-F]/g, ""))
        .join("").toLowerCase();
      assert.equal(hex, "000102feff", "#entry-hex");
      assert.equal((await page.locator("#entry-base64").innerText()).trim(), "AAEC/v8=", "#entry-base64");
      await page.locator("button#entry-download").waitFor();
    }
    const stamp = (await page.locator("#entry-versionstamp").innerText()).trim();
    assert.match(stamp, /^[0-9a-f]{20}$/, `#entry-versionstamp of ${key}`);
  }
  // Back to the root by the breadcrumbs, into ["parts"]: every key-part type.
  await page.locator("nav#breadcrumbs a").first().click();
  await page.locator(byKey("button.child", '["parts"]')).waitFor();
  await page.click(byKey("button.child", '["parts"]'));
  const partKeys = await listKeys(["--prefix", '["parts"]']);
  assert.equal(partKeys.length, 7);
  await waitRows(page, partKeys, "the entries under [\"parts\"]");
  for (const key of partKeys) {
    const button = page.locator(byKey("button.child", key));
    const part = key.slice('["parts", '.length, -1);
    assert.ok((await button.innerText()).includes(part), `the child ${key} does not show its part ${part}`);
  }
  for (const want of ["-7", "2.5", "42n", "true", "false", 'b"AQID"', '"str"']) {
    assert.ok(partKeys.some((k) => k.endsWith(`, ${want}]`)), `the CLI lists no part ${want}: ${partKeys}`);
  }
  await shot(page, "04-browse-tree-parts");
  // Typed queries, against the CLI's answers to the same selectors.
  await query(page, { mode: "get", key: '["parts", 42n]' });
  await waitRows(page, ['["parts", 42n]'], "get [\"parts\", 42n]");
  await query(page, { mode: "get", key: '["parts", 43n]' });
  await waitRows(page, [], "get of a missing key");
  await query(page, { mode: "get", key: '["parts", 42', request: false });
  await page.locator("#query-error").waitFor({ state: "visible" });
  assert.notEqual((await page.locator("#query-error").innerText()).trim(), "", "#query-error is empty for a malformed key");
  const selectorCases = [
    { q: { key: '["many"]', start: '["many", 100]', limit: "5" }, args: ["--prefix", '["many"]', "--start", '["many", 100]', "--limit", "5"] },
    { q: { key: '["many"]', end: '["many", 3]' }, args: ["--prefix", '["many"]', "--end", '["many", 3]'] },
    { q: { key: '["many"]', reverse: true, limit: "3" }, args: ["--prefix", '["many"]', "--reverse", "--limit", "3"] },
    { q: { key: "", start: '["many", 7]', end: '["many", 12]' }, args: ["--start", '["many", 7]', "--end", '["many", 12]'] },
    { q: { key: '["parts"]', reverse: true }, args: ["--prefix", '["parts"]', "--reverse"] },
  ];
  for (const { q, args } of selectorCases) {
    const want = await listKeys(args);
    assert.ok(want.length > 0);
    await query(page, { mode: "list", ...q });
    await waitRows(page, want, `list ${JSON.stringify(q)} (the CLI: list ${args.join(" ")})`);
  }
  // Paging: every key under ["many"], page by page, none twice.
  const manyKeys = await listKeys(["--prefix", '["many"]']);
  assert.equal(manyKeys.length, 1250);
  await query(page, { mode: "list", key: '["many"]' });
  await page.waitForFunction(() => document.querySelector("table#entries tbody tr.entry")?.dataset.key === '["many", 0]');
  let seen = await rowKeys(page);
  assert.ok(seen.length > 0 && seen.length < 1250, `the first page has ${seen.length} rows: no paging`);
  let clicks = 0;
  while ((await page.locator("button#next-page").count()) > 0 && (await page.locator("button#next-page").isVisible())) {
    assert.ok(++clicks < 50, "#next-page never goes away");
    const before = await rowKeys(page);
    const signature = JSON.stringify([before[0], before.at(-1), before.length]);
    await page.click("button#next-page");
    await page.waitForFunction((sig) => {
      const rows = [...document.querySelectorAll("table#entries tbody tr.entry")].map((r) => r.dataset.key);
      return JSON.stringify([rows[0], rows.at(-1), rows.length]) !== sig;
    }, signature);
    const now = await rowKeys(page);
    // A table that appends keeps the earlier rows in front; one that replaces starts anew.
    seen = now[0] === before[0] && now.length > before.length ? seen.concat(now.slice(before.length)) : seen.concat(now);
  }
  assert.ok(clicks >= 1, "no #next-page for 1,250 entries");
  assert.equal(new Set(seen).size, seen.length, "a key appears on two pages");
  assert.equal(seen.length, 1250, `paging saw ${seen.length} of 1250 entries`);
  assert.deepEqual(seen, manyKeys, "the pages, in order, are not the CLI's list");
  const status = await page.locator("#entries-status").innerText();
  assert.match(status, /\d+ entries/, `#entries-status ${JSON.stringify(status)}`);
  await shot(page, "05-browse-paging");
  // The filter narrows the rows of the page.
  await query(page, { mode: "list", key: '["values"]' });
  await waitRows(page, valueKeys);
  const visibleRows = () => page.$$eval("table#entries tbody tr.entry",
    (rows) => rows.filter((r) => r.getClientRects().length > 0).map((r) => r.dataset.key));
  await page.fill("#filter", "regexp");
  await page.waitForFunction(() => [...document.querySelectorAll("table#entries tbody tr.entry")]
    .filter((r) => r.getClientRects().length > 0).length === 1);
  assert.deepEqual(await visibleRows(), ['["values", "regexp"]']);
  await shot(page, "06-browse-filter");
  await page.fill("#filter", "");
  await page.waitForFunction((n) => [...document.querySelectorAll("table#entries tbody tr.entry")]
    .filter((r) => r.getClientRects().length > 0).length === n, valueKeys.length);
});

scenario("c", "edit: validation as you type, templates, a conflicting write from the Deno CLI, overwrite", async (pages) => {
  const key = '["edit", "doc"]';
  assert.deepEqual(await stored(key), { n: 1, by: "seed" });
  const page = await openConsole(tokens.write.token);
  pages.push(page);
  await query(page, { mode: "get", key });
  await waitRows(page, [key]);
  await page.click(`${byKey("tr.entry", key)} td.key`);
  await page.locator("section#entry").waitFor({ state: "visible" });
  await page.click("#entry-edit");
  await page.locator("form#editor").waitFor({ state: "visible" });
  assert.equal(await page.inputValue("#editor-key"), key);
  assert.deepEqual(JSON.parse(await page.inputValue("#editor-value")), { n: 1, by: "seed" });
  // Validation as you type.
  const textarea = page.locator("textarea#editor-value");
  await textarea.fill("");
  await textarea.pressSequentially('{"n": ');
  await page.waitForFunction(() => document.querySelector("#editor-value").getAttribute("aria-invalid") === "true");
  assert.notEqual((await page.locator("#editor-validation").innerText()).trim(), "", "#editor-validation says nothing of invalid JSON");
  await shot(page, "07-editor-invalid");
  await textarea.pressSequentially("2}");
  await page.waitForFunction(() => document.querySelector("#editor-value").getAttribute("aria-invalid") !== "true");
  // Templates insert their typed JSON.
  const tags = { bigint: "$bigint", date: "$date", kvu64: "$kvu64", map: "$map", bytes: "$bytes" };
  for (const [template, tag] of Object.entries(tags)) {
    await textarea.fill("");
    await page.click(`button.template[data-template="${template}"]`);
    const text = await textarea.inputValue();
    assert.ok(text.includes(`"${tag}"`), `the ${template} template inserted ${JSON.stringify(text)}`);
  }
  // Mine, and a write by the Deno CLI in between.
  const mine = { n: 2, by: "console" };
  const theirs = { n: 3, by: "deno" };
  await textarea.fill(JSON.stringify(mine));
  if ((await page.locator("select#editor-encoding").count()) > 0) await page.selectOption("select#editor-encoding", "v8");
  await page.waitForFunction(() => document.querySelector("#editor-value").getAttribute("aria-invalid") !== "true");
  await deno("app", ["conflict", JSON.stringify(theirs)]);
  await page.click("#editor-save");
  await page.locator("section#conflict").waitFor({ state: "visible" });
  const parsed = async (sel) => JSON.parse(await page.locator(sel).textContent());
  assert.deepEqual(await parsed("pre#conflict-mine"), mine, "pre#conflict-mine");
  assert.deepEqual(await parsed("pre#conflict-theirs"), theirs, "pre#conflict-theirs");
  assert.deepEqual(await stored(key), theirs, "the other client's write was lost before the user chose");
  await shot(page, "08-editor-conflict");
  await page.click("#conflict-overwrite");
  await page.locator("section#conflict").waitFor({ state: "hidden" });
  const deadline = Date.now() + TIMEOUT;
  while (JSON.stringify(await stored(key)) !== JSON.stringify(mine)) {
    assert.ok(Date.now() < deadline, `overwrite did not store mine: ${JSON.stringify(await stored(key))}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  await page.waitForFunction(() => document.querySelector("#editor-status")?.textContent.trim() !== "" ||
    document.querySelector("form#editor") === null || document.querySelector("form#editor").hidden);
});

scenario("d", "live: writes by @deno/kv and the Deno CLI update the rows and the open entry without reload", async (pages) => {
  const page = await openConsole(tokens.write.token);
  pages.push(page);
  // Each step that changes what the console watches starts a new watch: the writes wait for it.
  let watching = nextWatch(page);
  await query(page, { mode: "list", key: '["live"]' });
  await waitRows(page, ['["live", "a"]', '["live", "b"]']);
  await watching;
  await page.evaluate(() => (window.__sameDocument = "yes"));
  await page.locator("#live-status").waitFor();
  console.log(`#live-status: ${(await page.locator("#live-status").innerText()).trim()}`);
  // Open b; then @deno/kv writes a, the Deno CLI writes b.
  watching = nextWatch(page);
  await page.click(`${byKey("tr.entry", '["live", "b"]')} td.key`);
  await page.locator("section#entry").waitFor({ state: "visible" });
  await watching;
  const kv = await openKv(connect("app"), { accessToken: tokens.write.token });
  await kv.set(["live", "a"], "live a, changed by @deno/kv");
  kv.close();
  const rowA = page.locator(byKey("tr.entry", '["live", "a"]'));
  await page.waitForFunction((sel) => document.querySelector(sel)?.querySelector("td.value")?.textContent.includes("changed by @deno/kv"),
    byKey("tr.entry", '["live", "a"]'));
  assert.ok((await rowA.getAttribute("class")).split(/\s+/).includes("changed"), "the changed row lacks class changed");
  assert.equal(await rowA.locator("span.live-mark").count(), 1, "the changed row lacks span.live-mark");
  await deno("app", ["set-string", JSON.stringify(["live", "b"]), "live b, changed by the Deno CLI"]);
  await page.waitForFunction(() => document.querySelector("pre#entry-value")?.textContent.includes("changed by the Deno CLI"));
  await page.waitForFunction((sel) => document.querySelector(sel)?.querySelector("td.value")?.textContent.includes("changed by the Deno CLI"),
    byKey("tr.entry", '["live", "b"]'));
  assert.equal(await page.evaluate(() => window.__sameDocument), "yes", "the page reloaded");
  await shot(page, "09-live");
  // A get query's row follows its key too, not only the entry it opens.
  watching = nextWatch(page);
  await query(page, { mode: "get", key: '["live", "a"]' });
  await waitRows(page, ['["live", "a"]']);
  await page.waitForFunction(() => document.querySelector("#entry-key")?.textContent.includes('["live", "a"]'));
  await watching;
  const again = await openKv(connect("app"), { accessToken: tokens.write.token });
  await again.set(["live", "a"], "live a, changed again by @deno/kv");
  again.close();
  await page.waitForFunction(() => document.querySelector("pre#entry-value")?.textContent.includes("changed again"));
  try {
    await page.waitForFunction((sel) => document.querySelector(sel)?.querySelector("td.value")?.textContent.includes("changed again"),
      byKey("tr.entry", '["live", "a"]'), { timeout: 5000 });
  } catch {
    const shown = await page.locator(`${byKey("tr.entry", '["live", "a"]')} td.value`).innerText();
    assert.fail(`the row of a get query stays stale after a write (the open entry updated): td.value ${shown}`);
  }
  assert.equal(await page.evaluate(() => window.__sameDocument), "yes", "the page reloaded");
});

scenario("e", "a read token: no write controls; forged writes 403, no token 401, another origin cannot write", async (pages) => {
  const page = await openConsole(tokens.read.token);
  pages.push(page);
  assert.ok((await page.locator("#whoami").innerText()).includes("read"));
  const absent = async (where) => {
    for (const sel of WRITE_CONTROLS) {
      assert.equal(await page.locator(sel).count(), 0, `${sel} is in the DOM for a read token (${where})`);
    }
  };
  await query(page, { mode: "get", key: '["edit", "doc"]' });
  await waitRows(page, ['["edit", "doc"]']);
  await page.click(`${byKey("tr.entry", '["edit", "doc"]')} td.key`);
  await page.locator("section#entry").waitFor({ state: "visible" });
  await absent("browse, an entry open");
  await shot(page, "10-read-token-browse");
  await page.click("a#nav-queue");
  await page.locator("section#view-queue").waitFor({ state: "visible" });
  await page.locator("table#queue-messages tbody tr.message").first().waitFor();
  await absent("queue, with messages");
  await page.click("a#nav-operate");
  await page.locator("section#view-operate").waitFor({ state: "visible" });
  await absent("operate");
  // Forged writes with the read token, from the page and from Node.
  const before = {
    doc: await stored('["edit", "doc"]'), many: await count('["many"]'),
    queue: (await api("app", "queue", {}, ROOT)).json,
  };
  const messageId = before.queue.messages[0].id;
  const forged = [
    ["set", { key: '["forged"]', value: "forged" }],
    ["delete", { key: '["edit", "doc"]' }],
    ["delete-prefix", { prefix: '["many"]' }],
    ["import", { firstLine: 1, text: '{"key": "[\\"forged\\", 2]", "value": 1}\n' }],
    ["queue/delete", { id: messageId }],
    ["queue/due-now", { id: messageId }],
  ];
  for (const [endpoint, body] of forged) {
    const fromPage = await page.evaluate(async ({ url, token, body }) => {
      const r = await fetch(url, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify(body) });
      return r.status;
    }, { url: apiUrl("app", endpoint), token: tokens.read.token, body });
    assert.equal(fromPage, 403, `a read token's ${endpoint} from the page`);
    assert.equal((await api("app", endpoint, body, tokens.read.token)).status, 403, `a read token's ${endpoint} from Node`);
    assert.equal((await api("app", endpoint, body)).status, 401, `${endpoint} without a token`);
    assert.equal((await api("app", endpoint, body, "okv_000000000000_bad")).status, 401, `${endpoint} with a bad token`);
  }
  assert.equal((await api(null, "session", {})).status, 401, "session without a token");
  assert.equal((await api("app", "list", { prefix: '["many"]', limit: 1 })).status, 401, "a read without a token");
  assert.equal((await api("app", "list", { prefix: '["many"]', limit: 1 }, tokens.read.token)).status, 200, "a read with the read token");
  assert.equal((await api("nowhere", "list", { prefix: '["many"]' }, tokens.read.token)).status, 404, "a database the token does not reach");
  // Another origin: a page on another port, in the browser signed in to the console, tries.
  const attacker = http.createServer((req, res) => {
    res.setHeader("content-type", "text/html");
    res.end(`<!doctype html><title>elsewhere</title><form id=f method=POST enctype="text/plain" action="${apiUrl("app", "set")}">
<input name='{"key": "[\\"csrf\\", \\"form\\"]", "value": "x", "pad": "' value='"}'></form>
<script>
window.results = {};
const body = JSON.stringify({ key: '["csrf", "fetch"]', value: "from another origin" });
const url = ${JSON.stringify(apiUrl("app", "set"))};
Promise.allSettled([
  fetch(url, { method: "POST", credentials: "include", headers: { "content-type": "application/json" }, body }),
  fetch(url, { method: "POST", credentials: "include", mode: "no-cors", headers: { "content-type": "text/plain" }, body }),
  fetch(${JSON.stringify(apiUrl("app", "list"))}, { method: "POST", credentials: "include", headers: { "content-type": "application/json" }, body: "{}" }).then((r) => r.text()),
]).then((rs) => { window.results = rs.map((r) => r.status === "fulfilled" ? (r.value.status ?? "read: " + String(r.value).slice(0, 80)) : String(r.reason)); window.done = true; });
</script>`);
  });
  await new Promise((resolve) => attacker.listen(0, "127.0.0.1", resolve));
  try {
    const elsewhere = `http://127.0.0.1:${attacker.address().port}/`;
    const other = await page.context().newPage();
    await other.goto(elsewhere);
    await other.waitForFunction(() => window.done === true);
    console.log(`another origin's requests: ${JSON.stringify(await other.evaluate(() => window.results))}`);
    const readBack = await other.evaluate(() => window.results[2]);
    assert.ok(!String(readBack).startsWith("read: {"), `another origin read the API: ${readBack}`);
    await Promise.all([other.waitForNavigation().catch(() => {}), other.evaluate(() => document.getElementById("f").submit())]);
    await other.close();
  } finally {
    attacker.close();
  }
  assert.equal(await stored('["csrf", "fetch"]'), undefined, "another origin's fetch wrote");
  assert.equal(await stored('["csrf", "form"]'), undefined, "another origin's form wrote");
  assert.equal(await stored('["forged"]'), undefined, "a forged set wrote");
  assert.equal(await stored('["forged", 2]'), undefined, "a forged import wrote");
  assert.deepEqual(await stored('["edit", "doc"]'), before.doc, "a forged delete changed the entry");
  assert.equal(await count('["many"]'), before.many, "a forged delete-prefix deleted");
  const queueAfter = (await api("app", "queue", {}, ROOT)).json;
  assert.deepEqual([queueAfter.ready, queueAfter.delayed], [before.queue.ready, before.queue.delayed], "a forged queue action changed the queue");
  assert.ok(queueAfter.messages.some((m) => m.id === messageId), "a forged queue/delete deleted");
});

scenario("f", "markup in a value and a key part renders as text; /console's headers (CSP, no-store)", async (pages) => {
  const key = `["xss", ${JSON.stringify(MARKUP)}]`;
  await cliOk(["set", key, JSON.stringify(MARKUP)]);
  const page = await openConsole(tokens.write.token);
  pages.push(page);
  await page.click(byKey("button.child", '["xss"]'));
  await page.locator(byKey("button.child", key)).waitFor();
  // Keys show in key syntax: the part is the string literal, its quotes escaped.
  const part = JSON.stringify(MARKUP);
  assert.ok((await page.locator(byKey("button.child", key)).innerText()).includes(part), "the key part is not shown literally in the tree");
  await waitRows(page, [key]);
  const row = page.locator(byKey("tr.entry", key));
  assert.ok((await row.locator("td.key").innerText()).includes(part), "td.key does not show the markup literally");
  assert.ok((await row.locator("td.value").innerText()).includes("<script>window.__pwned=1</script>"), "td.value does not show the markup literally");
  await row.locator("td.key").click();
  await page.locator("section#entry").waitFor({ state: "visible" });
  assert.ok((await page.locator("#entry-key").innerText()).includes(part), "#entry-key does not show the markup literally");
  assert.equal(JSON.parse(await page.locator("pre#entry-value").textContent()), MARKUP);
  assert.ok((await page.locator("pre#entry-value").innerText()).includes("<img src=x onerror="), "#entry-value does not show the markup");
  // A malformed query echoing markup in its error.
  await query(page, { mode: "get", key: '["<img src=x onerror=window.__pwned=3>', request: false });
  await page.locator("#query-error").waitFor({ state: "visible" });
  await page.waitForTimeout(300);
  const state = await page.evaluate(() => ({
    pwned: window.__pwned, csp: window.__csp, imgs: document.querySelectorAll('img[src="x"], script:not([src])').length,
  }));
  assert.equal(state.pwned, undefined, "the markup ran");
  assert.equal(state.imgs, 0, "the markup became elements");
  assert.deepEqual(state.csp, [], "the CSP blocked something: markup became elements or handlers");
  await shot(page, "11-markup-as-text");
  // The headers.
  const response = await fetch(`${origin}/console`);
  assert.equal(response.status, 200);
  const csp = response.headers.get("content-security-policy");
  assert.ok(csp, "/console has no Content-Security-Policy");
  const directives = Object.fromEntries(csp.split(";").map((d) => d.trim().split(/\s+/)).filter((d) => d[0]).map(([n, ...v]) => [n.toLowerCase(), v]));
  const scriptSrc = directives["script-src"] ?? directives["default-src"];
  assert.ok(scriptSrc, `the CSP has neither script-src nor default-src: ${csp}`);
  for (const bad of ["'unsafe-inline'", "'unsafe-eval'", "*", "data:", "http:", "https:"]) {
    assert.ok(!scriptSrc.includes(bad), `script-src allows ${bad}: ${csp}`);
  }
  const noStore = (r, what) => assert.match(r.headers.get("cache-control") ?? "", /no-store/, `${what}: cache-control ${r.headers.get("cache-control")}`);
  noStore(response, "/console");
  for (const asset of ["console.js", "console.css"]) {
    const r = await fetch(`${origin}/console/assets/${asset}`);
    assert.equal(r.status, 200, asset);
    noStore(r, asset);
  }
  noStore(await fetch(`${origin}/console/api/session`, { method: "POST", headers: { authorization: `Bearer ${tokens.read.token}`, "content-type": "application/json" }, body: "{}" }), "/console/api/session");
  // `--no-console`: no page, no assets, no API.
  const plain = spawn(OPENKV_BIN, ["--db", path.join(SCRATCH, "no-console.sqlite3"), "serve", "--addr", "127.0.0.1:0", "--access-token", ROOT, "--no-console"],
    { stdio: ["ignore", "pipe", "ignore"] });
  try {
    const line = await new Promise((resolve, reject) => {
      readline.createInterface({ input: plain.stdout }).once("line", resolve);
      plain.once("exit", (code) => reject(new Error(`openkv serve --no-console exited (${code})`)));
    });
    const base = line.trim().split(/\s+/).pop();
    for (const route of ["/console", "/console/assets/console.js"]) {
      assert.equal((await fetch(`${base}${route}`)).status, 404, `${route} with --no-console`);
    }
    const session = await fetch(`${base}/console/api/session`, { method: "POST", headers: { authorization: `Bearer ${ROOT}` }, body: "{}" });
    assert.equal(session.status, 404, "/console/api/session with --no-console");
  } finally {
    plain.kill("SIGTERM");
  }
});

scenario("g", "queue: counts, payloads, dead letters of what @deno/kv enqueued; due now; delete after confirmation", async (pages) => {
  const page = await openConsole(tokens.write.token);
  pages.push(page);
  await page.click("a#nav-queue");
  await page.locator("section#view-queue").waitFor({ state: "visible" });
  assert.equal(await page.locator("section#view-browse").isVisible(), false, "browse stays visible in the queue view");
  const figures = async () => ({
    ready: (await page.locator("#queue-ready").innerText()).trim(),
    delayed: (await page.locator("#queue-delayed").innerText()).trim(),
  });
  const waitFigures = async (ready, delayed) => {
    const want = { ready: String(ready), delayed: String(delayed) };
    const deadline = Date.now() + TIMEOUT;
    for (let refreshed = false; JSON.stringify(await figures()) !== JSON.stringify(want);) {
      if (Date.now() > deadline) assert.deepEqual(await figures(), want, "#queue-ready/#queue-delayed");
      if (!refreshed && Date.now() > deadline - TIMEOUT / 2) {
        await page.click("#queue-refresh");
        refreshed = true;
      }
      await page.waitForTimeout(200);
    }
  };
  await waitFigures(2, 2);
  const fromApi = (await api("app", "queue", {}, ROOT)).json;
  assert.deepEqual([fromApi.ready, fromApi.delayed], [2, 2], "the queue API");
  const rows = page.locator("table#queue-messages tbody tr.message");
  assert.equal(await rows.count(), 4);
  const rowOf = (job) => rows.filter({ has: page.locator("td.payload", { hasText: `"${job}"` }) });
  for (const job of ["ready-1", "ready-2", "delayed-1", "delayed-2"]) {
    assert.equal(await rowOf(job).count(), 1, `no single row whose td.payload shows ${job}`);
  }
  const payload = JSON.parse(await rowOf("ready-2").locator("td.payload").textContent());
  assert.deepEqual(payload, { job: "ready-2", n: 2 }, "td.payload is the typed JSON");
  const deadLink = rowOf("delayed-1").locator("a.dead-letter");
  assert.equal(await deadLink.count(), 1, "the message with keysIfUndelivered has no a.dead-letter");
  assert.ok((await deadLink.innerText()).includes("delayed-1"), "a.dead-letter does not name the key");
  await shot(page, "12-queue");
  // Due now: delayed-2 becomes ready.
  await rowOf("delayed-2").locator("button.message-due-now").click();
  if (await page.locator("dialog#confirm").isVisible()) await confirmDialog(page, true);
  await waitFigures(3, 1);
  // Delete ready-1 after the confirmation.
  await rowOf("ready-1").locator("button.message-delete").click();
  await confirmDialog(page, true);
  await waitFigures(2, 1);
  await page.waitForFunction(() => ![...document.querySelectorAll("table#queue-messages tr.message td.payload")].some((td) => td.textContent.includes('"ready-1"')));
  const afterApi = (await api("app", "queue", {}, ROOT)).json;
  assert.deepEqual([afterApi.ready, afterApi.delayed], [2, 1], "the queue API after due-now and delete");
  // The dead-letter link opens the key in Browse.
  await deadLink.click();
  await page.locator("section#view-browse").waitFor({ state: "visible" });
  const shown = await page.evaluate(() => [
    document.querySelector("#query-key")?.value, document.querySelector("#entry-key")?.textContent,
    document.querySelector("nav#breadcrumbs")?.textContent,
  ].join(" | "));
  assert.ok(shown.includes("delayed-1"), `the dead-letter link did not open ["dead", "delayed-1"]: ${shown}`);
});

scenario("h", "export equals the CLI's export; import reports as the CLI and stores the good lines", async (pages) => {
  const page = await openConsole(tokens.write.token);
  pages.push(page);
  await page.click("a#nav-operate");
  await page.locator("section#view-operate").waitFor({ state: "visible" });
  await page.waitForFunction(() => /\d/.test(document.querySelector("#stat-entries")?.textContent ?? ""));
  const entries = Number((await page.locator("#stat-entries").innerText()).replace(/[^0-9]/g, ""));
  await shot(page, "13-operate");
  // Export.
  const download = page.waitForEvent("download");
  await page.click("#export");
  const file = await download;
  assert.equal(file.suggestedFilename(), "app.ndjson");
  const fromUi = fs.readFileSync(await file.path(), "utf8").split("\n").filter(Boolean);
  const fromCli = (await cliOk(["export", "--no-progress"])).split("\n").filter(Boolean);
  assert.ok(fromCli.length > 1250);
  const firstDiff = fromCli.findIndex((l, i) => l !== fromUi[i]);
  assert.deepEqual(fromUi, fromCli,
    `the console's export differs from openkv export (${fromUi.length} vs ${fromCli.length} lines; first difference at ${firstDiff}: ${fromUi[firstDiff]} vs ${fromCli[firstDiff]})`);
  assert.equal(entries, fromCli.length, "#stat-entries is not the number of entries");
  // Import: three good lines, two bad ones (2 and 4).
  const lines = [
    '{"key": "[\\"imported\\", 1]", "value": "one"}',
    "this is not JSON",
    '{"key": "[\\"imported\\", 2]", "value": {"$bigint": "2"}}',
    '{"key": "[\\"imported\\", ", "value": 3}',
    '{"key": "[\\"imported\\", 3]", "value": {"$date": "2024-01-02T03:04:05.678Z"}}',
  ];
  const importFile = path.join(SCRATCH, "import.ndjson");
  fs.writeFileSync(importFile, lines.join("\n") + "\n");
  // The CLI's report of the same file, into staging.
  const cliImport = await cli(["import", "-i", importFile, "--no-progress"], { db: "staging" });
  assert.equal(cliImport.code, 1, `openkv import of 2 bad lines: ${cliImport.stderr}`);
  const cliLines = cliImport.stderr.split("\n");
  const cliSummary = cliLines.find((l) => l.startsWith("import: read "));
  const cliErrors = cliLines.filter((l) => /^import: line \d+: /.test(l)).map((l) => l.slice("import: ".length));
  assert.ok(cliSummary, cliImport.stderr);
  assert.equal(cliErrors.length, 2, cliImport.stderr);
  await page.setInputFiles("#import-file", importFile);
  await page.click("#import-run");
  await page.waitForFunction(() => /^import: read /.test(document.querySelector("#import-report")?.textContent.trim() ?? ""));
  const report = (await page.locator("#import-report").innerText()).trim();
  assert.ok(report.includes(cliSummary.replace(/^import: /, "")), `#import-report ${JSON.stringify(report)} is not the CLI's ${JSON.stringify(cliSummary)}`);
  const uiErrors = (await page.$$eval("ul#import-errors > li", (lis) => lis.map((li) => li.textContent.trim())));
  assert.equal(uiErrors.length, 2, `#import-errors ${JSON.stringify(uiErrors)}`);
  assert.match(uiErrors[0], /^line 2: /);
  assert.match(uiErrors[1], /^line 4: /);
  assert.deepEqual(uiErrors, cliErrors, "the console's line errors differ from the CLI's");
  await shot(page, "14-import");
  assert.equal(await stored('["imported", 1]'), "one");
  assert.deepEqual(await stored('["imported", 2]'), { $bigint: "2" });
  assert.deepEqual(await stored('["imported", 3]'), { $date: "2024-01-02T03:04:05.678Z" });
});

scenario("i", "delete a prefix: the confirmation states the count; no keeps, yes deletes", async (pages) => {
  assert.equal(await count('["doomed"]'), 25);
  const page = await openConsole(tokens.write.token);
  pages.push(page);
  await page.click(byKey("button.child", '["doomed"]'));
  await page.locator(byKey("tr.entry", '["doomed", 0]')).waitFor();
  await page.click("#delete-prefix");
  const text = await confirmDialog(page, false);
  assert.match(text, /\b25\b/, `#confirm-text ${JSON.stringify(text)} does not state the count`);
  assert.equal(await count('["doomed"]'), 25, "no deleted");
  await page.click("#delete-prefix");
  await page.locator("dialog#confirm").waitFor({ state: "visible" });
  await shot(page, "15-delete-prefix-confirm");
  await page.click("#confirm-yes");
  await page.locator("dialog#confirm").waitFor({ state: "hidden" });
  const deadline = Date.now() + TIMEOUT;
  while ((await count('["doomed"]')) !== 0) {
    assert.ok(Date.now() < deadline, "the prefix was not deleted");
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(await stored('["doomed-not", 1]'), 'must survive the deletion of ["doomed"]', "a neighbour was deleted");
  await page.waitForFunction(() => document.querySelectorAll("table#entries tbody tr.entry").length === 0 ||
    ![...document.querySelectorAll("table#entries tbody tr.entry")].some((r) => r.dataset.key.startsWith('["doomed", ')));
});

scenario("j", "accessibility: axe finds nothing serious on sign-in, browse (an entry open), queue, operate", async (pages) => {
  // The CSP would block axe's injected script: bypassed for this context only.
  const page = await newPage({ bypassCSP: true });
  pages.push(page);
  const serious = [];
  await page.goto(`${origin}/console`);
  await page.locator("form#signin").waitFor();
  serious.push(...(await runAxe(page, "sign-in")));
  await shot(page, "16-axe-signin");
  await page.fill("#token", tokens.write.token);
  await page.click("#signin-submit");
  await page.locator("#whoami").waitFor();
  await query(page, { mode: "list", key: '["values"]' });
  await page.locator(byKey("tr.entry", '["values", "object"]')).waitFor();
  await page.click(`${byKey("tr.entry", '["values", "object"]')} td.key`);
  await page.locator("section#entry").waitFor({ state: "visible" });
  serious.push(...(await runAxe(page, "browse")));
  await shot(page, "17-axe-browse");
  await page.click("a#nav-queue");
  await page.locator("section#view-queue").waitFor({ state: "visible" });
  await page.locator("table#queue-messages tbody tr.message").first().waitFor();
  serious.push(...(await runAxe(page, "queue")));
  await shot(page, "18-axe-queue");
  await page.click("a#nav-operate");
  await page.locator("section#view-operate").waitFor({ state: "visible" });
  serious.push(...(await runAxe(page, "operate")));
  await shot(page, "19-axe-operate");
  assert.deepEqual(serious, [], "axe: serious or critical violations");
});

scenario("z", "across the run: no token secret in any URL the browser used, nor in the server's log; no page errors", async () => {
  const secrets = [tokens.write.secret, tokens.read.secret, ROOT];
  for (const url of urls) {
    for (const s of secrets) assert.ok(!url.includes(s), `a URL holds a token: ${url}`);
  }
  for (const s of secrets) assert.ok(!serverLog.includes(s), "the server's log holds a token");
  assert.deepEqual(pageErrors, [], "uncaught errors in the console's pages");
});
