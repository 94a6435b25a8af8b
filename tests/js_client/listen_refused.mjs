// Against a server without openkv's queue extension (denokv): listenQueue must reject at
// once with KvConnectError status 404 naming the missing capability — not hang. Prints the
// error's name, status and message as JSON; exits 1 if listenQueue did not reject in 10 s.
import process from "node:process";
import { openKv } from "../../clients/js/mod.js";

const kv = await openKv(process.env.KV_URL);
const timeout = new Promise((resolve) => setTimeout(() => resolve("timeout"), 10_000));
const outcome = await Promise.race([
  kv.listenQueue(() => {}).then(() => "resolved", (error) => error),
  timeout,
]);
kv.close();
if (!(outcome instanceof Error)) {
  console.log(JSON.stringify({ outcome }));
  process.exit(1);
}
console.log(JSON.stringify({ name: outcome.name, status: outcome.status, message: outcome.message }));
process.exit(0);
