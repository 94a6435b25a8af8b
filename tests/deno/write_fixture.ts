// Usage: deno run -A --unstable-kv write_fixture.ts <dbpath>
//
// Writes a fixture into a fresh Deno KV sqlite file that exercises every key
// part type and every value encoding, then prints the manifest (see
// manifest.ts) as JSON on stdout -- and nothing else on stdout. Manifest
// entries are emitted in `kv.list({prefix: []})` order, i.e. key order, with
// the versionstamp `kv.get` returns for each.
//
// Expiry note: Deno's sqlite backend does NOT filter expired rows on read; it
// deletes them in a background sweep that runs when the database is opened
// and then at most every ~60 s. This script closes the database well before
// that, so the `expireIn: 1` entry is still physically present in the file
// (with `expiration_ms` in the past) although it is listed under "absent": a
// reader of the file must treat rows whose expiration has passed as absent.

import {
  keyEqual,
  keyToManifest,
  type Manifest,
  type ManifestEntry,
  showKey,
  valueMismatch,
  valueToManifest,
} from "./manifest.ts";

const dbPath = Deno.args[0];
if (!dbPath || Deno.args.length !== 1) {
  console.error("usage: write_fixture.ts <dbpath>");
  Deno.exit(2);
}
try {
  // An empty existing file (e.g. a freshly created temp file) is fine.
  if (Deno.statSync(dbPath).size > 0) {
    console.error(`write_fixture.ts: ${dbPath} is not empty; pass a fresh path`);
    Deno.exit(2);
  }
} catch (e) {
  if (!(e instanceof Deno.errors.NotFound)) throw e;
}

const kv = await Deno.openKv(dbPath);

/** Everything we expect to be visible at the end, by canonical key JSON. */
const expected = new Map<string, ManifestEntry>();
/** Keys that must not be visible (deleted, or expired). */
const absent: Deno.KvKey[] = [];
/** Expired keys: Deno may still return them (see the note at the top). */
const expiredIds = new Set<string>();

const id = (key: Deno.KvKey) => JSON.stringify(keyToManifest(key));

function expect(key: Deno.KvKey, value: unknown, expireIn?: number) {
  const entry: ManifestEntry = { key: keyToManifest(key), value: valueToManifest(value) };
  if (expireIn !== undefined) entry.expireIn = expireIn;
  expected.set(id(key), entry);
}

async function put(key: Deno.KvKey, value: unknown, expireIn?: number) {
  const res = await kv.set(key, value, expireIn === undefined ? undefined : { expireIn });
  if (!res.ok) throw new Error(`set ${showKey(key)} failed`);
  expect(key, value, expireIn);
}

