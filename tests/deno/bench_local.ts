// Usage: deno run -A --unstable-kv bench_local.ts <dbpath> <n>
//
// Benchmarks Deno CLI's own local (sqlite) KV backend and prints ONE JSON line
// on stdout (all figures are per second):
//   {"seq_set_ops", "concurrent64_set_ops", "get_ops", "list_entries_per_s",
//    "atomic_check_set_ops", "sum_hot_ops", "queue_enqueue_msgs", "queue_deliver_msgs"}
// Workloads:
//   seq_set_ops          n sequential awaited kv.set(["seq", i], i)
//   concurrent64_set_ops 64 async workers, n sets in total, keys ["c", w, i]
//   get_ops              n sequential kv.get(["seq", i]) of existing keys
//   list_entries_per_s   5 full kv.list({prefix: ["list"]}) over 10,000
//                        entries written beforehand (untimed)
//   atomic_check_set_ops n/4 x (get, atomic().check(entry).set().commit())
//                        on distinct keys ["acs", i]
//   sum_hot_ops          n/4 sequential atomic().sum(["hot"], 1n)
//   queue_enqueue_msgs   64 async workers enqueue n messages in total
//   queue_deliver_msgs   one listenQueue delivers those n messages
//   watch_p50_us/p99_us  a kv.watch of one key; 200 sets, each timed from the call
//                        to set until the watcher has the new value (microseconds)
// Progress/diagnostics go to stderr only.

const [dbPath, nArg] = Deno.args;
const n = Number(nArg);
if (!dbPath || Deno.args.length !== 2 || !Number.isInteger(n) || n < 64) {
  console.error("usage: bench_local.ts <dbpath> <n>   (n: integer >= 64)");
  Deno.exit(2);
}

const LIST_ENTRIES = 10_000;
const LIST_ITERATIONS = 5;
const WORKERS = 64;

const kv = await Deno.openKv(dbPath);

function check(ok: boolean, what: string) {
  if (!ok) {
    console.error(`bench_local: ${what}`);
    Deno.exit(1);
  }
}

async function timed(f: () => Promise<number>): Promise<number> {
  const t0 = performance.now();
  const ops = await f();
  const secs = (performance.now() - t0) / 1000;
  return ops / secs;
}

const round = (x: number) => Math.round(x * 10) / 10;

// 1. sequential sets
const seq_set_ops = await timed(async () => {
  for (let i = 0; i < n; i++) {
    const r = await kv.set(["seq", i], i);
    check(r.ok, "seq set failed");
  }
  return n;
});

// 2. 64 concurrent setters, n ops total
const concurrent64_set_ops = await timed(async () => {
  await Promise.all(
    Array.from({ length: WORKERS }, async (_, w) => {
      const count = Math.floor(n / WORKERS) + (w < n % WORKERS ? 1 : 0);
      for (let i = 0; i < count; i++) {
        const r = await kv.set(["c", w, i], i);
        check(r.ok, "concurrent set failed");
      }
    }),
  );
  return n;
});

// 3. point gets of existing keys
const get_ops = await timed(async () => {
  for (let i = 0; i < n; i++) {
    const e = await kv.get<number>(["seq", i]);
    check(e.value === i, `get ["seq", ${i}] returned ${e.value}`);
  }
  return n;
});

// 4. list over 10,000 entries (populated untimed, 500 sets per atomic op)
for (let i = 0; i < LIST_ENTRIES; i += 500) {
  const op = kv.atomic();
  for (let j = i; j < Math.min(i + 500, LIST_ENTRIES); j++) op.set(["list", j], j);
  check((await op.commit()).ok, "list population failed");
}
const list_entries_per_s = await timed(async () => {
  let total = 0;
  for (let it = 0; it < LIST_ITERATIONS; it++) {
    let count = 0;
    for await (const _ of kv.list({ prefix: ["list"] })) count++;
    check(count === LIST_ENTRIES, `list returned ${count} entries`);
    total += count;
  }
  return total;
});

// 5. optimistic check + set on distinct keys
const quarter = Math.max(1, Math.floor(n / 4));
const atomic_check_set_ops = await timed(async () => {
  for (let i = 0; i < quarter; i++) {
    const key = ["acs", i];
    const entry = await kv.get(key);
    const r = await kv.atomic().check(entry).set(key, i).commit();
    check(r.ok, "check+set failed");
  }
  return quarter;
});

// 6. hot-key sum
const sum_hot_ops = await timed(async () => {
  for (let i = 0; i < quarter; i++) {
    const r = await kv.atomic().sum(["hot"], 1n).commit();
    check(r.ok, "sum failed");
  }
  return quarter;
});
{
  const hot = await kv.get<Deno.KvU64>(["hot"]);
  check(hot.value instanceof Deno.KvU64 && hot.value.value >= BigInt(quarter), "hot counter wrong");
}

// 7. queue: enqueue n messages from 64 workers, then deliver them all
const queue_enqueue_msgs = await timed(async () => {
  await Promise.all(
    Array.from({ length: WORKERS }, async (_, w) => {
      const count = Math.floor(n / WORKERS) + (w < n % WORKERS ? 1 : 0);
      for (let i = 0; i < count; i++) {
        const r = await kv.enqueue(w * n + i);
        check(r.ok, "enqueue failed");
      }
    }),
  );
  return n;
});
const queue_deliver_msgs = await timed(async () => {
  const seen = new Set<number>();
  const all = Promise.withResolvers<void>();
  kv.listenQueue((m: number) => {
    seen.add(m);
    if (seen.size === n) all.resolve();
  });
  await all.promise;
  return n;
});

// 8. watch notification latency
const watchLatencies: number[] = [];
{
  const stream = kv.watch([["w"]]);
  const reader = stream.getReader();
  await reader.read(); // the current state
  for (let i = 0; i < 200; i++) {
    const t0 = performance.now();
    await kv.set(["w"], i);
    for (;;) {
      const { value, done } = await reader.read();
      check(!done, "watch ended");
      if (value![0].value === i) break;
    }
    watchLatencies.push((performance.now() - t0) * 1000);
  }
  await reader.cancel();
}
watchLatencies.sort((a, b) => a - b);
const pct = (q: number) => watchLatencies[Math.min(watchLatencies.length - 1, Math.floor(watchLatencies.length * q))];

kv.close();

console.log(JSON.stringify({
  seq_set_ops: round(seq_set_ops),
  concurrent64_set_ops: round(concurrent64_set_ops),
  get_ops: round(get_ops),
  list_entries_per_s: round(list_entries_per_s),
  atomic_check_set_ops: round(atomic_check_set_ops),
  sum_hot_ops: round(sum_hot_ops),
  queue_enqueue_msgs: round(queue_enqueue_msgs),
  queue_deliver_msgs: round(queue_deliver_msgs),
  watch_p50_us: round(pct(0.5)),
  watch_p99_us: round(pct(0.99)),
}));
