// kv.list: selectors, limit, reverse, batchSize, cursors.

import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { collect, kvTest, lastParts } from "./helpers.ts";

const LETTERS = ["a", "b", "c", "d", "e", "f", "g"];

/** Writes `[...p, letter] = letter` for a..g (7 entries) in one commit. */
async function seven(kv: Deno.Kv, p: Deno.KvKey): Promise<void> {
  const op = kv.atomic();
  for (const l of [...LETTERS].reverse()) op.set([...p, l], l);
  assert((await op.commit()).ok, "seeding commit");
}

kvTest("list: prefix lists the keys under it but not the prefix key itself", async (kv, p) => {
  await kv.set(p, "the prefix itself");
  await seven(kv, p);
  await kv.set([...p, "a", "child"], "deeper");
  // Siblings of the prefix that merely share a string prefix are not under it.
  const sibling = [...p.slice(0, -1), `${String(p.at(-1))}x`];
  await kv.set(sibling, "sibling");
  try {
    const got = await collect(kv.list<string>({ prefix: p }));
    assertEquals(
      got.map((e) => e.key),
      [[...p, "a"], [...p, "a", "child"], ...LETTERS.slice(1).map((l) => [...p, l])],
    );
    assertEquals(got.map((e) => e.value), ["a", "deeper", "b", "c", "d", "e", "f", "g"]);
    for (const e of got) assert(e.versionstamp !== null, "entries carry versionstamps");
  } finally {
    await kv.delete(sibling);
  }
});

kvTest("list: an empty prefix range yields nothing", async (kv, p) => {
  await kv.set(p, "only the prefix key");
  assertEquals(await collect(kv.list({ prefix: p })), []);
  assertEquals(await collect(kv.list({ prefix: [...p, "nothing here"] })), []);
});

kvTest("list: prefix + start (inclusive)", async (kv, p) => {
  await seven(kv, p);
  const got = await collect(kv.list({ prefix: p, start: [...p, "c"] }));
  assertEquals(lastParts(got), ["c", "d", "e", "f", "g"]);
  const between = await collect(kv.list({ prefix: p, start: [...p, "cc"] }));
  assertEquals(lastParts(between), ["d", "e", "f", "g"]);
  const rev = await collect(kv.list({ prefix: p, start: [...p, "c"] }, { reverse: true }));
  assertEquals(lastParts(rev), ["g", "f", "e", "d", "c"]);
});

kvTest("list: prefix + end (exclusive)", async (kv, p) => {
  await seven(kv, p);
  const got = await collect(kv.list({ prefix: p, end: [...p, "c"] }));
  assertEquals(lastParts(got), ["a", "b"]);
  const rev = await collect(kv.list({ prefix: p, end: [...p, "c"] }, { reverse: true }));
  assertEquals(lastParts(rev), ["b", "a"]);
});

kvTest("list: start + end (start inclusive, end exclusive)", async (kv, p) => {
  await seven(kv, p);
  const got = await collect(kv.list({ start: [...p, "b"], end: [...p, "e"] }));
  assertEquals(lastParts(got), ["b", "c", "d"]);
  const rev = await collect(kv.list({ start: [...p, "b"], end: [...p, "e"] }, { reverse: true }));
  assertEquals(lastParts(rev), ["d", "c", "b"]);
  // start/end do not need to exist and may include the prefix key itself.
  await kv.set(p, "prefix key");
  const all = await collect(kv.list({ start: p, end: [...p, "c"] }));
  assertEquals(all.map((e) => e.value), ["prefix key", "a", "b"]);
});

kvTest("list: start == end is empty", async (kv, p) => {
  await seven(kv, p);
  assertEquals(await collect(kv.list({ start: [...p, "c"], end: [...p, "c"] })), []);
  assertEquals(
    await collect(kv.list({ start: [...p, "c"], end: [...p, "c"] }, { reverse: true })),
    [],
  );
});

