// Values: what Deno stores for a JS value. A Uint8Array is stored as raw bytes, a KvU64 as
// 8 little-endian bytes, anything else as V8 ValueSerializer bytes — written with the
// runtime's own V8 (`node:v8`'s plain Serializer: no Node-specific host objects, so typed
// arrays are written the way Deno writes them). The bytes after the two-byte header equal
// what Deno itself stores; the header carries the runtime's V8 format version (15 in Node 20
// and in Deno's node:v8), which every Deno reads.

import v8 from "node:v8";

export const ENCODING_V8 = 1;
export const ENCODING_LE64 = 2;
export const ENCODING_BYTES = 3;

const MIN_U64 = 0n;
const MAX_U64 = 0xffff_ffff_ffff_ffffn;

/** Deno.KvU64 for Node (and for Deno without --unstable-kv): same checks, same messages. */
class OpenKvU64 {
  constructor(value) {
    if (typeof value !== "bigint") {
      throw new TypeError(`Value must be a bigint: received ${typeof value}`);
    }
    if (value < MIN_U64) {
      throw new RangeError(`Value must be a positive bigint: received ${value}`);
    }
    if (value > MAX_U64) throw new RangeError("Value must fit in a 64-bit unsigned integer");
    this.value = value;
    Object.freeze(this);
  }
  valueOf() {
    return this.value;
  }
  toString() {
    return this.value.toString();
  }
  get [Symbol.toStringTag]() {
    return "Deno.KvU64";
  }
  [Symbol.for("nodejs.util.inspect.custom")]() {
    return `[Deno.KvU64: ${this.value}n]`;
  }
}

const DenoNs = globalThis.Deno;

/**
 * Deno's own `Deno.KvU64` where it exists (Deno with --unstable-kv), so values read through
 * this package pass `instanceof Deno.KvU64`; otherwise a class that behaves the same.
 */
export const KvU64 = typeof DenoNs?.KvU64 === "function" ? DenoNs.KvU64 : OpenKvU64;

function isKvU64(value) {
  return value instanceof KvU64 || value instanceof OpenKvU64;
}

/** Deno's test for "store as raw bytes": a Uint8Array (subclasses such as Buffer included). */
function isUint8Array(value) {
  return ArrayBuffer.isView(value) && value[Symbol.toStringTag] === "Uint8Array";
}

/** V8-serializes `value` as Deno would for storage; unclonable values throw Deno's TypeError. */
export function serializeV8(value) {
  const serializer = new v8.Serializer();
  serializer.writeHeader();
  try {
    serializer.writeValue(value);
  } catch (error) {
    // Deno reports "… could not be cloned." as a TypeError; V8 through node:v8 as an Error.
    throw new TypeError(error?.message ?? String(error), { cause: error });
  }
  return new Uint8Array(serializer.releaseBuffer());
}

/** The latest V8 format version this runtime's V8 reads (tried once, cached). */
let readableVersion;
function maxReadableVersion() {
  if (readableVersion === undefined) {
    readableVersion = 15;
    for (const v of [17, 16]) {
      try {
        const d = new v8.Deserializer(Uint8Array.from([0xff, v, 0x30]));
        d.readHeader();
        d.readValue();
        readableVersion = v;
        break;
      } catch {
        // older V8: try the next lower version
      }
    }
  }
  return readableVersion;
}

/**
 * Deserializes V8 bytes Deno (or this package) wrote. Deno 2.9 writes format version 16,
 * which Node 20's V8 (max 15) refuses: V8 16 changed nothing in the tags Deno KV values use
 * (openkv's Rust codec reads 13–16 alike), so the header is lowered to what this runtime
 * reads and the body is read as is.
 */
export function deserializeV8(bytes) {
  let data = bytes;
  if (data.length >= 2 && data[0] === 0xff && data[1] > maxReadableVersion() && data[1] < 0x80) {
    data = Uint8Array.from(data);
    data[1] = maxReadableVersion();
  }
  const d = new v8.Deserializer(data);
  d.readHeader();
  return d.readValue();
}

/** `value` → {data, encoding} as Deno stores it. */
export function encodeValue(value) {
  if (isUint8Array(value)) {
    return {
      data: new Uint8Array(value.buffer, value.byteOffset, value.byteLength),
      encoding: ENCODING_BYTES,
    };
  }
  if (isKvU64(value)) {
    const data = new Uint8Array(8);
    new DataView(data.buffer).setBigUint64(0, value.value, true);
    return { data, encoding: ENCODING_LE64 };
  }
  return { data: serializeV8(value), encoding: ENCODING_V8 };
}

/** A stored value ({data, encoding} from the server) → the JS value Deno would return. */
export function decodeValue(data, encoding) {
  switch (encoding) {
    case ENCODING_V8:
      return deserializeV8(data);
    case ENCODING_BYTES:
      return Uint8Array.from(data);
    case ENCODING_LE64: {
      if (data.length !== 8) throw new TypeError("Invalid value: a KvU64 must be 8 bytes");
      return new KvU64(new DataView(data.buffer, data.byteOffset, 8).getBigUint64(0, true));
    }
    default:
      throw new TypeError("Invalid value type");
  }
}
