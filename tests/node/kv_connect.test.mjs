// The npm client `@deno/kv` (pure-JS KV Connect client) from Node against `openkv serve`.
// Run by crates/openkv-cli/tests/deno_kv_npm.rs, which starts the server and sets
// KV_URL and DENO_KV_ACCESS_TOKEN. Every test uses its own key prefix and closes its kv.

import { test } from "node:test";
import assert from "node:assert/strict";
import { KvU64, openKv } from "@deno/kv";

const URL = process.env.KV_URL;
const TOKEN = process.env.DENO_KV_ACCESS_TOKEN;

async function open() {
  assert.ok(URL, "KV_URL must be set (the URL of a running `openkv serve`)");
  assert.ok(TOKEN, "DENO_KV_ACCESS_TOKEN must be set");
  return await openKv(URL, { accessToken: TOKEN });
}

/** Opens a kv, runs `fn(kv)`, and always closes the kv. */
async function withKv(fn) {
  const kv = await open();
  try {
    await fn(kv);
  } finally {
    kv.close();
  }
}

async function collect(iter) {
  const out = [];
  for await (const entry of iter) out.push(entry);
  return out;
}

/** Rejects after `ms` so a test can never hang. */
function timeout(ms, what) {
  let timer;
  const promise = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return { promise, clear: () => clearTimeout(timer) };
}

async function withTimeout(promise, ms, what) {
  const t = timeout(ms, what);
  try {
    return await Promise.race([promise, t.promise]);
  } finally {
    t.clear();
  }
}

const VS = /^[0-9a-f]{20}$/;

test("set/get: string, object, Uint8Array, KvU64", async () => {
  await withKv(async (kv) => {
    const p = "node_setget";
    const r1 = await kv.set([p, "str"], "hello");
    assert.equal(r1.ok, true);
    assert.match(r1.versionstamp, VS);
    await kv.set([p, "obj"], { a: 1, b: [true, null, "x"], c: { d: 2.5 } });
    await kv.set([p, "bytes"], new Uint8Array([1, 2, 3, 255]));
    await kv.set([p, "u64"], new KvU64(12345678901234567890n));

    const s = await kv.get([p, "str"]);
    assert.deepEqual(s.key, [p, "str"]);
    assert.equal(s.value, "hello");
    assert.equal(s.versionstamp, r1.versionstamp);

    assert.deepEqual((await kv.get([p, "obj"])).value, { a: 1, b: [true, null, "x"], c: { d: 2.5 } });

    const b = (await kv.get([p, "bytes"])).value;
    assert.ok(b instanceof Uint8Array, `expected Uint8Array, got ${b?.constructor?.name}`);
    assert.deepEqual([...b], [1, 2, 3, 255]);

    const u = (await kv.get([p, "u64"])).value;
    assert.ok(u instanceof KvU64, `expected KvU64, got ${u?.constructor?.name}`);
    assert.equal(u.value, 12345678901234567890n);
  });
});

test("get of a missing key", async () => {
  await withKv(async (kv) => {
    const e = await kv.get(["node_missing", "nope"]);
    assert.deepEqual(e.key, ["node_missing", "nope"]);
    assert.equal(e.value, null);
    assert.equal(e.versionstamp, null);
  });
});

test("getMany keeps order and reports missing keys", async () => {
  await withKv(async (kv) => {
    const p = "node_getmany";
    await kv.set([p, "a"], 1);
    await kv.set([p, "c"], 3);
    const entries = await kv.getMany([[p, "c"], [p, "b"], [p, "a"]]);
    assert.deepEqual(entries.map((e) => e.key), [[p, "c"], [p, "b"], [p, "a"]]);
    assert.deepEqual(entries.map((e) => e.value), [3, null, 1]);
    assert.match(entries[0].versionstamp, VS);
    assert.equal(entries[1].versionstamp, null);
  });
});

