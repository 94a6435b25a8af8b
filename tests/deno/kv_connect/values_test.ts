// Values: V8-serialized values, raw bytes and KvU64 round-trip through the server unchanged.

import { assert, assertEquals, assertThrowsOrRejects, show } from "./assert.ts";
import { kvTest } from "./helpers.ts";

async function roundTrip(
  kv: Deno.Kv,
  p: Deno.KvKey,
  cases: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(cases)) {
    const res = await kv.set([...p, name], value);
    assertEquals(res.ok, true, `set ${name}`);
  }
  // Read back in one go as well as one by one.
  for (const [name, value] of Object.entries(cases)) {
    const e = await kv.get([...p, name]);
    assert(e.versionstamp !== null, `${name} should exist`);
    assertEquals(e.value, value, `value ${name} (${show(value)})`);
    out[name] = e.value;
  }
  return out;
}

kvTest("values: strings round-trip", async (kv, p) => {
  await roundTrip(kv, p, {
    empty: "",
    ascii: "hello world",
    unicode: "Grüße, 日本語, 😀",
    nul: "a\0b",
    lone_surrogate: "\ud800x",
    long: "y".repeat(10_000),
  });
});

kvTest("values: numbers and bigints round-trip (incl. -0, NaN, ±Infinity)", async (kv, p) => {
  await roundTrip(kv, p, {
    zero: 0,
    negzero: -0,
    int: 42,
    negint: -7,
    float: 3.14159,
    max: Number.MAX_VALUE,
    min: Number.MIN_VALUE,
    nan: NaN,
    inf: Infinity,
    neginf: -Infinity,
    smi_edge: 2 ** 31,
    bigint: 12345678901234567890n,
    negbigint: -(2n ** 200n),
  });
});

kvTest("values: booleans, null and undefined round-trip", async (kv, p) => {
  const got = await roundTrip(kv, p, { t: true, f: false, nul: null, undef: undefined });
  assertEquals(got.undef, undefined);
  // A stored null is an existing entry, unlike a missing key.
  const e = await kv.get([...p, "nul"]);
  assertEquals(e.value, null);
  assert(e.versionstamp !== null, "a stored null has a versionstamp");
});

kvTest("values: objects and arrays round-trip", async (kv, p) => {
  const sparse: unknown[] = [1, , 3]; // a hole at index 1
  await roundTrip(kv, p, {
    empty_obj: {},
    obj: { a: 1, b: "two", c: [3], d: { e: null } },
    empty_arr: [],
    arr: [1, "two", 3n, null, undefined, true],
    sparse,
    nested: { level1: { level2: { level3: { level4: [[[["deep"]]]] } } } },
  });
});

kvTest("values: Map, Set, Date, RegExp and boxed values round-trip", async (kv, p) => {
  const got = await roundTrip(kv, p, {
    map: new Map<unknown, unknown>([["a", 1], [2, "b"], [3n, { c: true }]]),
    set: new Set<unknown>([1, "a", 2n]),
    date: new Date(1700000000123),
    invalid_date: new Date(NaN),
    regexp: /ab+c/gi,
    boxed_string: new String("boxed"),
    boxed_number: new Number(7),
  });
  assert(got.map instanceof Map, "Map stays a Map");
  assert(got.set instanceof Set, "Set stays a Set");
  assert(got.date instanceof Date, "Date stays a Date");
});

kvTest("values: Uint8Array and other binary values round-trip", async (kv, p) => {
  const got = await roundTrip(kv, p, {
    u8: new Uint8Array([0, 1, 2, 253, 254, 255]),
    u8_empty: new Uint8Array([]),
    u16: new Uint16Array([1, 65535]),
    f64: new Float64Array([1.5, -0, NaN]),
    arraybuffer: new Uint8Array([9, 8, 7]).buffer,
    dataview_in_obj: { bytes: new Uint8Array([1, 2, 3]) },
  });
  assert(got.u8 instanceof Uint8Array, "a top-level Uint8Array comes back as Uint8Array");
  assert(got.u16 instanceof Uint16Array, "a Uint16Array comes back as Uint16Array");
});

kvTest("values: Deno.KvU64 round-trips as Deno.KvU64", async (kv, p) => {
  const got = await roundTrip(kv, p, {
    zero: new Deno.KvU64(0n),
    one: new Deno.KvU64(1n),
    max: new Deno.KvU64(2n ** 64n - 1n),
    mid: new Deno.KvU64(0x0102030405060708n),
  });
  assert(got.max instanceof Deno.KvU64, "KvU64 comes back as KvU64");
  assertEquals((got.max as Deno.KvU64).value, 2n ** 64n - 1n);
  assertEquals((got.mid as Deno.KvU64).value, 0x0102030405060708n);
  // Only a top-level KvU64 is LE64-encoded; nested in an object it is a plain V8 object.
  await kv.set([...p, "nested"], { n: new Deno.KvU64(1n) });
  const nested = (await kv.get<{ n: unknown }>([...p, "nested"])).value!;
  assert(!(nested.n instanceof Deno.KvU64), "a nested KvU64 does not come back as KvU64");
});

kvTest("values: a recursive object round-trips", async (kv, p) => {
  const obj: Record<string, unknown> = { name: "loop" };
  obj.self = obj;
  obj.list = [obj, { back: obj }];
  await kv.set([...p, "rec"], obj);
  const got = (await kv.get<Record<string, unknown>>([...p, "rec"])).value!;
  assertEquals(got.name, "loop");
  assert(got.self === got, "self reference is preserved");
  const list = got.list as unknown[];
  assert(list[0] === got, "reference in array is preserved");
  assert((list[1] as Record<string, unknown>).back === got, "nested reference is preserved");
});

kvTest("values: a 60 KiB value round-trips", async (kv, p) => {
  const bytes = new Uint8Array(60 * 1024).map((_, i) => (i * 31 + 7) & 0xff);
  const text = "z".repeat(60 * 1024);
  await kv.set([...p, "bytes"], bytes);
  await kv.set([...p, "text"], text);
  await kv.set([...p, "obj"], { text: "q".repeat(60 * 1024) });
  assertEquals((await kv.get([...p, "bytes"])).value, bytes);
  assertEquals((await kv.get([...p, "text"])).value, text);
  assertEquals((await kv.get([...p, "obj"])).value, { text: "q".repeat(60 * 1024) });
});

kvTest("values: overwriting a value replaces it (also across encodings)", async (kv, p) => {
  const k = [...p, "k"];
  await kv.set(k, "string");
  await kv.set(k, new Uint8Array([1, 2]));
  assertEquals((await kv.get(k)).value, new Uint8Array([1, 2]));
  await kv.set(k, new Deno.KvU64(5n));
  assertEquals((await kv.get(k)).value, new Deno.KvU64(5n));
  await kv.set(k, { back: "to v8" });
  assertEquals((await kv.get(k)).value, { back: "to v8" });
});

kvTest("values: unstorable values are rejected by the client", async (kv, p) => {
  const bad: Record<string, unknown> = {
    function: () => 1,
    symbol: Symbol("s"),
    weakmap: new WeakMap(),
    weakset: new WeakSet(),
    shared_array_buffer: new SharedArrayBuffer(4),
  };
  for (const [name, value] of Object.entries(bad)) {
    await assertThrowsOrRejects(() => kv.set([...p, name], value));
    assertEquals((await kv.get([...p, name])).versionstamp, null, `${name} not stored`);
  }
});
