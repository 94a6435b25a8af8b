// A queue listener process for the Rust tests (crates/openkv-cli/tests/js_client.rs and
// crates/openkv-testsuite/tests/js_client_interop.rs). Runs in Node and Deno:
//   listen.mjs <count> [hang-value]
// Prints one JSON line per message received (`{"got": <value as JSON>}`), flushes, and after
// `count` messages closes the kv (the listenQueue promise must resolve) and prints
// `{"done": true}`. A message equal to `hang-value` is never finished (its handler hangs): to
// leave it in flight for a kill test.
import process from "node:process";
import { openKv } from "../../clients/js/mod.js";

const count = Number(process.argv[2] ?? "1");
const hang = process.argv[3];
const kv = await openKv(process.env.KV_URL);
let seen = 0;
let allSeen;
const done = new Promise((resolve) => (allSeen = resolve));
const listening = kv.listenQueue(async (value) => {
  console.log(JSON.stringify({ got: value }, (_, v) => (typeof v === "bigint" ? `${v}n` : v)));
  if (hang !== undefined && value === hang) await new Promise(() => {});
  if (++seen >= count) allSeen();
});
console.log(JSON.stringify({ listening: true }));
await done;
kv.close();
await listening;
console.log(JSON.stringify({ done: true }));
process.exit(0);
