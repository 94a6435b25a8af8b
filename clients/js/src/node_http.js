// A `fetch` for Node on `node:http`/`node:https` with a keep-alive agent. Node 20's built-in
// fetch (undici, web streams) costs about 0.5 ms of CPU per KV Connect call against 0.08 ms
// here, which capped 64 concurrent enqueues from Node at a third of what this transport does
// (scripts/bench-js-queue.sh). It implements only what src/remote.js uses: POST with headers,
// a body and an abort signal; the answer's status, `ok`, `text()`, `json()`, `arrayBuffer()`
// and `body` (a web ReadableStream, for watch). Failures follow fetch's convention — a
// TypeError with the socket error as `cause` — so the retry policy treats both alike.

import http from "node:http";
import https from "node:https";
import { Readable } from "node:stream";

function networkError(error) {
  return new TypeError("fetch failed", { cause: error });
}

class NodeResponse {
  #message;
  #body = null;

  constructor(message) {
    this.#message = message;
    this.status = message.statusCode ?? 0;
    this.statusText = message.statusMessage ?? "";
    this.ok = this.status >= 200 && this.status < 300;
  }

  /** The body as a web stream (watch reads frames from it). */
  get body() {
    this.#body ??= Readable.toWeb(this.#message);
    return this.#body;
  }

  async arrayBuffer() {
    const chunks = [];
    try {
      for await (const chunk of this.#message) chunks.push(chunk);
    } catch (error) {
      throw networkError(error);
    }
    const bytes = Buffer.concat(chunks);
    return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  }

  async text() {
    return new TextDecoder().decode(await this.arrayBuffer());
  }

  async json() {
    return JSON.parse(await this.text());
  }
}

/** A fetch-like function over one keep-alive agent per protocol. */
export function nodeFetch() {
  // Idle keep-alive sockets do not keep the process alive (Node unrefs them in the pool).
  const agents = {
    "http:": new http.Agent({ keepAlive: true }),
    "https:": new https.Agent({ keepAlive: true }),
  };
  return (url, init = {}) =>
    new Promise((resolve, reject) => {
      const target = new URL(url);
      const signal = init.signal;
      if (signal?.aborted) return reject(signal.reason);
      const body = typeof init.body === "string" ? Buffer.from(init.body) : init.body;
      const headers = { ...init.headers };
      if (body) headers["content-length"] = String(body.byteLength);
      const lib = target.protocol === "https:" ? https : http;
      const request = lib.request(target, {
        method: init.method ?? "GET",
        headers,
        agent: agents[target.protocol],
      });
      const onAbort = () => request.destroy(signal.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      request.on("response", (message) => {
        // An abort after the headers ends the body stream with the abort reason.
        message.on("close", () => signal?.removeEventListener("abort", onAbort));
        resolve(new NodeResponse(message));
      });
      request.on("error", (error) => {
        signal?.removeEventListener("abort", onAbort);
        reject(signal?.aborted ? signal.reason : networkError(error));
      });
      request.end(body);
    });
}
