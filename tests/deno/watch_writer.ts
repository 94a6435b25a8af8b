// Writes one key of a database that an openkv watcher follows from another process.
// Usage: watch_writer.ts <dbpath> <key part> <value>
// Sets [<key part>] = <value> (a string), retrying Deno's "database is locked" (denoland/deno
// issue 20116: its local backend does not always wait for another process's write lock), and
// prints the commit's versionstamp.
const [path, part, value] = Deno.args;
const kv = await Deno.openKv(path);
for (;;) {
  try {
    const r = await kv.set([part], value);
    console.log(r.versionstamp);
    break;
  } catch (e) {
    if (!String(e).includes("database is locked")) throw e;
    await new Promise((r) => setTimeout(r, 1));
  }
}
kv.close();
