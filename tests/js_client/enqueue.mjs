// Enqueues messages through @openkv/client, for the Rust tests. Runs in Node and Deno:
//   enqueue.mjs '<JSON array of [value, options]>'
// Values are JSON (strings, numbers, objects); options are enqueue options. Prints
// `enqueued <n>`.
import process from "node:process";
import { openKv } from "../../clients/js/mod.js";

const items = JSON.parse(process.argv[2]);
const kv = await openKv(process.env.KV_URL);
for (const [value, options] of items) {
  const result = await kv.enqueue(value, options ?? {});
  if (!result.ok) throw new Error(`enqueue failed: ${JSON.stringify(result)}`);
}
kv.close();
console.log(`enqueued ${items.length}`);
