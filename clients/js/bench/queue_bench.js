// The client side of scripts/bench-js-queue.sh: queues through @openkv/client (this package,
// against `openkv serve`) in Node and in Deno, and the Deno CLI's own LOCAL queue
// (`Deno.openKv(<sqlite file>)`), with the same workload, and the report comparing them.
//
// Usage:
//   node queue_bench.js run <target> <out.json> [options]
//   deno run --unstable-kv -A queue_bench.js run <target> <out.json> [options]
//   node queue_bench.js report <summary.json> <result.json>...    (or deno run -A …)
//
// <target> is the KV Connect URL of an `openkv serve` (the package, `openKv(url)`; the token
// comes from DENO_KV_ACCESS_TOKEN), or `local:<path>` for `Deno.openKv(path)` (Deno only).
// Options of `run` (defaults in brackets):
//   --label L         the column of the report: node | deno | local [node or deno by runtime,
//                     local for a local: target]
//   --round R         the round number, recorded [1]
//   --n N             messages enqueued and then delivered [3000]
//   --concurrency C   enqueues in flight in the enqueue workload [64]
//   --latency-n M     messages of the latency workload [200]
//   --interval MS     pause between two of them [10]
//   --server-pid PID  the server process, for its CPU use (/proc/PID/stat; none for local)
//
// One `run` is one process on a FRESH database, running in order:
//   warm-up   max(C, N/10) kv.enqueue, C in flight (untimed; delivered with the rest)
//   enqueue   N kv.enqueue({t: "d", i}) from C tasks, C in flight, no listener running:
//             messages/s, and each call's latency (p50, p99)
//   delivery  kv.listenQueue(handler) is called and the clock runs from that call until the
//             trivial handler has seen all N + warm-up messages (distinct ones: at least
//             once may deliver twice; duplicates are counted): messages/s
//   latency   the listener keeps running (warm: 250 ms idle first, so the package sits in its
//             long poll); M messages enqueued one at a time, awaited, one every --interval ms,
//             each carrying performance.timeOrigin + performance.now() at the call; the
//             handler records now − sent: p50, p99 and max in ms
// then closes the database (which ends the listener). CPU: this process's, the server's and
// the rest of the machine's, in percent of one core over each workload's wall time.
//
// `report` picks for each metric and column the median over the rounds and prints Markdown
// tables on stdout (rows: metrics; columns: package in Node, package in Deno, Deno local,
// ratio package-in-Deno / Deno local) and writes every figure to <summary.json>.
// Progress goes to stderr.

import process from "node:process";
import { readFileSync, writeFileSync } from "node:fs";

const isDeno = typeof globalThis.Deno?.version?.deno === "string";
const CLK_TCK = 100; // Linux USER_HZ
const DELIVERY_TIMEOUT_MS = 120_000;
const LATENCY_TIMEOUT_MS = 30_000;

function die(message) {
  console.error(`queue_bench: ${message}`);
  process.exit(1);
}

const now = () => performance.timeOrigin + performance.now();
function deferred() {
  // Promise.withResolvers, which Node 20 lacks
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  return { promise, resolve };
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function quantile(sorted, q) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(sorted.length * q) - 1))];
}
function latencies(ms) {
  const sorted = Float64Array.from(ms).sort();
  const r = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
  return {
    p50_ms: r(quantile(sorted, 0.5)),
    p99_ms: r(quantile(sorted, 0.99)),
    max_ms: r(sorted.at(-1) ?? null),
  };
}

// --- CPU ---------------------------------------------------------------------------------
function procTicks(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]); // utime + stime
  } catch {
    return null;
  }
}
function machineTicks() {
  try {
    const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(
      Number,
    );
    return cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6] + cpu[7]; // user nice system irq softirq steal
  } catch {
    return null;
  }
}
function cpuSnapshot(serverPid) {
  const u = process.cpuUsage();
  return {
    t: performance.now(),
    self: (u.user + u.system) / 1e6, // seconds
    server: serverPid ? procTicks(serverPid) : null,
    machine: machineTicks(),
  };
}
function cpuFigures(a, b) {
  const secs = (b.t - a.t) / 1000;
  const pct = (x) => Math.round((x / secs) * 1000) / 10;
  const self = b.self - a.self;
  const server = a.server === null || b.server === null ? null : (b.server - a.server) / CLK_TCK;
  const machine = a.machine === null || b.machine === null
    ? null
    : (b.machine - a.machine) / CLK_TCK;
  return {
    client_cpu_pct: pct(self),
    server_cpu_pct: server === null ? null : pct(server),
    others_cpu_pct: machine === null ? null : pct(Math.max(0, machine - self - (server ?? 0))),
  };
}

