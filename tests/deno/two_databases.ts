// Usage: deno run -A --unstable-kv two_databases.ts <server URL> <name a> <name b>
// Opens two databases of one `openkv serve --data-dir` through their /databases/<name>/connect
// URLs (token from DENO_KV_ACCESS_TOKEN), writes a different value under one key in each,
// and checks that each reads back its own. Prints "separate <a> <b>".
const [server, a, b] = Deno.args;
const kvA = await Deno.openKv(`${server}/databases/${a}/connect`);
const kvB = await Deno.openKv(`${server}/databases/${b}/connect`);
await kvA.set(["owner"], `deno:${a}`);
await kvB.set(["owner"], `deno:${b}`);
const seenA = (await kvA.get(["owner"])).value;
const seenB = (await kvB.get(["owner"])).value;
if (seenA !== `deno:${a}` || seenB !== `deno:${b}`) {
  console.error(`mixed up: ${a} has ${seenA}, ${b} has ${seenB}`);
  Deno.exit(1);
}
kvA.close();
kvB.close();
console.log(`separate ${a} ${b}`);
