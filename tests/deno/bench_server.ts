// The client side of scripts/bench-server.sh: one Deno-client workload against a KV Connect
// server (`openkv serve` or `denokv`), and the report that compares the servers.
//
// Usage:
//   deno run -A --unstable-kv bench_server.ts run <url> <label> <round> <server-pid> <workload>
//                                                 <out.json>
//   deno run -A bench_server.ts report <summary.json> <result.json>...
//   deno run -A bench_server.ts database-id <url>         (prints the server's database id)
//   deno run -A --unstable-kv bench_server.ts counter <url> <key as JSON> <expected>
//                                 (fails unless the KvU64 at key equals expected)
//   deno run -A --unstable-kv bench_server.ts part <url> get|list <tasks> <count> <keys>
//                                 (one client process of a several-clients workload, below)
//
// `run` opens `Deno.openKv(url)` (the token comes from DENO_KV_ACCESS_TOKEN, as for any Deno
// program) on a FRESH database, writes what the workload needs (untimed), runs a warm-up and
// then the workload, and writes one JSON object to <out.json>. The bench script starts a fresh
// server for every workload and runs each workload on both servers back to back, so that the
// two figures of a pair are measured within seconds of each other on this noisy VM.
// `report` takes the results of every round of every server, picks for each workload and
// server the median round (by throughput; that round's latencies go with it), prints Markdown
// tables on stdout and writes the summary to <summary.json>.
//
// Sizes come from the environment (defaults in brackets):
//   BENCH_N [5000]        operations of each write workload (seq_set, concurrent64_set,
//                         sum_hot; atomic_check_set runs N/2)
//   BENCH_READS [20000]   operations of each read workload (seq_get, concurrent64_get)
//   BENCH_LISTS [10]      timed full lists in list_10k
//   BENCH_WATCH_SETS [200] sets in watch_fanout_100
// Every workload first runs a warm-up of its own (a tenth of its size, on other keys where it
// writes), untimed.
//
// Workloads (latency = one operation as the client awaits it):
//   seq_set           N awaited kv.set(["s", i], i), one at a time
//   concurrent64_set  64 tasks, N kv.set(["c", i], i) in total, 64 in flight
//   seq_get           N keys ["s", i] written first (500 per atomic op), then BENCH_READS
//                     kv.get(["s", i mod N]) one at a time (values checked)
//   concurrent64_get  the same reads from 64 tasks
//   atomic_check_set  8 tasks, each owning one key ["acs", t], N/2 in total of
//                     get → atomic().check(entry).set(key, value + 1).commit(); an operation is
//                     the pair. Distinct keys, so no check should fail: a failed check fails the
//                     run, and the final sum of the 8 counters must equal the commits.
//   sum_hot           64 tasks, N atomic().sum(["hot"], 1n) in total on one key; the final
//                     counter must equal the acknowledged sums, else the run FAILS
//   list_10k          10,000 entries ["l", i] (written untimed, 500 per atomic op), then
//                     BENCH_LISTS full kv.list({prefix: ["l"]}) with the client's default
//                     batch size (each list is 100 snapshot_read round trips); the rate is
//                     entries/s and the latency is the time of one full list
//   watch_fanout_100  100 kv.watch([["w"]]) streams open; a writer sets ["w"] BENCH_WATCH_SETS
//                     times; after each set it waits until all 100 watchers saw its
//                     versionstamp (or a later one), then pauses 10 ms. Latency = set
//                     acknowledged → the last watcher sees it (0 if all saw it before the ack);
//                     rate = sets per second of set + full fan-out (pauses excluded). A set
//                     that some watcher has not seen after 10 s counts as missed and is
//                     reported: the run goes on.
// Several clients (one Deno process can keep only one core busy, and it costs more CPU per
// request than the server: with one process, the client is what the read rows measure). These
// run the same reads from K Deno processes at once, children of this one (`part` mode): each
// opens its own connection, warms up, reports ready, and all start together when told; the
// rate is all their operations over the time from the start to the last one's end, the
// latencies are theirs merged, and the client CPU is theirs summed.
//   multi3_c64_get    3 processes, each 2 × BENCH_READS gets of ["s", i mod N], 64 in flight
//   multi8_seq_get    8 processes, each BENCH_READS / 2 gets, one at a time
//   multi3_list_10k   3 processes, each BENCH_LISTS full lists of the same 10,000 entries
// CPU: for every workload, the CPU time the server process (/proc/<pid>/stat) and this Deno
// process used, and what the rest of the machine used (/proc/stat), as percentages of one
// core over the workload's wall time (2 cores = 200%). Progress goes to stderr.