// --- run ---------------------------------------------------------------------------------
function parseOptions(args, spec) {
  const out = { ...spec };
  for (let i = 0; i < args.length; i += 2) {
    const name = args[i]?.replace(/^--/, "").replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (!(name in spec) || i + 1 >= args.length) die(`unknown option or missing value: ${args[i]}`);
    const value = args[i + 1];
    if (typeof spec[name] === "number") {
      if (!/^[0-9]+$/.test(value)) die(`${args[i]} needs a non-negative integer, got '${value}'`);
      out[name] = Number(value);
    } else out[name] = value;
  }
  return out;
}

async function openTarget(target) {
  if (target.startsWith("local:")) {
    if (!isDeno) die("a local: target needs Deno (Deno.openKv)");
    return await Deno.openKv(target.slice("local:".length));
  }
  const { openKv } = await import("../mod.js");
  const accessToken = process.env.DENO_KV_ACCESS_TOKEN;
  if (!accessToken) die("set DENO_KV_ACCESS_TOKEN to the server's access token");
  return await openKv(target, { accessToken });
}

async function run(args) {
  const [target, outFile, ...rest] = args;
  if (!target || !outFile) die("usage: queue_bench.js run <url | local:path> <out.json> [options]");
  const o = parseOptions(rest, {
    label: target.startsWith("local:") ? "local" : isDeno ? "deno" : "node",
    round: 1,
    n: 3000,
    concurrency: 64,
    latencyN: 200,
    interval: 10,
    serverPid: "",
  });
  if (o.n < 1 || o.concurrency < 1 || o.latencyN < 1) {
    die("--n, --concurrency and --latency-n must be positive");
  }
  const serverPid = o.serverPid ? Number(o.serverPid) : null;
  const runtime = isDeno ? `deno ${Deno.version.deno}` : `node ${process.versions.node}`;
  const log = (m) => console.error(`queue_bench [${o.label} r${o.round}]: ${m}`);

  const kv = await openTarget(target);

  // One listener for the whole run (the latency workload needs a warm one); the handler
  // dispatches on the message's kind.
  const seen = new Set();
  let deliveryTotal = 0;
  let deliveryDone = null;
  const latencyMs = [];
  const latencySeen = new Set();
  let latencyDone = null;
  let latencyTotal = 0;
  let duplicates = 0;
  let unexpected = 0;
  const handler = (m) => {
    const received = now();
    if (m?.t === "d" || m?.t === "w") {
      const id = `${m.t}${m.i}`;
      if (seen.has(id)) duplicates++;
      else {
        seen.add(id);
        if (seen.size === deliveryTotal) deliveryDone?.resolve();
      }
    } else if (m?.t === "l") {
      if (latencySeen.has(m.i)) duplicates++;
      else {
        latencySeen.add(m.i);
        latencyMs.push(received - m.sent);
        if (latencySeen.size === latencyTotal) latencyDone?.resolve();
      }
    } else unexpected++;
  };

  // warm-up: connections opened, code paths compiled (Node's fetch costs about twice as much
  // CPU per request in its first few thousand requests as later)
  const warm = Math.max(o.concurrency, Math.ceil(o.n / 10));
  let nextWarm = 0;
  await Promise.all(Array.from({ length: o.concurrency }, async () => {
    while (nextWarm < warm) await kv.enqueue({ t: "w", i: nextWarm++ });
  }));

  // enqueue
  log(`enqueue: ${o.n} messages, ${o.concurrency} in flight`);
  const callMs = [];
  let next = 0;
  const c0 = cpuSnapshot(serverPid);
  await Promise.all(Array.from({ length: o.concurrency }, async () => {
    while (next < o.n) {
      const i = next++;
      const t = performance.now();
      const r = await kv.enqueue({ t: "d", i });
      if (!r?.ok) throw new Error(`enqueue ${i} failed`);
      callMs.push(performance.now() - t);
    }
  }));
  const c1 = cpuSnapshot(serverPid);
  const enqueueSecs = (c1.t - c0.t) / 1000;
  const enqueue = {
    unit: "msg/s",
    ops: o.n,
    secs: enqueueSecs,
    rate: o.n / enqueueSecs,
    ...latencies(callMs),
    ...cpuFigures(c0, c1),
  };
  log(`enqueue: ${enqueue.rate.toFixed(0)} msg/s`);

  // delivery
  deliveryTotal = o.n + warm;
  deliveryDone = deferred();
  log(`delivery: ${deliveryTotal} messages to one listener`);
  const d0 = cpuSnapshot(serverPid);
  const listening = kv.listenQueue(handler);
  listening.catch((e) => die(`listenQueue failed: ${e?.stack ?? e}`));
  let timer;
  const timedOut = new Promise((
    resolve,
  ) => (timer = setTimeout(() => resolve("timeout"), DELIVERY_TIMEOUT_MS)));
  if ((await Promise.race([deliveryDone.promise, timedOut])) === "timeout") {
    die(
      `delivery: only ${seen.size} of ${deliveryTotal} messages within ${
        DELIVERY_TIMEOUT_MS / 1000
      } s`,
    );
  }
  clearTimeout(timer);
  const d1 = cpuSnapshot(serverPid);
  const deliverySecs = (d1.t - d0.t) / 1000;
  const delivery = {
    unit: "msg/s",
    ops: deliveryTotal,
    secs: deliverySecs,
    rate: deliveryTotal / deliverySecs,
    ...cpuFigures(d0, d1),
  };
  log(`delivery: ${delivery.rate.toFixed(0)} msg/s`);

  // latency: let the listener go idle (the package then sits in its long poll), then enqueue
  // one message at a time on a fixed schedule.
  await sleep(250);
  latencyTotal = o.latencyN;
  latencyDone = deferred();
  log(`latency: ${o.latencyN} messages, one every ${o.interval} ms`);
  const l0 = cpuSnapshot(serverPid);
  const start = performance.now();
  for (let i = 0; i < o.latencyN; i++) {
    const wait = start + i * o.interval - performance.now();
    if (wait > 0) await sleep(wait);
    await kv.enqueue({ t: "l", i, sent: now() });
  }
  const timedOut2 = new Promise((
    resolve,
  ) => (timer = setTimeout(() => resolve("timeout"), LATENCY_TIMEOUT_MS)));
  if ((await Promise.race([latencyDone.promise, timedOut2])) === "timeout") {
    die(
      `latency: only ${latencySeen.size} of ${o.latencyN} messages within ${
        LATENCY_TIMEOUT_MS / 1000
      } s`,
    );
  }
  clearTimeout(timer);
  const l1 = cpuSnapshot(serverPid);
  const latency = {
    unit: "ms",
    ops: o.latencyN,
    secs: (l1.t - l0.t) / 1000,
    interval_ms: o.interval,
    ...latencies(latencyMs),
    ...cpuFigures(l0, l1),
  };
  log(`latency: p50 ${latency.p50_ms} ms, p99 ${latency.p99_ms} ms`);

  // Let the last deliveries be reported before closing (Deno local and the package both
  // finish an attempt after the handler returned).
  await sleep(200);
  kv.close();
  await Promise.race([listening.catch(() => {}), sleep(10_000)]);

  const result = {
    label: o.label,
    round: o.round,
    runtime,
    target: target.startsWith("local:") ? "local" : "package",
    n: o.n,
    concurrency: o.concurrency,
    duplicates,
    unexpected,
    workloads: { enqueue, delivery, latency },
  };
  writeFileSync(outFile, JSON.stringify(result, null, 2) + "\n");
  // Deno keeps a closed KV's listener machinery alive for a moment; don't wait for it.
  process.exit(0);
}

