// openkv console: a small app over the console's JSON API (crates/openkv-server/src/console).
//
// Invariants:
// - Every piece of data reaches the page as text (`textContent`, `h()` below); no string
//   is ever parsed as markup. With the server's CSP (no inline script) a value holding
//   markup can only ever show as text.
// - The token lives in sessionStorage and goes out in the Authorization header only: never
//   in a URL, a cookie or the DOM.
// - Write controls are only built for a token whose scope allows writes; the server checks
//   the scope of every request anyway.

const TOKEN_KEY = "openkv-console-token";
const DB_KEY = "openkv-console-database";
const PAGE = 100;
const POLL_MS = 2000;
const CHART_POINTS = 60;
const LONG_VALUE = 4000;
const MARK_MS = 10000; // how long a live change stays marked // characters: longer values start collapsible (still complete)

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  session: null,
  db: null,
  view: null,
  browse: null,
  timers: [],
  watch: null,
};

// ---------------------------------------------------------------------------------------
// DOM helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const $ = (selector, root = document) => root.querySelector(selector);

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) el.setAttribute(name, String(value));
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

function formatBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

function formatTime(ms) {
  if (ms === null || ms === undefined) return "never";
  const d = new Date(ms);
  const delta = Math.round((ms - Date.now()) / 1000);
  const rel = delta >= 0 ? `in ${delta} s` : `${-delta} s ago`;
  return `${d.toISOString()} (${rel})`;
}

// ---------------------------------------------------------------------------------------
// API

class ApiError extends Error {
  constructor(status, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
  }
}

function headers() {
  return { "Authorization": `Bearer ${state.token}`, "Content-Type": "application/json" };
}

// POSTs `body` to a console endpoint of the current database (or of the server with
// `server: true`). Answers the parsed JSON; a 409 answers `{conflict: …}`.
async function api(path, body, { server = false, raw = false, signal } = {}) {
  const base = server ? "" : state.db.base;
  const res = await fetch(`${base}/console/api/${path}`, {
    method: "POST",
    headers: headers(),
    body: JSON.stringify(body || {}),
    cache: "no-store",
    credentials: "omit",
    signal,
  });
  if (res.status === 401 && !server) {
    signOut("The token is no longer accepted (401). Sign in again.");
    throw new ApiError(401, "signed out");
  }
  if (raw) {
    if (!res.ok) throw new ApiError(res.status, await res.text());
    return res;
  }
  const text = await res.text();
  if (res.status === 409 && (res.headers.get("content-type") || "").startsWith("application/json")) {
    return { conflict: JSON.parse(text) };
  }
  if (!res.ok) throw new ApiError(res.status, text);
  return JSON.parse(text);
}

function canWrite() {
  return state.db && state.db.scope !== "read" && !state.session.readOnly;
}

// ---------------------------------------------------------------------------------------
// Typed JSON, highlighted (as DOM nodes: escaped by construction)

function jsonNodes(value, indent = "") {
  const out = [];
  const inner = indent + "  ";
  if (value === null) out.push(h("span", { class: "j-null" }, "null"));
  else if (typeof value === "boolean") out.push(h("span", { class: "j-bool" }, String(value)));
  else if (typeof value === "number") out.push(h("span", { class: "j-num" }, String(value)));
  else if (typeof value === "string") out.push(h("span", { class: "j-str" }, JSON.stringify(value)));
  else if (Array.isArray(value)) {
    if (value.length === 0) return ["[]"];
    out.push("[\n");
    value.forEach((item, i) => {
      out.push(inner, ...jsonNodes(item, inner), i < value.length - 1 ? ",\n" : "\n");
    });
    out.push(indent + "]");
  } else {
    const keys = Object.keys(value);
    if (keys.length === 0) return ["{}"];
    const tagged = keys.length === 1 && keys[0].startsWith("$");
    out.push("{\n");
    keys.forEach((k, i) => {
      out.push(inner, h("span", { class: tagged ? "j-tag" : "j-key" }, JSON.stringify(k)), ": ",
        ...jsonNodes(value[k], inner), i < keys.length - 1 ? ",\n" : "\n");
    });
    out.push(indent + "}");
  }
  return out;
}

function valueText(entry) {
  if (entry.value === null && entry.valueBytes && entry.encoding === "v8") {
    return `(V8 bytes this build cannot decode: ${entry.size} bytes)`;
  }
  return JSON.stringify(entry.value);
}

