// kv.atomic(): checks, mutation order, sum/min/max, versionstamped keys, all-or-nothing.

import { assert, assertEquals, assertRejects, assertThrowsOrRejects } from "./assert.ts";
import { assertVersionstamp, collect, kvTest } from "./helpers.ts";

const u64 = (n: bigint) => new Deno.KvU64(n);

kvTest("atomic: check with null inserts only if absent", async (kv, p) => {
  const key = [...p, "k"];
  const first = await kv.atomic().check({ key, versionstamp: null }).set(key, "first").commit();
  assert(first.ok, "first insert succeeds");
  assertVersionstamp(first.versionstamp);
  const second = await kv.atomic().check({ key, versionstamp: null }).set(key, "second").commit();
  assertEquals(second, { ok: false });
  assertEquals(await kv.get(key), { key, value: "first", versionstamp: first.versionstamp });
});

kvTest("atomic: check with the current versionstamp succeeds", async (kv, p) => {
  const key = [...p, "k"];
  const r1 = await kv.set(key, 1);
  const e = await kv.get(key);
  const r2 = await kv.atomic().check(e).set(key, 2).commit();
  assert(r2.ok, "check with the current versionstamp passes");
  assert(r1.versionstamp < r2.versionstamp);
  assertEquals((await kv.get(key)).value, 2);
});

kvTest("atomic: check with a stale versionstamp fails and writes nothing", async (kv, p) => {
  const key = [...p, "k"];
  const stale = await kv.get(key); // missing, versionstamp null
  const r1 = await kv.set(key, "v1");
  const old = await kv.get(key);
  await kv.set(key, "v2");
  const res = await kv.atomic()
    .check(old)
    .set(key, "v3")
    .set([...p, "other"], "should not exist")
    .sum([...p, "n"], 1n)
    .commit();
  assertEquals(res, { ok: false });
  assertEquals((await kv.get(key)).value, "v2");
  assertEquals((await kv.get([...p, "other"])).versionstamp, null);
  assertEquals((await kv.get([...p, "n"])).versionstamp, null);
  // A check that a now-existing key is absent fails too.
  const res2 = await kv.atomic().check(stale).set([...p, "other"], 1).commit();
  assertEquals(res2, { ok: false });
  assertEquals((await kv.get([...p, "other"])).versionstamp, null);
  // Checks on a deleted key with its old versionstamp fail.
  await kv.delete(key);
  const res3 = await kv.atomic().check({ key, versionstamp: r1.versionstamp }).commit();
  assertEquals(res3, { ok: false });
});

kvTest("atomic: one failing check among several fails the whole commit", async (kv, p) => {
  const a = await kv.set([...p, "a"], "a");
  await kv.set([...p, "b"], "b");
  const res = await kv.atomic()
    .check({ key: [...p, "a"], versionstamp: a.versionstamp })
    .check({ key: [...p, "b"], versionstamp: null })
    .set([...p, "c"], "c")
    .commit();
  assertEquals(res, { ok: false });
  assertEquals((await kv.get([...p, "c"])).versionstamp, null);
});

kvTest("atomic: 10 checks are allowed", async (kv, p) => {
  const op = kv.atomic();
  for (let i = 0; i < 10; i++) op.check({ key: [...p, "c", i], versionstamp: null });
  const res = await op.set([...p, "done"], true).commit();
  assert(res.ok, "10 checks should commit");
  assertEquals((await kv.get([...p, "done"])).value, true);
});

// denokv refuses more than 10 checks ("Too many checks included in atomic write"), although the
// Deno client allows 100 (KV-CONNECT.md §8).
kvTest("atomic: 100 checks are allowed (client limit; denokv defect)", async (kv, p) => {
  const op = kv.atomic();
  for (let i = 0; i < 100; i++) op.check({ key: [...p, "c", i], versionstamp: null });
  const res = await op.set([...p, "done"], true).commit();
  assert(res.ok, "100 checks should commit");
  assertEquals((await kv.get([...p, "done"])).value, true);
});

kvTest("atomic: 101 checks are rejected by the client", async (kv, p) => {
  const op = kv.atomic();
  for (let i = 0; i < 101; i++) op.check({ key: [...p, "c", i], versionstamp: null });
  await assertRejects(() => op.commit(), Error, "Too many checks (max 100)");
});

kvTest("atomic: a malformed check versionstamp is rejected by the client", async (kv, p) => {
  for (const versionstamp of ["", "zz", "0000000000000000000g", "000000000000000000001"]) {
    await assertThrowsOrRejects(() => kv.atomic().check({ key: [...p], versionstamp }).commit());
  }
});

kvTest("atomic: set then delete of the same key → deleted", async (kv, p) => {
  const key = [...p, "k"];
  const res = await kv.atomic().set(key, "x").delete(key).commit();
  assert(res.ok);
  assertEquals(await kv.get(key), { key, value: null, versionstamp: null });
});