const TASKS = 64;
const ACS_TASKS = 8;
const LIST_ENTRIES = 10_000;
const WATCHERS = 100;
const WATCH_PAUSE_MS = 10;
const WATCH_TIMEOUT_MS = 10_000;
const CLK_TCK = 100; // Linux USER_HZ

/** What a workload measures; `measure` adds the CPU figures. */
type Figures = {
  unit: string;
  ops: number;
  secs: number;
  rate: number; // ops (or entries) per second
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  note?: string;
  missed_sets?: number;
  [extra: string]: unknown;
};
type Stats = Figures & { server_cpu_pct: number; client_cpu_pct: number; others_cpu_pct: number };

type RunResult = {
  label: string;
  round: number;
  url: string;
  started: string;
  sizes: Record<string, number>;
  workloads: Record<string, Stats>;
};

function die(message: string): never {
  console.error(`bench_server: ${message}`);
  Deno.exit(1);
}

function check(ok: boolean, what: string) {
  if (!ok) die(what);
}

function envInt(name: string, dflt: number, min: number): number {
  const v = Deno.env.get(name);
  if (v === undefined || v === "") return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) die(`${name} must be an integer >= ${min}, got ${v}`);
  return n;
}

/** The p-quantile (0..1) of sorted values, nearest rank. */
function quantile(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil(p * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1];
}

/** Busy CPU ticks of the whole machine (all cores), from /proc/stat. */
function machineTicks(): number {
  const [user, nice, system, _idle, _iowait, irq, softirq, steal] = Deno.readTextFileSync(
    "/proc/stat",
  ).split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  return user + nice + system + irq + softirq + steal;
}

/** CPU ticks (user + system) of a process, from /proc/<pid>/stat. */
function cpuTicks(pid: string): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // Fields after the command name (which may contain spaces), which ends at the last ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
  return Number(fields[11]) + Number(fields[12]);
}

const r3 = (x: number) => Math.round(x * 1000) / 1000;
const r1 = (x: number) => Math.round(x * 10) / 10;

// ---------------------------------------------------------------------------------------------
// run

