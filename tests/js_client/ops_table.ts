// One table of Deno.Kv operations, run through a given client against a KV Connect server, each
// result printed as one JSON line; crates/openkv-cli/tests/js_client.rs runs it through the Deno
// CLI's own client and through @openkv/client against the same server and compares the output.
//   deno run -A --unstable-kv tests/js_client/ops_table.ts <deno|openkv>
// (KV_URL and DENO_KV_ACCESS_TOKEN from the environment). Each client works under its own
// prefix ["ops", <client>, <random>]; versionstamps are printed as "vs<n>", n counting distinct
// versionstamps in order of appearance, so runs at different times compare equal.

import { openKv as openOpenKv } from "../../clients/js/mod.js";

const client = Deno.args[0];
const url = Deno.env.get("KV_URL")!;
const kv: Deno.Kv = client === "openkv"
  ? (await openOpenKv(url)) as unknown as Deno.Kv
  : await Deno.openKv(url);
const p: Deno.KvKey = ["ops", client, crypto.randomUUID()];
const k = (...parts: Deno.KvKeyPart[]): Deno.KvKey => [...p, ...parts];

const stamps = new Map<string, string>();
const vs = (s: string | null) => {
  if (s === null) return null;
  if (!stamps.has(s)) stamps.set(s, `vs${stamps.size}`);
  return stamps.get(s);
};

/** A printable rendering of results: keys without the run's prefix, values typed. */
function show(x: unknown): unknown {
  if (x === undefined) return { $undefined: true };
  // A versionstamp inside a key (set with commitVersionstamp()).
  if (typeof x === "string" && /^[0-9a-f]{20}$/.test(x)) return { $vs: vs(x) };
  if (typeof x === "bigint") return { $bigint: String(x) };
  if (typeof x === "number") {
    return Number.isNaN(x) || !Number.isFinite(x) || Object.is(x, -0) ? { $number: String(x) } : x;
  }
  if (x instanceof Uint8Array) return { $bytes: [...x] };
  if (x instanceof Date) return { $date: x.toISOString() };
  if (x instanceof Map) return { $map: [...x].map(([a, b]) => [show(a), show(b)]) };
  if (x instanceof Set) return { $set: [...x].map(show) };
  if (x instanceof RegExp) return { $regexp: String(x) };
  if (x && typeof x === "object" && x.constructor?.name === "KvU64") {
    return { $u64: String((x as Deno.KvU64).value) };
  }
  if (Array.isArray(x)) return x.map(show);
  if (x && typeof x === "object") {
    const o = x as Record<string, unknown>;
    if ("versionstamp" in o && "key" in o) {
      return { key: show((o.key as Deno.KvKey).slice(p.length)), value: show(o.value), versionstamp: vs(o.versionstamp as string | null) };
    }
    if ("versionstamp" in o && "ok" in o) return { ok: o.ok, versionstamp: vs(o.versionstamp as string) };
    return Object.fromEntries(Object.entries(o).map(([a, b]) => [a, show(b)]));
  }
  return x;
}

async function list(selector: Deno.KvListSelector, options: Deno.KvListOptions = {}) {
  const iter = kv.list(selector, options);
  const out = [];
  for await (const e of iter) {
    // A cursor holds the key's bytes: one with a versionstamp in it differs from run to run.
    const stamped = e.key.some((part) => typeof part === "string" && /^[0-9a-f]{20}$/.test(part));
    out.push({ entry: e, cursor: stamped ? "(holds a versionstamp)" : iter.cursor });
  }
  return out;
}

