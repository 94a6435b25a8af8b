// Queue semantics of the package (enqueue, atomic().enqueue, listenQueue over openkv's queue
// extension), covering what Deno's own queue tests exercise, against a running `openkv serve`.
//
// Runs unchanged under Node ≥ 20 (`node --test clients/js/test/`) and the Deno CLI
// (`deno test -A --unstable-kv clients/js/test/`); needs KV_URL and DENO_KV_ACCESS_TOKEN.
// Under Deno, a few extra tests run the same scenario on Deno's local KV (`:memory:`) to pin
// the behaviour the package must match.
//
// The database is shared: it may hold messages other tests or other runs enqueued, and every
// listener takes whatever is due. So every message a test sends carries the test's own id, a
// listener returns normally (delivered) for any message that is not its test's own and never
// counts it, and every test waits until ITS OWN messages arrived. Tests run one after another
// (top-level `test()` calls, no `concurrency`), so while a test listens no other test of this
// file is listening or expecting messages. Two runs listening on the same server at the same
// time could take each other's messages; run them one after another.

import { test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { openKv } from "../mod.js";
import { DenoNs, UNDER_DENO, sleep, withTimeout, assertDeep } from "../test_support/helpers.js";

const KV_URL = process.env.KV_URL;
const ACCESS_TOKEN = process.env.DENO_KV_ACCESS_TOKEN;
const RUN_ID = `queue-${crypto.randomUUID().slice(0, 8)}`;
const THIRTY_DAYS_MS = 30 * 24 * 60 * 60 * 1000;

/** Resolves once `probe()` is true; rejects (saying `what`) after `ms`. */
async function waitFor(probe, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await probe()) return;
    if (Date.now() >= deadline) throw new Error(`waited ${ms} ms for: ${what}`);
    await sleep(10);
  }
}

/** "pending", or how the promise settled, after `ms`. */
async function stateAfter(promise, ms) {
  const pending = Symbol("pending");
  const r = await Promise.race([
    promise.then(() => "resolved", (e) => `rejected: ${e?.message}`),
    sleep(ms).then(() => pending),
  ]);
  return r === pending ? "pending" : r;
}

function deepEq(a, b) {
  try {
    assert.deepStrictEqual(a, b);
    return true;
  } catch {
    return false;
  }
}

/** One test's resources: its id (in every message), key prefix, databases and listeners. */
class Ctx {
  constructor(id) {
    this.id = id;
    this.prefix = [RUN_ID, id];
    this.kvs = [];
    this.listens = [];
    this.cleanups = [];
  }

  async open() {
    assert.ok(KV_URL, "set KV_URL (and DENO_KV_ACCESS_TOKEN) to an `openkv serve` URL");
    const kv = await withTimeout(openKv(KV_URL, { accessToken: ACCESS_TOKEN }), 10_000, "openKv");
    this.kvs.push(kv);
    return kv;
  }

  /** A message of this test: `{t: id, ...fields}`. */
  msg(fields = {}) {
    return { t: this.id, ...fields };
  }

  mine(m) {
    return m !== null && typeof m === "object" && m.t === this.id;
  }

  /** Listens on `kv`; `onOwn` sees only this test's messages (others are acknowledged). */
  listen(kv, onOwn) {
    const p = kv.listenQueue((m) => (this.mine(m) ? onOwn(m) : undefined));
    p.catch(() => {}); // observed by the test or by dispose()
    this.listens.push(p);
    return p;
  }

  onCleanup(f) {
    this.cleanups.push(f);
  }

  async dispose() {
    for (const f of this.cleanups) {
      try {
        f();
      } catch {
        // best effort
      }
    }
    let cleaner;
    try {
      cleaner = await this.open();
      const op = cleaner.atomic();
      let n = 0;
      for await (const e of cleaner.list({ prefix: this.prefix })) {
        op.delete(e.key);
        n++;
      }
      if (n) await withTimeout(op.commit(), 5_000, "cleanup");
    } catch {
      // best effort
    }
    for (const kv of this.kvs) {
      try {
        kv.close();
      } catch {
        // closed by the test
      }
    }
    // Graceful close waits for running handlers; never let a stuck one hang the run.
    await withTimeout(Promise.allSettled(this.listens), 5_000, "listeners to end").catch(() => {});
  }
}