/** Runs `count` operations from `concurrency` tasks (each takes the next index), timing each. */
async function runOps(
  count: number,
  concurrency: number,
  op: (i: number) => Promise<void>,
): Promise<{ secs: number; lat: Float64Array }> {
  const lat = new Float64Array(count);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      for (let i = next++; i < count; i = next++) {
        const s = performance.now();
        await op(i);
        lat[i] = performance.now() - s;
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  return { secs, lat: lat.sort() };
}

/** Reads ["s", i mod n] (written as i mod n) and checks the value. */
async function checkedGet(kv: Deno.Kv, i: number, n: number, what: string) {
  const e = await kv.get<number>(["s", i % n]);
  check(e.value === i % n, `${what}: get ["s", ${i % n}] returned ${e.value}`);
}

/** Lists the LIST_ENTRIES entries under ["l"] (["l", i] = i) and checks every one. */
async function checkedList(kv: Deno.Kv, what: string) {
  let count = 0;
  for await (const e of kv.list<number>({ prefix: ["l"] })) {
    check(e.value === count, `${what}: list entry ${count} is ${e.value}`);
    count++;
  }
  check(count === LIST_ENTRIES, `${what}: list returned ${count} entries`);
}

const WORKLOADS = [
  "seq_set",
  "concurrent64_set",
  "seq_get",
  "concurrent64_get",
  "atomic_check_set",
  "sum_hot",
  "list_10k",
  "watch_fanout_100",
  "multi3_c64_get",
  "multi8_seq_get",
  "multi3_list_10k",
];

/** The several-clients workloads: processes, tasks in each, what they do. */
const MULTI: Record<string, { clients: number; tasks: number; kind: "get" | "list" }> = {
  multi3_c64_get: { clients: 3, tasks: TASKS, kind: "get" },
  multi8_seq_get: { clients: 8, tasks: 1, kind: "get" },
  multi3_list_10k: { clients: 3, tasks: 1, kind: "list" },
};

async function run(args: string[]) {
  const [url, label, roundArg, serverPid, workload, outPath] = args;
  if (args.length !== 6 || !/^\d+$/.test(roundArg) || !/^\d+$/.test(serverPid)) {
    die("usage: bench_server.ts run <url> <label> <round> <server-pid> <workload> <out.json>");
  }
  check(WORKLOADS.includes(workload), `unknown workload ${workload}: one of ${WORKLOADS}`);
  check(Deno.env.get("DENO_KV_ACCESS_TOKEN") !== undefined, "set DENO_KV_ACCESS_TOKEN");
  const N = envInt("BENCH_N", 5000, 64);
  const READS = envInt("BENCH_READS", 20_000, 64);
  const LISTS = envInt("BENCH_LISTS", 10, 1);
  const WATCH_SETS = envInt("BENCH_WATCH_SETS", 200, 1);
  const warm = (n: number) => Math.max(10, Math.floor(n / 10));
  const enabled = (name: string) => name === workload;

  const kv = await Deno.openKv(url);
  const result: RunResult = {
    label,
    round: Number(roundArg),
    url,
    started: new Date().toISOString(),
    sizes: { N, READS, LISTS, WATCH_SETS, TASKS, ACS_TASKS, LIST_ENTRIES, WATCHERS },
    workloads: {},
  };
  const log = (m: string) => console.error(`[${label} round ${roundArg}] ${m}`);

  /** Measures `body` (which returns its figures) with the CPU use of server and client. */
  async function measure(name: string, body: () => Promise<Figures>) {
    if (!enabled(name)) return;
    const s0 = cpuTicks(serverPid), c0 = cpuTicks("self"), m0 = machineTicks();
    const w0 = performance.now();
    const stats = await body();
    const wall = (performance.now() - w0) / 1000;
    const pct = (ticks: number) => r1((ticks / CLK_TCK / wall) * 100);
    const server = cpuTicks(serverPid) - s0;
    // Child processes (several-clients workloads) report their own CPU time.
    const { child_cpu_ticks: children = 0, ...figures } = stats;
    const client = cpuTicks("self") - c0 + (children as number);
    const full: Stats = {
      ...figures,
      server_cpu_pct: pct(server),
      client_cpu_pct: pct(client),
      // Everything else on the machine: other processes (and this VM's noise).
      others_cpu_pct: pct(Math.max(0, machineTicks() - m0 - server - client)),
    };
    result.workloads[name] = full;
    log(
      `${name}: ${Math.round(full.rate)} ${full.unit}, p50 ${full.p50_ms} ms, ` +
        `p99 ${full.p99_ms} ms, server CPU ${full.server_cpu_pct}%, ` +
        `client CPU ${full.client_cpu_pct}%, others ${full.others_cpu_pct}%` +
        (full.note ? ` (${full.note})` : ""),
    );
  }

  /** The usual figures of a run of operations. */
  const opStats = (unit: string, ops: number, r: { secs: number; lat: Float64Array }) => ({
    unit,
    ops,
    secs: r3(r.secs),
    rate: r1(ops / r.secs),
    p50_ms: r3(quantile(r.lat, 0.5)),
    p99_ms: r3(quantile(r.lat, 0.99)),
    max_ms: r3(r.lat[r.lat.length - 1]),
  });

  const set = async (key: Deno.KvKey, value: unknown, what: string) => {
    const r = await kv.set(key, value);
    check(r.ok, `${what}: set failed`);
  };
  /** Writes [prefix, i] = i for i < count, 500 per atomic operation (untimed set-up). */
  const populate = async (prefix: string, count: number) => {
    for (let i = 0; i < count; i += 500) {
      const op = kv.atomic();
      for (let j = i; j < Math.min(i + 500, count); j++) op.set([prefix, j], j);
      check((await op.commit()).ok, `populating ${prefix} failed`);
    }
  };

  // seq_set / concurrent64_set
  for (
    const [name, tasks, prefix] of [["seq_set", 1, "s"], ["concurrent64_set", TASKS, "c"]] as const
  ) {
    await measure(name, async () => {
      await runOps(warm(N), tasks, (i) => set([`warm_${prefix}`, i], i, name));
      return opStats("ops/s", N, await runOps(N, tasks, (i) => set([prefix, i], i, name)));
    });
  }

  // seq_get / concurrent64_get of existing keys
  if (enabled("seq_get") || enabled("concurrent64_get")) await populate("s", N);
  const get = (i: number, what: string) => checkedGet(kv, i, N, what);
  for (const [name, tasks] of [["seq_get", 1], ["concurrent64_get", TASKS]] as const) {
    await measure(name, async () => {
      await runOps(warm(READS), tasks, (i) => get(i + 7, name));
      return opStats("ops/s", READS, await runOps(READS, tasks, (i) => get(i, name)));
    });
  }

  // atomic_check_set: 8 tasks, each owning one key, so no check should fail.
  await measure("atomic_check_set", async () => {
    const ops = Math.floor(N / 2);
    const checkSet = async (prefix: string, t: number) => {
      const key = [prefix, t];
      const e = await kv.get<number>(key);
      const r = await kv.atomic().check(e).set(key, (e.value ?? 0) + 1).commit();
      check(r.ok, `atomic_check_set: check failed on ${JSON.stringify(key)} (distinct keys)`);
    };
    // runOps hands indexes to whichever task is free; here each task keeps its own key.
    const ownKeys = async (prefix: string, count: number) => {
      const lat: number[] = [];
      let next = 0;
      const t0 = performance.now();
      await Promise.all(Array.from({ length: ACS_TASKS }, async (_, t) => {
        while (next++ < count) {
          const s = performance.now();
          await checkSet(prefix, t);
          lat.push(performance.now() - s);
        }
      }));
      return { secs: (performance.now() - t0) / 1000, lat: new Float64Array(lat).sort() };
    };
    await ownKeys("warm_acs", warm(ops));
    const r = await ownKeys("acs", ops);
    let total = 0;
    for (let t = 0; t < ACS_TASKS; t++) total += (await kv.get<number>(["acs", t])).value ?? 0;
    check(
      total === ops && r.lat.length === ops,
      `atomic_check_set: counters sum to ${total} after ${ops} commits`,
    );
    return opStats("ops/s", ops, r);
  });

  // sum_hot: 64 tasks on one key, final value checked
  await measure("sum_hot", async () => {
    const sum = (key: Deno.KvKey) => async () => {
      const r = await kv.atomic().sum(key, 1n).commit();
      check(r.ok, "sum_hot: sum failed");
    };
    await runOps(warm(N), TASKS, sum(["warm_hot"]));
    const r = await runOps(N, TASKS, sum(["hot"]));
    const hot = await kv.get<Deno.KvU64>(["hot"]);
    const value = hot.value instanceof Deno.KvU64 ? hot.value.value : null;
    check(
      value === BigInt(N),
      `sum_hot: CORRECTNESS FAILURE: the counter is ${value} after ${N} acknowledged sums`,
    );
    return { ...opStats("ops/s", N, r), final_counter: Number(value) };
  });

  // list_10k
  if (enabled("list_10k")) await populate("l", LIST_ENTRIES);
  await measure("list_10k", async () => {
    const listOnce = () => checkedList(kv, "list_10k");
    await runOps(1, 1, listOnce);
    const r = await runOps(LISTS, 1, listOnce);
    return opStats("entries/s", LISTS * LIST_ENTRIES, r);
  });

  // watch_fanout_100
  await measure("watch_fanout_100", async () => {
    const key = ["w"];
    await set(key, -1, "watch");
    // For each watcher, the versionstamps it saw and when (ms, performance.now()).
    const seen: { vs: string; t: number }[][] = Array.from({ length: WATCHERS }, () => []);
    let wake: (() => void) | null = null;
    const readers = Array.from({ length: WATCHERS }, () => kv.watch([key]).getReader());
    const loops = readers.map(async (reader, w) => {
      while (true) {
        const r = await reader.read().catch(() => ({ done: true, value: undefined }));
        if (r.done || !r.value) return;
        const vs = r.value[0].versionstamp;
        if (vs !== null) seen[w].push({ vs, t: performance.now() });
        wake?.();
      }
    });
    /** When every watcher had seen `vs` or later (the last of their first sightings), or null. */
    const allSaw = (vs: string): number | null => {
      let last = -Infinity;
      for (const list of seen) {
        const hit = list.find((s) => s.vs >= vs);
        if (!hit) return null;
        last = Math.max(last, hit.t);
      }
      return last;
    };
    const waitAll = async (vs: string): Promise<number | null> => {
      const deadline = performance.now() + WATCH_TIMEOUT_MS;
      while (true) {
        const t = allSaw(vs);
        if (t !== null) return t;
        const left = deadline - performance.now();
        if (left <= 0) return null;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            wake = null;
            resolve();
          }, Math.min(left, 100));
          wake = () => {
            clearTimeout(timer);
            wake = null;
            resolve();
          };
        });
      }
    };
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    // Every watcher's first chunk (the current state) before measuring.
    const initial = (await kv.get(key)).versionstamp!;
    check(
      (await waitAll(initial)) !== null,
      "watch_fanout_100: watchers never got the first chunk",
    );
    const ack: number[] = [], fromStart: number[] = [];
    let missed = 0, busy = 0, beforeAck = 0;
    for (let j = 0; j < WATCH_SETS; j++) {
      const t0 = performance.now();
      const r = await kv.set(key, j);
      check(r.ok, "watch_fanout_100: set failed");
      const tAck = performance.now();
      const tAll = await waitAll(r.versionstamp);
      const t1 = performance.now();
      if (tAll === null) {
        missed++;
      } else {
        busy += t1 - t0;
        if (tAll < tAck) beforeAck++;
        ack.push(Math.max(0, tAll - tAck));
        fromStart.push(tAll - t0);
      }
      for (const list of seen) list.splice(0, list.length - 1); // keep the latest sighting
      await sleep(WATCH_PAUSE_MS);
    }
    for (const reader of readers) await reader.cancel().catch(() => {});
    await Promise.race([Promise.all(loops), sleep(2000)]);
    const lat = new Float64Array(ack).sort();
    const fs = new Float64Array(fromStart).sort();
    const ok = WATCH_SETS - missed;
    return {
      unit: "sets/s",
      ops: ok,
      secs: r3(busy / 1000),
      rate: ok ? r1(ok / (busy / 1000)) : 0,
      p50_ms: r3(quantile(lat, 0.5)),
      p99_ms: r3(quantile(lat, 0.99)),
      max_ms: r3(lat[lat.length - 1] ?? NaN),
      from_set_start_p50_ms: r3(quantile(fs, 0.5)),
      from_set_start_p99_ms: r3(quantile(fs, 0.99)),
      seen_before_ack: beforeAck,
      missed_sets: missed,
      note: missed
        ? `${missed} of ${WATCH_SETS} sets not seen by all ${WATCHERS} watchers within ` +
          `${WATCH_TIMEOUT_MS / 1000} s`
        : undefined,
    };
  });

  // multi3_c64_get / multi8_seq_get / multi3_list_10k: child processes (`part`)
  const multi = MULTI[workload];
  if (multi) {
    if (multi.kind === "get") await populate("s", N);
    else await populate("l", LIST_ENTRIES);
    const count = workload === "multi3_c64_get"
      ? 2 * READS
      : multi.kind === "get"
      ? Math.max(64, Math.floor(READS / 2))
      : LISTS;
    // Started and warmed up before measuring: the window is from "go" to the last one's end.
    const clients = await startClients(url, multi, count, N, log);
    await measure(workload, clients.go);
  }

  kv.close();
  await Deno.writeTextFile(outPath, JSON.stringify(result, null, 2) + "\n");
}

