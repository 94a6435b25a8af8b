// Helpers shared by the package's tests (clients/js/test/*.test.js). Outside test/ on purpose:
// `node --test clients/js/test/` runs every .js file under a `test` directory as a test file.

import assert from "node:assert/strict";

/** Deno's namespace when the tests run under Deno with `--unstable-kv` (its local KV is the
 * reference the tests compare with), else undefined. */
export const DenoNs = globalThis.Deno;
export const UNDER_DENO = typeof DenoNs?.openKv === "function";

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Rejects (saying `what`) if `promise` has not settled after `ms`; always clears its timer. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** assert.deepStrictEqual, whose failure carries only the message (node's TAP reporter cannot
 * print an invalid Date held in an AssertionError's actual/expected). */
export function assertDeep(actual, expected, what) {
  try {
    assert.deepStrictEqual(actual, expected, what);
  } catch (error) {
    throw new Error(`${what}: ${error.message}`);
  }
}