let testNo = 0;

/** A queue test with its own id and prefix, a hard time limit, and cleanup. */
function qtest(name, ms, fn, opts = {}) {
  test(name, { timeout: ms + 10_000, ...opts }, async () => {
    const ctx = new Ctx(`${RUN_ID}-${++testNo}`);
    try {
      await withTimeout(fn(ctx), ms, name);
    } finally {
      await ctx.dispose();
    }
  });
}

/** Values of every type Deno KV stores; each must arrive deep-equal (or pass its own check, the
 * optional third element). */
function sampleValues() {
  const cyclic = { name: "cyclic" };
  cyclic.self = cyclic;
  return [
    ["string", "hello"],
    ["empty string", ""],
    ["non-Latin-1 string", "héllo € 😀 日本語"],
    ["number", 42],
    ["float", -3.25],
    ["-0", -0],
    ["NaN", NaN],
    ["Infinity", Infinity],
    ["-Infinity", -Infinity],
    ["max safe integer", Number.MAX_SAFE_INTEGER],
    ["bigint", 123n],
    ["negative bigint", -5n],
    ["huge bigint", 2n ** 130n + 7n],
    ["true", true],
    ["false", false],
    ["null", null],
    ["undefined", undefined],
    ["Date", new Date(1_700_000_000_123)],
    // node:assert's deepStrictEqual never equates two invalid Dates (NaN time): checked by hand.
    ["invalid Date", new Date(NaN), (got) => got instanceof Date && Number.isNaN(got.getTime())],
    ["RegExp", /ab+c/gi],
    ["RegExp with flags", /^x.y$/msu],
    ["Map", new Map([["a", 1], [2, { b: [3] }], [3n, new Set([4])]])],
    ["Set", new Set([1, "two", 3n, null])],
    ["nested object", { a: { b: { c: [1, { d: "e", f: [null, undefined] }] } } }],
    ["array", [1, "two", null, undefined, [3, [4]]]],
    ["sparse array", [1, , 3]], // eslint-disable-line no-sparse-arrays
    ["object with numeric keys", { 1: "a", 0: "b", x: 2 }],
    ["cyclic object", cyclic],
    ["String object", new String("boxed")],
    ["Number object", new Number(7)],
    ["Boolean object", new Boolean(false)],
    ["Uint8Array", new Uint8Array([1, 2, 3, 0, 255])],
    ["empty Uint8Array", new Uint8Array(0)],
    ["Uint8Array view at an offset", new Uint8Array([9, 8, 7, 6]).subarray(1, 3)],
    ["nested Uint8Array", { bytes: new Uint8Array([4, 5]), list: [new Uint8Array([6])] }],
    ["Int8Array", new Int8Array([-1, 1])],
    ["Uint8ClampedArray", new Uint8ClampedArray([0, 255])],
    ["Int16Array", new Int16Array([-300, 300])],
    ["Uint16Array", new Uint16Array([1, 65535])],
    ["Int32Array", new Int32Array([-70000, 70000])],
    ["Uint32Array", new Uint32Array([4294967295])],
    ["Float32Array", new Float32Array([1.5, -2.5])],
    ["Float64Array", new Float64Array([Math.PI, -0])],
    ["BigInt64Array", new BigInt64Array([-1n, 2n ** 62n])],
    ["BigUint64Array", new BigUint64Array([2n ** 64n - 1n])],
    ["DataView", new DataView(new Uint8Array([1, 2, 3, 4]).buffer, 1, 2)],
    ["ArrayBuffer", new Uint8Array([7, 8, 9]).buffer],
    ["Error", new Error("boom")],
    ["TypeError", new TypeError("bad type")],
    ["RangeError", new RangeError("out of range")],
    ["SyntaxError", new SyntaxError("bad syntax")],
    ["ReferenceError", new ReferenceError("no ref")],
    ["EvalError", new EvalError("eval")],
    ["URIError", new URIError("uri")],
    ["Error inside an object", { error: new Error("inner"), at: new Date(0) }],
  ];
}