kvTest("atomic: delete then set of the same key → set", async (kv, p) => {
  const key = [...p, "k"];
  await kv.set(key, "old");
  const res = await kv.atomic().delete(key).set(key, "new").commit();
  assert(res.ok);
  assertEquals(await kv.get(key), { key, value: "new", versionstamp: res.versionstamp });
});

kvTest(
  "atomic: later mutations of one key see earlier ones (set, sum, sum, min)",
  async (kv, p) => {
    const key = [...p, "n"];
    const res = await kv.atomic()
      .set(key, u64(10n))
      .sum(key, 5n)
      .sum(key, 7n)
      .set([...p, "s"], "a")
      .set([...p, "s"], "b")
      .commit();
    assert(res.ok);
    assertEquals((await kv.get(key)).value, u64(22n));
    assertEquals((await kv.get([...p, "s"])).value, "b");
    await kv.atomic().max(key, 30n).min(key, 25n).commit();
    assertEquals((await kv.get(key)).value, u64(25n));
  },
);

kvTest("atomic: mutate() accepts set/delete/sum/min/max objects", async (kv, p) => {
  const res = await kv.atomic().mutate(
    { type: "set", key: [...p, "s"], value: "v" },
    { type: "set", key: [...p, "d"], value: "gone" },
    { type: "delete", key: [...p, "d"] },
    { type: "sum", key: [...p, "sum"], value: u64(3n) },
    { type: "min", key: [...p, "min"], value: u64(4n) },
    { type: "max", key: [...p, "max"], value: u64(5n) },
  ).commit();
  assert(res.ok);
  const got = await kv.getMany([
    [...p, "s"],
    [...p, "d"],
    [...p, "sum"],
    [...p, "min"],
    [...p, "max"],
  ]);
  assertEquals(got.map((e) => e.value), ["v", null, u64(3n), u64(4n), u64(5n)]);
  // Invalid mutations are refused before anything is sent.
  await assertThrowsOrRejects(() =>
    // deno-lint-ignore no-explicit-any
    kv.atomic().mutate({ type: "delete", key: [...p, "x"], value: 1 } as any).commit()
  );
  await assertThrowsOrRejects(() =>
    // deno-lint-ignore no-explicit-any
    kv.atomic().mutate({ type: "sum", key: [...p, "x"] } as any).commit()
  );
  await assertThrowsOrRejects(() =>
    // deno-lint-ignore no-explicit-any
    kv.atomic().mutate({ type: "bogus", key: [...p, "x"], value: 1 } as any).commit()
  );
});

kvTest("atomic: sum on KvU64 (missing key → operand; wraps mod 2^64)", async (kv, p) => {
  const key = [...p, "n"];
  assert((await kv.atomic().sum(key, 5n).commit()).ok);
  assertEquals((await kv.get(key)).value, u64(5n));
  assert((await kv.atomic().sum(key, 10n).commit()).ok);
  assertEquals((await kv.get(key)).value, u64(15n));
  await kv.set(key, u64(2n ** 64n - 1n));
  assert((await kv.atomic().sum(key, 2n).commit()).ok);
  assertEquals((await kv.get(key)).value, u64(1n), "sum wraps around");
  assert((await kv.atomic().sum(key, 2n ** 64n - 1n).commit()).ok);
  assertEquals((await kv.get(key)).value, u64(0n), "adding 2^64-1 is subtracting 1");
  assert((await kv.atomic().mutate({ type: "sum", key, value: u64(0n) }).commit()).ok);
  assertEquals((await kv.get(key)).value, u64(0n));
});

kvTest("atomic: min on KvU64 (missing key → operand)", async (kv, p) => {
  const key = [...p, "n"];
  assert((await kv.atomic().min(key, 10n).commit()).ok);
  assertEquals((await kv.get(key)).value, u64(10n));
  await kv.atomic().min(key, 20n).commit();
  assertEquals((await kv.get(key)).value, u64(10n));
  await kv.atomic().min(key, 3n).commit();
  assertEquals((await kv.get(key)).value, u64(3n));
  await kv.atomic().min(key, 0n).commit();
  assertEquals((await kv.get(key)).value, u64(0n));
});

kvTest("atomic: max on KvU64 (missing key → operand)", async (kv, p) => {
  const key = [...p, "n"];
  assert((await kv.atomic().max(key, 10n).commit()).ok);
  assertEquals((await kv.get(key)).value, u64(10n));
  await kv.atomic().max(key, 3n).commit();
  assertEquals((await kv.get(key)).value, u64(10n));
  await kv.atomic().max(key, 2n ** 64n - 1n).commit();
  assertEquals((await kv.get(key)).value, u64(2n ** 64n - 1n));
});

