// Enqueues through `openkv serve` with the npm client @deno/kv (which sends AtomicWrite
// enqueues over KV Connect, unlike the Deno CLI). KV_URL and DENO_KV_ACCESS_TOKEN name the
// server. Run by crates/openkv-cli/tests/deno_kv_npm.rs; prints "enqueued 2".
import { openKv } from "@deno/kv";

const kv = await openKv(process.env.KV_URL, { accessToken: process.env.DENO_KV_ACCESS_TOKEN });
await kv.enqueue({ from: "@deno/kv", n: 1, tags: ["a", "b"] });
const result = await kv.atomic().enqueue({ from: "@deno/kv", n: 2 }, { delay: 100 }).commit();
if (!result.ok) throw new Error("atomic enqueue failed");
kv.close();
console.log("enqueued 2");