test("list: prefix, limit, reverse, cursor pagination", async () => {
  await withKv(async (kv) => {
    const p = "node_list";
    const atomic = kv.atomic();
    for (let i = 0; i < 10; i++) atomic.set([p, i], `v${i}`);
    assert.equal((await atomic.commit()).ok, true);
    // A neighbour outside the prefix must not show up.
    await kv.set([p + "_other", 0], "outside");

    const all = await collect(kv.list({ prefix: [p] }));
    assert.deepEqual(all.map((e) => e.key), [...Array(10).keys()].map((i) => [p, i]));
    assert.deepEqual(all.map((e) => e.value), [...Array(10).keys()].map((i) => `v${i}`));

    const limited = await collect(kv.list({ prefix: [p] }, { limit: 3 }));
    assert.deepEqual(limited.map((e) => e.key[1]), [0, 1, 2]);

    const rev = await collect(kv.list({ prefix: [p] }, { reverse: true, limit: 4 }));
    assert.deepEqual(rev.map((e) => e.key[1]), [9, 8, 7, 6]);

    const range = await collect(kv.list({ start: [p, 3], end: [p, 6] }));
    assert.deepEqual(range.map((e) => e.key[1]), [3, 4, 5]);

    // Cursor pagination, forward, in pages of 4 (small batches exercise the client's paging).
    const seen = [];
    let cursor;
    for (let page = 0; page < 10; page++) {
      const iter = kv.list({ prefix: [p] }, { limit: 4, cursor, batchSize: 2 });
      const got = await collect(iter);
      seen.push(...got.map((e) => e.key[1]));
      if (got.length < 4) break;
      cursor = iter.cursor;
      assert.ok(cursor, "cursor after a full page");
    }
    assert.deepEqual(seen, [...Array(10).keys()]);

    // Cursor pagination in reverse.
    const iter = kv.list({ prefix: [p] }, { limit: 3, reverse: true });
    const first = await collect(iter);
    assert.deepEqual(first.map((e) => e.key[1]), [9, 8, 7]);
    const next = await collect(kv.list({ prefix: [p] }, { limit: 3, reverse: true, cursor: iter.cursor }));
    assert.deepEqual(next.map((e) => e.key[1]), [6, 5, 4]);
  });
});

test("atomic check: insert-if-absent, stale check fails", async () => {
  await withKv(async (kv) => {
    const p = "node_check";
    const key = [p, "k"];
    const ins = await kv.atomic().check({ key, versionstamp: null }).set(key, "first").commit();
    assert.equal(ins.ok, true);
    assert.match(ins.versionstamp, VS);

    const again = await kv.atomic().check({ key, versionstamp: null }).set(key, "second").commit();
    assert.deepEqual(again, { ok: false });
    assert.equal((await kv.get(key)).value, "first");

    const cur = await kv.get(key);
    const upd = await kv.atomic().check(cur).set(key, "updated").commit();
    assert.equal(upd.ok, true);

    // `cur` is now stale.
    const stale = await kv.atomic().check(cur).set(key, "stale write").set([p, "side"], 1).commit();
    assert.deepEqual(stale, { ok: false });
    assert.equal((await kv.get(key)).value, "updated");
    assert.equal((await kv.get([p, "side"])).value, null);
  });
});

test("sum/min/max on KvU64", async () => {
  await withKv(async (kv) => {
    const p = "node_u64";
    // sum on an absent key starts from 0.
    assert.equal((await kv.atomic().sum([p, "s"], 5n).commit()).ok, true);
    assert.equal((await kv.get([p, "s"])).value.value, 5n);
    await kv.atomic().sum([p, "s"], 10n).commit();
    assert.equal((await kv.get([p, "s"])).value.value, 15n);
    // sum wraps around at 2^64.
    await kv.set([p, "w"], new KvU64((1n << 64n) - 1n));
    await kv.atomic().sum([p, "w"], 2n).commit();
    assert.equal((await kv.get([p, "w"])).value.value, 1n);

    await kv.set([p, "m"], new KvU64(10n));
    await kv.atomic().min([p, "m"], 20n).commit();
    assert.equal((await kv.get([p, "m"])).value.value, 10n);
    await kv.atomic().min([p, "m"], 3n).commit();
    assert.equal((await kv.get([p, "m"])).value.value, 3n);
    await kv.atomic().max([p, "m"], 2n).commit();
    assert.equal((await kv.get([p, "m"])).value.value, 3n);
    await kv.atomic().max([p, "m"], 99n).commit();
    assert.equal((await kv.get([p, "m"])).value.value, 99n);

    // min/max on an absent key store the operand.
    await kv.atomic().min([p, "absent_min"], 7n).max([p, "absent_max"], 8n).commit();
    assert.equal((await kv.get([p, "absent_min"])).value.value, 7n);
    assert.equal((await kv.get([p, "absent_max"])).value.value, 8n);
    const v = (await kv.get([p, "absent_max"])).value;
    assert.ok(v instanceof KvU64);
  });
});

