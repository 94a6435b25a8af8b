// Key parts of every type: round-trip through set/get/list and their order.

import { assert, assertEquals, assertThrowsOrRejects, show } from "./assert.ts";
import { collect, kvTest, lastParts } from "./helpers.ts";

/** Sets `[...p, part] = i` for every part (in the given order), then checks get and list. */
async function roundTrip(kv: Deno.Kv, p: Deno.KvKey, parts: Deno.KvKeyPart[]): Promise<void> {
  for (const [i, part] of parts.entries()) {
    const res = await kv.set([...p, part], i);
    assertEquals(res.ok, true, `set ${show(part)}`);
  }
  for (const [i, part] of parts.entries()) {
    const e = await kv.get([...p, part]);
    assertEquals(e.key, [...p, part], `key read back for ${show(part)}`);
    assertEquals(e.value, i, `value of key part ${show(part)}`);
  }
  const listed = await collect(kv.list({ prefix: p }));
  assertEquals(listed.length, parts.length, "number of distinct keys listed");
}

/** Inserts the parts in a scrambled order and checks that list returns them in `sorted` order. */
async function assertOrder(kv: Deno.Kv, p: Deno.KvKey, sorted: Deno.KvKeyPart[]): Promise<void> {
  const scrambled = sorted.map((part, i) => ({ part, i }))
    .sort((a, b) => ((a.i * 7919) % 13) - ((b.i * 7919) % 13) || a.i - b.i);
  for (const { part, i } of scrambled) await kv.set([...p, part], i);
  const fwd = await collect(kv.list<number>({ prefix: p }));
  assertEquals(lastParts(fwd), sorted, "forward order");
  assertEquals(fwd.map((e) => e.value), sorted.map((_, i) => i), "values in forward order");
  const rev = await collect(kv.list({ prefix: p }, { reverse: true }));
  assertEquals(lastParts(rev), [...sorted].reverse(), "reverse order");
}

kvTest("keys: Uint8Array parts round-trip (incl. empty and zero bytes)", async (kv, p) => {
  await roundTrip(kv, p, [
    new Uint8Array([]),
    new Uint8Array([0]),
    new Uint8Array([0, 0]),
    new Uint8Array([0, 0xff]),
    new Uint8Array([1, 0, 2]),
    new Uint8Array([0xff, 0xff]),
    new Uint8Array(300).map((_, i) => i & 0xff),
  ]);
});

kvTest("keys: string parts round-trip (incl. empty, unicode, NUL)", async (kv, p) => {
  await roundTrip(kv, p, [
    "",
    "a",
    "a\0",
    "\0",
    "a\0b\0\0",
    "Grüße",
    "日本語",
    "😀🎉",
    "\uffff",
    "x".repeat(500),
  ]);
});

kvTest("keys: bigint parts round-trip (incl. negative and huge)", async (kv, p) => {
  await roundTrip(kv, p, [
    0n,
    1n,
    -1n,
    255n,
    256n,
    -256n,
    2n ** 63n,
    2n ** 64n - 1n,
    2n ** 64n,
    -(2n ** 64n),
    2n ** 1000n + 12345n,
    -(2n ** 1000n) - 12345n,
    2n ** 2000n,
  ]);
});

kvTest("keys: number parts round-trip (incl. -0, NaN, ±Infinity)", async (kv, p) => {
  await roundTrip(kv, p, [
    0,
    -0,
    1,
    -1,
    3.14,
    -3.14,
    Number.MIN_VALUE,
    -Number.MIN_VALUE,
    Number.MAX_VALUE,
    Number.MAX_SAFE_INTEGER,
    Infinity,
    -Infinity,
    NaN,
  ]);
});

kvTest("keys: boolean parts round-trip", async (kv, p) => {
  await roundTrip(kv, p, [false, true]);
});

kvTest("keys: -0 and 0 are different keys", async (kv, p) => {
  await kv.set([...p, 0], "zero");
  await kv.set([...p, -0], "minus zero");
  const pos = await kv.get([...p, 0]);
  const neg = await kv.get([...p, -0]);
  assertEquals(pos.value, "zero");
  assertEquals(neg.value, "minus zero");
  assert(Object.is(neg.key[neg.key.length - 1], -0), "key part read back is -0");
  assert(Object.is(pos.key[pos.key.length - 1], 0), "key part read back is +0");
  const listed = await collect(kv.list({ prefix: p }));
  assertEquals(lastParts(listed), [-0, 0]);
});