const ops: [string, () => Promise<unknown>][] = [
  ["set string", () => kv.set(k("a"), "hello")],
  ["set object", () => kv.set(k("b"), { n: 1, list: [1, "x", null], nested: { d: new Date(0) } })],
  ["set bytes", () => kv.set(k("c"), new Uint8Array([0, 1, 255]))],
  ["set u64", () => kv.set(k("d"), new Deno.KvU64(5n))],
  ["set bigint, map, set", () => kv.set(k("e"), { big: 10n ** 20n, m: new Map([[1, "a"]]), s: new Set([1, 2]) })],
  ["set special numbers", () => kv.set(k("f"), [NaN, -0, Infinity, 2 ** 53])],
  ["key parts", () => kv.set(k(new Uint8Array([1, 0]), "s", 1n, -1n, 1.5, -0, true, false), "parts")],
  ["get", () => kv.get(k("a"))],
  ["get missing", () => kv.get(k("nope"))],
  ["get eventual", () => kv.get(k("b"), { consistency: "eventual" })],
  ["getMany", () => kv.getMany([k("a"), k("nope"), k("c"), k("d")])],
  ["list prefix", () => list({ prefix: p })],
  ["list reverse limit", () => list({ prefix: p }, { reverse: true, limit: 3 })],
  ["list start/end", () => list({ start: k("b"), end: k("e") })],
  ["list prefix+start", () => list({ prefix: p, start: k("c") })],
  ["list prefix+end", () => list({ prefix: p, end: k("c") })],
  ["list batchSize 2", () => list({ prefix: p }, { batchSize: 2 })],
  ["list cursor resume", async () => {
    const first = kv.list({ prefix: p }, { limit: 2 });
    for await (const _ of first) { /* two entries */ }
    return list({ prefix: p }, { cursor: first.cursor });
  }],
  ["list cursor reverse resume", async () => {
    const first = kv.list({ prefix: p }, { limit: 2, reverse: true });
    for await (const _ of first) { /* two entries */ }
    return list({ prefix: p }, { cursor: first.cursor, reverse: true });
  }],
  ["atomic check ok", async () => {
    const a = await kv.get(k("a"));
    return kv.atomic().check(a).set(k("a"), "changed").delete(k("b")).commit();
  }],
  ["atomic check fails", () => kv.atomic().check({ key: k("a"), versionstamp: null }).set(k("z"), 1).commit()],
  ["after atomic", () => kv.getMany([k("a"), k("b"), k("z")])],
  ["sum/min/max", async () => {
    await kv.atomic().sum(k("n"), 5n).max(k("mx"), 3n).min(k("mn"), 7n).commit();
    await kv.atomic().sum(k("n"), 2n).max(k("mx"), 9n).min(k("mn"), 4n).commit();
    return kv.getMany([k("n"), k("mx"), k("mn")]);
  }],
  ["sum wraps", async () => {
    await kv.set(k("w"), new Deno.KvU64(2n ** 64n - 1n));
    await kv.atomic().sum(k("w"), 2n).commit();
    return kv.get(k("w"));
  }],
  ["mutate", () => kv.atomic().mutate({ type: "set", key: k("m"), value: 1 }, { type: "delete", key: k("c") }).commit()],
  ["versionstamped key", async () => {
    const r = await kv.set([...k("vk"), kv.commitVersionstamp()], "stamped");
    const entries = await Array.fromAsync(kv.list({ prefix: k("vk") }));
    return { same: entries.length === 1 && entries[0].key.at(-1) === r.versionstamp, r };
  }],
  ["expireIn", async () => {
    await kv.set(k("x"), "short", { expireIn: 50 });
    const before = await kv.get(k("x"));
    await new Promise((r) => setTimeout(r, 1500));
    return [before.value, (await kv.get(k("x"))).value];
  }],
  ["delete", async () => {
    await kv.delete(k("d"));
    return kv.get(k("d"));
  }],
  // Both refuse it with the server's message; the class and wording around it differ (Deno's
  // remote client: Error "KV Connect failed to call …"; the package: TypeError, as Deno's local
  // KV — clients/js/test/errors.test.js pins that).
  ["sum on a string", async () => {
    try {
      await kv.atomic().sum(k("a"), 1n).commit();
      return "no error";
    } catch (e) {
      const message = (e as Error).message;
      return { refused: message.includes("Failed to perform 'sum' mutation on a non-U64 value") };
    }
  }],
  ["final list", () => list({ prefix: p })],
];

for (const [name, run] of ops) {
  let result;
  try {
    result = { ok: show(await run()) };
  } catch (e) {
    result = { error: (e as Error).name, message: (e as Error).message };
  }
  console.log(JSON.stringify({ op: name, ...result }));
}
for await (const e of kv.list({ prefix: p })) await kv.delete(e.key);
kv.close();
