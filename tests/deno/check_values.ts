// Usage: deno run -A --unstable-kv check_values.ts <dbpath> [prefix]
//
// Reads [prefix, name] (prefix "r" unless given; "v" checks what write_values.ts
// wrote after it went through openkv, e.g. export and import) for every fixture of values_fixture.ts (normally written
// by openkv's V8 encoder) and compares it deeply with the fixture: numbers by
// Object.is, dates by time, regexps by source and flags, Map/Set in order,
// buffers and views by type, offset, length and bytes, boxed primitives by type
// and value, errors by type, message and cause (a `stack` string must exist but
// its text is ignored), arrays by length, holes and extra properties, plain
// objects by key order and values; web objects by what survives another process:
// a Blob's size and type (its bytes stay in the process that made it; only an
// empty Blob is whole), a File's name and lastModified too, a DOMException's
// name, message and stack's presence, a CryptoKey's type, extractable,
// algorithm and usages, and its key material: the raw export of an extractable
// key, the ciphertext of a fixed message under a non-extractable AES key.
// Identity is checked too: where the fixture
// holds one object twice the value read must hold one object twice (`===`),
// where it holds two distinct objects the value read must too, and cycles must
// be cycles.
//
// A missing key, a value Deno cannot read and an ["r", …] key that is not a
// fixture are failures. If this Deno has no Float16Array, the `float16array`
// fixture does not exist: it prints `skipped: float16array` and ignores that
// key. On success prints `ok <fixtures checked>` and exits 0; otherwise prints
// every mismatch to stderr and exits 1.

import { fixtures, hasFloat16Array, hostObjectFixtures } from "./values_fixture.ts";

const dbPath = Deno.args[0];
const prefix = Deno.args[1] ?? "r";
if (!dbPath || Deno.args.length > 2) {
  console.error("usage: check_values.ts <dbpath> [prefix]");
  Deno.exit(2);
}
try {
  Deno.statSync(dbPath);
} catch {
  // Deno.openKv would silently create an empty database.
  console.error(`database ${dbPath} does not exist`);
  Deno.exit(2);
}

// --- deep equality ----------------------------------------------------------

function show(v: unknown): string {
  try {
    const s = Deno.inspect(v, { depth: 3, breakLength: Infinity, strAbbreviateSize: 80 });
    return s.length > 200 ? s.slice(0, 200) + "…" : s;
  } catch {
    return String(v);
  }
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (typeof v !== "object" && typeof v !== "function") return typeof v;
  const proto = Object.getPrototypeOf(v);
  if (proto === null) return "null-prototype object";
  return proto.constructor?.name ?? "anonymous object";
}

const boxedTypes = [Boolean, Number, String, BigInt] as const;

class Comparer {
  /** Expected object → the object read in its place, and back: identity must be a bijection. */
  private readonly expToAct = new Map<object, object>();
  private readonly actToExp = new Map<object, object>();

  /** Checks that need WebCrypto (async): awaited by `settle`. */
  private readonly pending: Promise<void>[] = [];

  constructor(private readonly problems: string[]) {}

  async settle(): Promise<void> {
    await Promise.all(this.pending);
  }

  private cryptoKey(exp: CryptoKey, b: CryptoKey, path: string) {
    if (exp.type !== b.type || exp.extractable !== b.extractable) {
      this.fail(path, `expected a ${exp.type} key (extractable ${exp.extractable}), got a ${b.type} key (extractable ${b.extractable})`);
    }
    if (JSON.stringify(exp.algorithm) !== JSON.stringify(b.algorithm)) {
      this.fail(path, `expected algorithm ${JSON.stringify(exp.algorithm)}, got ${JSON.stringify(b.algorithm)}`);
    }
    if (JSON.stringify(exp.usages) !== JSON.stringify(b.usages)) {
      this.fail(path, `expected usages ${exp.usages}, got ${b.usages}`);
    }
    const same = (x: ArrayBuffer, y: ArrayBuffer, what: string) => {
      const [p, q] = [new Uint8Array(x), new Uint8Array(y)];
      if (p.length !== q.length || p.some((v, i) => v !== q[i])) {
        this.fail(path, `${what} differ: expected [${p}], got [${q}]`);
      }
    };
    this.pending.push((async () => {
      try {
        if (exp.extractable) {
          const [x, y] = await Promise.all([
            crypto.subtle.exportKey("raw", exp),
            crypto.subtle.exportKey("raw", b),
          ]);
          same(x, y, "raw key exports");
        } else if (exp.algorithm.name === "AES-GCM") {
          const iv = new Uint8Array(12), message = new TextEncoder().encode("openkv");
          const [x, y] = await Promise.all([
            crypto.subtle.encrypt({ name: "AES-GCM", iv }, exp, message),
            crypto.subtle.encrypt({ name: "AES-GCM", iv }, b, message),
          ]);
          same(x, y, "ciphertexts under the two keys");
        } else {
          this.fail(path, "the comparer cannot compare this key's material");
        }
      } catch (e) {
        this.fail(path, `using the key failed: ${e}`);
      }
    })());
  }