// ---------------------------------------------------------------------------------------------

qtest("enqueue → listenQueue delivers the message; enqueue answers {ok, versionstamp}", 10_000, async (ctx) => {
  const kv = await ctx.open();
  const got = [];
  ctx.listen(kv, (m) => {
    got.push(m);
  });
  const res = await kv.enqueue(ctx.msg({ hello: "world" }));
  assert.equal(res.ok, true);
  assert.match(res.versionstamp, /^[0-9a-f]{20}$/);
  await waitFor(() => got.length >= 1, 5_000, "the message");
  assert.deepEqual(got, [ctx.msg({ hello: "world" })]);
});

qtest("a message enqueued before anyone listens is delivered once a listener starts", 10_000, async (ctx) => {
  const kv = await ctx.open();
  await kv.enqueue(ctx.msg({ early: true }));
  const got = [];
  ctx.listen(kv, (m) => {
    got.push(m);
  });
  await waitFor(() => got.length >= 1, 5_000, "the early message");
  assert.deepEqual(got, [ctx.msg({ early: true })]);
});

qtest("every value type is delivered deep-equal (inside a message)", 15_000, async (ctx) => {
  const kv = await ctx.open();
  const values = sampleValues();
  const got = new Map();
  ctx.listen(kv, (m) => {
    got.set(m.i, [...(got.get(m.i) ?? []), m.v]);
  });
  await Promise.all(values.map(([, v], i) => kv.enqueue(ctx.msg({ i, v }))));
  await waitFor(() => got.size === values.length, 8_000, `all ${values.length} values`);
  for (const [i, [name, v, check]] of values.entries()) {
    assert.equal(got.get(i).length, 1, `${name}: delivered once`);
    if (check) assert.ok(check(got.get(i)[0]), name);
    else assertDeep(got.get(i)[0], v, name);
  }
  // Spot checks deepStrictEqual would also catch, stated plainly.
  const byName = (n) => got.get(values.findIndex(([name]) => name === n))[0];
  assert.ok(Object.is(byName("-0"), -0));
  assert.ok(Number.isNaN(byName("NaN")));
  assert.ok(byName("Uint8Array") instanceof Uint8Array);
  assert.ok(byName("ArrayBuffer") instanceof ArrayBuffer);
  assert.ok(byName("TypeError") instanceof TypeError);
  assert.equal(byName("sparse array").length, 3);
  assert.ok(!(1 in byName("sparse array")));
  assert.equal(byName("cyclic object").self, byName("cyclic object"));
});

qtest("top-level values of every kind are delivered deep-equal", 15_000, async (ctx) => {
  const kv = await ctx.open();
  // Each value carries this test's id (or a random part), so a foreign message never matches.
  const id = ctx.id;
  const bytes = new TextEncoder().encode(id);
  const rnd = Math.random();
  const expected = [
    `${id}: a string`,
    1_000_000 + rnd,
    BigInt(Math.floor(rnd * 2 ** 50)) + 2n ** 80n,
    new Date(Date.now() + Math.floor(rnd * 1e9)),
    new RegExp(`${id.replace(/-/g, "_")}[0-9]+`, "g"),
    new Map([[id, new Uint8Array([1, 2])]]),
    new Set([id, 1n]),
    [id, 1, [2, { three: 3 }]],
    new TypeError(`${id}: an error`),
    Uint8Array.from(bytes),
    new Float64Array([rnd, -rnd]),
    Uint8Array.from(bytes).buffer,
  ];
  const received = expected.map(() => 0);
  const listen = kv.listenQueue((m) => {
    const i = expected.findIndex((e) => deepEq(m, e));
    if (i >= 0) received[i]++;
  });
  listen.catch(() => {});
  ctx.listens.push(listen);
  for (const v of expected) assert.equal((await kv.enqueue(v)).ok, true);
  await waitFor(() => received.every((n) => n >= 1), 8_000, "all top-level values");
  await sleep(200);
  assert.deepEqual(received, expected.map(() => 1));
});

