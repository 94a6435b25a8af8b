// Writes into a database that another process (openkv) writes at the same time.
// Usage: concurrent_writer.ts <dbpath> <n>
// n sets of ["deno", i], and after every third one a check+set increment of the KvU64 at
// ["counter"] retried until it commits. Prints one JSON line: every versionstamp this process
// committed at, in order, the number of increments, and how many times Deno's own write path
// failed with "database is locked" (Deno's local backend does not always wait for another
// process's write lock: denoland/deno issue 20116) — such a write did not commit and is retried.
const [path, nArg] = Deno.args;
const n = Number(nArg);
const kv = await Deno.openKv(path);
const stamps: string[] = [];
let incs = 0;
let locked = 0;

async function retryLocked<T>(f: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      return await f();
    } catch (e) {
      if (!String(e).includes("database is locked")) throw e;
      locked++;
      await new Promise((r) => setTimeout(r, 1));
    }
  }
}

for (let i = 0; i < n; i++) {
  const r = await retryLocked(() => kv.set(["deno", i], i));
  stamps.push(r.versionstamp);
  if (i % 3 === 0) {
    for (;;) {
      const e = await kv.get<Deno.KvU64>(["counter"]);
      const cur = e.value === null ? 0n : e.value.value;
      const res = await retryLocked(() =>
        kv.atomic().check(e).set(["counter"], new Deno.KvU64(cur + 1n)).commit()
      );
      if (res.ok) {
        stamps.push(res.versionstamp);
        incs++;
        break;
      }
    }
  }
}
kv.close();
console.log(JSON.stringify({ stamps, incs, locked }));