  private fail(path: string, what: string) {
    this.problems.push(`${path}: ${what}`);
  }

  eq(exp: unknown, act: unknown, path: string): void {
    if (typeof exp !== typeof act || (exp === null) !== (act === null)) {
      return this.fail(
        path,
        `expected ${typeName(exp)} ${show(exp)}, got ${typeName(act)} ${show(act)}`,
      );
    }
    if (typeof exp !== "object" || exp === null) {
      if (!Object.is(exp, act)) this.fail(path, `expected ${show(exp)}, got ${show(act)}`);
      return;
    }
    const a = act as object;
    // Identity: each expected object must correspond to exactly one object read, and back.
    const seen = this.expToAct.get(exp);
    const seenBack = this.actToExp.get(a);
    if (seen !== undefined || seenBack !== undefined) {
      if (seen !== a) {
        this.fail(
          path,
          seen === undefined
            ? "is a reference to an object seen before, but the fixture has a distinct object here"
            : "the fixture has a reference to an object seen before here, but the value read is a different object",
        );
      }
      return; // already compared (or being compared: a cycle)
    }
    this.expToAct.set(exp, a);
    this.actToExp.set(a, exp);

    const tExp = typeName(exp), tAct = typeName(a);
    if (tExp !== tAct) return this.fail(path, `expected a ${tExp}, got a ${tAct} ${show(a)}`);

    if (exp instanceof File) {
      const b = a as File;
      if (exp.name !== b.name || exp.lastModified !== b.lastModified) {
        this.fail(path, `expected File ${show(exp.name)} (lastModified ${exp.lastModified}), got ${show(b.name)} (${b.lastModified})`);
      }
    }
    if (exp instanceof Blob) {
      const b = a as Blob;
      if (exp.size !== b.size || exp.type !== b.type) {
        this.fail(path, `expected ${tExp} of ${exp.size} bytes, type ${show(exp.type)}; got ${b.size} bytes, type ${show(b.type)}`);
      }
      if (exp.size === 0) {
        // The one Blob whose content survives: none. Reading it must work.
        this.pending.push(b.arrayBuffer().then(
          (buf) => { if (buf.byteLength !== 0) this.fail(path, "an empty Blob read back with bytes"); },
          (e) => this.fail(path, `reading an empty Blob failed: ${e}`),
        ));
      }
    } else if (exp instanceof DOMException) {
      const b = a as DOMException;
      if (exp.name !== b.name || exp.message !== b.message || exp.code !== b.code) {
        this.fail(path, `expected DOMException ${exp.name}: ${show(exp.message)} (code ${exp.code}), got ${b.name}: ${show(b.message)} (code ${b.code})`);
      }
      if (typeof b.stack !== "string") this.fail(path, `has no stack string (${show(b.stack)})`);
    } else if (exp instanceof CryptoKey) {
      this.cryptoKey(exp, a as CryptoKey, path);
    } else if (exp instanceof Date) {
      const [x, y] = [exp.getTime(), (a as Date).getTime()];
      if (!Object.is(x, y)) this.fail(path, `expected Date ${x}, got Date ${y}`);
    } else if (exp instanceof RegExp) {
      const b = a as RegExp;
      if (exp.source !== b.source || exp.flags !== b.flags) {
        this.fail(path, `expected /${exp.source}/${exp.flags}, got /${b.source}/${b.flags}`);
      }
    } else if (exp instanceof Map) {
      const b = a as Map<unknown, unknown>;
      if (exp.size !== b.size) {
        this.fail(path, `expected Map of ${exp.size} entries, got ${b.size}`);
      }
      const ea = [...exp], ba = [...b];
      for (let i = 0; i < Math.min(ea.length, ba.length); i++) {
        this.eq(ea[i][0], ba[i][0], `${path}.entries[${i}].key`);
        this.eq(ea[i][1], ba[i][1], `${path}.entries[${i}].value`);
      }
    } else if (exp instanceof Set) {
      const b = a as Set<unknown>;
      if (exp.size !== b.size) this.fail(path, `expected Set of ${exp.size} values, got ${b.size}`);
      const ea = [...exp], ba = [...b];
      for (let i = 0; i < Math.min(ea.length, ba.length); i++) {
        this.eq(ea[i], ba[i], `${path}.values[${i}]`);
      }
    } else if (exp instanceof ArrayBuffer) {
      const x = new Uint8Array(exp), y = new Uint8Array(a as ArrayBuffer);
      if (x.length !== y.length || x.some((v, i) => v !== y[i])) {
        this.fail(path, `expected ArrayBuffer bytes [${x}], got [${y}]`);
      }
    } else if (ArrayBuffer.isView(exp)) {
      const b = a as ArrayBufferView;
      if (exp.byteOffset !== b.byteOffset || exp.byteLength !== b.byteLength) {
        this.fail(
          path,
          `expected ${tExp} at byteOffset ${exp.byteOffset}, byteLength ${exp.byteLength}; got byteOffset ${b.byteOffset}, byteLength ${b.byteLength}`,
        );
      }
      // The whole buffer (bytes outside the view too), and its identity.
      this.eq(exp.buffer, b.buffer, `${path}.buffer`);
    } else if (boxedTypes.some((T) => exp instanceof T)) {
      const [x, y] = [exp.valueOf(), a.valueOf()];
      if (!Object.is(x, y)) this.fail(path, `expected boxed ${show(x)}, got boxed ${show(y)}`);
    } else if (exp instanceof Error) {
      const b = a as Error;
      if (exp.message !== b.message) {
        this.fail(path, `expected message ${show(exp.message)}, got ${show(b.message)}`);
      }
      if (("cause" in exp) !== ("cause" in b)) {
        this.fail(path, `expected ${"cause" in exp ? "a" : "no"} cause, got ${show(b.cause)}`);
      } else if ("cause" in exp) {
        this.eq(exp.cause, b.cause, `${path}.cause`);
      }
      if (typeof b.stack !== "string") this.fail(path, `has no stack string (${show(b.stack)})`);
    } else if (Array.isArray(exp)) {
      const b = a as unknown[];
      if (exp.length !== b.length) {
        return this.fail(path, `expected an array of length ${exp.length}, got ${b.length}`);
      }
      if (exp.length <= 100_000) {
        for (let i = 0; i < exp.length; i++) {
          if ((i in exp) !== (i in b)) {
            this.fail(
              `${path}[${i}]`,
              i in exp ? "expected an element, got a hole" : "expected a hole",
            );
          }
        }
      }
      // Present indices (sparse arrays included) and extra properties, in order.
      this.props(exp, b, path);
    } else if (tExp === "Object") {
      this.props(exp, a, path);
    } else {
      this.fail(path, `the comparer does not know ${tExp}`);
    }
  }