qtest("delay: not delivered before the delay, delivered soon after", 10_000, async (ctx) => {
  const kv = await ctx.open();
  const DELAY = 1_000;
  const at = {};
  ctx.listen(kv, (m) => {
    at[m.k] = Date.now();
  });
  const t0 = Date.now();
  await kv.enqueue(ctx.msg({ k: "delayed" }), { delay: DELAY });
  await kv.enqueue(ctx.msg({ k: "now" }));
  // The undelayed one shows the listener is live while the delayed one waits.
  await waitFor(() => at.now !== undefined, 3_000, "the undelayed message");
  assert.equal(at.delayed, undefined, "the delayed message came before the undelayed one");
  await waitFor(() => at.delayed !== undefined, DELAY + 4_000, "the delayed message");
  assert.ok(at.delayed - t0 >= DELAY - 5, `delivered after ${at.delayed - t0} ms, delay ${DELAY}`);
  assert.ok(at.delayed - t0 <= DELAY + 2_500, `delivered only after ${at.delayed - t0} ms`);
});

qtest("delay inside atomic(): the enqueue commits with the write, delivered after the delay", 10_000, async (ctx) => {
  const kv = await ctx.open();
  const DELAY = 800;
  const key = [...ctx.prefix, "written"];
  let deliveredAt;
  ctx.listen(kv, () => {
    deliveredAt = Date.now();
  });
  const t0 = Date.now();
  const res = await kv.atomic().set(key, "v").enqueue(ctx.msg({ atomic: true }), { delay: DELAY }).commit();
  assert.equal(res.ok, true);
  assert.equal((await kv.get(key)).versionstamp, res.versionstamp);
  await sleep(DELAY / 2);
  assert.equal(deliveredAt, undefined, "delivered before the delay");
  await waitFor(() => deliveredAt !== undefined, DELAY + 4_000, "the delayed message");
  assert.ok(deliveredAt - t0 >= DELAY - 5, `delivered after ${deliveredAt - t0} ms, delay ${DELAY}`);
  assert.ok(deliveredAt - t0 <= DELAY + 2_500, `delivered only after ${deliveredAt - t0} ms`);
});

qtest("a 30-day delay is accepted (enqueue and atomic().enqueue)", 10_000, async (ctx) => {
  const kv = await ctx.open();
  const res = await kv.enqueue(ctx.msg({ far: 1 }), { delay: THIRTY_DAYS_MS });
  assert.equal(res.ok, true);
  assert.match(res.versionstamp, /^[0-9a-f]{20}$/);
  const res2 = await kv.atomic().enqueue(ctx.msg({ far: 2 }), { delay: THIRTY_DAYS_MS }).commit();
  assert.equal(res2.ok, true);
});

qtest("async handlers: a resolved promise is a delivery (no retry), awaited before finishing", 10_000, async (ctx) => {
  const kv = await ctx.open();
  const events = [];
  ctx.listen(kv, async (m) => {
    events.push(`start ${m.n}`);
    await sleep(150);
    events.push(`end ${m.n}`);
  });
  await kv.enqueue(ctx.msg({ n: 1 }));
  await waitFor(() => events.includes("end 1"), 5_000, "the async handler to end");
  // A failed attempt would be retried after 100 ms (the default schedule): wait past that.
  await sleep(600);
  assert.deepEqual(events, ["start 1", "end 1"]);
});

qtest("retries: a handler that throws, then rejects, gets the message again (default schedule)", 10_000, async (ctx) => {
  const kv = await ctx.open();
  const attempts = [];
  ctx.listen(kv, (m) => {
    attempts.push(m);
    if (attempts.length === 1) throw new Error("first attempt fails (sync throw)");
    if (attempts.length === 2) return Promise.reject(new Error("second attempt fails (rejection)"));
  });
  const message = ctx.msg({ payload: new Map([["x", new Uint8Array([1])]]) });
  await kv.enqueue(message);
  // Deno's default schedule retries after 100 ms, then 1 s.
  await waitFor(() => attempts.length >= 3, 6_000, "the third attempt");
  await sleep(400);
  assert.equal(attempts.length, 3, "delivered once more than the failures, then never again");
  for (const m of attempts) assert.deepStrictEqual(m, message);
});