/** One line from a child's stdout (without the newline), or null at its end. */
async function readLine(
  reader: ReadableStreamDefaultReader<string>,
  buffered: { text: string },
): Promise<string | null> {
  while (!buffered.text.includes("\n")) {
    const r = await reader.read();
    if (r.done) return null;
    buffered.text += r.value;
  }
  const at = buffered.text.indexOf("\n");
  const line = buffered.text.slice(0, at);
  buffered.text = buffered.text.slice(at + 1);
  return line;
}

type PartResult = { ops: number; cpu_ticks: number; lat: number[] };

/** Starts the children of a several-clients workload and waits until every one is warm;
 * `go` starts them together and merges what they measured. */
async function startClients(
  url: string,
  multi: { clients: number; tasks: number; kind: "get" | "list" },
  count: number,
  n: number,
  log: (m: string) => void,
): Promise<{ go: () => Promise<Figures & { child_cpu_ticks: number }> }> {
  const script = new URL(import.meta.url).pathname;
  const children = Array.from({ length: multi.clients }, () => {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--unstable-kv",
        script,
        "part",
        url,
        multi.kind,
        String(multi.tasks),
        String(count),
        String(n),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    return { child, reader, buffered: { text: "" }, stdin: child.stdin.getWriter() };
  });
  for (const [i, c] of children.entries()) {
    const line = await readLine(c.reader, c.buffered);
    check(line === "ready", `client process ${i} did not get ready (it said ${line})`);
  }
  log(`${multi.clients} client processes warm; starting them together`);
  return { go: () => goClients(multi, children) };
}

