// Error classes. Where Deno's local KV throws for the same cause, this package throws the same
// class with the same message (TypeError, RangeError, Deno.errors.BadResource); the classes
// here are for what only a network client meets.

/** The server refused a call for a reason other than bad input (401 bad token, 403 read-only,
 * 404 missing endpoint, …), or the protocol could not be spoken. `status` is the HTTP status
 * (0 when there was none). */
export class KvConnectError extends Error {
  constructor(message, status, options) {
    super(message, options);
    this.name = "KvConnectError";
    this.status = status;
  }
}

/** A write was sent but its answer never came (connection lost, 5xx): it may or may not have
 * been applied. It is not re-sent. Read the keys to find out, or make the write idempotent
 * with a check (`versionstamp: null`, or the versionstamp read before). */
export class OutcomeUnknownError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = "OutcomeUnknownError";
  }
}

/** Deno's `BadResource` (what Deno throws after `close()`); a look-alike outside Deno. */
class OpenKvBadResource extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = "BadResource";
  }
}

export const BadResource = globalThis.Deno?.errors?.BadResource ?? OpenKvBadResource;

export function closedError() {
  return new BadResource("Bad resource ID");
}