qtest("backoffSchedule [100, 200, 400]: exactly 4 attempts, each retry at least its interval later", 10_000, async (ctx) => {
  const kv = await ctx.open();
  const schedule = [100, 200, 400];
  const dead = [...ctx.prefix, "dead"];
  const attempts = [];
  ctx.listen(kv, async () => {
    attempts.push({ at: Date.now(), deadWritten: (await kv.get(dead)).versionstamp !== null });
    throw new Error("always fails");
  });
  const message = ctx.msg({ schedule });
  await kv.enqueue(message, { backoffSchedule: schedule, keysIfUndelivered: [dead] });
  await waitFor(async () => (await kv.get(dead)).versionstamp !== null, 6_000, "the dead letter");
  await sleep(700); // longer than any interval: a 5th attempt would show
  assert.equal(attempts.length, schedule.length + 1, "one attempt plus one per interval");
  for (const [i, ms] of schedule.entries()) {
    const gap = attempts[i + 1].at - attempts[i].at;
    assert.ok(gap >= ms - 5, `retry ${i + 1} came ${gap} ms after the previous attempt (interval ${ms})`);
    // A retry wakes the listener's long poll at once; 300 ms is slack for this noisy VM.
    assert.ok(gap <= ms + 300, `retry ${i + 1} came only ${gap} ms after the previous attempt (interval ${ms})`);
  }
  assert.ok(attempts.every((a) => !a.deadWritten), "the dead letter was written before the last attempt");
  assert.deepStrictEqual((await kv.get(dead)).value, message);
});

qtest(
  "backoffSchedule: a retry comes within 300 ms of its interval, also when the handler takes a moment",
  10_000,
  async (ctx) => {
    const kv = await ctx.open();
    const schedule = [100, 100, 100];
    const times = [];
    ctx.listen(kv, async () => {
      times.push(Date.now());
      await sleep(20); // the listener's next long poll (wait) is open before this attempt is reported
      throw new Error("always fails");
    });
    await kv.enqueue(ctx.msg(), { backoffSchedule: schedule });
    await waitFor(() => times.length === schedule.length + 1, 8_000, "every attempt");
    const gaps = times.slice(1).map((t, i) => t - times[i]);
    for (const [i, gap] of gaps.entries()) {
      assert.ok(gap <= schedule[i] + 300, `retry gaps ${gaps.join(", ")} ms for intervals ${schedule.join(", ")}`);
    }
  },
);

qtest("keysIfUndelivered: after the last attempt every key holds the message", 10_000, async (ctx) => {
  const kv = await ctx.open();
  const keys = [[...ctx.prefix, "dlq", 1], [...ctx.prefix, "dlq", "two"]];
  let attempts = 0;
  ctx.listen(kv, () => {
    attempts++;
    throw new Error("never delivered");
  });
  const message = ctx.msg({ at: new Date(1), bytes: new Uint8Array([1, 2]), big: 10n });
  await kv.enqueue(message, { backoffSchedule: [50], keysIfUndelivered: keys });
  await waitFor(async () => {
    const entries = await kv.getMany(keys);
    return entries.every((e) => e.versionstamp !== null);
  }, 6_000, "both dead-letter keys");
  const entries = await kv.getMany(keys);
  for (const e of entries) assert.deepStrictEqual(e.value, message);
  assert.equal(entries[0].versionstamp, entries[1].versionstamp, "written in one commit");
  assert.equal(attempts, 2);
});

qtest(
  "backoffSchedule [] means no retry at all (Deno: one attempt, then keysIfUndelivered)",
  10_000,
  async (ctx) => {
    const kv = await ctx.open();
    const dead = [...ctx.prefix, "dead"];
    let attempts = 0;
    ctx.listen(kv, () => {
      attempts++;
      throw new Error("fails");
    });
    await kv.enqueue(ctx.msg(), { backoffSchedule: [], keysIfUndelivered: [dead] });
    await waitFor(() => attempts >= 1, 5_000, "the first attempt");
    await sleep(600); // a retry after Deno's default first interval (100 ms) would show
    assert.equal(attempts, 1, "attempts");
    await waitFor(async () => (await kv.get(dead)).versionstamp !== null, 2_000, "the dead letter");
  },
);