// --- report ------------------------------------------------------------------------------
const COLUMNS = [
  ["node", "package in Node"],
  ["deno", "package in Deno"],
  ["local", "Deno local"],
];
const METRICS = [
  // [name, workload, field, unit, higher is better, label]
  [
    "enqueue",
    "enqueue",
    "rate",
    "msg/s",
    true,
    (r) => `enqueue throughput (${r.concurrency} in flight), msg/s`,
  ],
  [
    "delivery",
    "delivery",
    "rate",
    "msg/s",
    true,
    () => "delivery throughput (one listener), msg/s",
  ],
  ["latency_p50", "latency", "p50_ms", "ms", false, () => "enqueue→handler p50, ms"],
  ["latency_p99", "latency", "p99_ms", "ms", false, () => "enqueue→handler p99, ms"],
];

function median(values) {
  const v = values.filter((x) => typeof x === "number").sort((a, b) => a - b);
  if (!v.length) return null;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}
function fmt(x, unit) {
  if (x === null || x === undefined) return "–";
  if (unit === "msg/s") return Math.round(x).toLocaleString("en-US");
  return x < 10 ? x.toFixed(2) : x.toFixed(1);
}

function report(args) {
  const [summaryFile, ...files] = args;
  if (!summaryFile || !files.length) {
    die("usage: queue_bench.js report <summary.json> <result.json>...");
  }
  const results = files.map((f) => JSON.parse(readFileSync(f, "utf8")));
  const by = (label) => results.filter((r) => r.label === label).sort((a, b) => a.round - b.round);
  const first = results[0];
  const summary = {
    header: process.env.BENCH_HEADER ?? null,
    command: process.env.BENCH_COMMAND ?? null,
    metrics: {},
    results,
  };
  const rows = [];
  for (const [name, workload, field, unit, higher, label] of METRICS) {
    const m = {};
    for (const [col] of COLUMNS) {
      const values = by(col).map((r) => r.workloads[workload]?.[field]);
      m[col] = { median: median(values), rounds: values };
    }
    const d = m.deno.median, l = m.local.median;
    m.ratio_deno_local = d !== null && l ? d / l : null;
    m.ratio_node_local = m.node.median !== null && l ? m.node.median / l : null;
    summary.metrics[name] = { unit, higher_is_better: higher, ...m };
    rows.push([
      label(first),
      ...COLUMNS.map(([c]) => fmt(m[c].median, unit)),
      m.ratio_deno_local === null ? "–" : `${m.ratio_deno_local.toFixed(2)}×`,
    ]);
  }
  // Targets (from the issue): delivery ≥ Deno local's; p99 enqueue→handler ≤ 50 ms.
  const t = summary.metrics;
  const verdict = (ok) => (ok === null ? "n/a" : ok ? "**met**" : "**NOT met**");
  const okDelivery = (c) =>
    t.delivery[c].median === null || t.delivery.local.median === null
      ? null
      : t.delivery[c].median >= t.delivery.local.median;
  const okP99 = (c) => t.latency_p99[c].median === null ? null : t.latency_p99[c].median <= 50;
  summary.targets = {
    delivery_ge_local: { node: okDelivery("node"), deno: okDelivery("deno") },
    p99_le_50ms: { node: okP99("node"), deno: okP99("deno") },
  };

  const out = [];
  const table = (head, body) => {
    out.push(`| ${head.join(" | ")} |`, `|${head.map((_, i) => (i ? "---:" : "---")).join("|")}|`);
    for (const r of body) out.push(`| ${r.join(" | ")} |`);
  };
  table(
    ["metric (median of rounds)", ...COLUMNS.map(([, h]) => h), "package-Deno / Deno local"],
    rows,
  );
  out.push(
    "",
    "Ratio: above 1 the package is faster (throughput rows), below 1 it is quicker (latency rows).",
  );
  out.push("");
  out.push(
    `Targets: delivery ≥ Deno local — Node ${verdict(summary.targets.delivery_ge_local.node)}, ` +
      `Deno ${verdict(summary.targets.delivery_ge_local.deno)}; ` +
      `p99 enqueue→handler ≤ 50 ms — Node ${verdict(summary.targets.p99_le_50ms.node)}, ` +
      `Deno ${verdict(summary.targets.p99_le_50ms.deno)}.`,
  );
  out.push("");
  // Every round, with CPU (percent of one core; 200% = both cores of this VM).
  out.push(
    "Every round (CPU in % of one core over the workload: client process / openkv server / rest of the machine):",
    "",
  );
  const detail = [];
  for (const [col, head] of COLUMNS) {
    for (const r of by(col)) {
      const w = r.workloads;
      const cpu = (x) =>
        `${x.client_cpu_pct ?? "–"} / ${x.server_cpu_pct ?? "–"} / ${x.others_cpu_pct ?? "–"}`;
      detail.push([
        head,
        String(r.round),
        `${fmt(w.enqueue.rate, "msg/s")} (p99 call ${fmt(w.enqueue.p99_ms, "ms")} ms; ${
          cpu(w.enqueue)
        })`,
        `${fmt(w.delivery.rate, "msg/s")} (${cpu(w.delivery)})`,
        `${fmt(w.latency.p50_ms, "ms")} / ${fmt(w.latency.p99_ms, "ms")} / ${
          fmt(w.latency.max_ms, "ms")
        } (${cpu(w.latency)})`,
        String(r.duplicates),
      ]);
    }
  }
  table([
    "client",
    "round",
    "enqueue msg/s",
    "delivery msg/s",
    "latency p50 / p99 / max ms",
    "dup.",
  ], detail);
  console.log(out.join("\n"));
  writeFileSync(summaryFile, JSON.stringify(summary, null, 2) + "\n");
}

// --- main --------------------------------------------------------------------------------
const argv = isDeno ? Deno.args : process.argv.slice(2);
const [mode, ...rest] = argv;
if (mode === "run") await run(rest);
else if (mode === "report") report(rest);
else {die(
    "usage: queue_bench.js run <url | local:path> <out.json> [options] | report <summary.json> <result.json>...",
  );}
