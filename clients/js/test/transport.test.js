// The retry policy, against a scripted KV Connect server on 127.0.0.1 (node:http, so no real
// server is needed): reads are repeated after 5xx and broken connections; a write is sent once
// and a lost answer or a 5xx is OutcomeUnknownError; maxRetries bounds reads; a write whose
// connection was refused (never sent) waits for the server. Runs under Node and Deno.

import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { KvConnectError, OutcomeUnknownError, openKv } from "../mod.js";

const TOKEN = "transport-test-token";
// SnapshotReadOutput { ranges: [ { values: [] } ], read_is_strongly_consistent: true,
// status: SR_SUCCESS } — an empty strong read.
const EMPTY_READ = Uint8Array.from([0x0a, 0x00, 0x20, 0x01, 0x40, 0x01]);

/** A server whose data-path answers come from `script(path, n)` (n: that path's call count,
 * from 1): `{status, body}`, or "drop" to cut the connection. Counts every call. */
async function scripted(script, port = 0) {
  const calls = {};
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const path = new URL(req.url, "http://x").pathname;
      if (path === "/") {
        // `connection: close`: no pooled connection is reused for the first data-path call.
        // (Deno's fetch — hyper — re-sends a request once by itself when a *reused* keep-alive
        // connection closes before the answer; see the package README, "Errors".)
        res.writeHead(200, { "content-type": "application/json", connection: "close" });
        res.end(JSON.stringify({
          version: 3,
          databaseId: "00000000-0000-0000-0000-000000000000",
          endpoints: [{ url: "/v2", consistency: "strong" }],
          token: TOKEN,
          expiresAt: new Date(Date.now() + 3600_000).toISOString(),
        }));
        return;
      }
      calls[path] = (calls[path] ?? 0) + 1;
      const answer = script(path, calls[path]);
      if (answer === "drop") {
        req.socket.destroy();
        return;
      }
      res.writeHead(answer.status, { "content-type": "application/x-protobuf" });
      res.end(answer.body ?? "");
    });
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    calls,
    close: () => new Promise((resolve) => {
      server.closeAllConnections?.();
      server.close(resolve);
    }),
  };
}

test("a read is repeated after 503s and a dropped connection, then answers", { timeout: 15_000 }, async () => {
  const server = await scripted((path, n) => {
    if (n === 1) return { status: 503, body: "busy" };
    if (n === 2) return "drop";
    return { status: 200, body: EMPTY_READ };
  });
  const kv = await openKv(server.url, { accessToken: TOKEN });
  try {
    const entry = await kv.get(["a"]);
    assert.deepEqual(entry, { key: ["a"], value: null, versionstamp: null });
    assert.equal(server.calls["/v2/snapshot_read"], 3);
  } finally {
    kv.close();
    await server.close();
  }
});

test("maxRetries bounds a read: KvConnectError after 1 + maxRetries attempts", { timeout: 15_000 }, async () => {
  const server = await scripted(() => ({ status: 500, body: "down" }));
  const kv = await openKv(server.url, { accessToken: TOKEN, maxRetries: 2 });
  try {
    await assert.rejects(kv.get(["a"]), (e) => e instanceof KvConnectError && /after 3 attempts/.test(e.message));
    assert.equal(server.calls["/v2/snapshot_read"], 3);
  } finally {
    kv.close();
    await server.close();
  }
});

test("a write whose connection drops after sending is OutcomeUnknownError, sent once", { timeout: 15_000 }, async () => {
  const server = await scripted(() => "drop");
  const kv = await openKv(server.url, { accessToken: TOKEN });
  try {
    await assert.rejects(kv.set(["a"], 1), OutcomeUnknownError);
    await assert.rejects(kv.atomic().set(["a"], 1).enqueue("m").commit(), OutcomeUnknownError);
    await assert.rejects(kv.enqueue("m"), (e) => e.name === "OutcomeUnknownError");
    await new Promise((r) => setTimeout(r, 300)); // a re-send would arrive by now
    assert.equal(server.calls["/v2/atomic_write"], 3, "one request per write, never repeated");
  } finally {
    kv.close();
    await server.close();
  }
});

