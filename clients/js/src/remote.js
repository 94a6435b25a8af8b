// KV Connect transport: the metadata exchange (cached, refreshed before it expires) and
// data-path calls with the retry policy. Reads, watches and queue calls are repeated on
// network errors and 5xx, like Deno's own client; a write is sent once (see `callWrite`).

import { KvConnectError, OutcomeUnknownError } from "./errors.js";

// Loaded only outside Deno (top-level await: both runtimes support it in ES modules).
const nodeHttp = globalThis.Deno ? null : await import("./node_http.js");

const SUPPORTED_VERSIONS = [2, 3];
const BACKOFF_START_MS = 100;
const BACKOFF_MAX_MS = 5_000;
/** Retries of the metadata exchange inside `openKv` (about 3 s of backoff in all). */
const INITIAL_RETRIES = 5;

/** Settings with defaults; see `OpenOptions` in mod.d.ts. */
export function transportOptions(url, options = {}) {
  const accessToken = options.accessToken ?? readEnv("DENO_KV_ACCESS_TOKEN");
  if (!accessToken) {
    throw new TypeError(
      "Missing access token: pass { accessToken } to openKv or set DENO_KV_ACCESS_TOKEN",
    );
  }
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`Invalid KV Connect URL: ${url}`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new TypeError(`Invalid KV Connect URL (must be http: or https:): ${url}`);
  }
  return {
    url: parsed.href,
    accessToken,
    fetch: options.fetch ?? defaultFetch(),
    // `undefined` retries reads forever, as Deno does; a number bounds each call's attempts.
    maxRetries: options.maxRetries,
    sleep: options.sleep ?? ((ms, signal) => sleep(ms, signal)),
  };
}

/** Deno's fetch in Deno (fast enough); in Node a `node:http` keep-alive transport, since
 * Node's built-in fetch costs six times the CPU per call (see node_http.js). */
let nodeFetchInstance = null;
function defaultFetch() {
  if (globalThis.Deno || !nodeHttp) return globalThis.fetch.bind(globalThis);
  nodeFetchInstance ??= nodeHttp.nodeFetch();
  return nodeFetchInstance;
}

function readEnv(name) {
  try {
    if (globalThis.Deno?.env) return globalThis.Deno.env.get(name);
    return globalThis.process?.env?.[name];
  } catch {
    // Deno without --allow-env: no token from the environment
    return undefined;
  }
}

export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Errors that end a call at once (4xx answers): never retried. */
const fatal = new WeakSet();

/** A 4xx answer: the message the server wrote, as an error the app can act on. A 400 is bad
 * input (Deno's local KV throws a TypeError with the same message for the same cause). */
async function clientError(response, what) {
  const text = (await response.text().catch(() => "")).trim();
  const error = response.status === 400
    ? new TypeError(text || `${what}: bad request`)
    : new KvConnectError(
      `${what}: ${response.status} ${response.statusText}${text ? `: ${text}` : ""}`,
      response.status,
    );
  fatal.add(error);
  return error;
}