type Child = {
  child: Deno.ChildProcess;
  reader: ReadableStreamDefaultReader<string>;
  buffered: { text: string };
  stdin: WritableStreamDefaultWriter<Uint8Array>;
};

async function goClients(
  multi: { clients: number; kind: "get" | "list" },
  children: Child[],
): Promise<Figures & { child_cpu_ticks: number }> {
  const t0 = performance.now();
  const go = new TextEncoder().encode("go\n");
  // "go", then end of input: a child's pending stdin read would keep it alive.
  await Promise.all(children.map(async (c) => {
    await c.stdin.write(go);
    await c.stdin.close();
  }));
  const parts = await Promise.all(children.map(async (c, i) => {
    const line = await readLine(c.reader, c.buffered);
    const secs = (performance.now() - t0) / 1000;
    const status = await c.child.status;
    check(status.success && line !== null, `client process ${i} failed (status ${status.code})`);
    return { secs, ...(JSON.parse(line!) as PartResult) };
  }));
  const secs = Math.max(...parts.map((p) => p.secs));
  const lat = new Float64Array(parts.flatMap((p) => p.lat)).sort();
  const perOp = multi.kind === "list" ? LIST_ENTRIES : 1;
  const ops = parts.reduce((sum, p) => sum + p.ops, 0) * perOp;
  return {
    unit: multi.kind === "list" ? "entries/s" : "ops/s",
    ops,
    secs: r3(secs),
    rate: r1(ops / secs),
    p50_ms: r3(quantile(lat, 0.5)),
    p99_ms: r3(quantile(lat, 0.99)),
    max_ms: r3(lat[lat.length - 1]),
    clients: multi.clients,
    child_cpu_ticks: parts.reduce((sum, p) => sum + p.cpu_ticks, 0),
  };
}

