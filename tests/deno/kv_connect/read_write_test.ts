// get / getMany / set / delete and versionstamps.

import { assert, assertEquals, assertRejects, assertThrowsOrRejects } from "./assert.ts";
import { assertVersionstamp, kvTest, pollUntil } from "./helpers.ts";

kvTest("get: a missing key gives {key, value: null, versionstamp: null}", async (kv, p) => {
  const key = [...p, "missing", 1n, true];
  const e = await kv.get(key);
  assertEquals(e, { key, value: null, versionstamp: null });
});

kvTest("set: returns {ok: true, versionstamp} and get returns that entry", async (kv, p) => {
  const key = [...p, "k"];
  const res = await kv.set(key, { v: 1 });
  assertEquals(res.ok, true);
  assertVersionstamp(res.versionstamp);
  const e = await kv.get(key);
  assertEquals(e, { key, value: { v: 1 }, versionstamp: res.versionstamp });
});

kvTest("delete: removes the key; deleting a missing key is a no-op", async (kv, p) => {
  const key = [...p, "k"];
  await kv.set(key, 1);
  assertEquals(await kv.delete(key), undefined);
  assertEquals(await kv.get(key), { key, value: null, versionstamp: null });
  assertEquals(await kv.delete(key), undefined);
  assertEquals(await kv.delete([...p, "never existed"]), undefined);
  // Deleting one key leaves its neighbours alone.
  await kv.set([...p, "a"], "a");
  await kv.set([...p, "a", "child"], "child");
  await kv.delete([...p, "a"]);
  assertEquals((await kv.get([...p, "a", "child"])).value, "child");
});

kvTest(
  "versionstamp: 20 lowercase hex chars, strictly increasing across commits",
  async (kv, p) => {
    const stamps: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await kv.set([...p, "k", i % 2], i);
      assertVersionstamp(res.versionstamp);
      stamps.push(res.versionstamp);
    }
    const del = await kv.atomic().delete([...p, "k", 0]).commit();
    assert(del.ok);
    stamps.push(del.versionstamp);
    const sum = await kv.atomic().sum([...p, "n"], 1n).commit();
    assert(sum.ok);
    stamps.push(sum.versionstamp);
    for (let i = 1; i < stamps.length; i++) {
      assert(stamps[i - 1] < stamps[i], `versionstamps must increase: ${stamps.join(", ")}`);
    }
    assert("00000000000000000000" < stamps[0], "real versionstamps are above all zeros");
    // Overwriting a key gives it the new versionstamp.
    assertEquals((await kv.get([...p, "k", 1])).versionstamp, stamps[3]);
  },
);

kvTest("versionstamp: all mutations of one atomic commit share it", async (kv, p) => {
  await kv.set([...p, "to delete"], 0);
  await kv.set([...p, "counter"], new Deno.KvU64(1n));
  const res = await kv.atomic()
    .set([...p, "a"], "a")
    .set([...p, "b", 1n], "b")
    .set([...p, "c"], new Uint8Array([1]))
    .sum([...p, "counter"], 2n)
    .max([...p, "max"], 9n)
    .delete([...p, "to delete"])
    .commit();
  assert(res.ok, "commit should succeed");
  assertVersionstamp(res.versionstamp);
  const entries = await kv.getMany([
    [...p, "a"],
    [...p, "b", 1n],
    [...p, "c"],
    [...p, "counter"],
    [...p, "max"],
  ]);
  for (const e of entries) {
    assertEquals(e.versionstamp, res.versionstamp, `versionstamp of ${String(e.key.at(-1))}`);
  }
  assertEquals((await kv.get([...p, "to delete"])).versionstamp, null);
});

kvTest("getMany: returns entries in request order, missing ones as null", async (kv, p) => {
  const r1 = await kv.set([...p, "b"], "B");
  const r2 = await kv.set([...p, "a"], "A");
  const keys = [[...p, "b"], [...p, "missing"], [...p, "a"], [...p, "b"]];
  const got = await kv.getMany(keys);
  assertEquals(got, [
    { key: keys[0], value: "B", versionstamp: r1.versionstamp },
    { key: keys[1], value: null, versionstamp: null },
    { key: keys[2], value: "A", versionstamp: r2.versionstamp },
    { key: keys[3], value: "B", versionstamp: r1.versionstamp },
  ]);
  assertEquals(await kv.getMany([]), []);
});

kvTest("getMany: 10 keys are allowed", async (kv, p) => {
  const keys = Array.from({ length: 10 }, (_, i) => [...p, i]);
  for (const k of keys.slice(0, 5)) await kv.set(k, k.at(-1));
  const got = await kv.getMany(keys);
  assertEquals(got.length, 10);
  assertEquals(got.map((e) => e.value), [0, 1, 2, 3, 4, null, null, null, null, null]);
  assertEquals(got.map((e) => e.key), keys);
});

kvTest("getMany: 11 keys are rejected", async (kv, p) => {
  const keys = Array.from({ length: 11 }, (_, i) => [...p, i]);
  await assertRejects(() => kv.getMany(keys), Error, "Too many ranges (max 10)");
});

kvTest("consistency: 'eventual' reads are accepted by get, getMany and list", async (kv, p) => {
  const key = [...p, "k"];
  const res = await kv.set(key, "v");
  // An eventual read may lag behind; it must catch up.
  assert(
    await pollUntil(
      async () => (await kv.get(key, { consistency: "eventual" })).value === "v",
      5000,
    ),
    "eventual get never saw the value",
  );
  const many = await kv.getMany([key, [...p, "missing"]], { consistency: "eventual" });
  assertEquals(many.length, 2);
  assertEquals(many[1].value, null);
  const listed = [];
  for await (const e of kv.list({ prefix: p }, { consistency: "eventual" })) listed.push(e);
  assertEquals(listed.map((e) => e.value), ["v"]);
  assertEquals(listed[0].versionstamp, res.versionstamp);
  const strong = await kv.get(key, { consistency: "strong" });
  assertEquals(strong.value, "v");
});

kvTest("get: a non-array key is a TypeError", async (kv) => {
  // deno-lint-ignore no-explicit-any
  await assertThrowsOrRejects(() => kv.get("x" as any), TypeError);
  // deno-lint-ignore no-explicit-any
  await assertThrowsOrRejects(() => kv.getMany(["x"] as any), TypeError);
  // deno-lint-ignore no-explicit-any
  await assertThrowsOrRejects(() => kv.set("x" as any, 1), TypeError);
  // deno-lint-ignore no-explicit-any
  await assertThrowsOrRejects(() => kv.delete("x" as any), TypeError);
});
