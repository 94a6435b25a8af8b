/**
 * @openkv/client — a remote openkv (or any KV Connect server) as a `Deno.Kv`, in Deno and in
 * Node ≥ 20, with queues (`enqueue`, also inside `atomic()`, and `listenQueue`).
 *
 * ```ts
 * import { openKv } from "@openkv/client";
 * const kv = await openKv("http://127.0.0.1:4512", { accessToken: "…" });
 * await kv.atomic().check({ key: ["job", 1], versionstamp: null })
 *   .set(["job", 1], "queued").enqueue({ job: 1 }, { delay: 5000 }).commit();
 * kv.listenQueue(async (msg) => console.log(msg));
 * ```
 *
 * @module
 */

/** One part of a key: the types Deno KV keys are made of. */
export type KvKeyPart = Uint8Array | string | number | bigint | boolean;
/** A key: an array of parts. */
export type KvKey = readonly KvKeyPart[];
/** `"strong"` (the default) reads the latest commit; `"eventual"` may read an eventual
 * endpoint (a read replica) if the server lists one. */
export type KvConsistencyLevel = "strong" | "eventual";

/** A list selector: every key under `prefix` (optionally from `start` or up to `end`, both
 * inside the prefix), or every key in `[start, end)`. */
export type KvListSelector =
  | { prefix: KvKey }
  | { prefix: KvKey; start: KvKey }
  | { prefix: KvKey; end: KvKey }
  | { start: KvKey; end: KvKey };

export type KvEntry<T> = { key: KvKey; value: T; versionstamp: string };
export type KvEntryMaybe<T> = KvEntry<T> | { key: KvKey; value: null; versionstamp: null };

export interface KvCommitResult {
  ok: true;
  /** The commit's versionstamp: 20 lowercase hex characters. */
  versionstamp: string;
}
export interface KvCommitError {
  ok: false;
}

/** `versionstamp: null` means "the key must not exist". */
export interface AtomicCheck {
  key: KvKey;
  versionstamp: string | null;
}

export type KvMutation =
  & { key: KvKey }
  & (
    | { type: "set"; value: unknown; expireIn?: number }
    | { type: "delete" }
    | { type: "sum"; value: KvU64 }
    | { type: "max"; value: KvU64 }
    | { type: "min"; value: KvU64 }
  );

export interface KvListOptions {
  /** Most entries to return (all by default). */
  limit?: number;
  /** Resume after the entry whose `cursor` this is. */
  cursor?: string;
  /** Descending key order. Default false. */
  reverse?: boolean;
  /** Default "strong". */
  consistency?: KvConsistencyLevel;
  /** Entries fetched per request: default `limit` (at most 500), else 100; at most 1000. */
  batchSize?: number;
}

export interface EnqueueOptions {
  /** Milliseconds before the first delivery (0 – 30 days). Default 0. */
  delay?: number;
  /** Keys that receive the message if every attempt failed. */
  keysIfUndelivered?: KvKey[];
  /** Milliseconds between retries, at most 5 intervals of at most 1 hour. Default: the
   * server's (Deno's `[100, 1000, 5000, 30000, 60000]`). */
  backoffSchedule?: number[];
}

/** A 64-bit unsigned integer value, for `sum`/`min`/`max`. In Deno with `--unstable-kv` this
 * is `Deno.KvU64` itself. */
export class KvU64 {
  constructor(value: bigint);
  readonly value: bigint;
  valueOf(): bigint;
  toString(): string;
}

export class KvListIterator<T> implements AsyncIterableIterator<KvEntry<T>> {
  /** The cursor of the last entry returned; `""` once the iteration ended. Throws before the
   * first `next()`. */
  get cursor(): string;
  next(): Promise<IteratorResult<KvEntry<T>, undefined>>;
  [Symbol.asyncIterator](): AsyncIterableIterator<KvEntry<T>>;
}

export class AtomicOperation {
  check(...checks: AtomicCheck[]): this;
  mutate(...mutations: KvMutation[]): this;
  sum(key: KvKey, n: bigint): this;
  min(key: KvKey, n: bigint): this;
  max(key: KvKey, n: bigint): this;
  set(key: KvKey, value: unknown, options?: { expireIn?: number }): this;
  delete(key: KvKey): this;
  /** Enqueues `value` if and only if this operation commits. */
  enqueue(value: unknown, options?: EnqueueOptions): this;
  /** `{ok: false}` when a check failed (nothing was written or enqueued). */
  commit(): Promise<KvCommitResult | KvCommitError>;
}

