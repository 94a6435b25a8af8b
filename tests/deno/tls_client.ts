// Deno's KV Connect client against `openkv serve` over HTTPS.
// Usage: KV_URL=https://localhost:PORT DENO_KV_ACCESS_TOKEN=… deno run --cert ca.pem … tls_client.ts
// (run by crates/openkv-cli/tests/serve_tls.rs, whose test CA signed the server's certificate).
// A set, a get, two atomic sums, a watch's first state and a list; prints one JSON line.
const kv = await Deno.openKv(Deno.env.get("KV_URL"));
try {
  const set = await kv.set(["tls", "greeting"], { hello: "over https", n: 42n });
  const got = await kv.get<{ hello: string; n: bigint }>(["tls", "greeting"]);
  const sums = [];
  for (const by of [5n, 2n]) {
    sums.push((await kv.atomic().sum(["tls", "count"], by).commit()).ok);
  }
  const count = await kv.get<Deno.KvU64>(["tls", "count"]);
  const watch = kv.watch([["tls", "greeting"]]).getReader();
  const first = await watch.read();
  await watch.cancel();
  const listed = [];
  for await (const e of kv.list({ prefix: ["tls"] })) listed.push(e.key.join("/"));
  console.log(JSON.stringify({
    setOk: set.ok,
    hello: got.value?.hello,
    n: String(got.value?.n),
    sums,
    count: String(count.value?.value),
    watched: first.value?.[0].versionstamp === set.versionstamp,
    listed,
  }));
} finally {
  kv.close();
}
