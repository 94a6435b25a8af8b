// The protobuf messages of KV Connect's data path (package com.deno.kv.datapath; field
// numbers from shared/spec/KV-CONNECT.md §3), written by hand: eleven small messages do not
// justify a protobuf runtime and a code generator in every app that imports this package.
// proto3 rules apply: default values are not written, unknown fields are skipped.

export const MutationType = Object.freeze({
  SET: 1,
  DELETE: 2,
  SUM: 3,
  MAX: 4,
  MIN: 5,
  SET_SUFFIX_VERSIONSTAMPED_KEY: 9,
});

export const ValueEncoding = Object.freeze({ V8: 1, LE64: 2, BYTES: 3 });

export const SnapshotReadStatus = Object.freeze({ UNSPECIFIED: 0, SUCCESS: 1, READ_DISABLED: 2 });

export const AtomicWriteStatus = Object.freeze({
  UNSPECIFIED: 0,
  SUCCESS: 1,
  CHECK_FAILURE: 2,
  WRITE_DISABLED: 5,
});

class Writer {
  constructor() {
    this.chunks = [];
    this.length = 0;
  }
  #push(bytes) {
    this.chunks.push(bytes);
    this.length += bytes.length;
  }
  /** An unsigned varint; `n` is a non-negative number or bigint. */
  varint(n) {
    const out = [];
    let v = BigInt.asUintN(64, BigInt(n));
    while (v > 0x7fn) {
      out.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    out.push(Number(v));
    this.#push(Uint8Array.from(out));
  }
  tag(field, wireType) {
    this.varint((field << 3) | wireType);
  }
  uint(field, n) {
    if (n) {
      this.tag(field, 0);
      this.varint(n);
    }
  }
  /** int64/int32: negative numbers as their 64-bit two's complement. */
  int(field, n) {
    if (n) {
      this.tag(field, 0);
      this.varint(BigInt.asUintN(64, BigInt(n)));
    }
  }
  bool(field, b) {
    if (b) this.uint(field, 1);
  }
  bytes(field, bytes, always = false) {
    if (bytes.length || always) {
      this.tag(field, 2);
      this.varint(bytes.length);
      this.#push(bytes);
    }
  }
  message(field, writeBody) {
    const inner = new Writer();
    writeBody(inner);
    this.bytes(field, inner.finish(), true);
  }
  finish() {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

/** Reads a message into `{field: [values]}`: varints as bigint, length-delimited as bytes. */
function readFields(bytes) {
  const fields = new Map();
  let pos = 0;
  const varint = () => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (pos >= bytes.length) throw new Error("KV Connect: truncated protobuf message");
      const b = bytes[pos++];
      result |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return result;
      shift += 7n;
      if (shift > 63n) throw new Error("KV Connect: bad varint in protobuf message");
    }
  };
  while (pos < bytes.length) {
    const key = Number(varint());
    const field = key >> 3;
    let value;
    switch (key & 7) {
      case 0:
        value = varint();
        break;
      case 1:
        value = bytes.subarray(pos, pos + 8);
        pos += 8;
        break;
      case 2: {
        const n = Number(varint());
        if (pos + n > bytes.length) throw new Error("KV Connect: truncated protobuf field");
        value = bytes.subarray(pos, pos + n);
        pos += n;
        break;
      }
      case 5:
        value = bytes.subarray(pos, pos + 4);
        pos += 4;
        break;
      default:
        throw new Error(`KV Connect: unsupported protobuf wire type ${key & 7}`);
    }
    if (!fields.has(field)) fields.set(field, []);
    fields.get(field).push(value);
  }
  return fields;
}

const one = (fields, n, fallback) => fields.get(n)?.at(-1) ?? fallback;
const many = (fields, n) => fields.get(n) ?? [];
const EMPTY = new Uint8Array(0);

/** `ranges`: [{start, end, limit, reverse}] → SnapshotRead bytes. */
export function encodeSnapshotRead(ranges) {
  const w = new Writer();
  for (const r of ranges) {
    w.message(1, (m) => {
      m.bytes(1, r.start);
      m.bytes(2, r.end);
      m.int(3, r.limit);
      m.bool(4, r.reverse);
    });
  }
  return w.finish();
}

function decodeKvEntry(bytes) {
  const f = readFields(bytes);
  return {
    key: one(f, 1, EMPTY),
    value: one(f, 2, EMPTY),
    encoding: Number(one(f, 3, 0n)),
    versionstamp: one(f, 4, EMPTY),
  };
}

export function decodeSnapshotReadOutput(bytes) {
  const f = readFields(bytes);
  return {
    ranges: many(f, 1).map((r) => many(readFields(r), 1).map(decodeKvEntry)),
    readDisabled: one(f, 2, 0n) !== 0n,
    readIsStronglyConsistent: one(f, 4, 0n) !== 0n,
    status: Number(one(f, 8, 0n)),
  };
}

/**
 * `write`: {checks: [{key, versionstamp}], mutations: [{key, type, value?: {data, encoding},
 * expireAtMs}], enqueues: [{payload, deadlineMs, keysIfUndelivered, backoffSchedule}]}.
 */
export function encodeAtomicWrite(write) {
  const w = new Writer();
  for (const c of write.checks) {
    w.message(1, (m) => {
      m.bytes(1, c.key);
      m.bytes(2, c.versionstamp ?? EMPTY);
    });
  }
  for (const mu of write.mutations) {
    w.message(2, (m) => {
      m.bytes(1, mu.key);
      if (mu.value) {
        m.message(2, (v) => {
          v.bytes(1, mu.value.data);
          v.uint(2, mu.value.encoding);
        });
      }
      m.uint(3, mu.type);
      m.int(4, mu.expireAtMs ?? 0);
    });
  }
  for (const e of write.enqueues) {
    w.message(3, (m) => {
      m.bytes(1, e.payload);
      m.int(2, e.deadlineMs);
      for (const k of e.keysIfUndelivered) m.bytes(3, k, true);
      if (e.backoffSchedule?.length) {
        // packed repeated uint32
        const packed = new Writer();
        for (const ms of e.backoffSchedule) packed.varint(ms);
        m.bytes(4, packed.finish());
      }
      // openkv's extension field 100: `[]` means no retry, which an empty field 4 (= the
      // server's default schedule) cannot say. Other servers skip the unknown field.
      if (e.backoffSchedule && e.backoffSchedule.length === 0) m.bool(100, true);
    });
  }
  return w.finish();
}

export function decodeAtomicWriteOutput(bytes) {
  const f = readFields(bytes);
  return {
    status: Number(one(f, 1, 0n)),
    versionstamp: one(f, 2, EMPTY),
  };
}

export function encodeWatch(keys) {
  const w = new Writer();
  for (const k of keys) w.message(1, (m) => m.bytes(1, k, true));
  return w.finish();
}

export function decodeWatchOutput(bytes) {
  const f = readFields(bytes);
  return {
    status: Number(one(f, 1, 0n)),
    keys: many(f, 2).map((k) => {
      const kf = readFields(k);
      const entry = one(kf, 2);
      return { changed: one(kf, 1, 0n) !== 0n, entry: entry ? decodeKvEntry(entry) : null };
    }),
  };
}