kvTest("list: limit", async (kv, p) => {
  await seven(kv, p);
  assertEquals(lastParts(await collect(kv.list({ prefix: p }, { limit: 3 }))), ["a", "b", "c"]);
  assertEquals(lastParts(await collect(kv.list({ prefix: p }, { limit: 1 }))), ["a"]);
  assertEquals((await collect(kv.list({ prefix: p }, { limit: 7 }))).length, 7);
  assertEquals((await collect(kv.list({ prefix: p }, { limit: 100 }))).length, 7);
  const rev = await collect(kv.list({ prefix: p }, { limit: 2, reverse: true }));
  assertEquals(lastParts(rev), ["g", "f"]);
  const range = await collect(kv.list({ start: [...p, "b"], end: [...p, "f"] }, { limit: 2 }));
  assertEquals(lastParts(range), ["b", "c"]);
});

kvTest("list: reverse", async (kv, p) => {
  await seven(kv, p);
  const got = await collect(kv.list({ prefix: p }, { reverse: true }));
  assertEquals(lastParts(got), [...LETTERS].reverse());
});

kvTest("list: small batchSize (2 with 7 entries) returns everything in order", async (kv, p) => {
  await seven(kv, p);
  for (const batchSize of [1, 2, 3, 7, 8]) {
    const fwd = await collect(kv.list({ prefix: p }, { batchSize }));
    assertEquals(lastParts(fwd), LETTERS, `batchSize ${batchSize}`);
    const rev = await collect(kv.list({ prefix: p }, { batchSize, reverse: true }));
    assertEquals(lastParts(rev), [...LETTERS].reverse(), `reverse batchSize ${batchSize}`);
  }
  const limited = await collect(kv.list({ prefix: p }, { batchSize: 2, limit: 5 }));
  assertEquals(lastParts(limited), ["a", "b", "c", "d", "e"]);
  const range = await collect(kv.list({ start: [...p, "b"], end: [...p, "g"] }, { batchSize: 2 }));
  assertEquals(lastParts(range), ["b", "c", "d", "e", "f"]);
});

kvTest("list: more entries than one default batch (250)", async (kv, p) => {
  const op = kv.atomic();
  for (let i = 0; i < 250; i++) op.set([...p, i], i);
  assert((await op.commit()).ok);
  const fwd = await collect(kv.list<number>({ prefix: p }));
  assertEquals(fwd.map((e) => e.value), Array.from({ length: 250 }, (_, i) => i));
  const rev = await collect(kv.list<number>({ prefix: p }, { reverse: true }));
  assertEquals(rev.map((e) => e.value), Array.from({ length: 250 }, (_, i) => 249 - i));
  const lim = await collect(kv.list<number>({ prefix: p }, { limit: 150 }));
  assertEquals(lim.length, 150);
});

/** Pages through `selector` `pageSize` entries at a time using cursors. */
async function paginate(
  kv: Deno.Kv,
  selector: Deno.KvListSelector,
  pageSize: number,
  reverse = false,
): Promise<{ pages: Deno.KvKeyPart[][]; cursors: string[] }> {
  const pages: Deno.KvKeyPart[][] = [];
  const cursors: string[] = [];
  let cursor: string | undefined = undefined;
  for (let i = 0; i < 20; i++) {
    const iter: Deno.KvListIterator<unknown> = kv.list(selector, {
      limit: pageSize,
      cursor,
      reverse,
    });
    const page = lastParts(await collect(iter));
    if (page.length === 0) break;
    pages.push(page);
    cursor = iter.cursor;
    cursors.push(cursor);
    // An exhausted iterator's cursor is "", which would restart the listing.
    if (cursor === "") break;
  }
  return { pages, cursors };
}