function base64ToBytes(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

function hexDump(bytes) {
  const lines = [];
  for (let i = 0; i < bytes.length; i += 16) {
    const row = Array.from(bytes.slice(i, i + 16), (b) => b.toString(16).padStart(2, "0"));
    lines.push(`${i.toString(16).padStart(8, "0")}  ${row.join(" ")}`);
  }
  return lines.join("\n") || "(empty)";
}

function download(name, blob) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// ---------------------------------------------------------------------------------------
// Confirmation dialog

function confirmAction(text, yesLabel = "Yes") {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = text;
  $("#confirm-yes").textContent = yesLabel;
  return new Promise((resolve) => {
    const done = (answer) => {
      $("#confirm-yes").onclick = null;
      $("#confirm-no").onclick = null;
      dialog.onclose = null;
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    $("#confirm-yes").onclick = () => done(true);
    $("#confirm-no").onclick = () => done(false);
    dialog.onclose = () => done(false);
    dialog.showModal();
  });
}

// ---------------------------------------------------------------------------------------
// Session

async function signIn(token) {
  const res = await fetch("/console/api/session", {
    method: "POST",
    headers: { "Authorization": `Bearer ${token}`, "Content-Type": "application/json" },
    body: "{}",
    cache: "no-store",
    credentials: "omit",
  });
  if (!res.ok) {
    const why = res.status === 401 ? "This token is not valid here (unknown, expired or revoked)." : await res.text();
    throw new ApiError(res.status, why);
  }
  return res.json();
}

async function start() {
  $("#signin").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("#token");
    const token = input.value.trim();
    $("#signin-error").textContent = "";
    try {
      const session = await signIn(token);
      state.token = token;
      sessionStorage.setItem(TOKEN_KEY, token);
      input.value = "";
      enter(session);
    } catch (e) {
      $("#signin-error").textContent = e.message;
    }
  });
  $("#signout").addEventListener("click", () => signOut(""));
  $("#database").addEventListener("change", (event) => {
    pickDatabase(event.target.value);
    route();
  });
  window.addEventListener("hashchange", route);
  if (state.token) {
    try {
      enter(await signIn(state.token));
      return;
    } catch (e) {
      signOut(e.status === 401 ? "Your session's token is no longer accepted. Sign in again." : e.message);
      return;
    }
  }
  showSignIn();
}

function showSignIn() {
  for (const id of ["view-browse", "view-queue", "view-operate"]) $(`#${id}`).hidden = true;
  $("#view-signin").hidden = false;
  $("#session-bar").hidden = true;
  $("#nav").hidden = true;
  $("#token").focus();
}

function signOut(message) {
  stopTimers();
  stopWatch();
  state.token = null;
  state.session = null;
  state.db = null;
  state.browse = null;
  sessionStorage.removeItem(TOKEN_KEY);
  showSignIn();
  $("#signin-error").textContent = message || "";
}

function enter(session) {
  state.session = session;
  $("#view-signin").hidden = true;
  $("#session-bar").hidden = false;
  $("#nav").hidden = false;
  $("#whoami").textContent = `token ${session.token.id} (${session.token.scope}${session.readOnly ? ", read-only server" : ""})`;
  const select = $("#database");
  select.replaceChildren(...session.databases.map((d) => h("option", { value: d.name ?? "" }, d.name ?? "default")));
  const several = session.databases.length > 1;
  select.hidden = !several;
  $("#database-label").hidden = !several;
  if (session.databases.length === 0) {
    $("#main").append(h("p", { role: "alert" }, "This token reaches no database of this server."));
    return;
  }
  const remembered = sessionStorage.getItem(DB_KEY);
  const initial = session.databases.find((d) => (d.name ?? "") === remembered) ? remembered : (session.databases[0].name ?? "");
  select.value = initial;
  pickDatabase(initial);
  if (!location.hash) location.hash = "#/browse";
  route();
}

function pickDatabase(name) {
  state.db = state.session.databases.find((d) => (d.name ?? "") === name);
  sessionStorage.setItem(DB_KEY, name);
  state.browse = null;
  $("#whoami").textContent = `token ${state.session.token.id} · ${state.db.scope} on ${state.db.name ?? "this database"}${state.session.readOnly ? " · read-only server" : ""}`;
}

function stopTimers() {
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
}