  private props(exp: object, act: object, path: string) {
    const ke = Object.keys(exp), ka = Object.keys(act);
    if (ke.length !== ka.length || ke.some((k, i) => k !== ka[i])) {
      const l = (ks: string[]) => (ks.length > 12 ? `${ks.slice(0, 12)},…` : `${ks}`);
      return this.fail(path, `expected keys [${l(ke)}], got [${l(ka)}]`);
    }
    for (const k of ke) {
      this.eq(
        (exp as Record<string, unknown>)[k],
        (act as Record<string, unknown>)[k],
        `${path}[${JSON.stringify(k)}]`,
      );
    }
  }
}

// --- check ------------------------------------------------------------------

const problems: string[] = [];
const kv = await Deno.openKv(dbPath);
const all = { ...fixtures(), ...(await hostObjectFixtures()) };
let checked = 0;
for (const [name, value] of Object.entries(all)) {
  let entry;
  try {
    entry = await kv.get([prefix, name]);
  } catch (e) {
    problems.push(`${name}: Deno cannot read it: ${e}`);
    continue;
  }
  if (entry.versionstamp === null) {
    problems.push(`${name}: missing (no key [${JSON.stringify(prefix)}, ${JSON.stringify(name)}])`);
    continue;
  }
  const comparer = new Comparer(problems);
  comparer.eq(value, entry.value, name);
  await comparer.settle();
  checked++;
}
// Keys that are not fixtures. (Listing reads every value: one Deno cannot read, already
// reported above, makes the listing throw.)
try {
  for await (const e of kv.list({ prefix: [prefix] })) {
    const name = e.key[1];
    if (e.key.length !== 2 || typeof name !== "string" || !(name in all)) {
      if (!hasFloat16Array && name === "float16array" && e.key.length === 2) continue;
      problems.push(`unexpected key ${JSON.stringify(e.key.map(String))}: not a fixture`);
    }
  }
} catch (e) {
  problems.push(`listing [${JSON.stringify(prefix)}] failed, so unexpected keys are not checked: ${e}`);
}
kv.close();

if (!hasFloat16Array) console.log("skipped: float16array");
if (problems.length > 0) {
  for (const p of problems) console.error(`MISMATCH: ${p}`);
  console.error(`check_values: ${problems.length} mismatch(es) in ${checked} values read`);
  Deno.exit(1);
}
console.log(`ok ${checked}`);