test("a write answered 5xx is OutcomeUnknownError, sent once", { timeout: 15_000 }, async () => {
  const server = await scripted(() => ({ status: 503, body: "overloaded" }));
  const kv = await openKv(server.url, { accessToken: TOKEN });
  try {
    await assert.rejects(kv.set(["a"], 1), (e) => e instanceof OutcomeUnknownError && /503/.test(e.message));
    assert.equal(server.calls["/v2/atomic_write"], 1);
  } finally {
    kv.close();
    await server.close();
  }
});

test("a 400 is a TypeError with the server's message; a 401 a KvConnectError; neither retried", { timeout: 15_000 }, async () => {
  const server = await scripted((path) =>
    path.endsWith("atomic_write") ? { status: 400, body: "bad mutation" } : { status: 401, body: "bad token" }
  );
  const kv = await openKv(server.url, { accessToken: TOKEN });
  try {
    await assert.rejects(kv.set(["a"], 1), (e) => e instanceof TypeError && e.message === "bad mutation");
    await assert.rejects(kv.get(["a"]), (e) => e instanceof KvConnectError && e.status === 401);
    assert.equal(server.calls["/v2/atomic_write"], 1);
    assert.equal(server.calls["/v2/snapshot_read"], 1);
  } finally {
    kv.close();
    await server.close();
  }
});

test("a write whose connection is refused (never sent) is retried until the server is back", { timeout: 20_000 }, async () => {
  const first = await scripted(() => ({ status: 200, body: EMPTY_READ }));
  const port = Number(new URL(first.url).port);
  const kv = await openKv(first.url, { accessToken: TOKEN }); // metadata cached
  await first.close();
  // Let the client see its pooled connection closed (a write on a connection the server has
  // just closed is one whose fate it cannot know: OutcomeUnknownError).
  await new Promise((r) => setTimeout(r, 200));
  // AtomicWriteOutput { status: AW_SUCCESS, versionstamp: 10 bytes }
  const success = Uint8Array.from([0x08, 0x01, 0x12, 0x0a, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0]);
  let second;
  try {
    const write = kv.set(["a"], 1);
    await new Promise((r) => setTimeout(r, 400)); // refused at least once meanwhile
    second = await scripted(() => ({ status: 200, body: success }), port);
    const result = await write;
    assert.deepEqual(result, { ok: true, versionstamp: "00000000000000070000" });
    assert.equal(second.calls["/v2/atomic_write"], 1);
  } finally {
    kv.close();
    await second?.close();
  }
});

test("close() ends a read that is retrying, with BadResource", { timeout: 15_000 }, async () => {
  const server = await scripted(() => ({ status: 503 }));
  const kv = await openKv(server.url, { accessToken: TOKEN });
  try {
    const read = kv.get(["a"]);
    await new Promise((r) => setTimeout(r, 300));
    kv.close();
    await assert.rejects(read, (e) => e.name === "BadResource");
  } finally {
    await server.close();
  }
});

test("openKv against a port nothing listens on fails after its retries, not hangs", { timeout: 15_000 }, async () => {
  const server = await scripted(() => ({ status: 200 }));
  const url = server.url;
  await server.close();
  const started = Date.now();
  await assert.rejects(
    openKv(url, { accessToken: TOKEN }),
    (e) => e instanceof KvConnectError && e.message.includes("metadata exchange") && e.message.includes("after 6 attempts"),
  );
  const took = Date.now() - started;
  assert.ok(took >= 2_500 && took < 10_000, `gave up after ${took} ms`);
});

test("openKv with a wrong token fails at once with KvConnectError 401", { timeout: 15_000 }, async () => {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(401, { "content-type": "text/plain" });
      res.end("invalid access token");
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    await assert.rejects(
      openKv(`http://127.0.0.1:${server.address().port}`, { accessToken: "wrong" }),
      (e) => e instanceof KvConnectError && e.status === 401 && e.message.includes("invalid access token"),
    );
  } finally {
    server.closeAllConnections?.();
    await new Promise((resolve) => server.close(resolve));
  }
});