function route() {
  if (!state.session || !state.db) return;
  stopTimers();
  const view = (location.hash.match(/^#\/(browse|queue|operate)/) || [])[1] || "browse";
  if (view !== "browse") stopWatch();
  state.view = view;
  for (const name of ["browse", "queue", "operate"]) {
    $(`#view-${name}`).hidden = name !== view;
    const link = $(`#nav-${name}`);
    if (name === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (view === "browse") renderBrowse();
  else if (view === "queue") renderQueue();
  else renderOperate();
}

// ---------------------------------------------------------------------------------------
// Browse

function browseState() {
  if (!state.browse) {
    state.browse = { prefix: "[]", query: { mode: "list", prefix: "[]" }, cursors: [null], page: 0, rows: [], open: null };
  }
  return state.browse;
}

function renderBrowse() {
  const b = browseState();
  const view = $("#view-browse");
  const writeTools = canWrite()
    ? [h("button", { type: "button", id: "new-entry", onclick: () => openEditor(null) }, "New entry"),
      h("button", { type: "button", id: "delete-prefix", class: "danger", onclick: deletePrefix }, "Delete prefix…")]
    : [];
  view.replaceChildren(
    h("h2", { id: "browse-title" }, "Browse"),
    h("div", { class: "toolbar" },
      h("nav", { id: "breadcrumbs", "aria-label": "Key prefix" }),
      ...writeTools,
      h("span", { id: "live-status", class: "status", "aria-live": "polite" }, "")),
    h("div", { class: "browse-grid" },
      h("div", { class: "tree" },
        h("h3", {}, "Key parts"),
        h("ul", { id: "children", "aria-label": "Next key parts" }),
        h("p", { id: "children-status", class: "status" })),
      h("div", {},
        queryForm(b),
        h("p", { id: "query-error", role: "alert" }),
        h("div", { class: "toolbar" },
          h("label", { for: "filter" }, "Filter this page"),
          h("input", { id: "filter", type: "search", oninput: applyFilter }),
          h("span", { id: "entries-status", class: "status" }),
          h("button", { type: "button", id: "prev-page", onclick: () => turnPage(-1), hidden: true }, "Previous page"),
          h("button", { type: "button", id: "next-page", onclick: () => turnPage(1), hidden: true }, "Next page")),
        h("table", { id: "entries" },
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Key"), h("th", { scope: "col" }, "Value"), h("th", { scope: "col" }, "Versionstamp"))),
          h("tbody", {})),
        h("div", { id: "entry-slot" }))));
  renderCrumbs();
  loadChildren(false);
  runQuery(false);
  if (b.open) showEntry(b.open);
}

function queryForm(b) {
  const q = b.query;
  return h("form", { id: "query", onsubmit: (e) => { e.preventDefault(); submitQuery(); } },
    h("label", { for: "query-mode" }, "Query"),
    h("select", { id: "query-mode" },
      h("option", { value: "list", selected: q.mode === "list" }, "list"),
      h("option", { value: "get", selected: q.mode === "get" }, "get")),
    h("label", { for: "query-key" }, "Key or prefix"),
    h("input", { id: "query-key", type: "text", value: q.mode === "get" ? q.key : q.prefix ?? "", placeholder: '["users", 12n]', spellcheck: "false" }),
    h("label", { for: "query-start" }, "Start"),
    h("input", { id: "query-start", type: "text", value: q.start ?? "", spellcheck: "false" }),
    h("label", { for: "query-end" }, "End"),
    h("input", { id: "query-end", type: "text", value: q.end ?? "", spellcheck: "false" }),
    h("label", { for: "query-limit" }, "Limit"),
    h("input", { id: "query-limit", type: "number", min: 1, max: 999, value: q.limit ?? PAGE }),
    h("input", { id: "query-reverse", type: "checkbox", checked: !!q.reverse }),
    h("label", { for: "query-reverse" }, "Reverse"),
    h("button", { id: "query-run", type: "submit" }, "Run"));
}

function submitQuery() {
  const b = browseState();
  const mode = $("#query-mode").value;
  const text = $("#query-key").value.trim();
  const q = { mode, limit: Number($("#query-limit").value) || PAGE, reverse: $("#query-reverse").checked };
  if (mode === "get") q.key = text;
  else {
    if (text) q.prefix = text;
    const s = $("#query-start").value.trim();
    const e = $("#query-end").value.trim();
    if (s) q.start = s;
    if (e) q.end = e;
    if (!text && !s && !e) q.prefix = "[]";
  }
  b.query = q;
  b.cursors = [null];
  b.page = 0;
  b.open = null;
  $("#entry")?.remove();
  if (mode === "list" && q.prefix && q.prefix !== b.prefix) {
    // The tree and the breadcrumbs follow the listed prefix.
    b.prefix = q.prefix;
    b.lastChild = null;
    loadChildren(false);
  }
  runQuery(false);
}

function renderCrumbs() {
  const b = browseState();
  const nav = $("#breadcrumbs");
  const crumbs = b.crumbs || [];
  const items = [h("a", { href: "#/browse", onclick: (e) => { e.preventDefault(); goTo("[]"); } }, "root")];
  crumbs.forEach((c) => {
    items.push(h("span", { class: "sep", "aria-hidden": "true" }, "/"));
    items.push(h("a", { href: "#/browse", onclick: (e) => { e.preventDefault(); goTo(c.key); } }, c.part));
  });
  nav.replaceChildren(...items);
}

function goTo(prefix) {
  const b = browseState();
  b.prefix = prefix;
  b.open = null;
  b.query = { mode: "list", prefix, limit: PAGE };
  b.cursors = [null];
  b.page = 0;
  renderBrowse();
  if (prefix !== "[]") {
    // The prefix may be a key itself: show it.
    api("get", { key: prefix }).then((r) => { if (r.entry) showEntry(r.entry); }).catch(() => {});
  }
}

async function loadChildren(more) {
  const b = browseState();
  const list = $("#children");
  const status = $("#children-status");
  try {
    const after = more && b.lastChild ? b.lastChild : undefined;
    const r = await api("children", { prefix: b.prefix, after });
    b.crumbs = r.path;
    renderCrumbs();
    if (!more) list.replaceChildren();
    $("#children-more")?.remove();
    for (const c of r.children) {
      list.append(h("li", {},
        h("button", { type: "button", class: "child", dataset: { key: c.key }, onclick: () => goTo(c.key) }, c.part),
        h("span", { class: "count", title: "entries under it, the key itself included" }, c.more ? `${c.count}+` : String(c.count))));
      b.lastChild = c.key;
    }
    if (r.more) {
      list.after(h("button", { type: "button", id: "children-more", onclick: () => loadChildren(true) }, "More key parts"));
    }
    status.textContent = list.children.length === 0 ? "No keys below this prefix." : "";
  } catch (e) {
    status.textContent = `Could not list key parts: ${e.message}`;
  }
}

async function runQuery(keepMarks) {
  const b = browseState();
  const q = b.query;
  // `data-state` tells whoever reads the table (a person's screen reader, a test) whether
  // the rows are the answer to the current query yet.
  const table = $("#entries");
  if (table) table.dataset.state = "loading";
  $("#query-error").textContent = "";
  let rows;
  let cursor = null;
  try {
    if (q.mode === "get") {
      const r = await api("get", { key: q.key });
      rows = r.entry ? [r.entry] : [];
      if (!r.entry) $("#entries-status").textContent = "No entry with that key.";
    } else {
      const body = { limit: q.limit ?? PAGE, reverse: !!q.reverse, cursor: b.cursors[b.page] ?? undefined };
      for (const f of ["prefix", "start", "end"]) if (q[f]) body[f] = q[f];
      const r = await api("list", body);
      rows = r.entries;
      cursor = r.cursor;
    }
  } catch (e) {
    $("#query-error").textContent = e.message;
    if (table) table.dataset.state = "error";
    return;
  }
  const previous = new Map((keepMarks ? b.rows : []).map((e) => [e.key, e.versionstamp]));
  // A mark stays for MARK_MS after its change, across the re-reads other changes cause.
  b.marked = b.marked || new Map();
  const now = Date.now();
  if (keepMarks) {
    for (const entry of rows) {
      if (previous.get(entry.key) !== entry.versionstamp) b.marked.set(entry.key, now);
    }
  } else {
    b.marked.clear();
  }
  b.rows = rows;
  b.cursors[b.page + 1] = cursor;
  const tbody = $("#entries tbody");
  tbody.replaceChildren(...rows.map((entry) => {
    const changed = now - (b.marked.get(entry.key) ?? -Infinity) < MARK_MS;
    const row = h("tr", { class: changed ? "entry changed" : "entry", dataset: { key: entry.key }, onclick: () => showEntry(entry) },
      h("td", { class: "key" }, h("button", { type: "button", onclick: (e) => { e.stopPropagation(); showEntry(entry); } }, entry.key ?? "(undecodable key)"),
        changed ? h("span", { class: "live-mark" }, "updated") : null),
      h("td", { class: "value" }, h("div", { tabindex: 0 }, valueText(entry))),
      h("td", { class: "versionstamp" }, entry.versionstamp));
    return row;
  }));
  if (q.mode !== "get") {
    const first = b.page * (q.limit ?? PAGE);
    $("#entries-status").textContent = rows.length === 0 ? "No entries." : `${rows.length} ${rows.length === 1 ? "entry" : "entries"} (page ${b.page + 1}, from #${first + 1})`;
  } else if (rows.length) {
    $("#entries-status").textContent = "1 entry";
    if (!keepMarks) showEntry(rows[0]);
  }
  $("#next-page").hidden = !cursor;
  $("#prev-page").hidden = b.page === 0;
  applyFilter();
  if (table) table.dataset.state = "ready";
  followLive();
}

function turnPage(delta) {
  const b = browseState();
  b.page = Math.max(0, b.page + delta);
  runQuery(false);
}

function applyFilter() {
  const text = ($("#filter")?.value || "").toLowerCase();
  for (const row of document.querySelectorAll("#entries tbody tr")) {
    row.hidden = text !== "" && !row.textContent.toLowerCase().includes(text);
  }
}

// The entry panel.
function showEntry(entry) {
  const b = browseState();
  b.open = entry;
  const slot = $("#entry-slot");
  if (!slot) return;
  const nodes = jsonNodes(entry.value);
  const full = JSON.stringify(entry.value);
  const pre = h("pre", { id: "entry-value", class: "json" }, ...(entry.value === null && entry.valueBytes && entry.encoding === "v8"
    ? ["(a V8 value this build cannot decode; its bytes are below)"] : nodes));
  const valueBlock = full && full.length > LONG_VALUE
    ? h("details", { open: true }, h("summary", {}, `Value (${full.length} characters; click to collapse)`), pre)
    : pre;
  const bytes = entry.valueBytes ? base64ToBytes(entry.valueBytes) : null;
  const tools = canWrite()
    ? h("div", { class: "toolbar" },
      h("button", { type: "button", id: "entry-edit", onclick: () => openEditor(b.open) }, "Edit"),
      h("button", { type: "button", id: "entry-delete", class: "danger", onclick: () => deleteEntry(b.open) }, "Delete…"))
    : null;
  const section = h("section", { id: "entry", "aria-labelledby": "entry-title" },
    h("h3", { id: "entry-title" }, "Entry"),
    h("dl", { class: "facts" },
      h("dt", {}, "Key"), h("dd", { id: "entry-key" }, entry.key ?? "(undecodable key)"),
      h("dt", {}, "Encoding"), h("dd", { id: "entry-encoding" }, entry.encoding),
      h("dt", {}, "Size"), h("dd", { id: "entry-size" }, `${entry.size} bytes`),
      h("dt", {}, "Versionstamp"), h("dd", { id: "entry-versionstamp" }, entry.versionstamp),
      h("dt", {}, "Expiry"), h("dd", { id: "entry-expiry" }, formatTime(entry.expireAt))),
    valueBlock,
    bytes ? h("div", {},
      h("h3", {}, "Bytes"),
      h("pre", { id: "entry-hex", class: "json hex", "aria-label": "hex" }, hexDump(bytes)),
      h("p", {}, "Base64: ", h("code", { id: "entry-base64" }, entry.valueBytes)),
      h("button", { type: "button", id: "entry-download", onclick: () => download("value.bin", new Blob([bytes])) }, "Download bytes")) : null,
    tools);
  const old = $("#entry");
  if (old) old.replaceWith(section); else slot.prepend(section);
  followLive();
}

function markEntryChanged() {
  const section = $("#entry");
  if (!section) return;
  section.classList.add("changed");
  $("#entry-title").append(h("span", { class: "live-mark" }, "updated"));
}

// The editor.
const TEMPLATES = {
  bigint: () => '{"$bigint": "0"}',
  date: () => `{"$date": "${new Date().toISOString()}"}`,
  kvu64: () => '{"$kvu64": "0"}',
  map: () => '{"$map": [["key", "value"]]}',
  bytes: () => '{"$bytes": "AAE="}',
};

function encodingOf(value) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === "$kvu64") return "u64";
    if (keys.length === 1 && keys[0] === "$bytes") return "bytes";
  }
  return "v8";
}

function validateEditor() {
  const area = $("#editor-value");
  const out = $("#editor-validation");
  const encoding = $("#editor-encoding").value;
  try {
    const value = JSON.parse(area.value);
    const is = encodingOf(value);
    if (is !== encoding) {
      throw new Error(encoding === "u64" ? 'a u64 is written {"$kvu64": "7"}' : encoding === "bytes" ? 'bytes are written {"$bytes": "<base64>"}' : `this value stores as ${is}; pick that encoding`);
    }
    area.setAttribute("aria-invalid", "false");
    out.textContent = `Valid typed JSON; stores as ${is}.`;
    out.className = "status ok";
    $("#editor-save").disabled = false;
    return value;
  } catch (e) {
    area.setAttribute("aria-invalid", "true");
    out.textContent = `Not valid: ${e.message}`;
    out.className = "status";
    $("#editor-save").disabled = true;
    return undefined;
  }
}

function openEditor(entry) {
  const slot = $("#entry-slot");
  $("#editor-panel")?.remove();
  $("#conflict")?.remove();
  const editing = { entry, expect: entry ? entry.versionstamp : null };
  const templateButtons = Object.keys(TEMPLATES).map((name) =>
    h("button", { type: "button", class: "template", dataset: { template: name }, onclick: () => insertTemplate(name) }, `$${name}`));
  const panel = h("section", { id: "editor-panel", "aria-labelledby": "editor-title" },
    h("h3", { id: "editor-title" }, entry ? "Edit entry" : "New entry"),
    h("form", { id: "editor", onsubmit: (e) => { e.preventDefault(); saveEditor(editing); } },
      h("label", { for: "editor-key" }, "Key (key syntax)"),
      h("input", { id: "editor-key", type: "text", value: entry ? entry.key : (browseState().prefix === "[]" ? '[""]' : browseState().prefix), readonly: !!entry, spellcheck: "false" }),
      h("label", { for: "editor-encoding" }, "Encoding"),
      h("select", { id: "editor-encoding", onchange: validateEditor },
        ...["v8", "bytes", "u64"].map((e) => h("option", { value: e, selected: (entry ? entry.encoding : "v8") === e }, e))),
      h("label", { for: "editor-value" }, "Value (typed JSON)"),
      h("div", { class: "toolbar", role: "group", "aria-label": "Templates" }, "Insert:", ...templateButtons),
      h("textarea", { id: "editor-value", spellcheck: "false", oninput: validateEditor, "aria-describedby": "editor-validation" }),
      h("p", { id: "editor-validation", class: "status", "aria-live": "polite" }),
      h("label", { for: "editor-expire" }, "Expire in (seconds; empty: keep as is / none)"),
      h("input", { id: "editor-expire", type: "number", min: 1 }),
      entry && entry.expireAt ? h("div", {},
        h("input", { id: "editor-clear-expiry", type: "checkbox" }),
        h("label", { for: "editor-clear-expiry" }, `Clear the expiry (now ${formatTime(entry.expireAt)})`)) : null,
      h("div", { class: "toolbar" },
        h("button", { id: "editor-save", type: "submit" }, "Save"),
        h("button", { id: "editor-cancel", type: "button", onclick: () => { panel.remove(); $("#conflict")?.remove(); } }, "Cancel")),
      h("p", { id: "editor-status", class: "status", "aria-live": "polite" })));
  slot.append(panel);
  $("#editor-value").value = entry && entry.value !== null ? JSON.stringify(entry.value, null, 2) : (entry ? "" : '"hello"');
  validateEditor();
  $("#editor-value").focus();
}

function insertTemplate(name) {
  const area = $("#editor-value");
  const text = TEMPLATES[name]();
  const start = area.selectionStart ?? area.value.length;
  const end = area.selectionEnd ?? area.value.length;
  area.value = area.value.slice(0, start) + text + area.value.slice(end);
  area.focus();
  area.selectionStart = area.selectionEnd = start + text.length;
  if (name === "kvu64") $("#editor-encoding").value = area.value.trim() === text ? "u64" : $("#editor-encoding").value;
  if (name === "bytes") $("#editor-encoding").value = area.value.trim() === text ? "bytes" : $("#editor-encoding").value;
  validateEditor();
}

async function saveEditor(editing, overwrite) {
  const value = validateEditor();
  if (value === undefined) return;
  const key = $("#editor-key").value.trim();
  const body = { key, value, encoding: $("#editor-encoding").value, expect: overwrite ? overwrite.expect : editing.expect };
  const seconds = Number($("#editor-expire").value);
  const clear = $("#editor-clear-expiry")?.checked;
  if (seconds > 0) body.expireInMs = Math.round(seconds * 1000);
  else if (editing.entry && editing.entry.expireAt && !clear) {
    // Keep the expiry it had (as the time left now).
    body.expireInMs = Math.max(1, editing.entry.expireAt - Date.now());
  }
  const status = $("#editor-status");
  try {
    const r = await api("set", body);
    if (r.conflict) {
      showConflict(editing, r.conflict.current);
      return;
    }
    $("#conflict")?.remove();
    $("#editor-panel")?.remove();
    const saved = await api("get", { key });
    if (saved.entry) showEntry(saved.entry);
    const note = $("#entry-title");
    if (note) note.append(h("span", { class: "status ok", id: "editor-status" }, ` saved at ${r.versionstamp}`));
    runQuery(false);
    loadChildren(false);
  } catch (e) {
    status.textContent = `Not saved: ${e.message}`;
  }
}

function showConflict(editing, current) {
  $("#conflict")?.remove();
  const mine = $("#editor-value").value;
  const section = h("section", { id: "conflict", "aria-labelledby": "conflict-title", role: "region" },
    h("h3", { id: "conflict-title" }, "Changed by someone else — nothing was saved"),
    h("p", {}, "The entry changed after you opened it. Keep their version, or save yours over it."),
    h("div", { class: "conflict-grid" },
      h("div", {}, h("h3", {}, "Yours"), h("pre", { id: "conflict-mine", class: "json" }, mine)),
      h("div", {}, h("h3", {}, current ? `Theirs (versionstamp ${current.versionstamp})` : "Theirs (deleted)"),
        h("pre", { id: "conflict-theirs", class: "json" }, ...(current ? jsonNodes(current.value) : ["(the entry no longer exists)"])))),
    h("div", { class: "toolbar" },
      h("button", { type: "button", id: "conflict-overwrite", class: "danger", onclick: () => saveEditor(editing, { expect: current ? current.versionstamp : null }) }, "Save mine over theirs"),
      h("button", { type: "button", id: "conflict-discard", onclick: () => {
        section.remove();
        $("#editor-panel")?.remove();
        if (current) showEntry(current);
        runQuery(false);
      } }, "Keep theirs")));
  $("#editor-panel").after(section);
  $("#editor-status").textContent = "Not saved: the entry changed meanwhile (see below).";
}

async function deleteEntry(entry) {
  if (!(await confirmAction(`Delete the entry ${entry.key}?`, "Delete"))) return;
  try {
    const r = await api("delete", { key: entry.key, expect: entry.versionstamp });
    if (r.conflict) {
      $("#query-error").textContent = `Not deleted: ${entry.key} changed meanwhile. Look at it again first.`;
      if (r.conflict.current) showEntry(r.conflict.current);
      return;
    }
    $("#entry")?.remove();
    browseState().open = null;
    runQuery(false);
    loadChildren(false);
  } catch (e) {
    $("#query-error").textContent = `Not deleted: ${e.message}`;
  }
}

async function deletePrefix() {
  const prefix = browseState().prefix;
  try {
    const { count } = await api("count", { prefix });
    const where = prefix === "[]" ? "in the whole database" : `under ${prefix}`;
    if (count === 0) {
      $("#query-error").textContent = `There are no entries ${where}.`;
      return;
    }
    if (!(await confirmAction(`Delete ${count} entries ${where}? This cannot be undone.`, `Delete ${count} entries`))) return;
    const r = await api("delete-prefix", { prefix });
    $("#entries-status").textContent = `Deleted ${r.deleted} entries.`;
    runQuery(false);
    loadChildren(false);
  } catch (e) {
    $("#query-error").textContent = `Not deleted: ${e.message}`;
  }
}

// Live updates: one stream follows the open entry's key and the listed prefix.
function stopWatch() {
  if (state.watch) {
    state.watch.abort.abort();
    state.watch = null;
  }
}

function followLive() {
  const b = state.browse;
  if (!b || state.view !== "browse") return;
  // The keys: a get's key (so its row follows it, even when it does not exist yet) and the
  // open entry's; the prefix: a list's.
  const keys = [];
  if (b.query.mode === "get" && b.query.key) keys.push(b.query.key);
  if (b.open?.key && !keys.includes(b.open.key)) keys.push(b.open.key);
  const prefix = b.query.mode === "list" ? (b.query.prefix || "[]") : undefined;
  const want = JSON.stringify({ keys, prefix });
  if (state.watch && state.watch.want === want) return;
  stopWatch();
  const abort = new AbortController();
  state.watch = { want, abort };
  streamWatch({ keys, prefix }, abort, 0);
}

async function streamWatch(body, abort, attempt) {
  const status = () => $("#live-status");
  let timer = null;
  const rerun = () => {
    // Several changes in a burst: one re-read.
    clearTimeout(timer);
    timer = setTimeout(() => { runQuery(true); loadChildren(false); }, 250);
  };
  try {
    const res = await api("watch", body, { raw: true, signal: abort.signal });
    if (status()) status().textContent = "Live updates on";
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let seen = null; // the versionstamps of the watched keys, as last reported
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line);
        if (msg.entries && body.keys.length) {
          const stamps = msg.entries.map((e) => (e ? e.versionstamp : null));
          if (seen) {
            body.keys.forEach((key, i) => {
              if (stamps[i] === seen[i]) return;
              const b = state.browse;
              if (b?.query.mode === "get" && b.query.key === key) rerun();
              if (b?.open && b.open.key === key) {
                const entry = msg.entries[i];
                if (entry) {
                  showEntry(entry);
                  markEntryChanged();
                } else {
                  $("#entry-title")?.append(h("span", { class: "live-mark" }, "deleted"));
                }
              }
            });
          }
          seen = stamps;
        }
        if (msg.prefix) rerun();
      }
    }
  } catch (e) {
    if (abort.signal.aborted) return;
  }
  if (abort.signal.aborted) return;
  if (status()) status().textContent = "Live updates interrupted; reconnecting…";
  setTimeout(() => { if (!abort.signal.aborted) streamWatch(body, abort, attempt + 1); }, Math.min(10000, 1000 * 2 ** attempt));
}

