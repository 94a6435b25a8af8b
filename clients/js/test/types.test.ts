// The package's types (mod.d.ts) as an app uses them: `deno test` type-checks this file first,
// so a declaration that does not fit the calls below fails the run. (Node does not run .ts
// files; the JavaScript behind these calls is tested by the other files here.) Runs against
// KV_URL / DENO_KV_ACCESS_TOKEN like the rest.

import { test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import {
  type AtomicOperation,
  type EnqueueOptions,
  type Kv,
  KvConnectError,
  type KvEntryMaybe,
  type KvKey,
  KvU64,
  limits,
  openKv,
  OutcomeUnknownError,
} from "../mod.js";

test("typed calls compile and run", { timeout: 15_000 }, async () => {
  const kv: Kv = await openKv(process.env.KV_URL!, { accessToken: process.env.DENO_KV_ACCESS_TOKEN });
  try {
    const prefix: KvKey = ["types", crypto.randomUUID()];
    const key: KvKey = [...prefix, "user", 1n];
    const committed = await kv.set(key, { name: "Ada" }, { expireIn: 60_000 });
    assert.match(committed.versionstamp, /^[0-9a-f]{20}$/);
    const entry: KvEntryMaybe<{ name: string }> = await kv.get<{ name: string }>(key);
    assert.equal(entry.value?.name, "Ada");
    const [a, b] = await kv.getMany<[{ name: string }, number]>([key, [...prefix, "n"]]);
    assert.equal(a.value?.name, "Ada");
    assert.equal(b.value, null);
    const op: AtomicOperation = kv.atomic()
      .check({ key, versionstamp: committed.versionstamp })
      .sum([...prefix, "count"], 1n)
      .mutate({ type: "max", key: [...prefix, "max"], value: new KvU64(3n) });
    const options: EnqueueOptions = { delay: 60_000, backoffSchedule: [100], keysIfUndelivered: [key] };
    const result = await op.enqueue({ job: 1 }, options).commit();
    assert.equal(result.ok, true);
    const listed: string[] = [];
    for await (const e of kv.list<unknown>({ prefix }, { limit: 10, batchSize: 5 })) {
      listed.push(String(e.key.at(-1)));
    }
    assert.deepEqual(listed.sort(), ["1", "count", "max"]);
    assert.ok(limits.MAX_VALUE_BYTES === 65536);
    assert.ok(new KvConnectError("x", 404).status === 404);
    assert.ok(new OutcomeUnknownError("x") instanceof Error);
    for await (const e of kv.list({ prefix })) await kv.delete(e.key);
  } finally {
    kv.close();
  }
});
