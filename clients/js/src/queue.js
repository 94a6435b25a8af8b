// `listenQueue` over openkv's queue extension (docs/protocol-extensions.md §1): take leased
// messages, run the handler on each (up to QUEUE_CONCURRENCY at once, as Deno), renew leases
// while handlers run, and report each attempt with `finish`. The server keeps the schedule:
// a failed attempt is retried per the message's backoffSchedule, then dead-lettered to its
// keysIfUndelivered. Between takes the listener long-polls `wait` — no busy polling.

import { base64Decode } from "./key.js";
import { deserializeV8 } from "./value.js";
import { KvConnectError } from "./errors.js";
import {
  QUEUE_CONCURRENCY,
  QUEUE_LEASE_MS,
  QUEUE_RENEW_EVERY_MS,
  QUEUE_WAIT_MS,
} from "./limits.js";

const MAX_FINISH_BATCH = 1000;

function missingExtension(error) {
  return new KvConnectError(
    "listenQueue: this server cannot deliver queue messages over KV Connect (it lacks " +
      "openkv's queue extension: POST <endpoint>/openkv/queue/take answered 404). " +
      "The reference server denokv stores enqueued messages but never delivers them; " +
      "serve the database with `openkv serve` instead.",
    404,
    { cause: error },
  );
}

export class QueueListener {
  #transport;
  #handler;
  #stop = new AbortController();
  /** id → handler promise, for messages being handled. */
  #inFlight = new Map();
  /** Ids whose handler settled and whose report is not through yet (their leases are renewed). */
  #reporting = new Set();
  #slotFreed = null;
  #finishQueue = [];
  #finishing = null;
  #renewTimer = null;

  constructor(transport, handler) {
    this.#transport = transport;
    this.#handler = handler;
  }

  /** Ends listening: no new takes; `run` resolves once running handlers have finished. */
  stop() {
    this.#stop.abort(new DOMException("listening stopped", "AbortError"));
    this.#slotFreed?.();
  }

  async run() {
    const signal = this.#stop.signal;
    this.#renewTimer = setInterval(() => this.#renew(), QUEUE_RENEW_EVERY_MS);
    try {
      while (!signal.aborted) {
        if (this.#inFlight.size >= QUEUE_CONCURRENCY) {
          await new Promise((resolve) => (this.#slotFreed = resolve));
          continue;
        }
        const messages = await this.#call("take", {
          max: QUEUE_CONCURRENCY - this.#inFlight.size,
          leaseMs: QUEUE_LEASE_MS,
        });
        if (messages === null) break;
        if (messages.messages.length) {
          for (const m of messages.messages) this.#dispatch(m);
          continue;
        }
        // Nothing due: long-poll until something is (or the wait times out), then take.
        const waited = await this.#call("wait", { timeoutMs: QUEUE_WAIT_MS });
        if (waited === null) break;
      }
    } finally {
      // Graceful end: let running handlers finish and report them before resolving.
      await Promise.allSettled([...this.#inFlight.values()]);
      while (this.#finishing) await this.#finishing;
      clearInterval(this.#renewTimer);
    }
  }

  /** A queue call, retried like a read; null once stopped. 404: the extension is missing. */
  async #call(name, body) {
    try {
      return await this.#transport.callIdempotent("strong", `/openkv/queue/${name}`, JSON.stringify(body), {
        json: true,
        signal: this.#stop.signal,
      });
    } catch (error) {
      if (this.#stop.signal.aborted) return null;
      if (error instanceof KvConnectError && error.status === 404) throw missingExtension(error);
      throw error;
    }
  }

  #dispatch(message) {
    const run = (async () => {
      let delivered = false;
      try {
        const bytes = base64Decode(message.payload);
        if (bytes === null) throw new TypeError("queue message payload is not base64");
        const value = deserializeV8(bytes);
        await this.#handler(value);
        delivered = true;
      } catch (error) {
        // As Deno: the error is logged and the attempt counts as failed (retried per the
        // message's backoffSchedule by the server).
        console.error("Exception in queue handler", error);
      }
      return delivered;
    })();
    this.#inFlight.set(message.id, run);
    run.then((delivered) => {
      // The slot is free as soon as the handler settled (not when its report came back: that
      // halved delivery throughput); the lease is still renewed until the report is through.
      this.#inFlight.delete(message.id);
      this.#reporting.add(message.id);
      this.#finish(message.id, delivered).finally(() => this.#reporting.delete(message.id));
      const wake = this.#slotFreed;
      this.#slotFreed = null;
      wake?.();
    });
  }

  /** Reports an attempt; reports are batched while one finish call is under way. */
  #finish(id, delivered) {
    return new Promise((resolve) => {
      this.#finishQueue.push({ id, delivered, resolve });
      this.#finishing ??= this.#flushFinishes().finally(() => {
        this.#finishing = null;
      });
    });
  }

  async #flushFinishes() {
    while (this.#finishQueue.length) {
      const batch = this.#finishQueue.splice(0, MAX_FINISH_BATCH);
      try {
        // Not cut short by stop(): a finished handler's report must still reach the server.
        await this.#transport.callIdempotent(
          "strong",
          "/openkv/queue/finish",
          JSON.stringify({ results: batch.map(({ id, delivered }) => ({ id, delivered })) }),
          { json: true, signal: null, maxRetries: 5 },
        );
      } catch (error) {
        // The report is lost (database closed mid-retry, or a 4xx): the lease runs out and
        // the message is delivered again — at least once, never lost.
        console.error("openkv: reporting queue deliveries failed", error);
      }
      for (const { resolve } of batch) resolve();
    }
  }

  async #renew() {
    const ids = [...this.#inFlight.keys(), ...this.#reporting];
    if (!ids.length) return;
    try {
      await this.#transport.callIdempotent(
        "strong",
        "/openkv/queue/renew",
        JSON.stringify({ ids, leaseMs: QUEUE_LEASE_MS }),
        { json: true, once: true, signal: null },
      );
    } catch {
      // One missed renewal is harmless (the lease is 2.5 renewals long); the next tick retries.
    }
  }
}