// Deterministic pseudo-random bytes (xorshift32).
function pseudoRandomBytes(n: number, seed: number): Uint8Array {
  let x = seed >>> 0 || 1;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

// --- key parts: strings -----------------------------------------------------
await put([""], "empty string key");
await put(["a"], "a");
await put(["日本語 🦀"], "unicode key");
await put(["nul\u0000inside"], "string with NUL");
await put(["\u0000"], "just NUL");
await put(["\u00ff\u0100"], "latin1 and beyond");

// --- key parts: bytes -------------------------------------------------------
await put([new Uint8Array(0)], "empty bytes key");
await put([Uint8Array.of(0)], "bytes [0]");
await put([Uint8Array.of(0, 255, 0, 1)], "bytes [0,255,0,1]");
await put([Uint8Array.of(255)], "bytes [255]");
await put([pseudoRandomBytes(300, 0x5eed)], "300 pseudo-random bytes");

// --- key parts: bigints -----------------------------------------------------
const bigints: bigint[] = [
  0n,
  1n,
  -1n,
  255n,
  256n,
  -255n,
  -256n,
  -257n,
  2n ** 63n - 1n,
  2n ** 63n,
  -(2n ** 63n),
  2n ** 64n - 1n,
  -(2n ** 64n) + 1n,
  2n ** 64n,
  -(2n ** 64n),
  -(2n ** 64n) - 1n,
  2n ** 800n,
  -(2n ** 800n),
];
for (const b of bigints) await put([b], `bigint ${b}`.slice(0, 40));

// --- key parts: numbers -----------------------------------------------------
const numbers: number[] = [
  0,
  -0,
  NaN,
  Infinity,
  -Infinity,
  3.14,
  -1.5,
  Number.MAX_VALUE,
  -Number.MAX_VALUE,
  Number.MIN_VALUE,
  -Number.MIN_VALUE,
  2 ** 53,
  1,
  -1,
];
for (const n of numbers) await put([n], `number ${Object.is(n, -0) ? "-0" : n}`);

// --- key parts: booleans ----------------------------------------------------
await put([false], "false");
await put([true], "true");

// --- multi-part keys mixing types -------------------------------------------
await put(["users"], "users root");
await put(["users", 12n], "users/12");
await put(["users", 12n, 3.5], "users/12/3.5");
await put(["users", 12n, 3.5, true], "users/12/3.5/true");
await put(["users", 12n, 3.5, true, Uint8Array.of(0, 1)], "users/12/3.5/true/bytes");
await put(["users", 12n, 3.5, false, ""], "users/12/3.5/false/empty");
await put(["users", 12n, -0, "x"], "users/12/-0/x");
await put(["users", -12n, NaN], "users/-12/NaN");
await put(["users", "alice", "profile"], "alice profile");
await put(["users", "alice\u0000", "profile"], "alice NUL profile");
await put([Uint8Array.of(1, 2), "s", 1n, 1, true, false], "bytes/s/1n/1/true/false");

// --- values -----------------------------------------------------------------
await put(["val", "u64", 0], new Deno.KvU64(0n));
await put(["val", "u64", 42], new Deno.KvU64(42n));
await put(["val", "u64", "max"], new Deno.KvU64(2n ** 64n - 1n));
await put(["val", "bytes", "empty"], new Uint8Array(0));
await put(["val", "bytes", "zeros"], Uint8Array.of(0, 0, 1, 0, 0));
await put(["val", "bytes", 70], pseudoRandomBytes(70, 70).map((b, i) => (i % 7 === 0 ? 0 : b)));
await put(["val", "v8string", "hello"], "hello");
await put(["val", "v8string", "empty"], "");
await put(["val", "v8string", "latin1"], "héllo"); // one-byte (Latin-1) V8 string
await put(["val", "v8string", "unicode"], "héllo wörld ✓"); // two-byte V8 string
await put(["val", "v8string", "emoji"], "🦀 crab \u0000 nul"); // surrogate pairs
// Two-byte string whose byte length (200) needs a 2-byte varint: V8 inserts a
// padding byte before the tag so the UTF-16 payload is 2-byte aligned.
await put(["val", "v8string", "long-unicode"], "✓".repeat(100));
await put(["val", "v8string", "long-ascii"], "x".repeat(1000));
await put(["val", "v8number", 1], 1); // V8 Smi ('I' + zigzag varint)
await put(["val", "v8number", 3.5], 3.5); // V8 double ('N')
await put(["val", "v8number", -0.25], -0.25);
await put(["val", "v8number", -7], -7);
await put(["val", "v8number", "2^31"], 2 ** 31); // outside Smi range
await put(["val", "v8number", "1e300"], 1e300);

// --- sum / min / max --------------------------------------------------------
for (let i = 0; i < 3; i++) {
  const r = await kv.atomic().sum(["counter"], 5n).commit();
  if (!r.ok) throw new Error("sum failed");
}
expect(["counter"], new Deno.KvU64(15n));
for (const x of [3n, 9n, 4n]) {
  const r = await kv.atomic().max(["max"], x).commit();
  if (!r.ok) throw new Error("max failed");
}
expect(["max"], new Deno.KvU64(9n));
for (const x of [8n, 2n, 5n]) {
  const r = await kv.atomic().min(["min"], x).commit();
  if (!r.ok) throw new Error("min failed");
}
expect(["min"], new Deno.KvU64(2n));

// --- versionstamped key -----------------------------------------------------
{
  const r = await kv.set(["vs", kv.commitVersionstamp()], "x");
  if (!r.ok) throw new Error("versionstamped set failed");
  // The placeholder becomes a string part: the commit's 20-hex versionstamp.
  expect(["vs", r.versionstamp], "x");
}

// --- expiry -----------------------------------------------------------------
await put(["expires", "later"], "still here", 3_600_000);
{
  const r = await kv.set(["expires", "soon"], "gone", { expireIn: 1 });
  if (!r.ok) throw new Error("set with expireIn failed");
  absent.push(["expires", "soon"]);
  expiredIds.add(id(["expires", "soon"]));
}

// --- set then delete --------------------------------------------------------
await put(["deleted"], "to be deleted");
await kv.delete(["deleted"]);
expected.delete(id(["deleted"]));
absent.push(["deleted"]);

await new Promise((resolve) => setTimeout(resolve, 50));

// --- read everything back, in list order ------------------------------------
const problems: string[] = [];
const entries: ManifestEntry[] = [];
const seen = new Set<string>();
for await (const e of kv.list({ prefix: [] })) {
  const k = id(e.key);
  if (expiredIds.has(k)) continue; // still physically present, see top note
  const want = expected.get(k);
  if (!want) {
    problems.push(`unexpected key in list: ${showKey(e.key)}`);
    continue;
  }
  seen.add(k);
  const mismatch = valueMismatch(want.value, e.value);
  if (mismatch) problems.push(`list ${showKey(e.key)}: ${mismatch}`);
  const got = await kv.get(e.key);
  if (got.versionstamp === null) {
    problems.push(`get ${showKey(e.key)} returned null`);
    continue;
  }
  if (got.versionstamp !== e.versionstamp) {
    problems.push(
      `${showKey(e.key)}: list versionstamp ${e.versionstamp} != get ${got.versionstamp}`,
    );
  }
  const getMismatch = valueMismatch(want.value, got.value);
  if (getMismatch) problems.push(`get ${showKey(e.key)}: ${getMismatch}`);
  if (!keyEqual(got.key, e.key)) problems.push(`get key mismatch for ${showKey(e.key)}`);
  entries.push({ ...want, versionstamp: got.versionstamp });
}
for (const [k, want] of expected) {
  if (!seen.has(k)) problems.push(`expected key missing from list: ${JSON.stringify(want.key)}`);
}
for (const key of absent) {
  if (expiredIds.has(id(key))) continue;
  const got = await kv.get(key);
  if (got.versionstamp !== null) problems.push(`absent key ${showKey(key)} is visible`);
}

kv.close();

if (problems.length > 0) {
  for (const p of problems) console.error(`write_fixture: ${p}`);
  Deno.exit(1);
}

const manifest: Manifest = { entries, absent: absent.map(keyToManifest) };
console.log(JSON.stringify(manifest, null, 1));