// ---------------------------------------------------------------------------------------
// Queue

async function renderQueue() {
  const view = $("#view-queue");
  view.replaceChildren(
    h("h2", { id: "queue-title" }, "Queue"),
    h("div", { class: "counts" },
      h("div", {}, h("strong", { id: "queue-ready" }, "…"), "ready"),
      h("div", {}, h("strong", { id: "queue-delayed" }, "…"), "delayed"),
      h("div", {}, h("strong", { id: "queue-running" }, "…"), "in flight")),
    h("div", { class: "toolbar" },
      h("button", { type: "button", id: "queue-refresh", onclick: loadQueue }, "Refresh"),
      h("span", { id: "queue-status", class: "status", "aria-live": "polite" })),
    h("p", { id: "queue-error", role: "alert" }),
    h("table", { id: "queue-messages" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "State"), h("th", { scope: "col" }, "Due"), h("th", { scope: "col" }, "Attempts"),
        h("th", { scope: "col" }, "Payload"), h("th", { scope: "col" }, "Dead-letter keys"), h("th", { scope: "col" }, "Actions"))),
      h("tbody", {})));
  await loadQueue();
  state.timers.push(setInterval(loadQueue, POLL_MS));
}

async function loadQueue() {
  let r;
  try {
    r = await api("queue", {});
  } catch (e) {
    const err = $("#queue-error");
    if (err) err.textContent = `Could not read the queue: ${e.message}`;
    return;
  }
  if (state.view !== "queue") return;
  $("#queue-error").textContent = "";
  $("#queue-ready").textContent = String(r.ready);
  $("#queue-delayed").textContent = String(r.delayed);
  $("#queue-running").textContent = String(r.running);
  const total = r.ready + r.delayed + r.running;
  $("#queue-status").textContent = `${r.messages.length} of ${total} messages shown · refreshed ${new Date().toLocaleTimeString()}`;
  $("#queue-messages tbody").replaceChildren(...r.messages.map((m) => {
    const actions = canWrite() ? [
      m.state !== "running" ? h("button", { type: "button", class: "message-due-now", onclick: () => queueAction("due-now", m) }, "Due now") : null,
      h("button", { type: "button", class: "message-delete danger", onclick: () => queueAction("delete", m) }, "Delete…"),
    ] : [];
    return h("tr", { class: "message", dataset: { id: m.id } },
      h("td", { class: "state" }, m.state),
      h("td", { class: "due" }, formatTime(m.dueAt)),
      h("td", { class: "attempts" }, `${m.attempts} (retries left: ${m.backoffMs.length})`),
      h("td", { class: "payload" }, h("pre", { class: "json" }, ...(m.payload === null ? ["(undecodable payload)"] : jsonNodes(m.payload)))),
      h("td", { class: "dead-letters" }, ...m.keysIfUndelivered.map((k) =>
        h("div", {}, h("a", { class: "dead-letter", href: "#/browse", onclick: (e) => { e.preventDefault(); openKey(k); } }, k)))),
      h("td", {}, ...actions));
  }));
}

