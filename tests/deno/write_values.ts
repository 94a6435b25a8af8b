// Usage: deno run -A --unstable-kv write_values.ts <dbpath>
//
// Stores every fixture of values_fixture.ts under ["v", name] (as V8 values,
// the way Deno stores them), plus ["meta", "float16array"] = whether this Deno
// has Float16Array (if not, the `float16array` fixture is absent). Then closes
// the database and prints `wrote <N>`.

import { fixtures, hasFloat16Array, hostObjectFixtures } from "./values_fixture.ts";

const dbPath = Deno.args[0];
if (!dbPath || Deno.args.length !== 1) {
  console.error("usage: write_values.ts <dbpath>");
  Deno.exit(2);
}

const kv = await Deno.openKv(dbPath);
const all = { ...fixtures(), ...(await hostObjectFixtures()) };
for (const [name, value] of Object.entries(all)) {
  const res = await kv.set(["v", name], value);
  if (!res.ok) throw new Error(`set ["v", ${JSON.stringify(name)}] failed`);
}
await kv.set(["meta", "float16array"], hasFloat16Array);
kv.close();
console.log(`wrote ${Object.keys(all).length}`);