/** True when the request certainly never reached the server (nothing can have been applied). */
function notSent(error) {
  for (let e = error; e; e = e.cause) {
    const code = e.code ?? "";
    if (["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "UND_ERR_CONNECT_TIMEOUT"].includes(code)) {
      return true;
    }
    if (/Connection refused|tcp connect error|dns error/i.test(e.message ?? "")) return true;
  }
  return false;
}

export class Transport {
  #options;
  #metadata = null;
  #metadataPromise = null;
  /** Aborted by close(): every pending call and backoff sleep ends. */
  #closed = new AbortController();

  constructor(options) {
    this.#options = options;
  }

  get signal() {
    return this.#closed.signal;
  }

  close() {
    this.#closed.abort(new DOMException("The database was closed", "AbortError"));
  }

  /** Fetches (or reuses) the metadata: {version, databaseId, endpoints, token, expiresAt}. */
  /** `first`: the exchange `openKv` makes, bounded (INITIAL_ATTEMPTS unless `maxRetries`
   * says otherwise) so that a wrong URL or a server that is down fails `openKv` instead of
   * hanging it; later refreshes are retried like reads. */
  async metadata(signal = this.signal, first = false) {
    const m = this.#metadata;
    // Refresh a little before expiry, and at least every minute (Deno: min(exp − 10 s, 60 s)).
    if (m && Date.now() < m.refreshAt) return m;
    const maxRetries = first ? this.#options.maxRetries ?? INITIAL_RETRIES : this.#options.maxRetries;
    this.#metadataPromise ??= this.#fetchMetadata(signal, maxRetries).finally(() => {
      this.#metadataPromise = null;
    });
    return await this.#metadataPromise;
  }

  async #fetchMetadata(signal, maxRetries) {
    const { url, accessToken } = this.#options;
    return await this.#retrying(`metadata exchange with ${url}`, maxRetries, signal, async () => {
      const response = await this.#options.fetch(url, {
        method: "POST",
        headers: {
          authorization: `Bearer ${accessToken}`,
          "content-type": "application/json",
        },
        body: JSON.stringify({ supportedVersions: SUPPORTED_VERSIONS }),
        signal,
      });
      if (response.status >= 500) return { retry: `${response.status} ${response.statusText}` };
      if (!response.ok) throw await clientError(response, `KV Connect metadata exchange with ${url}`);
      const body = await response.json();
      const version = body.version;
      if (!SUPPORTED_VERSIONS.includes(version)) {
        throw new KvConnectError(`KV Connect: unsupported protocol version ${version}`, 0);
      }
      const strong = body.endpoints?.find((e) => e.consistency === "strong");
      if (!strong) throw new KvConnectError("KV Connect: the server lists no strong endpoint", 0);
      const eventual = body.endpoints.find((e) => e.consistency !== "strong") ?? strong;
      const expiresAt = Date.parse(body.expiresAt);
      const now = Date.now();
      const refreshIn = Math.max(0, Math.min(expiresAt - now - 10_000, 60_000));
      this.#metadata = {
        version,
        databaseId: body.databaseId,
        token: body.token,
        strongUrl: new URL(strong.url, url).href,
        eventualUrl: new URL(eventual.url, url).href,
        refreshAt: now + refreshIn,
      };
      return { value: this.#metadata };
    });
  }

  /** Runs `attempt` until it returns {value}; {retry: why} and network errors back off. */
  async #retrying(what, maxRetries, signal, attempt) {
    let delay = BACKOFF_START_MS;
    for (let n = 1; ; n++) {
      let why;
      try {
        const outcome = await attempt();
        if ("value" in outcome) return outcome.value;
        why = outcome.retry;
      } catch (error) {
        if (signal?.aborted) throw error;
        if (!(error instanceof TypeError) || fatal.has(error)) throw error;
        why = error; // fetch's network failure (a TypeError in Node and Deno)
      }
      if (maxRetries !== undefined && n > maxRetries) {
        throw new KvConnectError(`KV Connect: ${what} failed after ${n} attempts: ${why}`, 0, {
          cause: why,
        });
      }
      await this.#options.sleep(delay, signal);
      delay = Math.min(delay * 2, BACKOFF_MAX_MS);
    }
  }

  async #post(endpoint, path, body, contentType, signal) {
    const m = await this.metadata(signal);
    const base = endpoint === "eventual" ? m.eventualUrl : m.strongUrl;
    return await this.#options.fetch(`${base}${path}`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${m.token}`,
        "content-type": contentType,
        "x-denokv-database-id": m.databaseId,
        "x-denokv-version": String(m.version),
      },
      body,
      signal,
    });
  }

  /**
   * A call that may be repeated (reads, queue calls): retried on network errors and 5xx.
   * Returns the response body's bytes, or the parsed JSON for `json`.
   */
  async callIdempotent(endpoint, path, body, options = {}) {
    const { json = false, once = false } = options;
    // By default close() aborts the call; `signal: null` detaches it (queue reports that must
    // reach the server after close), with at most `maxRetries` (default 5) attempts.
    const signal = "signal" in options ? options.signal ?? undefined : this.signal;
    const maxRetries = once ? 0 : options.maxRetries ?? this.#options.maxRetries;
    const contentType = json ? "application/json" : "application/x-protobuf";
    return await this.#retrying(path, maxRetries, signal, async () => {
      const response = await this.#post(endpoint, path, body, contentType, signal);
      if (response.status >= 500) {
        await response.body?.cancel();
        return { retry: `${response.status} ${response.statusText}` };
      }
      if (!response.ok) throw await clientError(response, `KV Connect ${path}`);
      if (json) return { value: await response.json() };
      return { value: new Uint8Array(await response.arrayBuffer()) };
    });
  }

  /**
   * A write: sent once, and again only if it certainly never reached the server (connection
   * refused, name not resolved) — then nothing can have been applied. An answer lost after
   * sending, or a 5xx, leaves the outcome unknown: `OutcomeUnknownError`, never a silent
   * re-send that could apply a write twice.
   */
  async callWrite(path, body) {
    let delay = BACKOFF_START_MS;
    for (let n = 1; ; n++) {
      let response;
      try {
        // No abort signal: close() must not cut a write off mid-flight (its outcome would be
        // unknown); it completes and its promise settles.
        response = await this.#post("strong", path, body, "application/x-protobuf", undefined);
      } catch (error) {
        if (this.signal.aborted) throw error;
        if (error instanceof KvConnectError || fatal.has(error)) throw error;
        const retriesLeft = this.#options.maxRetries === undefined || n <= this.#options.maxRetries;
        if (notSent(error) && retriesLeft) {
          await this.#options.sleep(delay, this.signal);
          delay = Math.min(delay * 2, BACKOFF_MAX_MS);
          continue;
        }
        throw new OutcomeUnknownError(
          `KV Connect ${path}: the connection failed after the write was sent; it may or may not have been applied`,
          { cause: error },
        );
      }
      if (response.status >= 500) {
        const text = await response.text().catch(() => "");
        throw new OutcomeUnknownError(
          `KV Connect ${path}: the server answered ${response.status}${text ? `: ${text}` : ""}; the write may or may not have been applied`,
        );
      }
      if (!response.ok) throw await clientError(response, `KV Connect ${path}`);
      try {
        return new Uint8Array(await response.arrayBuffer());
      } catch (error) {
        throw new OutcomeUnknownError(
          `KV Connect ${path}: the answer was lost; the write may or may not have been applied`,
          { cause: error },
        );
      }
    }
  }

  /** Opens the watch stream (v3): the fetch Response, retried like a read until it opens.
   * Like Deno's client, on the eventual endpoint (a read replica) when the metadata lists one,
   * else on the strong one. */
  async openWatch(body, signal) {
    const m = await this.metadata(signal);
    if (m.version < 3) {
      throw new KvConnectError("KV Connect: watch needs protocol version 3; the server speaks 2", 0);
    }
    return await this.#retrying("/watch", this.#options.maxRetries, signal, async () => {
      const response = await this.#options.fetch(`${m.eventualUrl}/watch`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${m.token}`,
          "content-type": "application/x-protobuf",
          "x-denokv-database-id": m.databaseId,
          "x-denokv-version": String(m.version),
        },
        body,
        signal,
      });
      if (response.status >= 500) {
        await response.body?.cancel();
        return { retry: `${response.status} ${response.statusText}` };
      }
      if (!response.ok) throw await clientError(response, "KV Connect /watch");
      return { value: response };
    });
  }
}