async function queueAction(action, message) {
  if (action === "delete" && !(await confirmAction(`Delete queue message ${message.id}? It will not be delivered.`, "Delete message"))) return;
  try {
    await api(`queue/${action}`, { id: message.id });
  } catch (e) {
    $("#queue-error").textContent = `${action}: ${e.message}`;
  }
  loadQueue();
}

function openKey(key) {
  const b = browseState();
  b.query = { mode: "get", key };
  b.open = null;
  location.hash = "#/browse";
}

// ---------------------------------------------------------------------------------------
// Operate

function renderOperate() {
  const view = $("#view-operate");
  const importTools = canWrite() ? [
    h("label", { for: "import-file" }, "NDJSON file (the format of openkv export)"),
    h("input", { id: "import-file", type: "file", accept: ".ndjson,.jsonl,.json,application/x-ndjson" }),
    h("button", { type: "button", id: "import-run", onclick: runImport }, "Import"),
  ] : [h("p", { class: "status" }, "Importing needs a write token.")];
  view.replaceChildren(
    h("h2", { id: "operate-title" }, "Operate"),
    h("div", { class: "cards" },
      card("Entries", h("strong", { id: "stat-entries" }, "…"), h("button", { type: "button", id: "stat-recount", onclick: () => loadStats(true) }, "Recount")),
      card("Size", h("span", { id: "stat-size" }, "…")),
      card("Newest versionstamp", h("code", { id: "stat-versionstamp" }, "…")),
      card("Queue depth", h("span", { id: "stat-queue" }, "…")),
      card("Commits per second", chart("chart-commits")),
      card("Entries read per second", chart("chart-reads")),
      card("Queue messages", chart("chart-queue")),
      h("div", { id: "stat-extra" })),
    h("h3", {}, "Export"),
    h("p", {}, "A consistent snapshot of the whole database, as the NDJSON lines of ", h("code", {}, "openkv export"), "."),
    h("button", { type: "button", id: "export", onclick: runExport }, "Download export"),
    h("span", { id: "export-status", class: "status", "aria-live": "polite" }),
    h("h3", {}, "Import"),
    h("div", { class: "toolbar" }, ...importTools),
    h("label", { for: "import-progress", class: "visually-hidden" }, "Import progress"),
    h("progress", { id: "import-progress", max: 1, value: 0 }),
    h("p", { id: "import-report", class: "status", "aria-live": "polite" }),
    h("ul", { id: "import-errors" }));
  state.samples = [];
  loadStats(true);
  state.timers.push(setInterval(() => loadStats(false), POLL_MS));
}