qtest("several listeners on several handles: every message delivered to exactly one of them", 15_000, async (ctx) => {
  const sender = await ctx.open();
  const listeners = [await ctx.open(), await ctx.open(), await ctx.open()];
  const N = 30;
  const deliveries = new Map(); // n → [listener index, …]
  for (const [li, kv] of listeners.entries()) {
    ctx.listen(kv, (m) => {
      deliveries.set(m.n, [...(deliveries.get(m.n) ?? []), li]);
    });
  }
  await Promise.all(Array.from({ length: N }, (_, n) => sender.enqueue(ctx.msg({ n }))));
  await waitFor(() => deliveries.size === N, 8_000, `all ${N} messages`);
  await sleep(300);
  for (let n = 0; n < N; n++) assert.equal(deliveries.get(n).length, 1, `message ${n}: ${deliveries.get(n)}`);
});

qtest("atomic() with a failing check enqueues nothing and writes nothing", 10_000, async (ctx) => {
  const kv = await ctx.open();
  const existing = [...ctx.prefix, "exists"];
  const other = [...ctx.prefix, "other"];
  const seen = [];
  ctx.listen(kv, (m) => {
    seen.push(m.k);
  });
  const { versionstamp } = await kv.set(existing, 1);
  const failed1 = await kv.atomic()
    .check({ key: existing, versionstamp: null })
    .set(other, "must not be written")
    .enqueue(ctx.msg({ k: "fail-null" }))
    .commit();
  assert.deepEqual(failed1, { ok: false });
  const failed2 = await kv.atomic()
    .check({ key: existing, versionstamp: "00000000000000000001" })
    .enqueue(ctx.msg({ k: "fail-stale" }))
    .enqueue(ctx.msg({ k: "fail-stale-2" }), { delay: 10 })
    .commit();
  assert.deepEqual(failed2, { ok: false });
  await sleep(1_500);
  assert.deepEqual(seen, []);
  assert.equal((await kv.get(other)).versionstamp, null);
  // The listener was live all along: a passing check's message arrives.
  const passed = await kv.atomic().check({ key: existing, versionstamp }).enqueue(ctx.msg({ k: "pass" })).commit();
  assert.equal(passed.ok, true);
  await waitFor(() => seen.length >= 1, 5_000, "the message of the passing check");
  assert.deepEqual(seen, ["pass"]);
});

qtest("atomic nonce: 50 enqueues in one commit are each delivered exactly once", 15_000, async (ctx) => {
  const kv = await ctx.open();
  const N = 50;
  const counts = new Array(N).fill(0);
  ctx.listen(kv, (m) => {
    counts[m.n]++;
  });
  const op = kv.atomic().set([...ctx.prefix, "with-the-enqueues"], true);
  for (let n = 0; n < N; n++) op.enqueue(ctx.msg({ n }));
  const res = await op.commit();
  assert.equal(res.ok, true);
  await waitFor(() => counts.every((c) => c >= 1), 8_000, `all ${N} messages`);
  await sleep(300);
  assert.deepEqual(counts, new Array(N).fill(1));
});

qtest("enqueue on one handle, listen on another", 10_000, async (ctx) => {
  const a = await ctx.open();
  const b = await ctx.open();
  const got = [];
  ctx.listen(b, (m) => {
    got.push(m);
  });
  await a.enqueue(ctx.msg({ from: "a" }));
  await a.atomic().enqueue(ctx.msg({ from: "a, atomic" })).commit();
  await waitFor(() => got.length >= 2, 5_000, "both messages on the other handle");
  assert.deepEqual(got.map((m) => m.from).sort(), ["a", "a, atomic"]);
});