test("a failing sum on a non-U64 value rejects and writes nothing", async () => {
  await withKv(async (kv) => {
    const p = "node_badsum";
    await kv.set([p, "str"], "not a number");
    const before = await kv.get([p, "str"]);
    await assert.rejects(
      kv.atomic().set([p, "other"], "should not be written").sum([p, "str"], 1n).commit(),
      /non-U64/,
    );
    assert.equal((await kv.get([p, "other"])).value, null);
    const after = await kv.get([p, "str"]);
    assert.equal(after.value, "not a number");
    assert.equal(after.versionstamp, before.versionstamp);
  });
});

test("delete", async () => {
  await withKv(async (kv) => {
    const p = "node_delete";
    await kv.set([p, "a"], "x");
    await kv.set([p, "b"], "y");
    await kv.delete([p, "a"]);
    assert.equal((await kv.get([p, "a"])).value, null);
    assert.equal((await kv.get([p, "a"])).versionstamp, null);
    assert.equal((await kv.get([p, "b"])).value, "y");
    // Deleting a missing key is fine.
    await kv.delete([p, "never"]);
    const r = await kv.atomic().delete([p, "b"]).commit();
    assert.equal(r.ok, true);
    assert.deepEqual(await collect(kv.list({ prefix: [p] })), []);
  });
});

test("versionstamps strictly increase", async () => {
  await withKv(async (kv) => {
    const p = "node_vs";
    const stamps = [];
    for (let i = 0; i < 5; i++) {
      const r = await kv.set([p, i % 2], i);
      assert.equal(r.ok, true);
      assert.match(r.versionstamp, VS);
      stamps.push(r.versionstamp);
    }
    for (let i = 1; i < stamps.length; i++) {
      assert.ok(stamps[i] > stamps[i - 1], `${stamps[i]} > ${stamps[i - 1]}`);
    }
    assert.equal((await kv.get([p, 0])).versionstamp, stamps[4]);
    assert.equal((await kv.get([p, 1])).versionstamp, stamps[3]);
  });
});

test("watch: first state, then a change", async () => {
  await withKv(async (kv) => {
    const p = "node_watch";
    const a = [p, "a"];
    const b = [p, "b"];
    await kv.set(a, "a0");
    const stream = kv.watch([a, b]);
    const reader = stream.getReader();
    try {
      const first = await withTimeout(reader.read(), 10_000, "first watch state");
      assert.equal(first.done, false);
      assert.deepEqual(first.value.map((e) => e.value), ["a0", null]);
      assert.match(first.value[0].versionstamp, VS);
      assert.equal(first.value[1].versionstamp, null);

      const w = await kv.set(b, "b1");
      // Read until the change shows up (a server may repeat an unchanged state).
      let state;
      const deadline = Date.now() + 10_000;
      for (;;) {
        const left = deadline - Date.now();
        assert.ok(left > 0, "timed out waiting for the watched change");
        const next = await withTimeout(reader.read(), left, "watch change");
        assert.equal(next.done, false);
        state = next.value;
        if (state[1].value !== null) break;
      }
      assert.deepEqual(state.map((e) => e.value), ["a0", "b1"]);
      assert.equal(state[1].versionstamp, w.versionstamp);
    } finally {
      await reader.cancel().catch(() => {});
    }
  });
});

test("enqueue is sent in AtomicWrite.enqueues and commits", async () => {
  await withKv(async (kv) => {
    const p = "node_enqueue";
    const r = await kv.enqueue({ job: "hello", n: 1 });
    assert.equal(r.ok, true);
    assert.match(r.versionstamp, VS);

    const r2 = await kv.enqueue("delayed", { delay: 60_000, keysIfUndelivered: [[p, "undelivered"]] });
    assert.equal(r2.ok, true);

    const r3 = await kv.atomic().set([p, "with_enqueue"], 1).enqueue("in atomic").commit();
    assert.equal(r3.ok, true);
    assert.ok(r3.versionstamp > r.versionstamp);
    assert.equal((await kv.get([p, "with_enqueue"])).versionstamp, r3.versionstamp);
  });
});
