// Usage: deno run -A --unstable-kv check_fixture.ts <dbpath> <manifest.json>
//
// Verifies that a Deno KV sqlite file (normally written by openkv) contains
// exactly what the manifest (see manifest.ts) describes:
//   * `kv.get` of every entry returns the expected value (and versionstamp, if
//     the manifest gives one);
//   * `kv.get` of every "absent" key returns null;
//   * `kv.list({prefix: []})` returns exactly the manifest's keys, in manifest
//     order, and the reverse listing is the exact reverse.
// Then it writes `["written_by_deno"] = "ok"` and sums 7n into
// `["deno_counter"]`, so the Rust side can prove Deno can write to the file.
//
// On success prints `ok <entries checked>` and exits 0. Otherwise prints every
// mismatch to stderr and exits 1.
//
// Note: opening the file makes Deno's sqlite backend delete rows whose
// `expiration_ms` has passed (and bump data_version by 1 if it deleted any).

import {
  describeValue,
  keyEqual,
  keyFromManifest,
  keyToManifest,
  type Manifest,
  showKey,
  valueMismatch,
} from "./manifest.ts";

if (Deno.args.length !== 2) {
  console.error("usage: check_fixture.ts <dbpath> <manifest.json>");
  Deno.exit(2);
}
const [dbPath, manifestPath] = Deno.args;
try {
  Deno.statSync(dbPath);
} catch {
  // Deno.openKv would silently create an empty database.
  console.error(`database ${dbPath} does not exist`);
  Deno.exit(2);
}

const problems: string[] = [];
const fail = (msg: string) => problems.push(msg);

function finish(): never {
  for (const p of problems) console.error(`MISMATCH: ${p}`);
  console.error(`check_fixture: ${problems.length} mismatch(es)`);
  Deno.exit(1);
}

// --- parse the manifest -----------------------------------------------------
let manifest: Manifest;
try {
  manifest = JSON.parse(await Deno.readTextFile(manifestPath));
} catch (e) {
  console.error(`cannot read manifest ${manifestPath}: ${e}`);
  Deno.exit(2);
}
if (!manifest || !Array.isArray(manifest.entries)) {
  console.error(`manifest ${manifestPath} has no "entries" array`);
  Deno.exit(2);
}
const absentRaw = manifest.absent ?? [];

interface Expected {
  key: Deno.KvKey;
  value: Manifest["entries"][number]["value"];
  versionstamp?: string;
}
const expected: Expected[] = [];
manifest.entries.forEach((e, i) => {
  try {
    if (e.versionstamp !== undefined && !/^[0-9a-f]{20}$/.test(e.versionstamp)) {
      throw new Error(
        `versionstamp ${JSON.stringify(e.versionstamp)} is not 20 lowercase hex digits`,
      );
    }
    expected.push({ key: keyFromManifest(e.key), value: e.value, versionstamp: e.versionstamp });
  } catch (err) {
    fail(`manifest entry #${i} ${JSON.stringify(e.key)}: ${(err as Error).message}`);
  }
});
const absent: Deno.KvKey[] = [];
absentRaw.forEach((k, i) => {
  try {
    absent.push(keyFromManifest(k));
  } catch (err) {
    fail(`manifest absent #${i} ${JSON.stringify(k)}: ${(err as Error).message}`);
  }
});
{
  const seenKeys = new Set<string>();
  for (const e of expected) {
    const c = JSON.stringify(keyToManifest(e.key));
    if (seenKeys.has(c)) fail(`manifest lists key ${showKey(e.key)} more than once`);
    seenKeys.add(c);
  }
}
if (problems.length > 0) finish();

const kv = await Deno.openKv(dbPath);

// --- point reads ------------------------------------------------------------
let maxVersionstamp = "";
for (const e of expected) {
  let got: Deno.KvEntryMaybe<unknown>;
  try {
    got = await kv.get(e.key);
  } catch (err) {
    fail(`get ${showKey(e.key)}: threw ${(err as Error).message}`);
    continue;
  }
  if (got.versionstamp === null) {
    fail(`get ${showKey(e.key)}: expected ${JSON.stringify(e.value)}, got no entry`);
    continue;
  }
  const m = valueMismatch(e.value, got.value);
  if (m) fail(`get ${showKey(e.key)}: ${m}`);
  if (e.versionstamp !== undefined && got.versionstamp !== e.versionstamp) {
    fail(`get ${showKey(e.key)}: expected versionstamp ${e.versionstamp}, got ${got.versionstamp}`);
  }
  if (got.versionstamp > maxVersionstamp) maxVersionstamp = got.versionstamp;
}

