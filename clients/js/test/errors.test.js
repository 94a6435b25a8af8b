// Bad input: the exact error class and message Deno 2.9.6's LOCAL KV (`Deno.openKv(":memory:")`)
// throws, as a table, and the package must throw the same. Every row also records HOW it fails
// — "throw" (synchronously, at the call), "reject" (the returned promise rejects) or "resolve"
// (Deno accepts it) — since `kv.list(bad)` outside a try block behaves differently from a
// rejected iteration.
//
// Under Deno (`globalThis.Deno?.openKv`) every row runs against Deno's local KV as well, so the
// table cannot drift from what Deno really does. Rows where the package is known to differ from
// Deno carry `differs: "why"` and `package: {…}`, what the package does instead: Deno's side is
// still asserted (it documents the difference) and so is the package's.
//
// Runs unchanged under Node ≥ 20 (`node --test clients/js/test/`) and the Deno CLI
// (`deno test -A --unstable-kv clients/js/test/`); needs KV_URL and DENO_KV_ACCESS_TOKEN.

import { test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { BadResource, KvU64, openKv } from "../mod.js";
import { DenoNs, UNDER_DENO, withTimeout } from "../test_support/helpers.js";

const KV_URL = process.env.KV_URL;
const ACCESS_TOKEN = process.env.DENO_KV_ACCESS_TOKEN;
const RUN_ID = `errors-${crypto.randomUUID().slice(0, 8)}`;

const CASE_TIMEOUT_MS = 8_000;
const TYPE_ERR = "expected string, number, bigint, ArrayBufferView, boolean";
const FAILING_VS = "ffffffffffffffffffff"; // a check on a missing key with this versionstamp fails

// Unclonable values: V8's message names the value by its source text, so it is computed from
// the very objects the cases use (Deno and the package are given the same function object).
const FN = () => 1;
const WITH_METHOD = { a: { f() {} } };
const SYM = Symbol("s");

/** A key of exactly `n` encoded bytes (one string part: 0x02 + UTF-8 + 0x00), unique to the run. */
function sized(n, fill = "x") {
  return [RUN_ID + fill.repeat(n - 2 - RUN_ID.length)];
}

let caseNo = 0;
function prefix(name) {
  return [RUN_ID, `${++caseNo}`, name];
}

/** A failing check on a key nobody writes: the commit answers {ok: false}, nothing is written
 * or enqueued — so "accepted" cases leave no message in the shared queue. */
function failingAtomic(kv, p) {
  return kv.atomic().check({ key: [...p, "never-written"], versionstamp: FAILING_VS });
}

function mutations(kv, p, n) {
  const op = kv.atomic();
  for (let i = 0; i < n; i++) op.set([...p, "m", i], 1);
  return op;
}

/**
 * The table. `run(kv, p)` gets an open database and a key prefix unique to the row.
 * `mode`: how Deno 2.9.6 local KV fails (or "resolve"); `error: [name, message]`;
 * for "resolve" rows `result(r)` maps the resolved value to something comparable and `value`
 * is what it must equal. `closed: true`: run on a database that was already closed.
 * `badResource: true`: the error must be `instanceof` Deno.errors.BadResource (Deno) / the
 * package's BadResource (Node). `differs`: the package is known to differ from Deno here.
 */
const CASES = [
  // ---- key parts
  { name: "key part: symbol", run: (kv, p) => kv.get([...p, Symbol("x")]), mode: "reject", error: ["TypeError", TYPE_ERR] },
  { name: "key part: object", run: (kv, p) => kv.get([...p, {}]), mode: "reject", error: ["TypeError", TYPE_ERR] },
  { name: "key part: undefined (set)", run: (kv, p) => kv.set([...p, undefined], 1), mode: "reject", error: ["TypeError", TYPE_ERR] },
  { name: "key part: null", run: (kv, p) => kv.get([...p, null]), mode: "reject", error: ["TypeError", TYPE_ERR] },
  { name: "key part: nested array", run: (kv, p) => kv.get([...p, ["a"]]), mode: "reject", error: ["TypeError", TYPE_ERR] },
  { name: "key part: object in atomic().mutate", run: (kv, p) => kv.atomic().mutate({ type: "set", key: [...p, {}], value: 1 }).commit(), mode: "reject", error: ["TypeError", TYPE_ERR] },
  { name: "key part: object in watch", run: (kv, p) => kv.watch([[...p, {}]]), mode: "throw", error: ["TypeError", TYPE_ERR] },
  { name: "key not an array: string (get)", run: (kv) => kv.get("a"), mode: "reject", error: ["TypeError", "serde_v8 error: invalid type; expected: array, got: string"] },
  { name: "key not an array: string (set)", run: (kv) => kv.set("a", 1), mode: "reject", error: ["TypeError", "serde_v8 error: invalid type; expected: array, got: string"] },
  {
    name: "key not an array: number (get)",
    run: (kv) => kv.get(1),
    mode: "reject",
    error: ["TypeError", "serde_v8 error: invalid type; expected: array, got: Number"],
  },

  // ---- key sizes
  { name: "key too large for write (set)", run: (kv, p) => kv.set([...p, "x".repeat(2049)], 1), mode: "reject", error: ["TypeError", "Key too large for write (max 2048 bytes)"] },
  { name: "key too large for write (delete)", run: (kv, p) => kv.delete([...p, "x".repeat(2049)]), mode: "reject", error: ["TypeError", "Key too large for write (max 2048 bytes)"] },
  { name: "key too large for write (check)", run: (kv, p) => kv.atomic().check({ key: [...p, "x".repeat(2050)], versionstamp: null }).commit(), mode: "reject", error: ["TypeError", "Key too large for write (max 2048 bytes)"] },
  { name: "key too large for read (get)", run: (kv, p) => kv.get([...p, "x".repeat(2050)]), mode: "reject", error: ["TypeError", "Key too large for read (max 2049 bytes)"] },
  { name: "key too large for read (getMany)", run: (kv, p) => kv.getMany([[...p, "x".repeat(2050)]]), mode: "reject", error: ["TypeError", "Key too large for read (max 2049 bytes)"] },
  { name: "key too large for read (list prefix)", run: async (kv, p) => { for await (const _ of kv.list({ prefix: [...p, "x".repeat(2050)] })); }, mode: "reject", error: ["TypeError", "Key too large for read (max 2049 bytes)"] },
  { name: "key too large for read (watch)", run: (kv, p) => kv.watch([[...p, "x".repeat(2050)]]), mode: "throw", error: ["TypeError", "Key too large for read (max 2049 bytes)"] },
  // Exact sizes (`sized(n)`: a key of exactly n bytes). Deno checks a read's RANGE: `get(k)`
  // reads [k, k+0x00), so a 2049-byte key is refused for get while watch takes it.
  {
    name: "write key of exactly 2048 bytes accepted",
    run: async (kv) => {
      const r = await kv.set(sized(2048, "w"), 1);
      await kv.delete(sized(2048, "w"));
      return r;
    },
    mode: "resolve",
    result: (r) => r.ok,
    value: true,
  },
  { name: "write key of 2049 bytes refused", run: (kv) => kv.set(sized(2049), 1), mode: "reject", error: ["TypeError", "Key too large for write (max 2048 bytes)"] },
  { name: "get: key of 2048 bytes accepted", run: (kv) => kv.get(sized(2048, "g")), mode: "resolve", result: (r) => r.versionstamp, value: null },
  {
    name: "get: key of 2049 bytes refused (its range end has 2050)",
    run: (kv) => kv.get(sized(2049)),
    mode: "reject",
    error: ["TypeError", "Key too large for read (max 2049 bytes)"],
  },
  {
    name: "getMany: key of 2049 bytes refused",
    run: (kv) => kv.getMany([sized(2049)]),
    mode: "reject",
    error: ["TypeError", "Key too large for read (max 2049 bytes)"],
  },
  { name: "get: key of 2050 bytes refused", run: (kv) => kv.get(sized(2050)), mode: "reject", error: ["TypeError", "Key too large for read (max 2049 bytes)"] },
  { name: "list: prefix of 2048 bytes accepted", run: async (kv) => { for await (const _ of kv.list({ prefix: sized(2048) })); return "done"; }, mode: "resolve", result: (r) => r, value: "done" },
  // Checked by the server for the package (a 400 → the same TypeError).
  { name: "list: prefix of 2049 bytes refused", run: async (kv) => { for await (const _ of kv.list({ prefix: sized(2049) })); }, mode: "reject", error: ["TypeError", "Key too large for read (max 2049 bytes)"] },
  {
    name: "list: start of 2049 bytes, end of 2050 refused",
    run: async (kv) => { for await (const _ of kv.list({ start: sized(2049), end: sized(2050) })); },
    mode: "reject",
    error: ["TypeError", "Key too large for read (max 2049 bytes)"],
  },
  { name: "list: start of 2050 bytes refused", run: async (kv) => { for await (const _ of kv.list({ start: sized(2050), end: sized(2051) })); }, mode: "reject", error: ["TypeError", "Key too large for read (max 2049 bytes)"] },
  { name: "watch: key of 2049 bytes accepted", run: (kv) => kv.watch([sized(2049)]).cancel(), mode: "resolve", result: (r) => r, value: undefined },
  { name: "watch: key of 2050 bytes refused", run: (kv) => kv.watch([sized(2050)]), mode: "throw", error: ["TypeError", "Key too large for read (max 2049 bytes)"] },
  { name: "empty key: set", run: (kv) => kv.set([], 1), mode: "reject", error: ["TypeError", "key cannot be empty"] },
  { name: "empty key: delete", run: (kv) => kv.delete([]), mode: "reject", error: ["TypeError", "key cannot be empty"] },
  { name: "empty key: check", run: (kv) => kv.atomic().check({ key: [], versionstamp: null }).commit(), mode: "reject", error: ["TypeError", "key cannot be empty"] },
  { name: "empty key: sum", run: (kv) => kv.atomic().sum([], 1n).commit(), mode: "reject", error: ["TypeError", "key cannot be empty"] },
  { name: "empty key: get is allowed (nothing there)", run: (kv) => kv.get([]), mode: "resolve", result: (r) => [r.key, r.value, r.versionstamp], value: [[], null, null] },

  // ---- values
  { name: "value too large (V8)", run: (kv, p) => kv.set([...p, "v"], "x".repeat(65537)), mode: "reject", error: ["TypeError", "Value too large (max 65536 bytes)"] },
  { name: "value too large (V8, 65533 chars = 65539 bytes)", run: (kv, p) => kv.set([...p, "v"], "x".repeat(65533)), mode: "reject", error: ["TypeError", "Value too large (max 65536 bytes)"] },
  { name: "value too large (bytes)", run: (kv, p) => kv.set([...p, "v"], new Uint8Array(65537)), mode: "reject", error: ["TypeError", "Value too large (max 65536 bytes)"] },
  { name: "value of exactly 65536 bytes accepted", run: (kv, p) => kv.set([...p, "v"], new Uint8Array(65536)), mode: "resolve", result: (r) => r.ok, value: true },
  { name: "unclonable value: function", run: (kv, p) => kv.set([...p, "v"], FN), mode: "reject", error: ["TypeError", `${String(FN)} could not be cloned.`] },
  { name: "unclonable value: method inside an object", run: (kv, p) => kv.set([...p, "v"], WITH_METHOD), mode: "reject", error: ["TypeError", `${String(WITH_METHOD.a.f)} could not be cloned.`] },
  { name: "unclonable value: symbol", run: (kv, p) => kv.set([...p, "v"], SYM), mode: "reject", error: ["TypeError", "Symbol(s) could not be cloned."] },
  { name: "unclonable value: WeakMap", run: (kv, p) => kv.set([...p, "v"], new WeakMap()), mode: "reject", error: ["TypeError", "#<WeakMap> could not be cloned."] },
  { name: "unclonable value: Promise", run: (kv, p) => kv.set([...p, "v"], Promise.resolve(1)), mode: "reject", error: ["TypeError", "#<Promise> could not be cloned."] },
  { name: "unclonable value: atomic().set (throws at the call)", run: (kv, p) => kv.atomic().set([...p, "v"], FN), mode: "throw", error: ["TypeError", `${String(FN)} could not be cloned.`] },
  { name: "unclonable message: enqueue", run: (kv) => kv.enqueue(FN), mode: "reject", error: ["TypeError", `${String(FN)} could not be cloned.`] },
  { name: "unclonable message: atomic().enqueue (throws at the call)", run: (kv) => kv.atomic().enqueue(Symbol("q")), mode: "throw", error: ["TypeError", "Symbol(q) could not be cloned."] },

  // ---- atomic limits
  { name: "too many mutations (1001 sets)", run: (kv, p) => mutations(kv, p, 1001).commit(), mode: "reject", error: ["TypeError", "Too many mutations (max 1000)"] },
  { name: "too many mutations (1000 sets + 1 enqueue)", run: (kv, p) => mutations(kv, p, 1000).enqueue(1).commit(), mode: "reject", error: ["TypeError", "Too many mutations (max 1000)"] },
  {
    name: "1000 deletes accepted",
    run: (kv, p) => {
      const op = kv.atomic();
      for (let i = 0; i < 1000; i++) op.delete([...p, "d", i]);
      return op.commit();
    },
    mode: "resolve",
    result: (r) => r.ok,
    value: true,
  },
  {
    name: "too many checks (101)",
    run: (kv, p) => {
      const op = kv.atomic();
      for (let i = 0; i < 101; i++) op.check({ key: [...p, "c", i], versionstamp: null });
      return op.commit();
    },
    mode: "reject",
    error: ["TypeError", "Too many checks (max 100)"],
  },
  {
    name: "100 checks accepted",
    run: (kv, p) => {
      const op = kv.atomic();
      for (let i = 0; i < 100; i++) op.check({ key: [...p, "c", i], versionstamp: null });
      return op.commit();
    },
    mode: "resolve",
    result: (r) => r.ok,
    value: true,
  },
  {
    name: "total mutation size too large (14 × 65000)",
    run: (kv, p) => {
      const op = kv.atomic();
      for (let i = 0; i < 14; i++) op.set([...p, "t", i], "x".repeat(65000));
      return op.commit();
    },
    mode: "reject",
    error: ["TypeError", "Total mutation size too large (max 819200 bytes)"],
  },
  {
    name: "total key size too large (41 keys of 2001 bytes)",
    run: (kv) => {
      const op = kv.atomic();
      // Not under the prefix (the prefix would make each key too large): nothing is written.
      for (let i = 0; i < 41; i++) op.set(["k".repeat(1990), i], 1);
      return op.commit();
    },
    mode: "reject",
    error: ["TypeError", "Total key size too large (max 81920 bytes)"],
  },
  { name: "too many ranges (getMany 11)", run: (kv, p) => kv.getMany(Array.from({ length: 11 }, (_, i) => [...p, i])), mode: "reject", error: ["TypeError", "Too many ranges (max 10)"] },
  { name: "getMany 10 accepted", run: (kv, p) => kv.getMany(Array.from({ length: 10 }, (_, i) => [...p, i])), mode: "resolve", result: (r) => r.map((e) => e.versionstamp), value: Array(10).fill(null) },

  // ---- checks
  { name: "check: versionstamp 'zz'", run: (kv, p) => kv.atomic().check({ key: [...p, "a"], versionstamp: "zz" }).commit(), mode: "reject", error: ["TypeError", "Invalid check"] },
  { name: "check: versionstamp too short", run: (kv, p) => kv.atomic().check({ key: [...p, "a"], versionstamp: "00" }).commit(), mode: "reject", error: ["TypeError", "Invalid check"] },
  {
    name: "check: versionstamp in upper case hex is accepted (check fails)",
    run: (kv, p) => kv.atomic().check({ key: [...p, "a"], versionstamp: "0000000000000001000A" }).commit(),
    mode: "resolve",
    result: (r) => r.ok,
    value: false,
  },
  {
    name: "check: versionstamp a number",
    run: (kv, p) => kv.atomic().check({ key: [...p, "a"], versionstamp: 1 }).commit(),
    mode: "reject",
    error: ["TypeError", "serde_v8 error: invalid type; expected: string, got: Number"],
  },
  {
    name: "check: versionstamp missing (undefined) means 'must not exist'",
    run: (kv, p) => kv.atomic().check({ key: [...p, "a"] }).commit(),
    mode: "resolve",
    result: (r) => r.ok,
    value: true,
  },

  // ---- list
  { name: "list: limit 0", run: (kv, p) => kv.list({ prefix: p }, { limit: 0 }), mode: "throw", error: ["Error", "Limit must be a positive integer: received 0"] },
  { name: "list: limit -1", run: (kv, p) => kv.list({ prefix: p }, { limit: -1 }), mode: "throw", error: ["Error", "Limit must be a positive integer: received -1"] },
  { name: "list: limit 1.5", run: (kv, p) => kv.list({ prefix: p }, { limit: 1.5 }), mode: "throw", error: ["Error", "Limit must be a positive integer: received 1.5"] },
  { name: "list: batchSize 0", run: (kv, p) => kv.list({ prefix: p }, { batchSize: 0 }), mode: "throw", error: ["Error", "batchSize must be a positive integer: received 0"] },
  { name: "list: batchSize -1", run: (kv, p) => kv.list({ prefix: p }, { batchSize: -1 }), mode: "throw", error: ["Error", "batchSize must be a positive integer: received -1"] },
  { name: "list: batchSize 1001 (at iteration)", run: async (kv, p) => { for await (const _ of kv.list({ prefix: p }, { batchSize: 1001 })); }, mode: "reject", error: ["TypeError", "Too many entries (max 1000)"] },
  { name: "list: batchSize 1000 accepted", run: async (kv, p) => { for await (const _ of kv.list({ prefix: p }, { batchSize: 1000 })); return "done"; }, mode: "resolve", result: (r) => r, value: "done" },
  { name: "list: limit 5000 accepted", run: async (kv, p) => { for await (const _ of kv.list({ prefix: p }, { limit: 5000 })); return "done"; }, mode: "resolve", result: (r) => r, value: "done" },
  { name: "list: selector with start only", run: (kv, p) => kv.list({ start: [...p, "a"] }), mode: "throw", error: ["TypeError", "Selector must specify either 'prefix' or both 'start' and 'end' key"] },
  { name: "list: selector with end only", run: (kv, p) => kv.list({ end: [...p, "a"] }), mode: "throw", error: ["TypeError", "Selector must specify either 'prefix' or both 'start' and 'end' key"] },
  { name: "list: empty selector", run: (kv) => kv.list({}), mode: "throw", error: ["TypeError", "Selector must specify either 'prefix' or both 'start' and 'end' key"] },
  { name: "list: prefix with start and end", run: (kv, p) => kv.list({ prefix: p, start: [...p, "a"], end: [...p, "b"] }), mode: "throw", error: ["TypeError", "Selector can not specify both 'start' and 'end' key when specifying 'prefix'"] },
  { name: "list: start outside prefix (at iteration)", run: async (kv, p) => { for await (const _ of kv.list({ prefix: [...p, "a"], start: [...p, "b"] })); }, mode: "reject", error: ["TypeError", "Start key is not in the keyspace defined by prefix"] },
  { name: "list: end outside prefix (at iteration)", run: async (kv, p) => { for await (const _ of kv.list({ prefix: [...p, "a"], end: [...p, "b"] })); }, mode: "reject", error: ["TypeError", "End key is not in the keyspace defined by prefix"] },
  { name: "list: start greater than end (at iteration)", run: async (kv, p) => { for await (const _ of kv.list({ start: [...p, "b"], end: [...p, "a"] })); }, mode: "reject", error: ["TypeError", "Start key is greater than end key"] },
  {
    name: "list: start outside prefix — list() itself does not throw",
    run: (kv, p) => kv.list({ prefix: [...p, "a"], start: [...p, "b"] }),
    mode: "return",
  },
  {
    name: "list: start greater than end — list() itself does not throw",
    run: (kv, p) => kv.list({ start: [...p, "b"], end: [...p, "a"] }),
    mode: "return",
  },
  {
    name: "list: bad key part in prefix — list() itself does not throw",
    run: (kv, p) => kv.list({ prefix: [...p, Symbol("x")] }),
    mode: "return",
  },
  { name: "list: bad key part in prefix (at iteration)", run: async (kv, p) => { for await (const _ of kv.list({ prefix: [...p, Symbol("x")] })); }, mode: "reject", error: ["TypeError", TYPE_ERR] },
  { name: "list: bad cursor — list() itself does not throw", run: (kv, p) => kv.list({ prefix: p }, { cursor: "!!!" }), mode: "return" },
  { name: "list: bad cursor (at iteration)", run: async (kv, p) => { for await (const _ of kv.list({ prefix: p }, { cursor: "!!!" })); }, mode: "reject", error: ["TypeError", "invalid cursor"] },
  {
    name: "list: cursor outside the range",
    run: async (kv, p) => { for await (const _ of kv.list({ start: [...p, "b"], end: [...p, "c"] }, { cursor: "AQ" })); },
    mode: "reject",
    error: ["TypeError", "invalid cursor"],
  },
  { name: "list: cursor before the first next()", run: (kv, p) => kv.list({ prefix: p }).cursor, mode: "throw", error: ["Error", "Cannot get cursor before first iteration"] },
  {
    name: "list: bad consistency",
    run: async (kv, p) => { for await (const _ of kv.list({ prefix: p }, { consistency: "x" })); },
    mode: "reject",
    error: ["TypeError", "unknown variant `x`, expected `strong` or `eventual`"],
  },
  {
    name: "get: bad consistency",
    run: (kv, p) => kv.get([...p, "a"], { consistency: "x" }),
    mode: "reject",
    error: ["TypeError", "unknown variant `x`, expected `strong` or `eventual`"],
  },

  // ---- KvU64
  { name: "KvU64: negative", run: () => new KvU64(-1n), mode: "throw", error: ["RangeError", "Value must be a positive bigint: received -1"] },
  { name: "KvU64: 2^64", run: () => new KvU64(2n ** 64n), mode: "throw", error: ["RangeError", "Value must fit in a 64-bit unsigned integer"] },
  { name: "KvU64: a number", run: () => new KvU64(1), mode: "throw", error: ["TypeError", "Value must be a bigint: received number"] },
  { name: "KvU64: a string", run: () => new KvU64("1"), mode: "throw", error: ["TypeError", "Value must be a bigint: received string"] },
  { name: "KvU64: 2^64-1 accepted", run: () => new KvU64(2n ** 64n - 1n).value, mode: "return", result: (r) => r, value: 2n ** 64n - 1n },
  { name: "sum: negative operand", run: (kv, p) => kv.atomic().sum([...p, "s"], -1n), mode: "throw", error: ["RangeError", "Value must be a positive bigint: received -1"] },
  { name: "sum: number operand", run: (kv, p) => kv.atomic().sum([...p, "s"], 1), mode: "throw", error: ["TypeError", "Value must be a bigint: received number"] },
  { name: "max: 2^64 operand", run: (kv, p) => kv.atomic().max([...p, "s"], 2n ** 64n), mode: "throw", error: ["RangeError", "Value must fit in a 64-bit unsigned integer"] },
  // Decided by the server (the stored value is not a U64): a 400, surfaced as Deno's TypeError.
  { name: "sum on a stored string (server-side)", run: async (kv, p) => { await kv.set([...p, "s"], "str"); return kv.atomic().sum([...p, "s"], 1n).commit(); }, mode: "reject", error: ["TypeError", "Failed to perform 'sum' mutation on a non-U64 value in the database"] },
  { name: "min on a stored string (server-side)", run: async (kv, p) => { await kv.set([...p, "s"], "str"); return kv.atomic().min([...p, "s"], 1n).commit(); }, mode: "reject", error: ["TypeError", "Failed to perform 'min' mutation on a non-U64 value in the database"] },
  { name: "max on a stored number (server-side)", run: async (kv, p) => { await kv.set([...p, "s"], 5); return kv.atomic().max([...p, "s"], 1n).commit(); }, mode: "reject", error: ["TypeError", "Failed to perform 'max' mutation on a non-U64 value in the database"] },
  { name: "sum on stored bytes (server-side)", run: async (kv, p) => { await kv.set([...p, "s"], new Uint8Array(8)); return kv.atomic().sum([...p, "s"], 1n).commit(); }, mode: "reject", error: ["TypeError", "Failed to perform 'sum' mutation on a non-U64 value in the database"] },

  // ---- mutate()
  { name: "mutate: unknown type", run: (kv, p) => kv.atomic().mutate({ type: "foo", key: [...p, "a"] }), mode: "throw", error: ["TypeError", "Invalid mutation type"] },
  { name: "mutate: delete with a value", run: (kv, p) => kv.atomic().mutate({ type: "delete", key: [...p, "a"], value: 1 }), mode: "throw", error: ["TypeError", "Invalid mutation 'delete' with value"] },
  { name: "mutate: set without value", run: (kv, p) => kv.atomic().mutate({ type: "set", key: [...p, "a"] }), mode: "throw", error: ["TypeError", "Invalid mutation 'set' without value"] },
  { name: "mutate: sum without value", run: (kv, p) => kv.atomic().mutate({ type: "sum", key: [...p, "a"] }), mode: "throw", error: ["TypeError", "Invalid mutation 'sum' without value"] },
  { name: "mutate: set with value undefined is a value", run: (kv, p) => kv.atomic().mutate({ type: "set", key: [...p, "a"], value: undefined }).commit(), mode: "resolve", result: (r) => r.ok, value: true },
  { name: "mutate: min with a string operand (server-side)", run: (kv, p) => kv.atomic().mutate({ type: "min", key: [...p, "a"], value: "x" }).commit(), mode: "reject", error: ["TypeError", "Failed to perform 'min' mutation on a non-U64 operand"] },
  { name: "mutate: set with negative expireIn (throws at the call)", run: (kv, p) => kv.atomic().mutate({ type: "set", key: [...p, "a"], value: 1, expireIn: -1 }), mode: "throw", error: ["TypeError", "expireIn must be a non-negative integer: received -1"] },

  // ---- enqueue
  { name: "enqueue: delay -1", run: (kv) => kv.enqueue(1, { delay: -1 }), mode: "reject", error: ["TypeError", "Delay must be >= 0: received -1"] },
  { name: "enqueue: delay 30 days + 1 ms", run: (kv) => kv.enqueue(1, { delay: 30 * 24 * 3600 * 1000 + 1 }), mode: "reject", error: ["TypeError", "Delay cannot be greater than 30 days: received 2592000001"] },
  { name: "enqueue: delay Infinity", run: (kv) => kv.enqueue(1, { delay: Infinity }), mode: "reject", error: ["TypeError", "Delay cannot be greater than 30 days: received Infinity"] },
  { name: "enqueue: delay NaN", run: (kv) => kv.enqueue(1, { delay: NaN }), mode: "reject", error: ["TypeError", "Delay cannot be NaN"] },
  { name: "enqueue: delay of exactly 30 days accepted", run: (kv, p) => failingAtomic(kv, p).enqueue(1, { delay: 30 * 24 * 3600 * 1000 }).commit(), mode: "resolve", result: (r) => r.ok, value: false },
  { name: "atomic().enqueue: delay -1 (throws at the call)", run: (kv) => kv.atomic().enqueue(1, { delay: -1 }), mode: "throw", error: ["TypeError", "Delay must be >= 0: received -1"] },
  { name: "enqueue: backoffSchedule of 6 intervals", run: (kv) => kv.enqueue(1, { backoffSchedule: [1, 2, 3, 4, 5, 6] }), mode: "reject", error: ["TypeError", "Invalid backoffSchedule, max 5 intervals allowed"] },
  { name: "atomic().enqueue: backoffSchedule of 6 intervals (throws at the call)", run: (kv) => kv.atomic().enqueue(1, { backoffSchedule: [1, 2, 3, 4, 5, 6] }), mode: "throw", error: ["TypeError", "Invalid backoffSchedule, max 5 intervals allowed"] },
  { name: "enqueue: backoffSchedule interval over 1 hour", run: (kv) => kv.enqueue(1, { backoffSchedule: [1, 3600001] }), mode: "reject", error: ["TypeError", "Invalid backoffSchedule, interval at index 1 is invalid"] },
  { name: "enqueue: backoffSchedule negative interval", run: (kv) => kv.enqueue(1, { backoffSchedule: [-1] }), mode: "reject", error: ["TypeError", "Invalid backoffSchedule, interval at index 0 is invalid"] },
  { name: "enqueue: backoffSchedule NaN interval", run: (kv) => kv.enqueue(1, { backoffSchedule: [NaN] }), mode: "reject", error: ["TypeError", "Invalid backoffSchedule, interval at index 0 is invalid"] },
  { name: "enqueue: backoffSchedule of 1 hour accepted", run: (kv, p) => failingAtomic(kv, p).enqueue(1, { backoffSchedule: [3600000] }).commit(), mode: "resolve", result: (r) => r.ok, value: false },
  { name: "enqueue: 10 keysIfUndelivered accepted", run: (kv, p) => failingAtomic(kv, p).enqueue(1, { keysIfUndelivered: Array.from({ length: 10 }, (_, i) => [...p, "k", i]) }).commit(), mode: "resolve", result: (r) => r.ok, value: false },
  {
    name: "enqueue: 11 keysIfUndelivered accepted",
    run: (kv, p) => failingAtomic(kv, p).enqueue(1, { keysIfUndelivered: Array.from({ length: 11 }, (_, i) => [...p, "k", i]) }).commit(),
    mode: "resolve",
    result: (r) => r.ok,
    value: false,
    differs: "openkv (embedded and served, like denokv) allows at most 10 keysIfUndelivered; Deno's local KV has no limit",
    package: { mode: "reject", error: ["TypeError", "Too many keysIfUndelivered (max 10)"], result: undefined },
  },
  {
    name: "enqueue: a keysIfUndelivered key over 2048 bytes is accepted",
    run: (kv, p) => failingAtomic(kv, p).enqueue(1, { keysIfUndelivered: [[...p, "x".repeat(2049)]] }).commit(),
    mode: "resolve",
    result: (r) => r.ok,
    value: false,
    differs: "openkv checks dead-letter keys like write keys when the message is enqueued (a dead letter to such a key could never be written); Deno's local KV does not",
    package: { mode: "reject", error: ["TypeError", "Key too large for write (max 2048 bytes)"], result: undefined },
  },
  {
    name: "enqueue: an empty keysIfUndelivered key is accepted",
    run: (kv, p) => failingAtomic(kv, p).enqueue(1, { keysIfUndelivered: [[]] }).commit(),
    mode: "resolve",
    result: (r) => r.ok,
    value: false,
    differs: "openkv refuses an empty dead-letter key when the message is enqueued (it could never be written); Deno's local KV does not",
    package: { mode: "reject", error: ["TypeError", "invalid key: key cannot be empty"], result: undefined },
  },
  { name: "enqueue: payload too large", run: (kv) => kv.enqueue("x".repeat(65537)), mode: "reject", error: ["TypeError", "enqueue payload too large (max 65536 bytes)"] },
  { name: "enqueue: payload too large (65533 chars = 65539 V8 bytes)", run: (kv) => kv.enqueue("x".repeat(65533)), mode: "reject", error: ["TypeError", "enqueue payload too large (max 65536 bytes)"] },
  { name: "enqueue: Uint8Array payload too large (V8-serialized)", run: (kv) => kv.enqueue(new Uint8Array(65537)), mode: "reject", error: ["TypeError", "enqueue payload too large (max 65536 bytes)"] },
  { name: "atomic().enqueue: payload too large (at commit)", run: (kv) => kv.atomic().enqueue("x".repeat(65537)).commit(), mode: "reject", error: ["TypeError", "enqueue payload too large (max 65536 bytes)"] },

  // ---- expireIn
  { name: "expireIn: -5", run: (kv, p) => kv.set([...p, "e"], 1, { expireIn: -5 }), mode: "reject", error: ["TypeError", "expireIn must be a non-negative integer: received -5"] },
  { name: "expireIn: NaN", run: (kv, p) => kv.set([...p, "e"], 1, { expireIn: NaN }), mode: "reject", error: ["TypeError", "expireIn must be a non-negative integer: received NaN"] },
  { name: "expireIn: 1.5", run: (kv, p) => kv.set([...p, "e"], 1, { expireIn: 1.5 }), mode: "reject", error: ["TypeError", "expireIn must be a non-negative integer: received 1.5"] },
  { name: "expireIn: Infinity", run: (kv, p) => kv.set([...p, "e"], 1, { expireIn: Infinity }), mode: "reject", error: ["TypeError", "expireIn must be a non-negative integer: received Infinity"] },
  { name: "expireIn: a string", run: (kv, p) => kv.set([...p, "e"], 1, { expireIn: "5" }), mode: "reject", error: ["TypeError", "expireIn must be a non-negative integer: received 5"] },
  {
    name: "expireIn: -5 in atomic().set (throws at the call)",
    run: (kv, p) => kv.atomic().set([...p, "e"], 1, { expireIn: -5 }),
    mode: "throw",
    error: ["TypeError", "expireIn must be a non-negative integer: received -5"],
  },
  { name: "expireIn: -5 in atomic().set (at commit)", run: async (kv, p) => { const op = kv.atomic(); try { op.set([...p, "e"], 1, { expireIn: -5 }); } catch (e) { return Promise.reject(e); } return op.commit(); }, mode: "reject", error: ["TypeError", "expireIn must be a non-negative integer: received -5"] },

  // ---- misc
  { name: "await kv.atomic() (then)", run: async (kv) => { await kv.atomic(); }, mode: "reject", error: ["TypeError", "'Deno.AtomicOperation' is not a promise: did you forget to call 'commit()'"] },
  { name: "watch: 11 keys", run: (kv, p) => kv.watch(Array.from({ length: 11 }, (_, i) => [...p, "w", i])), mode: "throw", error: ["TypeError", "Too many keys (max 10)"] },

  // ---- after close()
  { name: "closed: get", closed: true, run: (kv) => kv.get(["a"]), mode: "reject", error: ["BadResource", "Bad resource ID"], badResource: true },
  { name: "closed: getMany", closed: true, run: (kv) => kv.getMany([["a"]]), mode: "reject", error: ["BadResource", "Bad resource ID"], badResource: true },
  { name: "closed: set", closed: true, run: (kv) => kv.set(["a"], 1), mode: "reject", error: ["BadResource", "Bad resource ID"], badResource: true },
  { name: "closed: delete", closed: true, run: (kv) => kv.delete(["a"]), mode: "reject", error: ["BadResource", "Bad resource ID"], badResource: true },
  { name: "closed: list() returns an iterator", closed: true, run: (kv) => kv.list({ prefix: ["a"] }), mode: "return" },
  { name: "closed: list iteration", closed: true, run: (kv) => kv.list({ prefix: ["a"] }).next(), mode: "reject", error: ["BadResource", "Bad resource ID"], badResource: true },
  { name: "closed: atomic commit", closed: true, run: (kv) => kv.atomic().set(["a"], 1).commit(), mode: "reject", error: ["BadResource", "Bad resource ID"], badResource: true },
  { name: "closed: atomic sum", closed: true, run: (kv) => kv.atomic().sum(["a"], 1n).commit(), mode: "reject", error: ["BadResource", "Bad resource ID"], badResource: true },
  { name: "closed: enqueue", closed: true, run: (kv) => kv.enqueue(1), mode: "reject", error: ["BadResource", "Bad resource ID"], badResource: true },
  { name: "closed: watch", closed: true, run: (kv) => kv.watch([["a"]]), mode: "throw", error: ["BadResource", "Bad resource ID"], badResource: true },
  { name: "closed: close again", closed: true, run: (kv) => kv.close(), mode: "throw", error: ["BadResource", "Bad resource ID"], badResource: true },
  { name: "closed: [Symbol.dispose] is a no-op", closed: true, run: (kv) => kv[Symbol.dispose](), mode: "return" },
  { name: "closed: listenQueue", closed: true, run: (kv) => kv.listenQueue(() => {}), mode: "reject", error: ["Error", "Queue already closed"] },
];

/** Runs one case: {mode: "throw"|"reject"|"return"|"resolve", error?, value?}. */
async function outcome(c, kv, p) {
  let returned;
  try {
    returned = c.run(kv, p);
  } catch (error) {
    return { mode: "throw", error };
  }
  if (!(returned instanceof Promise)) return { mode: "return", value: returned };
  try {
    return { mode: "resolve", value: await withTimeout(returned, CASE_TIMEOUT_MS, c.name) };
  } catch (error) {
    return { mode: "reject", error };
  }
}

function describe(o) {
  if (o.error) return `${o.mode}: ${o.error?.name}: ${o.error?.message}`;
  return `${o.mode}: ${String(o.value?.ok ?? o.value)}`;
}

/** Asserts that `o` is what the table says; `badResourceClass` is the runtime's BadResource. */
function assertOutcome(c, o, badResourceClass) {
  assert.equal(o.mode, c.mode, `${c.name}: expected ${c.mode}, got ${describe(o)}`);
  if (c.error) {
    const [name, message] = c.error;
    assert.ok(o.error instanceof Error, `${c.name}: not an Error: ${o.error}`);
    assert.equal(o.error.name, name, `${c.name}: class (message: ${o.error.message})`);
    assert.equal(o.error.message, message, `${c.name}: message`);
    const builtin = { TypeError, RangeError, Error }[name];
    if (builtin) {
      assert.ok(o.error instanceof builtin, `${c.name}: instanceof ${name}`);
      if (name === "Error") {
        assert.ok(!(o.error instanceof TypeError) && !(o.error instanceof RangeError), `${c.name}: a plain Error`);
      }
    }
    if (c.badResource) assert.ok(o.error instanceof badResourceClass, `${c.name}: instanceof BadResource`);
  }
  if (c.result) assert.deepEqual(c.result(o.value), c.value, `${c.name}: result`);
}

async function cleanup(kv, p) {
  const op = kv.atomic();
  let n = 0;
  for await (const e of kv.list({ prefix: p })) {
    op.delete(e.key);
    n++;
  }
  if (n) await op.commit();
}

async function runPackage(c) {
  assert.ok(KV_URL, "set KV_URL (and DENO_KV_ACCESS_TOKEN) to an openkv serve URL");
  const p = prefix(c.name);
  const kv = await withTimeout(openKv(KV_URL, { accessToken: ACCESS_TOKEN }), CASE_TIMEOUT_MS, "openKv");
  let closed = false;
  try {
    if (c.closed) {
      kv.close();
      closed = true;
    }
    const o = await outcome(c, kv, p);
    assertOutcome(c, o, BadResource);
  } finally {
    if (!closed) {
      await withTimeout(cleanup(kv, p), CASE_TIMEOUT_MS, "cleanup").catch(() => {});
      kv.close();
    }
  }
}

async function runDenoLocal(c) {
  const kv = await DenoNs.openKv(":memory:");
  let closed = false;
  try {
    if (c.closed) {
      kv.close();
      closed = true;
    }
    const o = await outcome(c, kv, prefix(c.name));
    assertOutcome(c, o, DenoNs.errors.BadResource);
  } finally {
    if (!closed) kv.close();
  }
}

for (const c of CASES) {
  const opts = { timeout: CASE_TIMEOUT_MS * 2 + 4_000 };
  if (c.differs) {
    // A documented difference: the package's own outcome is asserted (`package` overrides).
    assert.ok(c.package, `${c.name}: a row that differs must say what the package does`);
    test(`package: ${c.name} [differs: ${c.differs}]`, opts, () => runPackage({ ...c, ...c.package }));
  } else {
    test(`package: ${c.name}`, opts, () => runPackage(c));
  }
  if (UNDER_DENO) test(`Deno local KV: ${c.name}`, opts, () => runDenoLocal(c));
}

test("the table covers every class of error it claims to", { timeout: 2_000 }, () => {
  const names = new Set(CASES.filter((c) => c.error).map((c) => c.error[0]));
  assert.deepEqual([...names].sort(), ["BadResource", "Error", "RangeError", "TypeError"]);
  // Every case name is unique (test names are how failures are found).
  assert.equal(new Set(CASES.map((c) => c.name)).size, CASES.length);
});

test("BadResource after close is Deno's class under Deno, the package's own under Node", { timeout: 10_000 }, async () => {
  assert.ok(KV_URL, "set KV_URL");
  const kv = await openKv(KV_URL, { accessToken: ACCESS_TOKEN });
  kv.close();
  const error = await kv.get(["a"]).then(() => null, (e) => e);
  assert.ok(error instanceof BadResource);
  assert.equal(error.name, "BadResource");
  if (UNDER_DENO) {
    assert.equal(BadResource, DenoNs.errors.BadResource);
    assert.ok(error instanceof DenoNs.errors.BadResource);
  } else {
    assert.ok(error instanceof Error);
  }
});
