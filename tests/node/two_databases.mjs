// The npm client @deno/kv against two databases of one `openkv serve --data-dir`, through
// their /databases/<name>/connect URLs: KV_URL is the server, DATABASES two names, the token
// in DENO_KV_ACCESS_TOKEN. Each database gets its own value under one key and must read back
// its own. (It does not read what the Deno CLI wrote there before: Node 20's V8 cannot read
// the serialization format of Deno's newer V8.) Run by crates/openkv-cli/tests/many_databases.rs;
// prints "separate <a> <b>".
import { openKv } from "@deno/kv";

const [a, b] = process.env.DATABASES.split(",");
const open = (name) =>
  openKv(`${process.env.KV_URL}/databases/${name}/connect`, {
    accessToken: process.env.DENO_KV_ACCESS_TOKEN,
  });
const kvA = await open(a);
const kvB = await open(b);
for (const [kv, name] of [[kvA, a], [kvB, b]]) {
  await kv.set(["owner"], `node:${name}`);
}
const seenA = (await kvA.get(["owner"])).value;
const seenB = (await kvB.get(["owner"])).value;
if (seenA !== `node:${a}` || seenB !== `node:${b}`) {
  throw new Error(`mixed up: ${a} has ${seenA}, ${b} has ${seenB}`);
}
kvA.close();
kvB.close();
console.log(`separate ${a} ${b}`);
