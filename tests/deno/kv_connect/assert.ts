// Tiny assertion helpers for the KV Connect suite (no remote imports allowed).

export class AssertionError extends Error {
  override name = "AssertionError";
}

export function show(v: unknown): string {
  try {
    const s = Deno.inspect(v, { depth: 4, breakLength: Infinity, strAbbreviateSize: 80 });
    return s.length > 300 ? s.slice(0, 300) + "…" : s;
  } catch {
    return String(v);
  }
}

export function fail(msg: string): never {
  throw new AssertionError(msg);
}

export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) fail(msg);
}

function isTypedArray(v: unknown): v is ArrayBufferView {
  return ArrayBuffer.isView(v) && !(v instanceof DataView);
}

function bytesOf(v: ArrayBufferView): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/** Structural equality: numbers by `Object.is` (so -0 ≠ 0 and NaN = NaN), dates by time,
 * typed arrays by type and bytes, Map/Set in insertion order, KvU64 by value, plain objects
 * by own enumerable keys (any order), cycles by position. */
export function equal(a: unknown, b: unknown, seen = new Map<unknown, unknown>()): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (seen.get(a) === b) return true;
  seen.set(a, b);
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  if (a instanceof Deno.KvU64) return a.value === (b as Deno.KvU64).value;
  if (a instanceof Date) return Object.is(a.getTime(), (b as Date).getTime());
  if (a instanceof RegExp) {
    return a.source === (b as RegExp).source && a.flags === (b as RegExp).flags;
  }
  if (a instanceof ArrayBuffer) {
    return equal(new Uint8Array(a), new Uint8Array(b as ArrayBuffer), seen);
  }
  if (isTypedArray(a)) {
    const x = bytesOf(a), y = bytesOf(b as ArrayBufferView);
    if (x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
    return true;
  }
  if (a instanceof Map) {
    const x = [...a.entries()], y = [...(b as Map<unknown, unknown>).entries()];
    return equal(x, y, seen);
  }
  if (a instanceof Set) {
    return equal([...a.values()], [...(b as Set<unknown>).values()], seen);
  }
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    if (a.length !== bb.length) return false;
    for (let i = 0; i < a.length; i++) {
      if ((i in a) !== (i in bb)) return false;
      if (!equal(a[i], bb[i], seen)) return false;
    }
    return true;
  }
  if (a instanceof Error) {
    const e = b as Error;
    if (a.name !== e.name || a.message !== e.message) return false;
  }
  const ka = Object.keys(a), kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b, k)) return false;
    if (!equal((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], seen)) {
      return false;
    }
  }
  return true;
}

export function assertEquals(actual: unknown, expected: unknown, msg?: string): void {
  if (!equal(actual, expected)) {
    fail(
      `${msg ? msg + ": " : ""}values differ\n  actual:   ${show(actual)}\n  expected: ${
        show(expected)
      }`,
    );
  }
}

export function assertNotEquals(actual: unknown, expected: unknown, msg?: string): void {
  if (equal(actual, expected)) {
    fail(`${msg ? msg + ": " : ""}expected a value other than ${show(expected)}`);
  }
}

export function assertMatch(actual: string, re: RegExp, msg?: string): void {
  if (!re.test(actual)) fail(`${msg ? msg + ": " : ""}${show(actual)} does not match ${re}`);
}

// deno-lint-ignore no-explicit-any
type ErrorClass = new (...args: any[]) => Error;

function checkError(e: unknown, cls?: ErrorClass, includes?: string): Error {
  if (!(e instanceof Error)) fail(`expected an Error to be thrown, got ${show(e)}`);
  if (cls && !(e instanceof cls)) {
    const err: Error = e;
    fail(`expected ${cls.name}, got ${err.constructor.name}: ${err.message}`);
  }
  if (includes !== undefined && !e.message.includes(includes)) {
    fail(`expected error message to include ${show(includes)}, got ${show(e.message)}`);
  }
  return e;
}

/** Awaits `fn()` and expects it to reject (optionally with `cls`, message containing `includes`). */
export async function assertRejects(
  fn: () => PromiseLike<unknown>,
  cls?: ErrorClass,
  includes?: string,
): Promise<Error> {
  let result: unknown;
  try {
    result = await fn();
  } catch (e) {
    return checkError(e, cls, includes);
  }
  fail(`expected a rejection, but it resolved with ${show(result)}`);
}

/** Calls `fn()` and expects it to throw synchronously or to return a rejecting promise. */
export async function assertThrowsOrRejects(
  fn: () => unknown,
  cls?: ErrorClass,
  includes?: string,
): Promise<Error> {
  let result: unknown;
  try {
    result = await fn();
  } catch (e) {
    return checkError(e, cls, includes);
  }
  fail(`expected an error, but got ${show(result)}`);
}

export function assertThrows(fn: () => unknown, cls?: ErrorClass, includes?: string): Error {
  let result: unknown;
  try {
    result = fn();
  } catch (e) {
    return checkError(e, cls, includes);
  }
  fail(`expected a throw, but it returned ${show(result)}`);
}
