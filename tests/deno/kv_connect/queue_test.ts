// Queues over KV Connect: the Deno CLI's client refuses every enqueue before sending it;
// openkv's JS client (KV_CLIENT=openkv) sends them, atomically with the rest of the write.
// Delivery is tested in clients/js/test/.

import { assert, assertEquals, assertRejects } from "./assert.ts";
import { CLIENT, kvTest } from "./helpers.ts";

const MSG = "Enqueue operations are not supported in KV Connect";

kvTest("enqueue: kv.enqueue over KV Connect (Deno: rejected; openkv: committed)", async (kv) => {
  if (CLIENT === "openkv") {
    assertEquals((await kv.enqueue({ hello: "world" }, { delay: 1000 })).ok, true);
    return;
  }
  await assertRejects(() => kv.enqueue({ hello: "world" }), Error, MSG);
  await assertRejects(() => kv.enqueue("x", { delay: 1000 }), Error, MSG);
});

kvTest("enqueue: atomic().enqueue (Deno: rejected, writes nothing; openkv: all or nothing)", async (kv, p) => {
  const key = [...p, "k"];
  if (CLIENT === "openkv") {
    const failed = await kv.atomic().check({ key, versionstamp: "00000000000000010000" })
      .set(key, "v").enqueue("msg", { delay: 1000 }).commit();
    assertEquals(failed.ok, false);
    assertEquals((await kv.get(key)).versionstamp, null);
    const done = await kv.atomic().set(key, "v").enqueue("msg", { delay: 1000 }).commit();
    assert(done.ok);
    assertEquals((await kv.get(key)).versionstamp, done.versionstamp);
    return;
  }
  await assertRejects(
    () => kv.atomic().set(key, "v").enqueue("msg").commit(),
    Error,
    MSG,
  );
  assertEquals((await kv.get(key)).versionstamp, null);
});
