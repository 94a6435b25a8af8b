// Size and count limits as the Deno client sees them (most are checked before sending).

import { assert, assertEquals, assertRejects } from "./assert.ts";
import { kvTest, stringKeySize } from "./helpers.ts";

/** A key under `p` (all strings) whose encoded size is exactly `size` bytes. */
function keyOfSize(p: Deno.KvKey, size: number): string[] {
  const base = p as string[];
  const fill = size - stringKeySize(base) - 2;
  assert(fill >= 0, "prefix too long for the requested key size");
  const key = [...base, "k".repeat(fill)];
  assertEquals(stringKeySize(key), size);
  return key;
}

kvTest("limits: a 2048-byte key can be written and read", async (kv, p) => {
  const key = keyOfSize(p, 2048);
  const res = await kv.set(key, "max key");
  assert(res.ok);
  assertEquals((await kv.get(key)).value, "max key");
  assert((await kv.atomic().check({ key, versionstamp: res.versionstamp }).commit()).ok);
});

kvTest("limits: a 2049-byte key is rejected for set", async (kv, p) => {
  const key = keyOfSize(p, 2049);
  await assertRejects(() => kv.set(key, 1), Error, "Key too large for write (max 2048 bytes)");
  await assertRejects(() => kv.atomic().set(key, 1).commit(), Error, "Key too large for write");
});

kvTest("limits: a 65536-byte value is accepted", async (kv, p) => {
  const value = new Uint8Array(65536).fill(7);
  const res = await kv.set([...p, "v"], value);
  assert(res.ok);
  assertEquals((await kv.get([...p, "v"])).value, value);
});

kvTest("limits: a 65537-byte value is rejected", async (kv, p) => {
  await assertRejects(
    () => kv.set([...p, "v"], new Uint8Array(65537)),
    Error,
    "Value too large (max 65536 bytes)",
  );
  await assertRejects(() => kv.set([...p, "s"], "x".repeat(70000)), Error, "Value too large");
  assertEquals((await kv.get([...p, "v"])).versionstamp, null);
});

kvTest("limits: 1000 mutations in one atomic commit are accepted", async (kv, p) => {
  const op = kv.atomic();
  for (let i = 0; i < 1000; i++) op.set([...p, i], i);
  const res = await op.commit();
  assert(res.ok);
  assertEquals((await kv.get([...p, 999])).versionstamp, res.versionstamp);
}, { prefixName: "mut1000" }); // short keys: the client also limits the total key size to 80 KiB

kvTest("limits: 1001 mutations in one atomic commit are rejected", async (kv, p) => {
  const op = kv.atomic();
  for (let i = 0; i < 1001; i++) op.set([...p, i], i);
  await assertRejects(() => op.commit(), Error, "Too many mutations (max 1000)");
  assertEquals((await kv.get([...p, 0])).versionstamp, null);
}, { prefixName: "mut1001" });

kvTest("limits: 12 values of 64 KiB in one atomic commit are accepted", async (kv, p) => {
  const op = kv.atomic();
  for (let i = 0; i < 12; i++) op.set([...p, i], new Uint8Array(65536).fill(i));
  const res = await op.commit();
  assert(res.ok);
  assertEquals((await kv.get([...p, 11])).value, new Uint8Array(65536).fill(11));
});

kvTest("limits: more than 800 KiB of mutations in one commit is rejected", async (kv, p) => {
  const op = kv.atomic();
  for (let i = 0; i < 13; i++) op.set([...p, i], new Uint8Array(65536));
  await assertRejects(() => op.commit(), Error, "Total mutation size too large");
  assertEquals((await kv.get([...p, 0])).versionstamp, null);
});