function card(title, ...body) {
  return h("div", { class: "card" }, h("h3", {}, title), ...body);
}

function chart(id) {
  return svg("svg", { id, class: "chart", viewBox: "0 0 300 70", preserveAspectRatio: "none", role: "img", "aria-label": "no data yet" });
}

function drawChart(id, values, unit) {
  const el = document.getElementById(id);
  if (!el) return;
  if (values.length === 1) values = [values[0], values[0]];
  const max = Math.max(1, ...values);
  const n = Math.max(values.length - 1, 1);
  const points = values.map((v, i) => `${(i / n) * 300},${66 - (v / max) * 56}`).join(" ");
  const last = values.length ? values[values.length - 1] : 0;
  el.replaceChildren(
    svg("polyline", { points }),
    svg("text", { x: 4, y: 11 }, `max ${max.toFixed(max < 10 ? 1 : 0)}${unit}`),
    svg("text", { x: 296, y: 11, "text-anchor": "end" }, `now ${last.toFixed(last < 10 ? 1 : 0)}${unit}`));
  el.setAttribute("aria-label", `last ${values.length} samples, now ${last.toFixed(1)}${unit}, max ${max.toFixed(1)}${unit}`);
}

async function loadStats(scan) {
  let s;
  try {
    s = await api("stats", { scan });
  } catch (e) {
    const extra = $("#stat-extra");
    if (extra) extra.textContent = `Could not read the figures: ${e.message}`;
    return;
  }
  if (state.view !== "operate") return;
  if (scan) {
    $("#stat-entries").textContent = String(s.entries);
    $("#stat-versionstamp").textContent = s.versionstamp;
  }
  $("#stat-size").textContent = `${formatBytes(s.sizeBytes)}${s.walBytes !== null ? ` + WAL ${formatBytes(s.walBytes)}` : ""}`;
  const q = s.queue;
  const depth = (q.ready ?? 0) + (q.delayed ?? 0) + (q.running ?? 0);
  $("#stat-queue").textContent = `${depth} (${q.ready ?? "?"} ready, ${q.delayed ?? "?"} delayed, ${q.running ?? "?"} in flight)`;
  const extra = [];
  if (s.replicaLagMs !== null) extra.push(card("Replica lag", h("span", { id: "stat-replica-lag" }, `${(s.replicaLagMs / 1000).toFixed(1)} s`)));
  if (s.backup) {
    extra.push(card("Last backup", h("span", { id: "stat-last-backup" }, s.backup.lastSuccessMs ? formatTime(s.backup.lastSuccessMs) : "none yet"),
      s.backup.lastError ? h("p", { role: "alert" }, s.backup.lastError) : null));
  }
  $("#stat-extra").replaceChildren(...extra);
  const samples = state.samples;
  samples.push({ t: s.nowMs, c: s.counters, depth });
  if (samples.length > CHART_POINTS + 1) samples.shift();
  const rate = (field) => samples.slice(1).map((x, i) => {
    const prev = samples[i];
    const dt = (x.t - prev.t) / 1000;
    return x.c && prev.c && dt > 0 ? Math.max(0, (x.c[field] - prev.c[field]) / dt) : 0;
  });
  drawChart("chart-commits", rate("commitsOk"), "/s");
  drawChart("chart-reads", rate("readEntries"), "/s");
  drawChart("chart-queue", samples.map((x) => x.depth), "");
}

