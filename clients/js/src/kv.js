// The `Deno.Kv` surface over KV Connect: reads, atomic writes, list, watch. Client-side checks
// mirror Deno's (same limits, classes and messages) so an app sees the same errors it saw on
// Deno's local KV; the server checks again.

import { RawSelector, decodeKey, encodeKey } from "./key.js";
import {
  AtomicWriteStatus,
  MutationType,
  SnapshotReadStatus,
  decodeAtomicWriteOutput,
  decodeSnapshotReadOutput,
  decodeWatchOutput,
  encodeAtomicWrite,
  encodeSnapshotRead,
  encodeWatch,
} from "./proto.js";
import { KvU64, decodeValue, encodeValue, serializeV8 } from "./value.js";
import { KvConnectError, closedError } from "./errors.js";
import { QueueListener } from "./queue.js";
import * as limits from "./limits.js";

const commitVersionstampSymbol = Symbol("KvCommitVersionstamp");

function hex(bytes) {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

/** serde_v8's name for a JS value's type, as Deno's messages spell it. */
function serdeType(value) {
  if (typeof value === "number") return "Number";
  return typeof value;
}

function versionstampBytes(text) {
  if (typeof text !== "string") {
    throw new TypeError(`serde_v8 error: invalid type; expected: string, got: ${serdeType(text)}`);
  }
  if (!/^[0-9a-fA-F]{20}$/.test(text)) throw new TypeError("Invalid check");
  const out = new Uint8Array(10);
  for (let i = 0; i < 10; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Deno checks the ends of the range it reads: a `get` of key K reads [K, K‖0x00). */
function checkReadKey(bytes) {
  if (bytes.length > limits.MAX_READ_KEY_BYTES) {
    throw new TypeError(`Key too large for read (max ${limits.MAX_READ_KEY_BYTES} bytes)`);
  }
  return bytes;
}

function checkWriteKey(bytes) {
  if (bytes.length === 0) throw new TypeError("key cannot be empty");
  if (bytes.length > limits.MAX_WRITE_KEY_BYTES) {
    throw new TypeError(`Key too large for write (max ${limits.MAX_WRITE_KEY_BYTES} bytes)`);
  }
  return bytes.length;
}

function checkValueSize(value) {
  if (value.data.length > limits.MAX_VALUE_BYTES) {
    throw new TypeError(`Value too large (max ${limits.MAX_VALUE_BYTES} bytes)`);
  }
  return value.data.length;
}

function validateExpireIn(expireIn) {
  if (expireIn === undefined) return;
  if (typeof expireIn !== "number" || !Number.isInteger(expireIn) || expireIn < 0) {
    throw new TypeError(`expireIn must be a non-negative integer: received ${expireIn}`);
  }
}

function validateQueueDelay(delay) {
  if (delay < 0) throw new TypeError(`Delay must be >= 0: received ${delay}`);
  if (delay > limits.MAX_QUEUE_DELAY_MS) {
    throw new TypeError(`Delay cannot be greater than 30 days: received ${delay}`);
  }
  if (Number.isNaN(delay)) throw new TypeError("Delay cannot be NaN");
}

function validateBackoffSchedule(schedule) {
  if (schedule.length > limits.MAX_BACKOFF_INTERVALS) {
    throw new TypeError(
      `Invalid backoffSchedule, max ${limits.MAX_BACKOFF_INTERVALS} intervals allowed`,
    );
  }
  for (let i = 0; i < schedule.length; i++) {
    const ms = schedule[i];
    if (ms < 0 || ms > limits.MAX_BACKOFF_INTERVAL_MS || Number.isNaN(ms)) {
      throw new TypeError(`Invalid backoffSchedule, interval at index ${i} is invalid`);
    }
  }
}

/** An enqueue as the atomic write carries it; validated like Deno, at the call. */
function makeEnqueue(message, opts) {
  if (opts?.delay !== undefined) validateQueueDelay(opts.delay);
  if (opts?.backoffSchedule !== undefined) validateBackoffSchedule(opts.backoffSchedule);
  return {
    payload: serializeV8(message),
    delay: opts?.delay ?? 0,
    keysIfUndelivered: opts?.keysIfUndelivered ?? [],
    backoffSchedule: opts?.backoffSchedule ?? null,
  };
}

function decodeEntry(raw) {
  return {
    key: decodeKey(raw.key),
    value: decodeValue(raw.value, raw.encoding),
    versionstamp: hex(raw.versionstamp),
  };
}

/** Turns the transport's abort-on-close into Deno's error for a closed database. */
function closedAware(kv, error) {
  if (kv.isClosed && error?.name === "AbortError") return closedError();
  return error;
}

export class Kv {
  #transport;
  #closed = false;
  #listeners = new Set();
  #watches = new Set();

  /** @internal use `openKv` */
  constructor(transport) {
    this.#transport = transport;
  }

  get isClosed() {
    return this.#closed;
  }

  #ensureOpen() {
    if (this.#closed) throw closedError();
  }

  atomic() {
    return new AtomicOperation(this);
  }

  commitVersionstamp() {
    return commitVersionstampSymbol;
  }

  /** @internal */
  async snapshotRead(ranges, consistency = "strong") {
    this.#ensureOpen();
    if (consistency !== "strong" && consistency !== "eventual") {
      throw new TypeError(`unknown variant \`${consistency}\`, expected \`strong\` or \`eventual\``);
    }
    if (ranges.length > limits.MAX_READ_RANGES) {
      throw new TypeError(`Too many ranges (max ${limits.MAX_READ_RANGES})`);
    }
    const total = ranges.reduce((n, r) => n + r.limit, 0);
    if (total > limits.MAX_READ_ENTRIES) {
      throw new TypeError(`Too many entries (max ${limits.MAX_READ_ENTRIES})`);
    }
    let body;
    try {
      body = await this.#transport.callIdempotent(
        consistency === "eventual" ? "eventual" : "strong",
        "/snapshot_read",
        encodeSnapshotRead(ranges),
      );
    } catch (error) {
      throw closedAware(this, error);
    }
    const out = decodeSnapshotReadOutput(body);
    if (out.readDisabled || out.status === SnapshotReadStatus.READ_DISABLED) {
      throw new KvConnectError("KV Connect: reads are disabled on this server", 0);
    }
    if (consistency === "strong" && !out.readIsStronglyConsistent) {
      throw new KvConnectError("KV Connect: the server answered a strong read inconsistently", 0);
    }
    return out.ranges;
  }

  async get(key, opts) {
    const bytes = encodeKey(key);
    const end = checkReadKey(Uint8Array.from([...bytes, 0]));
    const [entries] = await this.snapshotRead(
      [{ start: bytes, end, limit: 1, reverse: false }],
      opts?.consistency,
    );
    if (!entries?.length) return { key, value: null, versionstamp: null };
    return decodeEntry(entries[0]);
  }

  async getMany(keys, opts) {
    if (keys.length > limits.MAX_READ_RANGES) {
      throw new TypeError(`Too many ranges (max ${limits.MAX_READ_RANGES})`);
    }
    const ranges = keys.map((key) => {
      const bytes = encodeKey(key);
      const end = checkReadKey(Uint8Array.from([...bytes, 0]));
      return { start: bytes, end, limit: 1, reverse: false };
    });
    const results = await this.snapshotRead(ranges, opts?.consistency);
    return keys.map((key, i) => {
      const entries = results[i];
      if (!entries?.length) return { key, value: null, versionstamp: null };
      return decodeEntry(entries[0]);
    });
  }

  async set(key, value, options) {
    validateExpireIn(options?.expireIn);
    const versionstamp = await this.commitWrite([], [
      { key, type: "set", value: encodeValue(value), expireIn: options?.expireIn },
    ], []);
    if (versionstamp === null) throw new TypeError("Failed to set value");
    return { ok: true, versionstamp };
  }

  async delete(key) {
    const versionstamp = await this.commitWrite([], [{ key, type: "delete" }], []);
    if (versionstamp === null) throw new TypeError("Failed to set value");
  }

  list(selector, options = {}) {
    if (options.limit !== undefined && !(Number.isInteger(options.limit) && options.limit > 0)) {
      throw new Error(`Limit must be a positive integer: received ${options.limit}`);
    }
    let batchSize = options.batchSize ?? options.limit ?? 100;
    if (!(Number.isInteger(batchSize) && batchSize > 0)) {
      throw new Error(`batchSize must be a positive integer: received ${batchSize}`);
    }
    if (options.batchSize === undefined && batchSize > 500) batchSize = 500;
    // As Deno: a selector of the wrong shape throws here; one whose keys are bad (or out of
    // order, or outside the prefix) is reported by the first next().
    const has = (k) => Object.hasOwn(selector, k) && selector[k] !== undefined;
    if (has("prefix") && has("start") && has("end")) {
      throw new TypeError(
        "Selector can not specify both 'start' and 'end' key when specifying 'prefix'",
      );
    }
    if (!has("prefix") && !(has("start") && has("end"))) {
      throw new TypeError("Selector must specify either 'prefix' or both 'start' and 'end' key");
    }
    let raw;
    try {
      raw = new RawSelector(selector);
    } catch (error) {
      raw = { error };
    }
    return new KvListIterator(this, raw, {
      limit: options.limit,
      cursor: options.cursor,
      reverse: options.reverse ?? false,
      consistency: options.consistency ?? "strong",
      batchSize,
    });
  }

  async enqueue(message, opts) {
    const enqueue = makeEnqueue(message, opts);
    const versionstamp = await this.commitWrite([], [], [enqueue]);
    if (versionstamp === null) throw new TypeError("Failed to enqueue value");
    return { ok: true, versionstamp };
  }

  /**
   * Commits checks, mutations and enqueues in one atomic write; the versionstamp, or null when
   * a check failed. Validates like Deno before sending anything.
   * @internal
   */
  async commitWrite(checks, mutations, enqueues) {
    this.#ensureOpen();
    if (checks.length > limits.MAX_CHECKS) {
      throw new TypeError(`Too many checks (max ${limits.MAX_CHECKS})`);
    }
    if (mutations.length + enqueues.length > limits.MAX_MUTATIONS) {
      throw new TypeError(`Too many mutations (max ${limits.MAX_MUTATIONS})`);
    }
    let totalPayload = 0;
    let totalKeys = 0;
    const wireChecks = checks.map((c) => {
      const key = encodeKey(c.key);
      totalPayload += checkWriteKey(key);
      const versionstamp = c.versionstamp == null ? null : versionstampBytes(c.versionstamp);
      return { key, versionstamp };
    });
    const now = Date.now();
    const wireMutations = mutations.map((m) => {
      let key = m.key;
      let type = MutationType[m.type.toUpperCase()];
      if (m.type === "set" && Array.isArray(key) && key.at(-1) === commitVersionstampSymbol) {
        key = key.slice(0, -1);
        type = MutationType.SET_SUFFIX_VERSIONSTAMPED_KEY;
      }
      const bytes = encodeKey(key);
      const keySize = checkWriteKey(bytes);
      totalPayload += keySize;
      if (m.value) {
        totalPayload += checkValueSize(m.value) + keySize;
        totalKeys += keySize;
      }
      validateExpireIn(m.expireIn);
      return {
        key: bytes,
        type,
        value: m.value,
        expireAtMs: m.expireIn === undefined ? 0 : now + m.expireIn,
      };
    });
    const wireEnqueues = enqueues.map((e) => {
      if (e.payload.length > limits.MAX_VALUE_BYTES) {
        throw new TypeError(`enqueue payload too large (max ${limits.MAX_VALUE_BYTES} bytes)`);
      }
      totalPayload += e.payload.length;
      if (e.backoffSchedule) totalPayload += 4 * e.backoffSchedule.length;
      return {
        payload: e.payload,
        deadlineMs: now + e.delay,
        // Deno checks neither size nor emptiness of these keys; the server has the last word.
        keysIfUndelivered: e.keysIfUndelivered.map((k) => encodeKey(k)),
        backoffSchedule: e.backoffSchedule,
      };
    });
    if (totalPayload > limits.MAX_TOTAL_MUTATION_BYTES) {
      throw new TypeError(
        `Total mutation size too large (max ${limits.MAX_TOTAL_MUTATION_BYTES} bytes)`,
      );
    }
    if (totalKeys > limits.MAX_TOTAL_KEY_BYTES) {
      throw new TypeError(`Total key size too large (max ${limits.MAX_TOTAL_KEY_BYTES} bytes)`);
    }
    const body = await this.#transport.callWrite(
      "/atomic_write",
      encodeAtomicWrite({ checks: wireChecks, mutations: wireMutations, enqueues: wireEnqueues }),
    );
    const out = decodeAtomicWriteOutput(body);
    switch (out.status) {
      case AtomicWriteStatus.SUCCESS:
        return hex(out.versionstamp);
      case AtomicWriteStatus.CHECK_FAILURE:
        return null;
      case AtomicWriteStatus.WRITE_DISABLED:
        throw new KvConnectError("KV Connect: writes are disabled on this server (read-only)", 0);
      default:
        throw new KvConnectError(`KV Connect: unknown atomic write status ${out.status}`, 0);
    }
  }

  listenQueue(handler) {
    if (this.#closed) return Promise.reject(new Error("Queue already closed"));
    if (typeof handler !== "function") {
      return Promise.reject(new TypeError("listenQueue: the handler must be a function"));
    }
    const listener = new QueueListener(this.#transport, handler);
    this.#listeners.add(listener);
    return listener.run().finally(() => this.#listeners.delete(listener));
  }

  watch(keys, options = {}) {
    this.#ensureOpen();
    if (keys.length > limits.MAX_WATCHED_KEYS) {
      throw new TypeError(`Too many keys (max ${limits.MAX_WATCHED_KEYS})`);
    }
    const encoded = keys.map((k) => checkReadKey(encodeKey(k)));
    const watch = new Watch(this.#transport, keys, encoded, options.raw ?? false);
    this.#watches.add(watch);
    return watch.stream(() => this.#watches.delete(watch));
  }

  close() {
    this.#ensureOpen();
    this.#closed = true;
    for (const listener of this.#listeners) listener.stop();
    for (const watch of this.#watches) watch.stop();
    this.#transport.close();
  }

  [Symbol.dispose ?? Symbol.for("nodejs.dispose")]() {
    if (!this.#closed) this.close();
  }
}

export class AtomicOperation {
  #kv;
  #checks = [];
  #mutations = [];
  #enqueues = [];

  constructor(kv) {
    this.#kv = kv;
  }

  check(...checks) {
    for (const c of checks) this.#checks.push({ key: c.key, versionstamp: c.versionstamp });
    return this;
  }

  mutate(...mutations) {
    for (const m of mutations) {
      let value;
      let expireIn;
      switch (m.type) {
        case "delete":
          if (m.value) throw new TypeError("Invalid mutation 'delete' with value");
          break;
        case "set":
          if (typeof m.expireIn === "number") {
            validateExpireIn(m.expireIn);
            expireIn = m.expireIn;
          }
        // falls through
        case "sum":
        case "min":
        case "max":
          if (!Object.hasOwn(m, "value")) {
            throw new TypeError(`Invalid mutation '${m.type}' without value`);
          }
          value = encodeValue(m.value);
          break;
        default:
          throw new TypeError("Invalid mutation type");
      }
      this.#mutations.push({ key: m.key, type: m.type, value, expireIn });
    }
    return this;
  }

  sum(key, n) {
    this.#mutations.push({ key, type: "sum", value: encodeValue(new KvU64(n)) });
    return this;
  }

  min(key, n) {
    this.#mutations.push({ key, type: "min", value: encodeValue(new KvU64(n)) });
    return this;
  }

  max(key, n) {
    this.#mutations.push({ key, type: "max", value: encodeValue(new KvU64(n)) });
    return this;
  }

  set(key, value, options) {
    validateExpireIn(options?.expireIn);
    this.#mutations.push({ key, type: "set", value: encodeValue(value), expireIn: options?.expireIn });
    return this;
  }

  delete(key) {
    this.#mutations.push({ key, type: "delete" });
    return this;
  }

  enqueue(message, opts) {
    this.#enqueues.push(makeEnqueue(message, opts));
    return this;
  }

  async commit() {
    const versionstamp = await this.#kv.commitWrite(this.#checks, this.#mutations, this.#enqueues);
    if (versionstamp === null) return { ok: false };
    return { ok: true, versionstamp };
  }

  then() {
    throw new TypeError(
      "'Deno.AtomicOperation' is not a promise: did you forget to call 'commit()'",
    );
  }
}

const AsyncIteratorPrototype = Object.getPrototypeOf(
  Object.getPrototypeOf(async function* () {}).prototype,
);

/** `kv.list`'s iterator: batches of `batchSize`, `cursor` after each entry (as Deno). */
export class KvListIterator {
  #kv;
  #selector;
  #limit;
  #reverse;
  #consistency;
  #batchSize;
  #entries = null;
  #lastBatch = false;
  #done = false;
  #count = 0;
  #cursor;

  constructor(kv, selector, { limit, cursor, reverse, consistency, batchSize }) {
    this.#kv = kv;
    this.#selector = selector;
    this.#limit = limit;
    this.#reverse = reverse;
    this.#consistency = consistency;
    this.#batchSize = batchSize;
    this.#cursor = cursor ? cursor : null;
  }

  get cursor() {
    if (this.#cursor === null) throw new Error("Cannot get cursor before first iteration");
    return this.#cursor;
  }

  async next() {
    if (this.#done || (this.#limit !== undefined && this.#count >= this.#limit)) {
      return { done: true, value: undefined };
    }
    if (this.#selector.error) throw this.#selector.error;
    if (!this.#entries?.length && !this.#lastBatch) {
      const [start, end] = this.#selector.bounds(this.#cursor ?? undefined, this.#reverse);
      checkReadKey(start);
      checkReadKey(end);
      const [batch] = await this.#kv.snapshotRead(
        [{ start, end, limit: this.#batchSize, reverse: this.#reverse }],
        this.#consistency,
      );
      batch.reverse();
      this.#entries = batch;
      if (batch.length < this.#batchSize) this.#lastBatch = true;
    }
    const raw = this.#entries?.pop();
    if (!raw) {
      this.#done = true;
      this.#cursor = "";
      return { done: true, value: undefined };
    }
    this.#cursor = this.#selector.encodeCursor(raw.key);
    this.#count++;
    return { done: false, value: decodeEntry(raw) };
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}
Object.setPrototypeOf(KvListIterator.prototype, AsyncIteratorPrototype);

/** One `kv.watch` stream: reconnects after network errors; emits when a versionstamp moved. */
class Watch {
  #transport;
  #keys;
  #body;
  #raw;
  #abort = new AbortController();
  #reader = null;
  #buffer = new Uint8Array(0);
  #last;

  constructor(transport, keys, encoded, raw) {
    this.#transport = transport;
    this.#keys = keys;
    this.#body = encodeWatch(encoded);
    this.#raw = raw;
    this.#last = new Array(keys.length).fill(undefined);
  }

  stop() {
    this.#abort.abort(new DOMException("watch ended", "AbortError"));
  }

  stream(onEnd) {
    return new ReadableStream({
      pull: async (controller) => {
        try {
          const entries = await this.#nextEmission();
          if (entries === null) {
            onEnd();
            controller.close();
          } else {
            controller.enqueue(entries);
          }
        } catch (error) {
          onEnd();
          controller.error(error);
        }
      },
      cancel: () => {
        this.stop();
        onEnd();
      },
    });
  }

  async #nextEmission() {
    for (;;) {
      const frame = await this.#nextFrame();
      if (frame === null) return null;
      const out = decodeWatchOutput(frame);
      if (out.status === SnapshotReadStatus.READ_DISABLED) {
        throw new KvConnectError("KV Connect: reads are disabled on this server", 0);
      }
      let changed = false;
      for (let i = 0; i < this.#keys.length; i++) {
        const k = out.keys[i];
        if (!k?.changed) continue;
        const raw = k.entry;
        const versionstamp = raw ? hex(raw.versionstamp) : null;
        if (this.#last[i] !== undefined && this.#last[i].versionstamp === versionstamp) continue;
        changed = true;
        this.#last[i] = { raw, versionstamp, key: this.#keys[i] };
      }
      if (this.#last.some((e) => e === undefined)) continue; // the first frame is incomplete
      if (!changed && !this.#raw) continue;
      return this.#last.map((e) =>
        e.raw ? decodeEntry(e.raw) : { key: [...e.key], value: null, versionstamp: null }
      );
    }
  }

  /** The next non-empty frame; reconnects when the stream breaks; null once stopped. */
  async #nextFrame() {
    let delay = 100;
    for (;;) {
      if (this.#abort.signal.aborted) return null;
      if (!this.#reader) {
        let response;
        try {
          // Retries network errors and 5xx itself; what it throws is final (4xx, closed).
          response = await this.#transport.openWatch(this.#body, this.#abort.signal);
        } catch (error) {
          if (this.#abort.signal.aborted) return null;
          throw error;
        }
        this.#reader = response.body.getReader();
        this.#buffer = new Uint8Array(0);
      }
      let frame;
      try {
        frame = await this.#readFrame();
      } catch {
        if (this.#abort.signal.aborted) return null;
        // The stream broke mid-way: reconnect after a pause. The new stream's first frame
        // repeats the current state; versionstamps already emitted are not emitted again.
        this.#reader = null;
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, 5_000);
        continue;
      }
      if (frame === null) {
        // The server ended the stream (restart, shutdown): reconnect.
        this.#reader = null;
        continue;
      }
      delay = 100;
      if (frame.length === 0) continue; // keep-alive
      return frame;
    }
  }

  async #readFrame() {
    const need = async (n) => {
      while (this.#buffer.length < n) {
        const { value, done } = await this.#reader.read();
        if (done) return false;
        const merged = new Uint8Array(this.#buffer.length + value.length);
        merged.set(this.#buffer);
        merged.set(value, this.#buffer.length);
        this.#buffer = merged;
      }
      return true;
    };
    if (!(await need(4))) return null;
    const length = new DataView(this.#buffer.buffer, this.#buffer.byteOffset, 4).getUint32(0, true);
    if (!(await need(4 + length))) return null;
    const frame = this.#buffer.slice(4, 4 + length);
    this.#buffer = this.#buffer.slice(4 + length);
    return frame;
  }
}
