// @ts-self-types="./mod.d.ts"
/**
 * @openkv/client — a remote openkv (or any KV Connect server) as a `Deno.Kv`, in Deno and in
 * Node ≥ 20, with queues: `enqueue` (alone or inside `atomic()`) and `listenQueue` over
 * openkv's queue extension. See README.md.
 *
 * @module
 */

import { Kv, AtomicOperation, KvListIterator } from "./src/kv.js";
import { Transport, transportOptions } from "./src/remote.js";
import { KvU64 } from "./src/value.js";
import { BadResource, KvConnectError, OutcomeUnknownError } from "./src/errors.js";
import * as limits from "./src/limits.js";

/**
 * Connects to the KV Connect server at `url` (its metadata URL, e.g. `http://127.0.0.1:4512`)
 * and returns a `Deno.Kv`-compatible handle. The access token is `options.accessToken`, else
 * the `DENO_KV_ACCESS_TOKEN` environment variable. The metadata exchange happens here, so a
 * wrong URL or token fails now, not at the first read (a server that does not answer: after
 * about 3 s of retries, or `maxRetries`).
 */
export async function openKv(url, options = {}) {
  const transport = new Transport(transportOptions(url, options));
  await transport.metadata(undefined, true);
  return new Kv(transport);
}

export {
  AtomicOperation,
  BadResource,
  Kv,
  KvConnectError,
  KvListIterator,
  KvU64,
  limits,
  OutcomeUnknownError,
};