async function runExport() {
  const status = $("#export-status");
  status.textContent = "Exporting…";
  try {
    const res = await api("export", {}, { raw: true });
    const how = res.headers.get("x-openkv-export");
    const blob = await res.blob();
    download(`${state.db.name ?? "database"}.ndjson`, blob);
    status.textContent = how === "paged"
      ? `Exported ${formatBytes(blob.size)}, read page by page (this store has no single-snapshot export).`
      : `Exported ${formatBytes(blob.size)} from one snapshot.`;
  } catch (e) {
    status.textContent = `Export failed: ${e.message}`;
  }
}

function runImport() {
  const file = $("#import-file").files[0];
  const report = $("#import-report");
  const errors = $("#import-errors");
  errors.replaceChildren();
  if (!file) {
    report.textContent = "Pick a file first.";
    return;
  }
  const progress = $("#import-progress");
  progress.value = 0;
  report.textContent = `Importing ${file.name}…`;
  $("#import-run").disabled = true;
  // XMLHttpRequest, not fetch: it reports upload progress. The server imports the body
  // as it arrives, so the bytes sent are the bytes read.
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `${state.db.base}/console/api/import`);
  xhr.setRequestHeader("Authorization", `Bearer ${state.token}`);
  xhr.setRequestHeader("Content-Type", "application/x-ndjson");
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) progress.value = e.loaded / e.total; };
  xhr.onload = () => {
    $("#import-run").disabled = false;
    if (xhr.status !== 200) {
      report.textContent = `Import failed (${xhr.status}): ${xhr.responseText}`;
      return;
    }
    progress.value = 1;
    const r = JSON.parse(xhr.responseText);
    report.textContent = r.stopped ? `${r.text} — ${r.stopped}` : r.text;
    errors.replaceChildren(...r.failures.map((f) => h("li", {}, `line ${f.line}: ${f.message}`)));
    if (r.errors > r.failures.length) errors.append(h("li", {}, `… and ${r.errors - r.failures.length} more errors (only the count is reported)`));
  };
  xhr.onerror = () => {
    $("#import-run").disabled = false;
    report.textContent = "Import failed: the connection broke.";
  };
  xhr.send(file);
}

start();
