// Usage: deno run -A --unstable-kv count_keys.ts <dbpath> <first key part>
// Opens a Deno KV SQLite file with the Deno CLI, checks that every entry under the prefix
// [<first key part>] reads back with kv.get, and prints "count <n>".
const [path, part] = Deno.args;
const kv = await Deno.openKv(path);
let n = 0;
for await (const entry of kv.list({ prefix: [part] })) {
  const again = await kv.get(entry.key);
  if (again.versionstamp !== entry.versionstamp) {
    console.error(`mismatch at ${JSON.stringify(entry.key)}`);
    Deno.exit(1);
  }
  n += 1;
}
kv.close();
console.log(`count ${n}`);