/** One client process of a several-clients workload: opens the database, warms up, says
 * "ready", waits for "go" on stdin, runs `count` operations from `tasks` tasks, and prints
 * what it measured as one JSON line. The data was written by the parent. */
async function part(args: string[]) {
  const [url, kind, tasksArg, countArg, nArg] = args;
  const [tasks, count, n] = [tasksArg, countArg, nArg].map(Number);
  check(
    args.length === 5 && (kind === "get" || kind === "list") &&
      [tasks, count, n].every((x) => Number.isInteger(x) && x > 0),
    "usage: bench_server.ts part <url> get|list <tasks> <count> <keys>",
  );
  const kv = await Deno.openKv(url);
  const op = kind === "get"
    ? (i: number) => checkedGet(kv, i, n, "part")
    : () => checkedList(kv, "part");
  await runOps(Math.max(kind === "get" ? 10 : 1, Math.floor(count / 10)), tasks, (i) => op(i + 7));
  const out = Deno.stdout.writable.getWriter();
  await out.write(new TextEncoder().encode("ready\n"));
  const input = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
  const line = await readLine(input, { text: "" });
  check(line === "go", `part: expected "go" on stdin, got ${line}`);
  await input.cancel();
  const c0 = cpuTicks("self");
  const r = await runOps(count, tasks, op);
  const result: PartResult = {
    ops: count,
    cpu_ticks: cpuTicks("self") - c0,
    lat: Array.from(r.lat, r3),
  };
  kv.close();
  await out.write(new TextEncoder().encode(JSON.stringify(result) + "\n"));
  await out.close();
}

// ---------------------------------------------------------------------------------------------
// report

/** The rows of the Deno-client table: workload, target (openkv/denokv). */
const ORDER: [string, string][] = [
  ["seq_set", ""],
  ["concurrent64_set", ">= 2x"],
  ["seq_get", ">= 1.5x"],
  ["concurrent64_get", ">= 1.5x"],
  ["atomic_check_set", ""],
  ["sum_hot", ">= 2x"],
  ["list_10k", ">= 1.5x"],
  ["watch_fanout_100", ""],
  ["multi3_c64_get", ">= 1.5x"],
  ["multi8_seq_get", ">= 1.5x"],
  ["multi3_list_10k", ">= 1.5x"],
];
/** The rows of the servers-alone table (h2load, written by scripts/bench-server.sh). */
const RAW_ORDER: [string, string][] = [
  ["raw_set_c64", ">= 2x"],
  ["raw_sum_c64", ">= 2x"],
  ["raw_get_seq", ">= 1.5x"],
  ["raw_get_c64", ">= 1.5x"],
];