kvTest("keys: a key of several parts of mixed types round-trips", async (kv, p) => {
  const key = [...p, new Uint8Array([0, 1]), "s\0", -5n, 2.5, true, false, "end"];
  await kv.set(key, "mixed");
  const e = await kv.get(key);
  assertEquals(e.key, key);
  assertEquals(e.value, "mixed");
  // A longer key is not the same key as its prefix, nor the other way around.
  assertEquals((await kv.get(key.slice(0, -1))).value, null);
  assertEquals((await kv.get([...key, 0])).value, null);
});

kvTest("keys: type order is bytes < string < bigint < number < false < true", async (kv, p) => {
  await assertOrder(kv, p, [new Uint8Array([1]), "a", 1n, 3.14, false, true]);
});

kvTest("keys: type order holds for extreme values of each type", async (kv, p) => {
  await assertOrder(kv, p, [
    new Uint8Array([]),
    new Uint8Array([0xff, 0xff, 0xff]),
    "",
    "\uffff\uffff",
    -(2n ** 2000n),
    2n ** 2000n,
    -Infinity,
    NaN,
    false,
    true,
  ]);
});

kvTest("keys: Uint8Array parts order lexicographically by bytes", async (kv, p) => {
  await assertOrder(kv, p, [
    new Uint8Array([]),
    new Uint8Array([0]),
    new Uint8Array([0, 0]),
    new Uint8Array([0, 1]),
    new Uint8Array([0, 0xff]),
    new Uint8Array([1]),
    new Uint8Array([1, 0]),
    new Uint8Array([2]),
    new Uint8Array([0xff]),
  ]);
});

kvTest("keys: string parts order by UTF-8 bytes", async (kv, p) => {
  // "\uffff" (EF BF BF) sorts before "😀" (F0 9F 98 80) in UTF-8, unlike in UTF-16.
  await assertOrder(kv, p, [
    "",
    "\0",
    "A",
    "Z",
    "a",
    "a\0",
    "a\0\0",
    "ab",
    "b",
    "é",
    "\uffff",
    "😀",
  ]);
});

kvTest("keys: number parts order by value (-Infinity … -0 < 0 … Infinity < NaN)", async (kv, p) => {
  await assertOrder(kv, p, [
    -Infinity,
    -Number.MAX_VALUE,
    -1e10,
    -3.14,
    -1,
    -Number.MIN_VALUE,
    -0,
    0,
    Number.MIN_VALUE,
    0.5,
    1,
    2,
    3.14,
    10,
    1e10,
    Number.MAX_VALUE,
    Infinity,
    NaN,
  ]);
});

kvTest("keys: bigint parts order by value", async (kv, p) => {
  await assertOrder(kv, p, [
    -(2n ** 2000n),
    -(2n ** 64n) - 1n,
    -(2n ** 64n),
    -(2n ** 64n) + 1n,
    -(2n ** 63n),
    -65536n,
    -256n,
    -255n,
    -2n,
    -1n,
    0n,
    1n,
    2n,
    255n,
    256n,
    65536n,
    2n ** 63n,
    2n ** 64n - 1n,
    2n ** 64n,
    2n ** 64n + 1n,
    2n ** 100n,
    2n ** 2000n,
  ]);
});

kvTest("keys: integers as bigint and as number are different keys", async (kv, p) => {
  await kv.set([...p, 1n], "bigint");
  await kv.set([...p, 1], "number");
  await kv.set([...p, "1"], "string");
  assertEquals((await kv.get([...p, 1n])).value, "bigint");
  assertEquals((await kv.get([...p, 1])).value, "number");
  assertEquals((await kv.get([...p, "1"])).value, "string");
});

kvTest("keys: invalid key parts and an empty key are rejected by the client", async (kv, p) => {
  // deno-lint-ignore no-explicit-any
  const bad: any[] = [null, undefined, {}, new Date(0), new ArrayBuffer(1), ["nested"]];
  for (const part of bad) {
    await assertThrowsOrRejects(() => kv.set([...p, part], 1));
    await assertThrowsOrRejects(() => kv.get([...p, part]));
  }
  await assertThrowsOrRejects(() => kv.set([], 1));
  // deno-lint-ignore no-explicit-any
  await assertThrowsOrRejects(() => kv.get("not an array" as any), TypeError);
});
