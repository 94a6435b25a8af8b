// Values: every kind of value survives `set` → `get` (and `list`) deep-equal through the
// package and the server, and the package stores the very bytes Deno stores.
//
// Byte equality is pinned three ways:
// - PINNED below: the bytes Deno 2.9.6 stores for a set of values (its `kv.v` column, V8 body
//   after the 2-byte header `ff XX`, or the raw bytes / 8 LE bytes), asserted in both runtimes
//   against the package's `encodeValue`, and decoded by the package's `decodeValue` with Deno's
//   own header (`ff 10`, V8 format 16, which Node 20's V8 does not write);
// - under Deno (with `node:sqlite`): every sample value is written with Deno's local KV to a
//   temporary SQLite file, and the rows are compared with `encodeValue` (Errors excluded: their
//   stack text differs) — and with PINNED, so the table cannot drift;
// - with KV_DB_PATH (the file `openkv serve --db` serves) and `node:sqlite` available: the rows
//   the server stored for this test's writes are the bytes the package sent.
//
// Runs unchanged under Node ≥ 20 (`node --test clients/js/test/`) and the Deno CLI
// (`deno test -A --unstable-kv clients/js/test/`); needs KV_URL and DENO_KV_ACCESS_TOKEN.

import { test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { Buffer } from "node:buffer";
import { KvU64, openKv } from "../mod.js";
import { DenoNs, UNDER_DENO, withTimeout, assertDeep } from "../test_support/helpers.js";
import { ENCODING_BYTES, ENCODING_LE64, ENCODING_V8, decodeValue, encodeValue } from "../src/value.js";
import { encodeKey } from "../src/key.js";

const KV_URL = process.env.KV_URL;
const ACCESS_TOKEN = process.env.DENO_KV_ACCESS_TOKEN;
const KV_DB_PATH = process.env.KV_DB_PATH;
const RUN_ID = `values-${crypto.randomUUID().slice(0, 8)}`;

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function unhex(text) {
  return Uint8Array.from(text.match(/../g) ?? [], (h) => parseInt(h, 16));
}

/** The part of stored bytes that must be equal: V8 minus its 2-byte header, others whole. */
function body(data, encoding) {
  if (encoding !== ENCODING_V8) return hex(data);
  assert.equal(data[0], 0xff, "a V8 value starts with the version tag 0xff");
  return hex(data.subarray(2));
}

/** `node:sqlite`'s DatabaseSync, or null where this runtime has none (Node 20). */
async function loadSqlite() {
  try {
    return (await import("node:sqlite")).DatabaseSync;
  } catch {
    return null;
  }
}

// ---- the values

// SAMPLES-BEGIN
/** [name, value, check?]: `check(got)` replaces deep equality where node:assert cannot judge. */
function sampleValues() {
  const cyclic = { name: "cyclic" };
  cyclic.self = cyclic;
  return [
    ["string", "hello"],
    ["empty string", ""],
    ["non-Latin-1 string", "héllo € 😀 日本語"],
    ["lone surrogate", "a\ud800b"],
    ["large string", "x".repeat(60_000)],
    ["large two-byte string", "€".repeat(30_000)],
    ["number", 42],
    ["float", -3.25],
    ["-0", -0],
    ["NaN", NaN],
    ["Infinity", Infinity],
    ["max safe integer", Number.MAX_SAFE_INTEGER],
    ["bigint", 123n],
    ["negative bigint", -5n],
    ["huge bigint", 2n ** 130n + 7n],
    ["true", true],
    ["false", false],
    ["null", null],
    ["undefined", undefined],
    ["Date", new Date(1_700_000_000_123)],
    ["invalid Date", new Date(NaN), (got) => got instanceof Date && Number.isNaN(got.getTime())],
    ["RegExp", /ab+c/gi],
    ["Map", new Map([["a", 1], [2, { b: [3] }]])],
    ["Set", new Set([1, "two", 3n, null])],
    ["nested object", { a: { b: { c: [1, { d: "e", f: [null, undefined] }] } } }],
    ["array", [1, "two", null, undefined, [3, [4]]]],
    ["sparse array", [1, , 3]], // eslint-disable-line no-sparse-arrays
    ["large sparse array", Object.assign(new Array(1000), { 5: "five", 999: 999 })],
    ["object with numeric keys", { 1: "a", 0: "b", x: 2 }],
    ["object with a two-byte key", { "ключ": "значение", a: "€" }],
    ["cyclic object", cyclic],
    ["String object", new String("boxed")],
    ["Number object", new Number(7)],
    ["Boolean object", new Boolean(false)],
    ["Uint8Array (raw bytes)", new Uint8Array([1, 2, 3, 0, 255])],
    ["empty Uint8Array", new Uint8Array(0)],
    ["Uint8Array view at an offset", new Uint8Array([9, 8, 7, 6]).subarray(1, 3)],
    [
      "Buffer (a Uint8Array subclass)",
      Buffer.from([1, 2, 3]),
      (got) => got.constructor === Uint8Array && hex(got) === "010203",
    ],
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
    ["KvU64 0", new KvU64(0n)],
    ["KvU64 5", new KvU64(5n)],
    ["KvU64 max", new KvU64(2n ** 64n - 1n)],
    ["Error", new Error("boom")],
    ["TypeError", new TypeError("bad type")],
    ["RangeError", new RangeError("out of range")],
    ["Error inside an object", { error: new SyntaxError("inner"), at: new Date(0) }],
  ];
}
// SAMPLES-END

/** Values whose stored bytes carry a stack trace (differs per writer): no byte comparison. */
const HAS_ERROR = new Set(["Error", "TypeError", "RangeError", "Error inside an object"]);

/**
 * What Deno 2.9.6 stores (measured: `Deno.openKv(file)`, `set`, the `kv` table's `v` and
 * `v_encoding`): encoding, then the bytes — for V8 the part after the `ff 10` header.
 */
const PINNED = {
  "string": [1, "220568656c6c6f"],
  "empty string": [1, "2200"],
  "non-Latin-1 string": [1, "631c6800e9006c006c006f002000ac2020003dd800de2000e5652c679e8a"],
  "lone surrogate": [1, "6306610000d86200"],
  "number": [1, "4954"],
  "float": [1, "4e0000000000000ac0"],
  "-0": [1, "4e0000000000000080"],
  "NaN": [1, "4e000000000000f87f"],
  "Infinity": [1, "4e000000000000f07f"],
  "max safe integer": [1, "4effffffffffff3f43"],
  "bigint": [1, "5a107b00000000000000"],
  "negative bigint": [1, "5a110500000000000000"],
  "huge bigint": [1, "5a30070000000000000000000000000000000400000000000000"],
  "true": [1, "54"],
  "false": [1, "46"],
  "null": [1, "30"],
  "undefined": [1, "5f"],
  "Date": [1, "4400b08756febc7842"],
  "invalid Date": [1, "44000000000000f87f"],
  "RegExp": [1, "52220461622b6303"],
  "Map": [1, "3b220161490249046f220162410149062400017b013a04"],
  "Set": [1, "274902220374776f5a100300000000000000302c04"],
  "nested object": [1, "6f2201616f2201626f220163410249026f2201642201652201664102305f2400027b022400027b017b017b01"],
  "array": [1, "41054902220374776f305f4102490641014908240001240002240005"],
  "sparse array": [1, "61034900490249044906400203"],
  "large sparse array": [1, "61e807490a22046669766549ce0f49ce0f4002e807"],
  "object with numeric keys": [1, "6f4900220162490222016122017849047b03"],
  "object with a two-byte key": [1, "6f0063083a043b044e044704631037043d043004470435043d0438043504220161006302ac207b02"],
  "cyclic object": [1, "6f22046e616d6522066379636c6963220473656c665e007b02"],
  "String object": [1, "732205626f786564"],
  "Number object": [1, "6e0000000000001c40"],
  "Boolean object": [1, "78"],
  "Uint8Array (raw bytes)": [3, "01020300ff"],
  "empty Uint8Array": [3, ""],
  "Uint8Array view at an offset": [3, "0807"],
  "nested Uint8Array": [1, "6f2205627974657342020405564200020022046c697374410142010656420001002400017b02"],
  "Int8Array": [1, "4202ff015662000200"],
  "Uint8ClampedArray": [1, "420200ff5643000200"],
  "Int16Array": [1, "4204d4fe2c015677000400"],
  "Uint16Array": [1, "42040100ffff5657000400"],
  "Int32Array": [1, "420890eefeff701101005664000800"],
  "Uint32Array": [1, "4204ffffffff5644000400"],
  "Float32Array": [1, "42080000c03f000020c05666000800"],
  "Float64Array": [1, "4210182d4454fb21094000000000000000805646001000"],
  "BigInt64Array": [1, "4210ffffffffffffffff00000000000000405671001000"],
  "BigUint64Array": [1, "4208ffffffffffffffff5651000800"],
  "DataView": [1, "420401020304563f010200"],
  "ArrayBuffer": [1, "4203070809"],
  "KvU64 0": [2, "0000000000000000"],
  "KvU64 5": [2, "0500000000000000"],
  "KvU64 max": [2, "ffffffffffffffff"],
  "Buffer (a Uint8Array subclass)": [3, "010203"],
};

/** What the header of a V8 value Deno 2.9.6 stores is: `ff 10` (V8 format version 16). */
const DENO_V8_HEADER = "ff10";

/** Bytes as Deno 2.9.6 stores them, from PINNED. */
function denoBytes(name) {
  const [encoding, text] = PINNED[name];
  return { encoding, data: unhex((encoding === ENCODING_V8 ? DENO_V8_HEADER : "") + text) };
}

function checkValue(got, expected, check, what) {
  if (check) assert.ok(check(got), `${what}: got ${String(got)}`);
  else assertDeep(got, expected, what);
}

// ---- per-test scaffolding: own prefix, own database, a time limit, cleanup

let testNo = 0;

function vtest(name, ms, fn, opts = {}) {
  test(name, { timeout: ms + 10_000, ...opts }, async (t) => {
    const prefix = [RUN_ID, ++testNo];
    const kvs = [];
    const open = async () => {
      assert.ok(KV_URL, "set KV_URL (and DENO_KV_ACCESS_TOKEN) to an `openkv serve` URL");
      const kv = await withTimeout(openKv(KV_URL, { accessToken: ACCESS_TOKEN }), 10_000, "openKv");
      kvs.push(kv);
      return kv;
    };
    try {
      await withTimeout(fn({ open, prefix, t }), ms, name);
    } finally {
      for (const kv of kvs) {
        try {
          const op = kv.atomic();
          for await (const e of kv.list({ prefix })) op.delete(e.key);
          await withTimeout(op.commit(), 5_000, "cleanup");
        } catch {
          // best effort
        }
        try {
          kv.close();
        } catch {
          // closed by the test
        }
      }
    }
  });
}

// ---- round trips through the server

for (const [name, value, check] of sampleValues()) {
  vtest(`round trip: ${name} (set → get, getMany, list)`, 10_000, async ({ open, prefix }) => {
    const kv = await open();
    const key = [...prefix, name];
    const { ok, versionstamp } = await kv.set(key, value);
    assert.equal(ok, true);
    const entry = await kv.get(key);
    assert.equal(entry.versionstamp, versionstamp);
    assert.deepEqual(entry.key, key);
    checkValue(entry.value, value, check, `${name} (get)`);
    const [many] = await kv.getMany([key]);
    checkValue(many.value, value, check, `${name} (getMany)`);
    const listed = [];
    for await (const e of kv.list({ prefix })) listed.push(e);
    assert.equal(listed.length, 1);
    checkValue(listed[0].value, value, check, `${name} (list)`);
    // What is read back is a fresh value, not the one written.
    if (value !== null && typeof value === "object") assert.notEqual(entry.value, value);
  });
}

vtest("round trip: every value in one atomic write, read back with getMany and list", 10_000, async ({ open, prefix }) => {
  const kv = await open();
  const samples = sampleValues().filter(([name]) => !name.startsWith("large"));
  const op = kv.atomic();
  for (const [i, [, v]] of samples.entries()) op.set([...prefix, i], v);
  const res = await op.commit();
  assert.equal(res.ok, true);
  const seen = [];
  for await (const e of kv.list({ prefix })) {
    assert.equal(e.versionstamp, res.versionstamp);
    seen.push(e.key.at(-1));
    const [name, v, check] = samples[e.key.at(-1)];
    checkValue(e.value, v, check, `${name} (list)`);
  }
  assert.deepEqual(seen, samples.map((_, i) => i));
  for (let i = 0; i < samples.length; i += 10) {
    const keys = samples.slice(i, i + 10).map((_, j) => [...prefix, i + j]);
    const entries = await kv.getMany(keys);
    for (const [j, e] of entries.entries()) {
      const [name, v, check] = samples[i + j];
      checkValue(e.value, v, check, `${name} (getMany)`);
    }
  }
});

vtest("a KvU64 read back is a KvU64 (Deno.KvU64 under Deno) with the same value", 10_000, async ({ open, prefix }) => {
  const kv = await open();
  await kv.set([...prefix, "u"], new KvU64(2n ** 63n + 1n));
  const { value } = await kv.get([...prefix, "u"]);
  assert.ok(value instanceof KvU64);
  if (UNDER_DENO) assert.ok(value instanceof DenoNs.KvU64);
  assert.equal(value.value, 2n ** 63n + 1n);
  await kv.atomic().sum([...prefix, "u"], 1n).commit();
  assert.equal((await kv.get([...prefix, "u"])).value.value, 2n ** 63n + 2n);
});

// ---- bytes: the package stores what Deno stores

for (const [name, value, check] of sampleValues()) {
  if (!(name in PINNED)) continue;
  test(`pinned bytes: ${name} encodes as Deno 2.9.6 stores it, and Deno's bytes decode to it`, { timeout: 5_000 }, () => {
    const [encoding, expected] = PINNED[name];
    const mine = encodeValue(value);
    assert.equal(mine.encoding, encoding, `${name}: encoding`);
    assert.equal(body(mine.data, mine.encoding), expected, `${name}: bytes`);
    const deno = denoBytes(name);
    checkValue(decodeValue(deno.data, deno.encoding), value, check, `${name}: decoding Deno's bytes`);
  });
}

test("PINNED covers every sample but the large strings and the Errors", { timeout: 5_000 }, () => {
  const missing = sampleValues()
    .map(([name]) => name)
    .filter((name) => !(name in PINNED) && !HAS_ERROR.has(name) && !name.startsWith("large"));
  assert.deepEqual(missing, []);
  const names = new Set(sampleValues().map(([name]) => name));
  assert.deepEqual(Object.keys(PINNED).filter((n) => !names.has(n)), [], "PINNED names no sample");
  assert.deepEqual(
    [...new Set(Object.values(PINNED).map(([e]) => e))].sort(),
    [ENCODING_V8, ENCODING_LE64, ENCODING_BYTES].sort(),
  );
});

test("Deno's local KV stores exactly the package's bytes for every sample (temporary SQLite file)", { timeout: 30_000 }, async (t) => {
  if (!UNDER_DENO) {
    t.skip("runs under Deno only (Node checks the PINNED table instead)");
    return;
  }
  const DatabaseSync = await loadSqlite();
  if (!DatabaseSync) {
    console.log("note: this Deno has no node:sqlite; the byte comparison with Deno's file is skipped");
    t.skip("no node:sqlite");
    return;
  }
  const dir = await DenoNs.makeTempDir({ prefix: "openkv-values-" });
  const path = `${dir}/deno.sqlite3`;
  try {
    const samples = sampleValues();
    const local = await DenoNs.openKv(path);
    try {
      for (const [i, [, v]] of samples.entries()) await local.set(["v", i], v);
    } finally {
      local.close();
    }
    const db = new DatabaseSync(path);
    try {
      const row = db.prepare("select v, v_encoding from kv where k = ?");
      const count = db.prepare("select count(*) as n from kv").get().n;
      assert.equal(count, samples.length, "one row per sample");
      for (const [i, [name, v, check]] of samples.entries()) {
        // The key is found by the package's key encoding: Deno's key bytes are the same.
        const r = row.get(encodeKey(["v", i]));
        assert.ok(r, `${name}: no row under the package's key bytes`);
        const stored = new Uint8Array(r.v);
        const mine = encodeValue(v);
        assert.equal(r.v_encoding, mine.encoding, `${name}: encoding`);
        if (r.v_encoding === ENCODING_V8) assert.equal(hex(stored.subarray(0, 2)), DENO_V8_HEADER, `${name}: header`);
        if (!HAS_ERROR.has(name)) {
          assert.equal(body(mine.data, mine.encoding), body(stored, r.v_encoding), `${name}: bytes`);
        }
        if (name in PINNED) {
          assert.deepEqual([r.v_encoding, body(stored, r.v_encoding)], PINNED[name], `${name}: PINNED`);
        }
        checkValue(decodeValue(stored, r.v_encoding), v, check, `${name}: the package decodes Deno's row`);
      }
    } finally {
      db.close();
    }
  } finally {
    await DenoNs.remove(dir, { recursive: true });
  }
});

vtest("the served SQLite file (KV_DB_PATH) holds exactly the bytes the package sent", 20_000, async ({ open, prefix, t }) => {
  if (!KV_DB_PATH) {
    t.skip("set KV_DB_PATH to the file `openkv serve --db` serves to compare the stored bytes");
    return;
  }
  const DatabaseSync = await loadSqlite();
  if (!DatabaseSync) {
    console.log("note: no node:sqlite in this runtime (Node 20); the KV_DB_PATH comparison is skipped");
    t.skip("no node:sqlite");
    return;
  }
  const kv = await open();
  const samples = sampleValues();
  for (const [i, [, v]] of samples.entries()) await kv.set([...prefix, i], v);
  const db = new DatabaseSync(KV_DB_PATH, { readOnly: true });
  try {
    const row = db.prepare("select v, v_encoding from kv where k = ?");
    for (const [i, [name, v]] of samples.entries()) {
      const r = row.get(encodeKey([...prefix, i]));
      assert.ok(r, `${name}: not in ${KV_DB_PATH}`);
      const sent = encodeValue(v);
      assert.equal(r.v_encoding, sent.encoding, `${name}: encoding`);
      // All of it, header included: the server stores what it was sent.
      assert.equal(hex(new Uint8Array(r.v)), hex(sent.data), `${name}: bytes`);
    }
  } finally {
    db.close();
  }
});