kvTest("atomic: sum/min/max on a non-U64 value reject the commit", async (kv, p) => {
  const key = [...p, "s"];
  const orig = await kv.set(key, "a string");
  await kv.set([...p, "num"], 5);
  await kv.set([...p, "bytes"], new Uint8Array(8));
  for (const k of [key, [...p, "num"], [...p, "bytes"]]) {
    for (const m of ["sum", "min", "max"] as const) {
      await assertRejects(
        () => kv.atomic()[m](k, 1n).commit(),
        Error,
        `Failed to perform '${m}' mutation on a non-U64 value in the database`,
      );
    }
  }
  assertEquals(await kv.get(key), { key, value: "a string", versionstamp: orig.versionstamp });
  assertEquals((await kv.get([...p, "num"])).value, 5);
});

// denokv (and Deno's local SQLite backend, same code) applies the mutations before the failing
// one and commits them (KV-CONNECT.md §8); an atomic write must be all or nothing.
kvTest("atomic: failing sum rolls back earlier mutations (denokv defect)", async (kv, p) => {
  await kv.set([...p, "s"], "not a u64");
  const before = await kv.set([...p, "existing"], "old");
  await assertRejects(
    () =>
      kv.atomic()
        .set([...p, "earlier"], "must not be written")
        .set([...p, "existing"], "must not be overwritten")
        .delete([...p, "s"])
        .set([...p, "s"], "still not a u64")
        .sum([...p, "s"], 1n)
        .commit(),
    Error,
    "non-U64",
  );
  assertEquals(
    (await kv.get([...p, "earlier"])).value,
    null,
    "a set before the failing sum was committed although the atomic write failed",
  );
  assertEquals(
    await kv.get([...p, "existing"]),
    { key: [...p, "existing"], value: "old", versionstamp: before.versionstamp },
    "an overwrite before the failing sum was committed although the atomic write failed",
  );
  assertEquals((await kv.get([...p, "s"])).value, "not a u64");
});

kvTest("atomic: versionstamped key via kv.set(…commitVersionstamp())", async (kv, p) => {
  const res = await kv.set([...p, kv.commitVersionstamp()], "vs");
  assert(res.ok);
  const got = await collect(kv.list({ prefix: p }));
  assertEquals(got.length, 1);
  assertEquals(got[0].key, [...p, res.versionstamp]);
  assertEquals(got[0].key.at(-1), res.versionstamp, "key suffix is the commit versionstamp");
  assertEquals(got[0].versionstamp, res.versionstamp);
  assertEquals(got[0].value, "vs");
  assertEquals((await kv.get([...p, res.versionstamp])).value, "vs");
});

kvTest("atomic: versionstamped key via atomic().set(…commitVersionstamp())", async (kv, p) => {
  const res = await kv.atomic()
    .set([...p, "log", kv.commitVersionstamp()], "first")
    .set([...p, "other", kv.commitVersionstamp()], { n: 2 })
    .set([...p, "plain"], "plain")
    .commit();
  assert(res.ok);
  const log = await collect(kv.list({ prefix: [...p, "log"] }));
  assertEquals(log.map((e) => e.key), [[...p, "log", res.versionstamp]]);
  assertEquals(log[0].value, "first");
  const other = await collect(kv.list({ prefix: [...p, "other"] }));
  assertEquals(other.map((e) => e.key), [[...p, "other", res.versionstamp]]);
  assertEquals((await kv.get([...p, "plain"])).versionstamp, res.versionstamp);
  // Later commits append in versionstamp order.
  const res2 = await kv.atomic().set([...p, "log", kv.commitVersionstamp()], "second").commit();
  assert(res2.ok);
  const log2 = await collect(kv.list<string>({ prefix: [...p, "log"] }));
  assertEquals(log2.map((e) => e.value), ["first", "second"]);
  assertEquals(log2[1].key.at(-1), res2.versionstamp);
});

kvTest("atomic: commitVersionstamp() not as the last part is rejected", async (kv, p) => {
  await assertThrowsOrRejects(() => kv.set([...p, kv.commitVersionstamp(), "after"], 1));
});

kvTest("atomic: an empty atomic commit succeeds", async (kv) => {
  const res = await kv.atomic().commit();
  assert(res.ok);
  assertVersionstamp(res.versionstamp);
});

kvTest("atomic: set with expireIn inside an atomic commit", async (kv, p) => {
  const res = await kv.atomic().set([...p, "k"], "v", { expireIn: 60_000 }).commit();
  assert(res.ok);
  assertEquals((await kv.get([...p, "k"])).value, "v");
});

kvTest("atomic: awaiting an AtomicOperation without commit() throws", async (kv, p) => {
  await assertThrowsOrRejects(
    // deno-lint-ignore no-explicit-any
    async () => await (kv.atomic().set([...p, "k"], 1) as any),
    Error,
    "commit",
  );
});
