// Queues are not available over KV Connect in the Deno CLI.

import { assertEquals, assertRejects } from "./assert.ts";
import { kvTest } from "./helpers.ts";

const MSG = "Enqueue operations are not supported in KV Connect";

kvTest("enqueue: kv.enqueue rejects over KV Connect", async (kv) => {
  await assertRejects(() => kv.enqueue({ hello: "world" }), Error, MSG);
  await assertRejects(() => kv.enqueue("x", { delay: 1000 }), Error, MSG);
});

kvTest("enqueue: atomic().enqueue rejects and writes nothing", async (kv, p) => {
  await assertRejects(
    () => kv.atomic().set([...p, "k"], "v").enqueue("msg").commit(),
    Error,
    MSG,
  );
  assertEquals((await kv.get([...p, "k"])).versionstamp, null);
});
