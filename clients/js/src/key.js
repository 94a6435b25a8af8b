// Keys: Deno KV's tuple encoding (a subset of FoundationDB's tuple layer), the selector →
// byte range rules, and list cursors. The server only ever sees the bytes made here, so this
// file decides key order; it must agree byte for byte with Deno's own encoder.

const BYTES = 0x01;
const STRING = 0x02;
const INT_ZERO = 0x14;
const POS_INT_LONG = 0x1d;
const NEG_INT_LONG = 0x0b;
const DOUBLE = 0x21;
const FALSE = 0x26;
const TRUE = 0x27;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** The TypeError Deno throws for a key part it cannot encode. */
function badPart() {
  return new TypeError("expected string, number, bigint, ArrayBufferView, boolean");
}

/** Appends `bytes` with every 0x00 written as 0x00 0xFF, then the 0x00 terminator. */
function pushEscaped(out, bytes) {
  for (const b of bytes) {
    out.push(b);
    if (b === 0) out.push(0xff);
  }
  out.push(0);
}

function pushBigInt(out, n) {
  if (n === 0n) {
    out.push(INT_ZERO);
    return;
  }
  const negative = n < 0n;
  let magnitude = negative ? -n : n;
  const bytes = [];
  while (magnitude > 0n) {
    bytes.unshift(Number(magnitude & 0xffn));
    magnitude >>= 8n;
  }
  if (bytes.length > 255) throw new RangeError("BigInt key part too large (max 255 bytes)");
  if (negative) {
    const complement = bytes.map((b) => b ^ 0xff);
    if (bytes.length <= 8) out.push(INT_ZERO - bytes.length, ...complement);
    else out.push(NEG_INT_LONG, bytes.length ^ 0xff, ...complement);
  } else if (bytes.length <= 8) {
    out.push(INT_ZERO + bytes.length, ...bytes);
  } else {
    out.push(POS_INT_LONG, bytes.length, ...bytes);
  }
}

function pushDouble(out, x) {
  const view = new DataView(new ArrayBuffer(8));
  // Every NaN is one key (DataView writes V8's canonical quiet NaN).
  view.setFloat64(0, Number.isNaN(x) ? NaN : x);
  const bytes = new Uint8Array(view.buffer);
  if (bytes[0] & 0x80) {
    for (let i = 0; i < 8; i++) bytes[i] ^= 0xff;
  } else {
    bytes[0] ^= 0x80;
  }
  out.push(DOUBLE, ...bytes);
}

/** Encodes a key (an array of parts) to its bytes. Throws Deno's TypeErrors. */
export function encodeKey(key) {
  if (!Array.isArray(key)) {
    const type = typeof key === "number" ? "Number" : typeof key;
    throw new TypeError(`serde_v8 error: invalid type; expected: array, got: ${type}`);
  }
  const out = [];
  for (const part of key) {
    switch (typeof part) {
      case "string":
        out.push(STRING);
        pushEscaped(out, encoder.encode(part));
        break;
      case "number":
        pushDouble(out, part);
        break;
      case "bigint":
        pushBigInt(out, part);
        break;
      case "boolean":
        out.push(part ? TRUE : FALSE);
        break;
      default:
        if (ArrayBuffer.isView(part)) {
          out.push(BYTES);
          pushEscaped(out, new Uint8Array(part.buffer, part.byteOffset, part.byteLength));
        } else {
          throw badPart();
        }
    }
  }
  return Uint8Array.from(out);
}

function readEscaped(bytes, pos) {
  const out = [];
  for (;;) {
    if (pos >= bytes.length) throw new TypeError("invalid key: unterminated part");
    const b = bytes[pos++];
    if (b === 0) {
      if (bytes[pos] === 0xff) {
        out.push(0);
        pos++;
        continue;
      }
      return [Uint8Array.from(out), pos];
    }
    out.push(b);
  }
}

function take(bytes, pos, n) {
  if (pos + n > bytes.length) throw new TypeError("invalid key: truncated part");
  return bytes.subarray(pos, pos + n);
}

/** Decodes key bytes (as the server returns them) to an array of parts. */
export function decodeKey(bytes) {
  const key = [];
  let pos = 0;
  while (pos < bytes.length) {
    const tag = bytes[pos++];
    if (tag === BYTES) {
      const [part, next] = readEscaped(bytes, pos);
      key.push(part);
      pos = next;
    } else if (tag === STRING) {
      const [part, next] = readEscaped(bytes, pos);
      key.push(decoder.decode(part));
      pos = next;
    } else if (tag >= INT_ZERO - 8 && tag <= INT_ZERO + 8) {
      const n = Math.abs(tag - INT_ZERO);
      const body = take(bytes, pos, n);
      pos += n;
      key.push(bigintFrom(body, tag < INT_ZERO));
    } else if (tag === POS_INT_LONG || tag === NEG_INT_LONG) {
      const negative = tag === NEG_INT_LONG;
      const n = take(bytes, pos, 1)[0] ^ (negative ? 0xff : 0);
      const body = take(bytes, pos + 1, n);
      pos += 1 + n;
      key.push(bigintFrom(body, negative));
    } else if (tag === DOUBLE) {
      const body = Uint8Array.from(take(bytes, pos, 8));
      pos += 8;
      if (body[0] & 0x80) body[0] ^= 0x80;
      else for (let i = 0; i < 8; i++) body[i] ^= 0xff;
      key.push(new DataView(body.buffer).getFloat64(0));
    } else if (tag === FALSE || tag === TRUE) {
      key.push(tag === TRUE);
    } else {
      throw new TypeError(`invalid key: unknown part tag 0x${tag.toString(16)}`);
    }
  }
  return key;
}

