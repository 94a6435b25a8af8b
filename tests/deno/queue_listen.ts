// Listens on the SQLite file given as the first argument until it has received the number of
// messages given as the second, printing each as JSON (bigints as strings), then exits.
const kv = await Deno.openKv(Deno.args[0]);
const want = Number(Deno.args[1]);
let got = 0;
const done = Promise.withResolvers<void>();
kv.listenQueue((message: unknown) => {
  console.log(JSON.stringify(message, (_k, v) => typeof v === "bigint" ? v.toString() : v));
  got += 1;
  if (got === want) done.resolve();
});
const timeout = setTimeout(() => {
  console.error(`timed out with ${got} of ${want} messages`);
  Deno.exit(2);
}, 30_000);
await done.promise;
clearTimeout(timeout);
// Give Deno a moment to record the last delivery as finished before closing.
await new Promise((r) => setTimeout(r, 300));
kv.close();