async function report(args: string[]) {
  const [summaryPath, ...files] = args;
  if (!summaryPath || files.length === 0) {
    die("usage: bench_server.ts report <summary.json> <result.json>...");
  }
  const runs: RunResult[] = [];
  for (const f of files) runs.push(JSON.parse(await Deno.readTextFile(f)));
  const labels = [...new Set(runs.map((r) => r.label))];
  check(labels.length === 2, `report: expected two servers, got ${labels.join(", ")}`);
  const [a, b] = labels; // openkv, denokv: the order of the files

  type Median = { s: Stats; all: number[] };
  /** The median round (by rate) of a workload on one server, and the rate of every round. */
  const median = (label: string, w: string): Median | null => {
    const xs = runs.filter((r) => r.label === label && r.workloads[w]).map((r) => r.workloads[w]);
    if (xs.length === 0) return null;
    xs.sort((p, q) => p.rate - q.rate);
    return { s: xs[Math.floor((xs.length - 1) / 2)], all: xs.map((x) => x.rate) };
  };

  const fmt = (x: number, digits = 0) =>
    Number.isFinite(x)
      ? x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
      : "n/a";
  const ms = (x: number) => (Number.isFinite(x) ? `${fmt(x, x < 10 ? 2 : 1)} ms` : "n/a");
  const pct = (x: number | null) => (x === null ? "-" : `${Math.round(x)}`);
  const cpu = (m: Median | null) =>
    m ? [m.s.server_cpu_pct, m.s.client_cpu_pct, m.s.others_cpu_pct].map(pct).join(" / ") : "n/a";
  const rate = (m: Median | null) =>
    m ? (m.s.missed_sets ? `${fmt(m.s.rate)} (${m.s.missed_sets} missed)` : fmt(m.s.rate)) : "n/a";
  const table = (t: string[][], right: (column: number) => boolean) => {
    const width = t[0].map((_, c) => Math.max(...t.map((r) => r[c].length)));
    const line = (r: string[]) =>
      "| " + r.map((x, c) => (right(c) ? x.padStart(width[c]) : x.padEnd(width[c]))).join(" | ") +
      " |";
    const rule = "|" +
      width.map((w, c) => (right(c) ? "-".repeat(w + 1) + ":" : "-".repeat(w + 2))).join("|") + "|";
    return [line(t[0]), rule, ...t.slice(1).map(line)].join("\n");
  };

  const summary: Record<string, unknown> = {};
  const notes: string[] = [];
  /** The main table (rates, p99, ratio, target) and the detail table (p50, CPU, rounds). */
  const section = (order: [string, string][]) => {
    const rows = [["workload", "unit", a, `${a} p99`, b, `${b} p99`, `${a}/${b}`, "target", "met"]];
    const details = [[
      "workload",
      `${a} p50`,
      `${b} p50`,
      `${a} CPU %`,
      `${b} CPU %`,
      `${a} rounds`,
      `${b} rounds`,
    ]];
    // The targets are openkv's against denokv; another comparison (bench-server.sh --versus)
    // has none.
    const targets = Deno.env.get("BENCH_TARGETS") !== "0";
    for (const [w, goal] of order) {
      const target = targets ? goal : "";
      const ma = median(a, w), mb = median(b, w);
      if (!ma && !mb) continue;
      const ratio = ma && mb && mb.s.rate > 0 ? ma.s.rate / mb.s.rate : NaN;
      const want = target ? Number(target.replace(/[^0-9.]/g, "")) : NaN;
      const met = !target ? "" : !Number.isFinite(ratio) ? "n/a" : ratio >= want ? "yes" : "NO";
      const unit = (ma ?? mb)!.s.unit;
      const latency = w.endsWith("list_10k")
        ? " (p99: per list)"
        : w === "watch_fanout_100"
        ? " (p99: set sent → all 100 saw it)"
        : "";
      // Watch rows show the latency from the set's start: the one from its acknowledgement is
      // 0 whenever the watchers hear of the change before the writer does (in the notes).
      const p99 = (m: Median) =>
        ms((w === "watch_fanout_100" ? m.s.from_set_start_p99_ms : m.s.p99_ms) as number);
      const p50 = (m: Median) =>
        ms((w === "watch_fanout_100" ? m.s.from_set_start_p50_ms : m.s.p50_ms) as number);
      rows.push([
        w,
        unit + latency,
        rate(ma),
        ma ? p99(ma) : "n/a",
        rate(mb),
        mb ? p99(mb) : "n/a",
        Number.isFinite(ratio) ? `${fmt(ratio, 2)}x` : "n/a",
        target,
        met,
      ]);
      details.push([
        w,
        ma ? p50(ma) : "n/a",
        mb ? p50(mb) : "n/a",
        cpu(ma),
        cpu(mb),
        ma ? ma.all.map((x) => fmt(x)).join(" / ") : "n/a",
        mb ? mb.all.map((x) => fmt(x)).join(" / ") : "n/a",
      ]);
      for (const [label, m] of [[a, ma], [b, mb]] as const) {
        if (m?.s.note) notes.push(`NOTE: ${label} ${w}: ${m.s.note}`);
        if (m && w === "watch_fanout_100") {
          notes.push(
            `${label} ${w}: from the set's acknowledgement to the last of the 100 watchers ` +
              `seeing it: p50 ${ms(m.s.p50_ms)}, p99 ${ms(m.s.p99_ms)} (0 when all 100 saw it ` +
              `before the writer had its ack: ${m.s.seen_before_ack} of ${m.s.ops} sets)`,
          );
        }
      }
      summary[w] = {
        unit,
        target: target || null,
        met: met || null,
        ratio: Number.isFinite(ratio) ? r3(ratio) : null,
        [a]: ma?.s ?? null,
        [b]: mb?.s ?? null,
        [`${a}_rounds_rate`]: ma?.all ?? [],
        [`${b}_rounds_rate`]: mb?.all ?? [],
      };
    }
    return { rows, details };
  };

  const client = section(ORDER);
  const raw = section(RAW_ORDER);
  const out: string[] = [];
  out.push("With the Deno CLI as the client (median round):", "");
  out.push(table(client.rows, (c) => c >= 2 && c <= 6), "");
  if (raw.rows.length > 1) {
    out.push(
      "The servers alone: h2load, the same protobuf requests over one h2c connection " +
        "(median round):",
      "",
    );
    out.push(table(raw.rows, (c) => c >= 2 && c <= 6), "");
  }
  out.push(
    "p50 latency and CPU use in the median round, in percent of one core (200% = both " +
      "cores): server / client / everything else on the machine (for h2load rows, h2load " +
      "itself is in the third figure); then the rate of every round:",
    "",
  );
  out.push(table([...client.details, ...raw.details.slice(1)], (c) => c >= 1 && c <= 4), "");
  for (const n of notes) out.push(`${n}  `);
  console.log(out.join("\n"));
  const rounds = Math.max(...runs.map((r) => r.round));
  const sizes = runs.find((r) => r.sizes)?.sizes ?? {};
  await Deno.writeTextFile(
    summaryPath,
    JSON.stringify(
      {
        header: Deno.env.get("BENCH_HEADER") ?? null,
        servers: [a, b],
        rounds,
        sizes,
        workloads: summary,
      },
      null,
      2,
    ) + "\n",
  );
}