/** A remote database; the same methods as `Deno.Kv`. */
export class Kv implements Disposable {
  get<T = unknown>(
    key: KvKey,
    options?: { consistency?: KvConsistencyLevel },
  ): Promise<KvEntryMaybe<T>>;
  getMany<T extends readonly unknown[]>(
    keys: readonly [...{ [K in keyof T]: KvKey }],
    options?: { consistency?: KvConsistencyLevel },
  ): Promise<{ [K in keyof T]: KvEntryMaybe<T[K]> }>;
  set(key: KvKey, value: unknown, options?: { expireIn?: number }): Promise<KvCommitResult>;
  delete(key: KvKey): Promise<void>;
  list<T = unknown>(selector: KvListSelector, options?: KvListOptions): KvListIterator<T>;
  atomic(): AtomicOperation;
  enqueue(value: unknown, options?: EnqueueOptions): Promise<KvCommitResult>;
  /**
   * Delivers queue messages to `handler` until `close()`; then resolves (after running
   * handlers finished). At least once: a throw or rejection is a failed attempt, retried per
   * the message's backoffSchedule, then written to its keysIfUndelivered. Up to 100 messages
   * are handled at once. Rejects at once if the server lacks openkv's queue extension.
   */
  listenQueue(handler: (value: unknown) => Promise<void> | void): Promise<void>;
  /** A stream of the keys' entries: the current ones first, then whenever one changes. */
  watch<T extends readonly unknown[]>(
    keys: readonly [...{ [K in keyof T]: KvKey }],
    options?: { raw?: boolean },
  ): ReadableStream<{ [K in keyof T]: KvEntryMaybe<T[K]> }>;
  /** A key ending in this symbol, in `set`, gets the commit's versionstamp as its last part. */
  commitVersionstamp(): symbol;
  /** Ends listeners and watches; later calls throw `BadResource`. */
  close(): void;
  [Symbol.dispose](): void;
}

export interface OpenOptions {
  /** The server's access token. Default: the DENO_KV_ACCESS_TOKEN environment variable. */
  accessToken?: string;
  /** How many times a read, a watch or a queue call is repeated after a network error or a
   * 5xx before it fails with `KvConnectError`. Default: forever (as Deno's own client), except
   * the metadata exchange inside `openKv`, retried 5 times. */
  maxRetries?: number;
  /** The fetch to use. Default: the global `fetch`. */
  fetch?: typeof fetch;
}

/** Connects to the KV Connect server at `url` (the metadata URL). Fails with
 * `KvConnectError` on a wrong token (401) or path (404), and when the server cannot be reached
 * after about 3 s of retries (5 retries, or `maxRetries`). */
export function openKv(url: string, options?: OpenOptions): Promise<Kv>;

/** The server refused a call for a reason other than bad input (status 401, 403, 404, …) or
 * the protocol could not be spoken (`status` 0). */
export class KvConnectError extends Error {
  constructor(message: string, status: number, options?: ErrorOptions);
  readonly status: number;
}

/** A write was sent but no answer came: it may or may not have been applied. Not re-sent. */
export class OutcomeUnknownError extends Error {
  constructor(message: string, options?: ErrorOptions);
}

/** What methods throw after `close()`: `Deno.errors.BadResource` in Deno. */
export class BadResource extends Error {}

/** The limits checked before sending (Deno's). */
export declare namespace limits {
  const MAX_WRITE_KEY_BYTES: number;
  const MAX_READ_KEY_BYTES: number;
  const MAX_VALUE_BYTES: number;
  const MAX_READ_RANGES: number;
  const MAX_READ_ENTRIES: number;
  const MAX_CHECKS: number;
  const MAX_MUTATIONS: number;
  const MAX_TOTAL_MUTATION_BYTES: number;
  const MAX_TOTAL_KEY_BYTES: number;
  const MAX_WATCHED_KEYS: number;
  const MAX_QUEUE_DELAY_MS: number;
  const MAX_BACKOFF_INTERVALS: number;
  const MAX_BACKOFF_INTERVAL_MS: number;
  const QUEUE_CONCURRENCY: number;
  const QUEUE_LEASE_MS: number;
  const QUEUE_RENEW_EVERY_MS: number;
  const QUEUE_WAIT_MS: number;
}
