// Shared helpers for the JSON "manifest" exchanged between the Deno scripts in
// this directory and the Rust interoperability tests.
//
// Manifest format (a JSON object):
//
//   { "entries": [ { "key": [<part>...], "value": <value>,
//                    "versionstamp": "<20 hex>" (optional),
//                    "expireIn": <ms> (optional) }, ... ],
//     "absent":  [ [<part>...], ... ] }
//
// part:  {"t":"string","v":"..."}
//      | {"t":"bytes","v":"<standard base64>"}
//      | {"t":"bigint","v":"<decimal, may be negative, may be huge>"}
//      | {"t":"number","v":"<decimal/exponent notation, or exactly one of
//                           NaN, Infinity, -Infinity, -0, 0>"}
//      | {"t":"bool","v":true|false}
// value: {"enc":"u64","v":"<decimal u64>"}
//      | {"enc":"bytes","v":"<base64>"}
//      | {"enc":"v8string","v":"<a JS string>"}
//      | {"enc":"v8number","v":<JSON number>}

export type ManifestPart =
  | { t: "string"; v: string }
  | { t: "bytes"; v: string }
  | { t: "bigint"; v: string }
  | { t: "number"; v: string }
  | { t: "bool"; v: boolean };

export type ManifestValue =
  | { enc: "u64"; v: string }
  | { enc: "bytes"; v: string }
  | { enc: "v8string"; v: string }
  | { enc: "v8number"; v: number };

export interface ManifestEntry {
  key: ManifestPart[];
  value: ManifestValue;
  versionstamp?: string;
  expireIn?: number;
}

export interface Manifest {
  entries: ManifestEntry[];
  absent: ManifestPart[][];
}

// ---------------------------------------------------------------------------
// base64 (standard alphabet, with padding)

export function bytesToBase64(bytes: Uint8Array): string {
  let bin = "";
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
  return btoa(bin);
}

export function base64ToBytes(b64: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0) {
    throw new Error(`invalid standard base64: ${JSON.stringify(b64)}`);
  }
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------
// numbers

export function numberToManifest(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "Infinity";
  if (n === -Infinity) return "-Infinity";
  if (Object.is(n, -0)) return "-0";
  // Shortest round-tripping representation; large/small magnitudes use
  // exponent notation ("1.7976931348623157e+308", "5e-324"), which Rust's
  // f64::from_str accepts.
  return String(n);
}

const DECIMAL_RE = /^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;

export function numberFromManifest(v: string): number {
  switch (v) {
    case "NaN":
      return NaN;
    case "Infinity":
      return Infinity;
    case "-Infinity":
      return -Infinity;
    case "-0":
      return -0;
  }
  if (typeof v !== "string" || !DECIMAL_RE.test(v)) {
    throw new Error(
      `invalid number part ${JSON.stringify(v)} (expected a decimal or one of ` +
        `NaN, Infinity, -Infinity, -0)`,
    );
  }
  // Number("-0.0") is -0, which is what we want for any spelling of -0.
  return Number(v);
}

// ---------------------------------------------------------------------------
// keys

export function keyToManifest(key: Deno.KvKey): ManifestPart[] {
  return key.map((part): ManifestPart => {
    if (typeof part === "string") return { t: "string", v: part };
    if (part instanceof Uint8Array) return { t: "bytes", v: bytesToBase64(part) };
    if (typeof part === "bigint") return { t: "bigint", v: part.toString() };
    if (typeof part === "number") return { t: "number", v: numberToManifest(part) };
    if (typeof part === "boolean") return { t: "bool", v: part };
    throw new Error(`unsupported key part: ${Deno.inspect(part)}`);
  });
}

export function keyFromManifest(parts: ManifestPart[]): Deno.KvKey {
  if (!Array.isArray(parts)) {
    throw new Error(`key is not an array: ${JSON.stringify(parts)}`);
  }
  return parts.map((p): Deno.KvKeyPart => {
    switch (p?.t) {
      case "string":
        if (typeof p.v !== "string") break;
        return p.v;
      case "bytes":
        if (typeof p.v !== "string") break;
        return base64ToBytes(p.v);
      case "bigint":
        if (typeof p.v !== "string" || !/^-?[0-9]+$/.test(p.v)) break;
        return BigInt(p.v);
      case "number":
        if (typeof p.v !== "string") break;
        return numberFromManifest(p.v);
      case "bool":
        if (typeof p.v !== "boolean") break;
        return p.v;
    }
    throw new Error(`invalid manifest key part: ${JSON.stringify(p)}`);
  });
}

