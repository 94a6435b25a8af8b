// Writes ["ack"] = 1, 2, … n (as Deno.KvU64) one commit at a time into a database another
// process reads, and prints `ack <i>` after each commit returned, so the reader can check that
// a read started after the line sees the commit.
// Usage: ack_writer.ts <dbpath> <n>
const [path, count] = Deno.args;
const n = Number(count);
const kv = await Deno.openKv(path);
for (let i = 1; i <= n; i++) {
  for (;;) {
    try {
      await kv.set(["ack"], new Deno.KvU64(BigInt(i)));
      break;
    } catch (e) {
      // Deno's local backend does not always wait for another process's write lock
      // (denoland/deno issue 20116).
      if (!String(e).includes("database is locked")) throw e;
      await new Promise((r) => setTimeout(r, 1));
    }
  }
  console.log(`ack ${i}`);
  // A pause now and then, so the reader's snapshots get reused between commits.
  if (i % 4 === 0) await new Promise((r) => setTimeout(r, 1));
}
kv.close();
