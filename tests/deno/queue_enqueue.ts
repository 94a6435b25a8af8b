// Enqueues messages into the SQLite file given as the first argument, as a Deno program would:
// a plain object, a delayed one, and one with keysIfUndelivered. Prints "enqueued 3".
const kv = await Deno.openKv(Deno.args[0]);
await kv.enqueue({ from: "deno", n: 1, big: 12345678901234567890n, when: new Date(0) });
await kv.enqueue({ from: "deno", n: 2 }, { delay: 200 });
await kv.enqueue({ from: "deno", n: 3 }, { keysIfUndelivered: [["dead", "deno"]] });
kv.close();
console.log("enqueued 3");