function bigintFrom(body, negative) {
  let n = 0n;
  for (const b of body) n = (n << 8n) | BigInt(negative ? b ^ 0xff : b);
  return negative ? -n : n;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

function startsWith(bytes, prefix) {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

/**
 * A list selector resolved to bytes: `prefix` (with optional `start` or `end` inside it), or
 * `start` + `end`. Validates like Deno (same messages).
 */
export class RawSelector {
  constructor(selector) {
    const has = (k) => Object.hasOwn(selector, k) && selector[k] !== undefined;
    const prefix = has("prefix") ? encodeKey(selector.prefix) : undefined;
    const start = has("start") ? encodeKey(selector.start) : undefined;
    const end = has("end") ? encodeKey(selector.end) : undefined;
    if (prefix) {
      if (start && end) {
        throw new TypeError(
          "Selector can not specify both 'start' and 'end' key when specifying 'prefix'",
        );
      }
      if (start && !startsWith(start, prefix)) {
        throw new TypeError("Start key is not in the keyspace defined by prefix");
      }
      if (end && !startsWith(end, prefix)) {
        throw new TypeError("End key is not in the keyspace defined by prefix");
      }
    } else if (!(start && end)) {
      throw new TypeError("Selector must specify either 'prefix' or both 'start' and 'end' key");
    } else if (compareBytes(start, end) > 0) {
      throw new TypeError("Start key is greater than end key");
    }
    this.prefix = prefix;
    this.start = start;
    this.end = end;
  }

  /** First key of the range (inclusive). `prefix` alone excludes the prefix key itself. */
  rangeStart() {
    return this.start ?? concat(this.prefix, [0x00]);
  }

  /** End of the range (exclusive). */
  rangeEnd() {
    return this.end ?? concat(this.prefix, [0xff]);
  }

  /** The bytes every key of the range shares, which cursors leave out. */
  commonPrefix() {
    if (this.prefix) return this.prefix;
    const n = Math.min(this.start.length, this.end.length);
    let i = 0;
    while (i < n && this.start[i] === this.end[i]) i++;
    return this.start.subarray(0, i);
  }

  /** The cursor of `key` (the last key returned): base64url, padded, of the key minus the common prefix. */
  encodeCursor(key) {
    const common = this.commonPrefix();
    if (!startsWith(key, common)) throw new TypeError("invalid boundary key");
    return base64urlEncode(key.subarray(common.length));
  }

  /** `[start, end)` to read next, given a cursor (or none) and the direction. */
  bounds(cursor, reverse) {
    if (!cursor) return [this.rangeStart(), this.rangeEnd()];
    const tail = base64urlDecode(cursor);
    const common = this.commonPrefix();
    let first, last;
    if (reverse) {
      first = this.rangeStart();
      last = concat(common, tail);
    } else {
      first = concat(common, tail, [0x00]);
      last = this.rangeEnd();
    }
    // A cursor leading outside the selector's range is as invalid as one that is not base64.
    if (this.start && compareBytes(first, this.start) < 0) throw new TypeError("invalid cursor");
    if (this.end && compareBytes(last, this.end) > 0) throw new TypeError("invalid cursor");
    return [first, last];
  }
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** RFC 4648 base64 (`-_` alphabet for base64url), with `=` padding. */
export function base64Encode(bytes, url = false) {
  const alphabet = B64 + (url ? "-_" : "+/");
  let out = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    out += alphabet[(n >> 18) & 63] + alphabet[(n >> 12) & 63];
    out += i + 1 < bytes.length ? alphabet[(n >> 6) & 63] : "=";
    out += i + 2 < bytes.length ? alphabet[n & 63] : "=";
  }
  return out;
}

/** Strict decoder: `url` picks the alphabet; padding optional; anything else is an error. */
export function base64Decode(text, url = false) {
  const alphabet = B64 + (url ? "-_" : "+/");
  const stripped = text.replace(/={1,2}$/, "");
  if (stripped.length % 4 === 1 || (text.length !== stripped.length && text.length % 4 !== 0)) {
    return null;
  }
  const out = [];
  let acc = 0;
  let bits = 0;
  for (const ch of stripped) {
    const v = alphabet.indexOf(ch);
    if (v < 0) return null;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push((acc >> bits) & 0xff);
    }
  }
  return Uint8Array.from(out);
}

function base64urlEncode(bytes) {
  return base64Encode(bytes, true);
}

function base64urlDecode(text) {
  const bytes = base64Decode(text, true);
  if (bytes === null) throw new TypeError("invalid cursor");
  return bytes;
}