qtest("close() while listening and idle: the listenQueue promise resolves", 10_000, async (ctx) => {
  const kv = await ctx.open();
  const listening = ctx.listen(kv, () => {});
  await sleep(200);
  assert.equal(await stateAfter(listening, 50), "pending");
  kv.close();
  assert.equal(await stateAfter(listening, 3_000), "resolved");
  assert.equal(await listening, undefined);
});

qtest("graceful close: a handler running at close() finishes before listenQueue resolves", 10_000, async (ctx) => {
  const kv = await ctx.open();
  let started = false;
  let finished = false;
  const listening = ctx.listen(kv, async () => {
    started = true;
    await sleep(400);
    finished = true;
  });
  let finishedWhenResolved;
  const observed = listening.then(() => {
    finishedWhenResolved = finished;
  });
  await kv.enqueue(ctx.msg());
  await waitFor(() => started, 5_000, "the handler to start");
  kv.close();
  assert.equal(finished, false, "the handler had not finished at close()");
  await withTimeout(observed, 5_000, "listenQueue to resolve after close()");
  assert.equal(finishedWhenResolved, true, "listenQueue resolved before the running handler finished");
});

qtest("listenQueue after close() rejects with Error 'Queue already closed'", 10_000, async (ctx) => {
  const kv = await ctx.open();
  kv.close();
  const error = await kv.listenQueue(() => {}).then(() => null, (e) => e);
  assert.ok(error instanceof Error, "rejects");
  assert.equal(error.constructor, Error);
  assert.equal(error.message, "Queue already closed");
});

qtest("handlers run concurrently: 20 handlers, a barrier that opens only with 10 running", 15_000, async (ctx) => {
  const kv = await ctx.open();
  const N = 20;
  const NEEDED = 10;
  let running = 0;
  let maxRunning = 0;
  let open;
  const barrier = new Promise((resolve) => (open = resolve));
  ctx.onCleanup(() => open());
  const done = new Set();
  ctx.listen(kv, async (m) => {
    running++;
    maxRunning = Math.max(maxRunning, running);
    if (running >= NEEDED) open();
    // Never wait forever: if handlers ran one at a time, fail on the count, not on a hang.
    await Promise.race([barrier, sleep(4_000)]);
    running--;
    done.add(m.n);
  });
  await Promise.all(Array.from({ length: N }, (_, n) => kv.enqueue(ctx.msg({ n }))));
  await waitFor(() => done.size === N, 10_000, `all ${N} handlers`);
  assert.ok(maxRunning >= NEEDED, `at most ${maxRunning} handlers ran at once`);
});

qtest("a second listenQueue on one handle also listens (as Deno 2.9.6's local KV)", 10_000, async (ctx) => {
  const kv = await ctx.open();
  const got = [[], []];
  const first = ctx.listen(kv, (m) => {
    got[0].push(m.n);
  });
  let second;
  assert.doesNotThrow(() => {
    second = ctx.listen(kv, (m) => {
      got[1].push(m.n);
    });
  });
  assert.equal(await stateAfter(first, 300), "pending");
  assert.equal(await stateAfter(second, 0), "pending");
  const N = 10;
  await Promise.all(Array.from({ length: N }, (_, n) => kv.enqueue(ctx.msg({ n }))));
  await waitFor(() => got[0].length + got[1].length >= N, 5_000, `all ${N} messages`);
  await sleep(200);
  assert.deepEqual([...got[0], ...got[1]].sort((a, b) => a - b), Array.from({ length: N }, (_, n) => n));
  kv.close();
  assert.equal(await stateAfter(first, 3_000), "resolved");
  assert.equal(await stateAfter(second, 3_000), "resolved");
});

// ---- Deno's local KV, the same scenarios: what the tests above hold the package to.