kvTest("list: cursor pagination collects everything (forward)", async (kv, p) => {
  await seven(kv, p);
  const { pages, cursors } = await paginate(kv, { prefix: p }, 3);
  assertEquals(pages, [["a", "b", "c"], ["d", "e", "f"], ["g"]]);
  assertEquals(cursors.length, 3);
  assert(cursors[0] !== "" && cursors[1] !== "", "cursors of full pages are not empty");
  assertEquals(cursors[2], "", "the cursor of the exhausted last page is empty");
  // Exactly-full last page: the next page is empty.
  const { pages: pages7 } = await paginate(kv, { prefix: p }, 7);
  assertEquals(pages7, [LETTERS]);
  // Cursor format: base64url of the key remainder after the prefix ("b" → 02 62 00 → "AmIA").
  const iter = kv.list({ prefix: p }, { limit: 2 });
  await collect(iter);
  assertEquals(iter.cursor, "AmIA");
  const rest = await collect(kv.list({ prefix: p }, { cursor: "AmIA" }));
  assertEquals(lastParts(rest), ["c", "d", "e", "f", "g"]);
});

kvTest("list: cursor pagination collects everything (reverse)", async (kv, p) => {
  await seven(kv, p);
  const { pages } = await paginate(kv, { prefix: p }, 3, true);
  assertEquals(pages, [["g", "f", "e"], ["d", "c", "b"], ["a"]]);
});

kvTest("list: cursor pagination with start/end selectors", async (kv, p) => {
  await seven(kv, p);
  const fwd = await paginate(kv, { start: [...p, "b"], end: [...p, "g"] }, 2);
  assertEquals(fwd.pages, [["b", "c"], ["d", "e"], ["f"]]);
  const rev = await paginate(kv, { start: [...p, "b"], end: [...p, "g"] }, 2, true);
  assertEquals(rev.pages, [["f", "e"], ["d", "c"], ["b"]]);
  const withStart = await paginate(kv, { prefix: p, start: [...p, "c"] }, 2);
  assertEquals(withStart.pages, [["c", "d"], ["e", "f"], ["g"]]);
  const withEnd = await paginate(kv, { prefix: p, end: [...p, "f"] }, 2, true);
  assertEquals(withEnd.pages, [["e", "d"], ["c", "b"], ["a"]]);
});

kvTest("list: cursor taken mid-iteration resumes after the last entry seen", async (kv, p) => {
  await seven(kv, p);
  const iter = kv.list({ prefix: p }, { batchSize: 2 });
  const first = await iter.next();
  const second = await iter.next();
  assert(!first.done && !second.done);
  assertEquals(second.value.key.at(-1), "b");
  const rest = await collect(kv.list({ prefix: p }, { cursor: iter.cursor }));
  assertEquals(lastParts(rest), ["c", "d", "e", "f", "g"]);
});

kvTest("list: cursor is empty after exhaustion", async (kv, p) => {
  await seven(kv, p);
  const iter = kv.list({ prefix: p });
  assertEquals((await collect(iter)).length, 7);
  assertEquals(iter.cursor, "");
  const small = kv.list({ prefix: p }, { batchSize: 2 });
  await collect(small);
  assertEquals(small.cursor, "");
  const empty = kv.list({ prefix: [...p, "none"] });
  await collect(empty);
  assertEquals(empty.cursor, "");
});

kvTest("list: cursor before the first iteration throws", (kv, p) => {
  const iter = kv.list({ prefix: p });
  assertThrows(() => iter.cursor, Error, "Cannot get cursor before first iteration");
  return Promise.resolve();
});

kvTest("list: invalid selectors and options are rejected by the client", async (kv, p) => {
  const a = [...p, "a"], z = [...p, "z"];
  const bad: [Deno.KvListSelector, Deno.KvListOptions][] = [
    [{ prefix: p, start: a, end: z } as unknown as Deno.KvListSelector, {}],
    [{ start: a } as unknown as Deno.KvListSelector, {}],
    [{ end: z } as unknown as Deno.KvListSelector, {}],
    [{ prefix: p, start: ["elsewhere"] }, {}],
    [{ prefix: p, end: ["elsewhere"] }, {}],
    [{ start: z, end: a }, {}],
    [{ prefix: p }, { limit: 0 }],
    [{ prefix: p }, { batchSize: 1001 }],
  ];
  for (const [selector, options] of bad) {
    await assertRejects(async () => {
      const iter = kv.list(selector, options);
      await iter.next();
    });
  }
});