for (const key of absent) {
  try {
    const got = await kv.get(key);
    if (got.value !== null || got.versionstamp !== null) {
      fail(
        `get ${showKey(key)}: expected absent, got ${describeValue(got.value)} ` +
          `(versionstamp ${got.versionstamp})`,
      );
    }
  } catch (err) {
    fail(`get absent ${showKey(key)}: threw ${(err as Error).message}`);
  }
}

// --- full listing, forward and reverse --------------------------------------
async function checkList(reverse: boolean) {
  const what = reverse ? "list(reverse)" : "list";
  const want = reverse ? [...expected].reverse() : expected;
  const got: Deno.KvEntry<unknown>[] = [];
  try {
    for await (const e of kv.list({ prefix: [] }, { reverse })) got.push(e);
  } catch (err) {
    fail(`${what}: threw ${(err as Error).message}`);
    return;
  }
  // Set differences first: they explain most ordering failures.
  const canon = (k: Deno.KvKey) => JSON.stringify(keyToManifest(k));
  const wantSet = new Set(want.map((w) => canon(w.key)));
  const gotSet = new Set(got.map((g) => canon(g.key)));
  for (const w of want) {
    if (!gotSet.has(canon(w.key))) fail(`${what}: expected key ${showKey(w.key)} is missing`);
  }
  for (const g of got) {
    if (!wantSet.has(canon(g.key))) {
      fail(`${what}: unexpected key ${showKey(g.key)} (${describeValue(g.value)})`);
    }
  }
  const gotFiltered = got.filter((g) => wantSet.has(canon(g.key)));
  const wantFiltered = want.filter((w) => gotSet.has(canon(w.key)));
  let misordered = 0;
  for (let i = 0; i < wantFiltered.length; i++) {
    const w = wantFiltered[i];
    const g = gotFiltered[i];
    if (!g) {
      // Only possible when keys repeat; report the tail once.
      fail(
        `${what}: ${wantFiltered.length - i} expected entries left unmatched from ${
          showKey(w.key)
        } on`,
      );
      break;
    }
    if (keyEqual(w.key, g.key)) {
      const m = valueMismatch(w.value, g.value);
      if (m) fail(`${what} ${showKey(g.key)}: ${m}`);
      if (w.versionstamp !== undefined && g.versionstamp !== w.versionstamp) {
        fail(
          `${what} ${
            showKey(g.key)
          }: expected versionstamp ${w.versionstamp}, got ${g.versionstamp}`,
        );
      }
    } else if (misordered++ < 20) {
      fail(
        `${what}: order differs at position ${i} (among common keys): expected ${
          showKey(w.key)
        }, got ${showKey(g.key)}`,
      );
    }
  }
  if (misordered > 20) fail(`${what}: ${misordered} positions out of order (first 20 shown)`);
  if (got.length !== want.length) {
    fail(`${what}: expected ${want.length} entries, got ${got.length}`);
  }
}
await checkList(false);
await checkList(true);

if (problems.length > 0) {
  kv.close();
  finish();
}

// --- prove Deno can write to the file ---------------------------------------
try {
  const r1 = await kv.set(["written_by_deno"], "ok");
  const r2 = await kv.atomic().sum(["deno_counter"], 7n).commit();
  if (!r1.ok || !r2.ok) fail(`writes by Deno did not commit: ${JSON.stringify([r1, r2])}`);
  // Deno derives new versionstamps from the file's data_version table; they
  // must be newer than everything already stored.
  for (const r of [r1, r2]) {
    if (r.ok && r.versionstamp <= maxVersionstamp) {
      fail(
        `new commit versionstamp ${r.versionstamp} is not greater than the largest ` +
          `existing versionstamp ${maxVersionstamp} (is data_version maintained?)`,
      );
    }
  }
  const w = await kv.get(["written_by_deno"]);
  if (w.value !== "ok") fail(`read back ["written_by_deno"]: got ${describeValue(w.value)}`);
  const c = await kv.get(["deno_counter"]);
  if (!(c.value instanceof Deno.KvU64)) {
    fail(`read back ["deno_counter"]: expected a Deno.KvU64, got ${describeValue(c.value)}`);
  }
} catch (err) {
  fail(`writing to the database threw: ${(err as Error).message}`);
}
kv.close();

if (problems.length > 0) finish();
console.log(`ok ${expected.length}`);