/** The metadata exchange, for the database id that raw HTTP clients (h2load) must send. */
async function databaseId([url]: string[]) {
  const res = await fetch(url, {
    method: "POST",
    headers: {
      authorization: `Bearer ${Deno.env.get("DENO_KV_ACCESS_TOKEN")}`,
      "content-type": "application/json",
    },
    body: JSON.stringify({ supportedVersions: [1, 2, 3] }),
  });
  if (!res.ok) die(`metadata exchange with ${url}: HTTP ${res.status}: ${await res.text()}`);
  console.log((await res.json()).databaseId);
}

/** Checks a counter written by raw sums: every acknowledged sum must be in it. */
async function counter([url, keyJson, expected]: string[]) {
  const kv = await Deno.openKv(url);
  const e = await kv.get<Deno.KvU64>(JSON.parse(keyJson));
  kv.close();
  const value = e.value instanceof Deno.KvU64 ? e.value.value : null;
  check(
    value === BigInt(expected),
    `CORRECTNESS FAILURE: ${keyJson} is ${value} after ${expected} acknowledged sums`,
  );
}

const [mode, ...rest] = Deno.args;
if (mode === "run") await run(rest);
else if (mode === "report") await report(rest);
else if (mode === "database-id") await databaseId(rest);
else if (mode === "counter") await counter(rest);
else if (mode === "part") await part(rest);
else die("usage: bench_server.ts run … | report … (see the header of this file)");