/** Part-by-part equality: same type, Object.is for numbers (NaN == NaN,
 * -0 != 0), bigint/string/bool equality, byte-wise equality for bytes. */
export function keyPartEqual(a: Deno.KvKeyPart, b: Deno.KvKeyPart): boolean {
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    return a instanceof Uint8Array && b instanceof Uint8Array && bytesEqual(a, b);
  }
  if (typeof a !== typeof b) return false;
  if (typeof a === "number") return Object.is(a, b);
  return a === b;
}

export function keyEqual(a: Deno.KvKey, b: Deno.KvKey): boolean {
  return a.length === b.length && a.every((p, i) => keyPartEqual(p, b[i]));
}

/** Human-readable rendering of a key, unambiguous about part types. */
export function showKey(key: Deno.KvKey): string {
  return "[" + key.map((p) => {
    if (p instanceof Uint8Array) {
      const b64 = bytesToBase64(p);
      return b64.length <= 64
        ? `bytes(${b64})`
        : `bytes(${b64.slice(0, 48)}..., ${p.length} bytes)`;
    }
    if (typeof p === "bigint") return `${p}n`;
    if (typeof p === "number") return `number(${numberToManifest(p)})`;
    if (typeof p === "string") return JSON.stringify(p);
    return String(p);
  }).join(", ") + "]";
}

// ---------------------------------------------------------------------------
// values

export function valueToManifest(value: unknown): ManifestValue {
  if (value instanceof Deno.KvU64) return { enc: "u64", v: value.value.toString() };
  if (value instanceof Uint8Array) return { enc: "bytes", v: bytesToBase64(value) };
  if (typeof value === "string") return { enc: "v8string", v: value };
  if (typeof value === "number") {
    if (!Number.isFinite(value) || Object.is(value, -0)) {
      throw new Error(`v8number ${value} is not representable as a JSON number`);
    }
    return { enc: "v8number", v: value };
  }
  throw new Error(`value not representable in the manifest: ${Deno.inspect(value)}`);
}

/** Describes how `actual` differs from the manifest value, or returns null if
 * it matches. */
export function valueMismatch(expected: ManifestValue, actual: unknown): string | null {
  const got = () => `got ${describeValue(actual)}`;
  switch (expected?.enc) {
    case "u64": {
      const want = BigInt(expected.v);
      if (!(actual instanceof Deno.KvU64)) return `expected Deno.KvU64(${want}n), ${got()}`;
      return actual.value === want ? null : `expected Deno.KvU64(${want}n), ${got()}`;
    }
    case "bytes": {
      const want = base64ToBytes(expected.v);
      if (!(actual instanceof Uint8Array) || !bytesEqual(actual, want)) {
        return `expected Uint8Array(base64 ${
          JSON.stringify(expected.v)
        }, ${want.length} bytes), ${got()}`;
      }
      return null;
    }
    case "v8string":
      if (typeof actual !== "string" || actual !== expected.v) {
        return `expected string ${JSON.stringify(expected.v)}, ${got()}`;
      }
      return null;
    case "v8number":
      if (typeof actual !== "number" || !Object.is(actual, expected.v)) {
        return `expected number ${numberToManifest(expected.v)}, ${got()}`;
      }
      return null;
  }
  return `invalid manifest value ${JSON.stringify(expected)}`;
}

export function describeValue(v: unknown): string {
  if (v instanceof Deno.KvU64) return `Deno.KvU64(${v.value}n)`;
  if (v instanceof Uint8Array) {
    return `Uint8Array(base64 ${JSON.stringify(bytesToBase64(v))}, ${v.length} bytes)`;
  }
  if (typeof v === "string") return `string ${JSON.stringify(v)}`;
  if (typeof v === "number") return `number ${numberToManifest(v)}`;
  return `${v === null ? "null" : typeof v} ${Deno.inspect(v)}`;
}
