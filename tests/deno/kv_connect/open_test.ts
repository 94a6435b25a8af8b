// Opening, closing and authenticating against the KV Connect server.

import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { CLIENT, kvUrl, openKv, RUN_ID, withTimeout } from "./helpers.ts";

Deno.test("open: Deno.openKv(url) returns a working Deno.Kv", async () => {
  const kv = await openKv();
  try {
    if (CLIENT === "openkv") {
      const { Kv } = await import("../../../clients/js/mod.js");
      assert(kv instanceof Kv, "openkv's openKv should return its Kv");
    } else {
      assert(kv instanceof Deno.Kv, "openKv should return a Deno.Kv");
    }
    const key = [RUN_ID, "open: works"];
    const res = await kv.set(key, "hello");
    assertEquals(res.ok, true);
    assertEquals((await kv.get(key)).value, "hello");
    await kv.delete(key);
  } finally {
    kv.close();
  }
});

Deno.test("open: operations after close() reject with BadResource", async () => {
  const kv = await openKv();
  kv.close();
  const key = [RUN_ID, "closed"];
  await assertRejects(() => kv.get(key), Deno.errors.BadResource);
  await assertRejects(() => kv.getMany([key]), Deno.errors.BadResource);
  await assertRejects(() => kv.set(key, 1), Deno.errors.BadResource);
  await assertRejects(() => kv.delete(key), Deno.errors.BadResource);
  await assertRejects(() => kv.atomic().set(key, 1).commit(), Deno.errors.BadResource);
  await assertRejects(() => kv.list({ prefix: [RUN_ID] }).next(), Deno.errors.BadResource);
});

Deno.test("open: two connections see each other's writes", async () => {
  const a = await openKv();
  const b = await openKv();
  try {
    const key = [RUN_ID, "two connections"];
    const res = await a.set(key, { from: "a" });
    const got = await b.get(key);
    assertEquals(got.value, { from: "a" });
    assertEquals(got.versionstamp, res.versionstamp);
    await b.delete(key);
    assertEquals((await a.get(key)).value, null);
  } finally {
    a.close();
    b.close();
  }
});

Deno.test("open: [Symbol.dispose] closes, and is a no-op after close()", async () => {
  let kept: Deno.Kv;
  {
    using kv = await openKv();
    kept = kv;
    await kv.get([RUN_ID, "dispose"]);
  }
  await assertRejects(() => kept.get([RUN_ID, "dispose"]), Deno.errors.BadResource);
  const kv2 = await openKv();
  kv2.close();
  kv2[Symbol.dispose]();
});

Deno.test("open: new Deno.Kv() throws TypeError", () => {
  // deno-lint-ignore no-explicit-any
  assertThrows(() => new (Deno.Kv as any)(), TypeError);
});

async function withToken<T>(token: string | undefined, fn: () => Promise<T>): Promise<T> {
  const saved = Deno.env.get("DENO_KV_ACCESS_TOKEN");
  if (token === undefined) Deno.env.delete("DENO_KV_ACCESS_TOKEN");
  else Deno.env.set("DENO_KV_ACCESS_TOKEN", token);
  try {
    return await fn();
  } finally {
    if (saved === undefined) Deno.env.delete("DENO_KV_ACCESS_TOKEN");
    else Deno.env.set("DENO_KV_ACCESS_TOKEN", saved);
  }
}

Deno.test("open: a wrong access token is refused", async () => {
  await withToken("wrong-token-0123456789", async () => {
    // Deno 2.9 does the metadata exchange at open; accept a failure at the first read too.
    // The refusal must be a 4xx: on a 5xx Deno retries forever (then this times out).
    const err = await assertRejects(() =>
      withTimeout(
        (async () => {
          const kv = await Deno.openKv(kvUrl());
          try {
            await kv.get([RUN_ID, "bad token"]);
          } finally {
            kv.close();
          }
        })(),
        15_000,
        "open with a wrong token",
      )
    );
    assert(!err.message.startsWith("timed out"), err.message);
  });
});

Deno.test("open: a missing access token is refused", async () => {
  await withToken(undefined, async () => {
    const err = await assertRejects(() =>
      withTimeout(
        (async () => {
          const kv = await Deno.openKv(kvUrl());
          try {
            await kv.get([RUN_ID, "no token"]);
          } finally {
            kv.close();
          }
        })(),
        15_000,
        "open without a token",
      )
    );
    assert(!err.message.startsWith("timed out"), err.message);
  });
});
