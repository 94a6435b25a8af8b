// One phase of crates/openkv-cli/tests/replica_clients.rs, run by Node against a primary
// `openkv serve` whose metadata lists a read replica's eventual endpoint:
//   node tests/replica_clients/phase.mjs <client> <phase> <n>
// <client>: `deno-kv` (@deno/kv from tests/node/node_modules) or `openkv` (clients/js).
// <phase>:
//   seed      writes ["rc", i] = i for i < n through the primary, then reads eventually (a
//             list) until the replica's copy holds all n (at most 30 s);
//   eventual  n gets with { consistency: "eventual" }, each checked;
//   strong    n strong gets (the default, and explicit "strong"), each checked;
//   watch     sets ["rc", "watched"] and waits until an eventual read sees it, watches it:
//             its first state, then a set through the primary, then the change (30 s at most).
// KV_URL is the primary's URL and DENO_KV_ACCESS_TOKEN the token. Prints `ok <phase> <count>`.
import process from "node:process";

const [client, phase, nArg] = process.argv.slice(2);
const n = Number(nArg);
const url = process.env.KV_URL;
const accessToken = process.env.DENO_KV_ACCESS_TOKEN;
if (!url || !accessToken) throw new Error("KV_URL and DENO_KV_ACCESS_TOKEN must be set");
if (!Number.isInteger(n) || n <= 0) throw new Error(`bad n: ${nArg}`);

const modules = {
  "deno-kv": new URL("../node/node_modules/@deno/kv/esm/npm.js", import.meta.url),
  openkv: new URL("../../clients/js/mod.js", import.meta.url),
};
if (!modules[client]) throw new Error(`unknown client ${client} (deno-kv or openkv)`);
const { openKv } = await import(modules[client].href);

/** Rejects after `ms` so that a phase can never hang. */
async function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const kv = await openKv(url, { accessToken });
let count = 0;
try {
  switch (phase) {
    case "seed": {
      for (let i = 0; i < n; i++) {
        const r = await kv.set(["rc", i], i);
        check(r.ok, `set ["rc", ${i}] failed`);
      }
      const deadline = Date.now() + 30_000;
      for (;;) {
        const seen = [];
        for await (const e of kv.list({ prefix: ["rc"] }, { consistency: "eventual" })) {
          if (typeof e.key[1] === "number") seen.push(e.value);
        }
        if (seen.length === n && seen.every((v, i) => v === i)) break;
        check(Date.now() < deadline, `the replica did not catch up: ${JSON.stringify(seen)}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      count = n;
      break;
    }
    case "eventual":
    case "strong": {
      for (let i = 0; i < n; i++) {
        const options = phase === "eventual"
          ? { consistency: "eventual" }
          : i % 2 === 0
          ? {}
          : { consistency: "strong" };
        const e = await kv.get(["rc", i], options);
        check(e.value === i, `${phase} get ["rc", ${i}]: ${JSON.stringify(e.value)}`);
        count++;
      }
      break;
    }
    case "watch": {
      // The key has a value before the watch starts: @deno/kv's watch stream (non-raw) does
      // not emit a first state in which every watched key is absent.
      const key = ["rc", "watched"];
      const before = await kv.set(key, "before");
      check(before.ok, "set of the watched key failed");
      const deadline = Date.now() + 30_000;
      const eventually = { consistency: "eventual" };
      while ((await kv.get(key, eventually)).versionstamp !== before.versionstamp) {
        check(Date.now() < deadline, "the replica did not catch up with the watched key");
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const reader = kv.watch([key]).getReader();
      try {
        const first = await within(10_000, "the first watch state", reader.read());
        check(!first.done, "the watch stream ended at once");
        check(first.value[0].value === "before", `first state: ${JSON.stringify(first.value)}`);
        const w = await kv.set(key, "after");
        check(w.ok, "set of the watched key failed");
        for (;;) {
          const next = await within(deadline - Date.now(), "the watched change", reader.read());
          check(!next.done, "the watch stream ended before the change");
          count++;
          const [entry] = next.value;
          if (entry.value === "before") continue; // an unchanged state repeated
          check(entry.value === "after", `watched value: ${JSON.stringify(entry.value)}`);
          check(entry.versionstamp === w.versionstamp, "the watch saw another versionstamp");
          break;
        }
      } finally {
        await reader.cancel().catch(() => {});
      }
      break;
    }
    default:
      throw new Error(`unknown phase ${phase}`);
  }
} finally {
  kv.close();
}
console.log(`ok ${phase} ${count}`);
