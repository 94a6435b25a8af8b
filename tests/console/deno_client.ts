// The Deno CLI as a client of `openkv serve` for the console's browser tests
// (console.test.mjs): `deno run --unstable-kv deno_client.ts <connect URL> <command>`, with the
// token in DENO_KV_ACCESS_TOKEN. Commands:
//   seed            every key-part type and value type, a long string, 1,250 keys under
//                   ["many"], and the keys the other scenarios start from; prints "seeded N"
//   conflict <json> sets ["edit", "doc"] to the JSON value (the write that races the editor)
//   set-string <key-json> <text>
//                   sets the key (a JSON array of strings and numbers) to the text
const [url, command, ...args] = Deno.args;
const kv = await Deno.openKv(url);

async function commitAll(entries: [Deno.KvKey, unknown][]) {
  for (let i = 0; i < entries.length; i += 200) {
    const op = kv.atomic();
    for (const [key, value] of entries.slice(i, i + 200)) op.set(key, value);
    const result = await op.commit();
    if (!result.ok) throw new Error(`commit of entries ${i}… failed`);
  }
}

// The long string: > 10 KB, its end marked, so a truncated rendering shows.
function longString(): string {
  return Array.from({ length: 2000 }, (_, i) => `line ${i};`).join(" ") + " THE-END-OF-THE-LONG-STRING";
}

if (command === "seed") {
  const entries: [Deno.KvKey, unknown][] = [
    // Every value type, under ["values", <type>].
    [["values", "string"], "hello, console"],
    [["values", "number"], -12.5],
    [["values", "bigint"], 12345678901234567890n],
    [["values", "boolean"], true],
    [["values", "null"], null],
    [["values", "undefined"], undefined],
    [["values", "date"], new Date("2024-01-02T03:04:05.678Z")],
    [["values", "regexp"], /a+b/gi],
    [["values", "map"], new Map<unknown, unknown>([["k", 1], [2, "two"]])],
    [["values", "set"], new Set<unknown>([1, "x"])],
    [["values", "array"], [1, "two", [3, { four: 4 }]]],
    [["values", "object"], { name: "Ada", nested: { deep: { list: [1, 2, { x: null }] }, big: 7n } }],
    [["values", "bytes"], new Uint8Array([0, 1, 2, 254, 255])],
    [["values", "u64"], new Deno.KvU64(18446744073709551615n)],
    [["values", "long"], longString()],
    // Every key-part type, under ["parts", <part>].
    [["parts", "str"], "a string part"],
    [["parts", -7], "a negative number part"],
    [["parts", 2.5], "a float part"],
    [["parts", 42n], "a bigint part"],
    [["parts", true], "a true part"],
    [["parts", false], "a false part"],
    [["parts", new Uint8Array([1, 2, 3])], "a bytes part"],
    // The editor's entry, the live rows, the prefix to delete and its neighbour.
    [["edit", "doc"], { n: 1, by: "seed" }],
    [["live", "a"], "live a, first"],
    [["live", "b"], "live b, first"],
    [["doomed-not", 1], "must survive the deletion of [\"doomed\"]"],
  ];
  for (let i = 0; i < 25; i++) entries.push([["doomed", i], `doomed ${i}`]);
  for (let i = 0; i < 1250; i++) entries.push([["many", i], { i }]);
  await commitAll(entries);
  console.log(`seeded ${entries.length}`);
} else if (command === "conflict") {
  const result = await kv.set(["edit", "doc"], JSON.parse(args[0]));
  if (!result.ok) throw new Error("set failed");
  console.log("set");
} else if (command === "set-string") {
  const result = await kv.set(JSON.parse(args[0]), args[1]);
  if (!result.ok) throw new Error("set failed");
  console.log("set");
} else {
  console.error(`unknown command ${command}`);
  Deno.exit(2);
}
kv.close();
