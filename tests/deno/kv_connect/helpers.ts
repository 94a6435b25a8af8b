// Shared helpers: opening the remote database, per-test key prefixes, timeouts.

import { assert, assertMatch, fail } from "./assert.ts";

/** The KV Connect URL (metadata endpoint), e.g. `http://127.0.0.1:4512`. */
export function kvUrl(): string {
  const url = Deno.env.get("KV_URL");
  if (!url) fail("set KV_URL to the KV Connect server URL (and DENO_KV_ACCESS_TOKEN)");
  return url;
}

/** Which client the suite drives: Deno's own (`deno`, the default) or openkv's JS package
 * (`KV_CLIENT=openkv`, clients/js), which must behave the same. */
export const CLIENT = Deno.env.get("KV_CLIENT") ?? "deno";

/** Opens the remote database; both clients read the token from DENO_KV_ACCESS_TOKEN. */
export async function openKv(): Promise<Deno.Kv> {
  if (CLIENT === "openkv") {
    const { openKv } = await import("../../../clients/js/mod.js");
    return await openKv(kvUrl()) as unknown as Deno.Kv;
  }
  if (CLIENT !== "deno") fail(`KV_CLIENT must be "deno" or "openkv", not ${CLIENT}`);
  return await Deno.openKv(kvUrl());
}

/** One random string per test process, so that runs against a shared database never meet. */
export const RUN_ID = `kvc-${crypto.randomUUID().slice(-12)}`;

export const TEST_TIMEOUT_MS = 30_000;
export const OPEN_TIMEOUT_MS = 15_000;

export type KvTestFn = (kv: Deno.Kv, prefix: Deno.KvKey) => Promise<void>;

/** Registers a `Deno.test` that gets a freshly opened database and its own key prefix
 * `[RUN_ID, opts.prefixName ?? name]`; it closes the database (after best-effort cleanup of the
 * prefix). */
export function kvTest(
  name: string,
  fn: KvTestFn,
  opts: { ignore?: boolean; prefixName?: string; timeoutMs?: number } = {},
): void {
  Deno.test({
    name,
    ignore: opts.ignore,
    fn: async () => {
      const prefix: Deno.KvKey = [RUN_ID, opts.prefixName ?? name];
      const kv = await withTimeout(openKv(), OPEN_TIMEOUT_MS, `open ${kvUrl()}`);
      try {
        // A server answering 5xx makes Deno retry forever: fail instead of hanging.
        await withTimeout(fn(kv, prefix), opts.timeoutMs ?? TEST_TIMEOUT_MS, name);
      } finally {
        await withTimeout(cleanup(kv, prefix), 10_000, "cleanup").catch(() => {});
        try {
          kv.close();
        } catch {
          // already closed by the test
        }
      }
    },
  });
}

async function cleanup(kv: Deno.Kv, prefix: Deno.KvKey): Promise<void> {
  const keys: Deno.KvKey[] = [prefix];
  for await (const e of kv.list({ prefix }, { batchSize: 500 })) keys.push(e.key);
  for (let i = 0; i < keys.length; i += 500) {
    const op = kv.atomic();
    for (const k of keys.slice(i, i + 500)) op.delete(k);
    await op.commit();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects if `p` has not settled after `ms`; always clears its timer. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export async function collect<T>(iter: Deno.KvListIterator<T>): Promise<Deno.KvEntry<T>[]> {
  const out: Deno.KvEntry<T>[] = [];
  for await (const e of iter) out.push(e);
  return out;
}

/** Only the last key part of every entry (the part after the test prefix). */
export function lastParts(entries: { key: Deno.KvKey }[]): Deno.KvKeyPart[] {
  return entries.map((e) => e.key[e.key.length - 1]);
}

export const VERSIONSTAMP_RE = /^[0-9a-f]{20}$/;

export function assertVersionstamp(vs: unknown, what = "versionstamp"): asserts vs is string {
  assert(typeof vs === "string", `${what} should be a string, got ${typeof vs}`);
  assertMatch(vs, VERSIONSTAMP_RE, what);
}

/** Encoded size of a key made only of strings without NUL bytes (`0x02` + UTF-8 + `0x00`). */
export function stringKeySize(key: readonly string[]): number {
  const enc = new TextEncoder();
  let n = 0;
  for (const s of key) {
    assert(!s.includes("\0"), "stringKeySize: no NUL allowed");
    n += 2 + enc.encode(s).length;
  }
  return n;
}

/** Polls `probe` every `everyMs` until it returns true or `ms` elapsed; returns the outcome. */
export async function pollUntil(
  probe: () => Promise<boolean>,
  ms: number,
  everyMs = 100,
): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (true) {
    if (await probe()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(everyMs);
  }
}
