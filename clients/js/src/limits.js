// Every limit this package checks before sending, in one place. They are Deno's (the same
// numbers its local KV and its KV Connect client enforce), so an app meets each limit with
// the same error on either. The server checks again.

/** Largest encoded key in a write (set, delete, check, sum/min/max, keysIfUndelivered). */
export const MAX_WRITE_KEY_BYTES = 2048;
/** Largest encoded key in a read (one more byte: range ends may add one). */
export const MAX_READ_KEY_BYTES = 2049;
/** Largest stored value, and largest enqueued payload (V8 bytes). */
export const MAX_VALUE_BYTES = 65536;
/** Ranges in one read (`getMany` keys). */
export const MAX_READ_RANGES = 10;
/** Entries one read may ask for, over all its ranges (`list`'s batchSize). */
export const MAX_READ_ENTRIES = 1000;
/** Checks in one atomic operation. */
export const MAX_CHECKS = 100;
/** Mutations plus enqueues in one atomic operation. */
export const MAX_MUTATIONS = 1000;
/** Keys, values and payloads of one atomic operation together. */
export const MAX_TOTAL_MUTATION_BYTES = 819200;
/** Keys of the value-carrying mutations of one atomic operation together. */
export const MAX_TOTAL_KEY_BYTES = 81920;
/** Keys one `watch` follows. */
export const MAX_WATCHED_KEYS = 10;
/** Longest enqueue delay: 30 days. */
export const MAX_QUEUE_DELAY_MS = 30 * 24 * 60 * 60 * 1000;
/** Most retry intervals in a backoffSchedule, and the longest interval (1 hour). */
export const MAX_BACKOFF_INTERVALS = 5;
export const MAX_BACKOFF_INTERVAL_MS = 60 * 60 * 1000;

/** Queue delivery: messages handled at once per listener (Deno's local KV: 100). */
export const QUEUE_CONCURRENCY = 100;
/** Queue delivery: each message's lease, and how often running handlers renew it. */
export const QUEUE_LEASE_MS = 5000;
export const QUEUE_RENEW_EVERY_MS = 2000;
/** Queue delivery: how long one long poll (`/openkv/queue/wait`) waits. */
export const QUEUE_WAIT_MS = 20000;