if (UNDER_DENO) {
  const localTest = (name, fn) =>
    test(`Deno local KV: ${name}`, { timeout: 10_000 }, async () => {
      const kv = await DenoNs.openKv(":memory:");
      const listens = [];
      try {
        await withTimeout(fn(kv, listens), 8_000, name);
      } finally {
        try {
          kv.close();
        } catch {
          // closed by the test
        }
        await withTimeout(Promise.allSettled(listens), 3_000, "listeners").catch(() => {});
      }
    });

  localTest("every sample value is delivered deep-equal", async (kv, listens) => {
    const values = sampleValues();
    const got = new Map();
    listens.push(kv.listenQueue((m) => {
      got.set(m.i, m.v);
    }));
    for (const [i, [, v]] of values.entries()) await kv.enqueue({ i, v });
    await waitFor(() => got.size === values.length, 5_000, "all values");
    for (const [i, [name, v, check]] of values.entries()) {
      if (check) assert.ok(check(got.get(i)), name);
      else assertDeep(got.get(i), v, name);
    }
  });

  localTest("a second listenQueue does not throw; both stay pending; close resolves both", async (kv, listens) => {
    const seen = [];
    const first = kv.listenQueue((m) => {
      seen.push(m);
    });
    const second = kv.listenQueue((m) => {
      seen.push(m);
    });
    listens.push(first, second);
    assert.equal(await stateAfter(first, 300), "pending");
    assert.equal(await stateAfter(second, 0), "pending");
    for (let n = 0; n < 5; n++) await kv.enqueue(n);
    await waitFor(() => seen.length === 5, 5_000, "all messages");
    kv.close();
    assert.equal(await stateAfter(first, 3_000), "resolved");
    assert.equal(await stateAfter(second, 3_000), "resolved");
  });

  // Deno 2.9.6 does NOT wait: listenQueue resolves at close() while the handler is still
  // running (it runs on to its end). The package waits for running handlers first (mod.d.ts:
  // "resolves (after running handlers finished)") — a deliberate difference, tested above.
  localTest("close() while a handler runs: listenQueue resolves at once, the handler runs on", async (kv, listens) => {
    let started = false;
    let finished = false;
    let finishedWhenResolved;
    const listening = kv.listenQueue(async () => {
      started = true;
      await sleep(300);
      finished = true;
    });
    listens.push(listening);
    await kv.enqueue("m");
    await waitFor(() => started, 3_000, "the handler to start");
    kv.close();
    await withTimeout(listening.then(() => (finishedWhenResolved = finished)), 3_000, "listenQueue to resolve");
    assert.equal(finishedWhenResolved, false, "Deno now waits for running handlers: update the package test's note");
    await waitFor(() => finished, 3_000, "the handler to run to its end after close()");
  });

  localTest("listenQueue after close rejects with Error 'Queue already closed'", async (kv) => {
    kv.close();
    const error = await kv.listenQueue(() => {}).then(() => null, (e) => e);
    assert.equal(error?.constructor, Error);
    assert.equal(error.message, "Queue already closed");
  });

  localTest("backoffSchedule [100, 200, 400]: exactly 4 attempts, then keysIfUndelivered", async (kv, listens) => {
    const times = [];
    listens.push(kv.listenQueue(() => {
      times.push(Date.now());
      throw new Error("always fails");
    }));
    await kv.enqueue("m", { backoffSchedule: [100, 200, 400], keysIfUndelivered: [["dead"]] });
    await waitFor(async () => (await kv.get(["dead"])).value === "m", 5_000, "the dead letter");
    await sleep(500);
    assert.equal(times.length, 4);
    // Deno keeps to the intervals closely, as the package's tests above require of it too.
    for (const [i, ms] of [100, 200, 400].entries()) {
      const gap = times[i + 1] - times[i];
      assert.ok(gap >= ms - 5 && gap <= ms + 300, `retry ${i + 1}: ${gap} ms for ${ms}`);
    }
  });

  localTest("backoffSchedule []: one attempt, then keysIfUndelivered", async (kv, listens) => {
    let attempts = 0;
    listens.push(kv.listenQueue(() => {
      attempts++;
      throw new Error("fails");
    }));
    await kv.enqueue("m", { backoffSchedule: [], keysIfUndelivered: [["dead"]] });
    await waitFor(async () => (await kv.get(["dead"])).value === "m", 5_000, "the dead letter");
    await sleep(400);
    assert.equal(attempts, 1);
  });
}
