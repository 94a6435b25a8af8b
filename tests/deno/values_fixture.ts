// One named value of every kind Deno KV can store as a V8 value, for the
// value round-trip tests (crates/openkv/tests/deno_values.rs, which mirrors
// this list in `expected()`):
//   write_values.ts  stores every fixture under ["v", name] (Deno → openkv);
//   check_values.ts  reads ["r", name] and compares it with the fixture
//                    (openkv → Deno).
//
// Rules: the values are deterministic (no clocks, no randomness) and the names
// are stable: renaming, adding or removing one means changing `expected()` in
// deno_values.rs too. Every fixture is stored by Deno as a V8 value: a
// top-level Uint8Array would be stored as raw bytes (Value::Bytes, covered by
// deno_compat.rs), so the Uint8Array cases sit inside an object.
//
// Names, by group:
//   primitives  undefined null true false
//   numbers     num_0 num_neg_0 num_1 num_neg_1 num_i32_max num_i32_min
//               num_2_31 num_2_53 num_0_1 num_1e300 num_neg_1e_neg300 num_nan
//               num_inf num_neg_inf num_min_value
//   bigints     bigint_0 bigint_1 bigint_neg_1 bigint_2_64 bigint_neg_2_200
//   strings     str_empty str_hello str_latin1 str_two_byte str_emoji str_10k
//               str_nul str_lone_surrogate
//   objects     obj_empty obj_simple obj_int_keys obj_nested obj_unicode_keys
//               obj_large (1000 keys)
//   arrays      arr_empty arr_mixed arr_doubles arr_nested arr_holes
//               arr_extra_prop arr_sparse
//   collections map_empty map_object_keys map_mixed set_empty set
//   dates       date date_before_epoch date_invalid
//   regexps     regexp_gi regexp_all_flags
//   buffers     array_buffer array_buffer_empty uint8array int8array
//               uint8clampedarray int16array uint16array int32array
//               uint32array float32array float64array bigint64array
//               biguint64array float16array (only if this Deno has
//               Float16Array) dataview typed_array_offset views_shared_buffer
//   boxed       boxed_true boxed_false boxed_number boxed_bigint boxed_string
//   errors      error error_no_message type_error range_error_cause
//               error_kinds error_in_object
//   identity    shared_ref shared_in_array circular_object circular_array
//               circular_map

/** Whether this Deno has `Float16Array` (V8 ≥ 13.5); `float16array` exists only then. */
export const hasFloat16Array = typeof (globalThis as Record<string, unknown>).Float16Array !==
  "undefined";

/** Every fixture, by name, in a fixed order. Each call builds fresh objects. */
export function fixtures(): Record<string, unknown> {
  const f: Record<string, unknown> = {};

  // --- primitives
  f.undefined = undefined;
  f.null = null;
  f.true = true;
  f.false = false;

  // --- numbers (V8 writes integers in i32 range as Smis, the rest as doubles)
  f.num_0 = 0;
  f.num_neg_0 = -0;
  f.num_1 = 1;
  f.num_neg_1 = -1;
  f.num_i32_max = 2 ** 31 - 1;
  f.num_i32_min = -(2 ** 31);
  f.num_2_31 = 2 ** 31;
  f.num_2_53 = 2 ** 53;
  f.num_0_1 = 0.1;
  f.num_1e300 = 1e300;
  f.num_neg_1e_neg300 = -1e-300;
  f.num_nan = NaN;
  f.num_inf = Infinity;
  f.num_neg_inf = -Infinity;
  f.num_min_value = Number.MIN_VALUE;

  // --- bigints
  f.bigint_0 = 0n;
  f.bigint_1 = 1n;
  f.bigint_neg_1 = -1n;
  f.bigint_2_64 = 2n ** 64n;
  f.bigint_neg_2_200 = -(2n ** 200n);

  // --- strings
  f.str_empty = "";
  f.str_hello = "hello";
  f.str_latin1 = "héllo"; // one-byte (Latin-1) in V8
  f.str_two_byte = "✓ 日本語"; // two-byte in V8
  f.str_emoji = "🦀"; // a surrogate pair
  f.str_10k = Array.from({ length: 10000 }, (_, i) => String.fromCharCode(97 + (i % 26))).join(
    "",
  ); // "abc…z" repeated, 10000 chars
  f.str_nul = "a\u0000b";
  f.str_lone_surrogate = "\ud800x"; // not valid UTF-16

  // --- plain objects
  f.obj_empty = {};
  f.obj_simple = { a: 1, b: "x" };
  f.obj_int_keys = { 1: "a", 0: "b", x: "c" }; // JS orders integer keys first: 0, 1, x
  f.obj_nested = { a: { b: { c: { d: { e: "deep" } } } } };
  f.obj_unicode_keys = { "é": 1, "ключ": 2, "日本": 3, "🦀": 4 };
  const large: Record<string, number> = {};
  for (let i = 0; i < 1000; i++) large[`k${i}`] = i;
  f.obj_large = large;

  // --- arrays (V8 writes packed arrays densely, holey and dictionary ones sparsely)
  f.arr_empty = [];
  f.arr_mixed = [1, "a", null];
  f.arr_doubles = [1.5, 2, -0]; // PACKED_DOUBLE_ELEMENTS: every element a double
  f.arr_nested = [[1, [2, [3]]], []];
  // deno-lint-ignore no-sparse-arrays
  f.arr_holes = [1, , 3];
  f.arr_extra_prop = Object.assign([1, 2], { extra: "x" });
  const sparse: number[] = [];
  sparse[1000000] = 1;
  f.arr_sparse = sparse;

  // --- Map and Set
  f.map_empty = new Map();
  const k1 = { k: 1 };
  f.map_object_keys = new Map<unknown, unknown>([[k1, "obj"], [[1], "arr"], ["again", k1]]);
  f.map_mixed = new Map<unknown, unknown>([
    [1, "number"],
    ["1", "string"],
    [1n, "bigint"],
    [true, "boolean"],
    [null, "null"],
    [undefined, "undefined"],
    [NaN, "nan"],
    ["value", { v: [1] }],
  ]);
  f.set_empty = new Set();
  f.set = new Set<unknown>([1, "a", 2n, null, undefined, NaN, { x: 1 }, [2]]);

  // --- dates
  f.date = new Date("2024-02-29T12:34:56.789Z"); // 1709210096789
  f.date_before_epoch = new Date("1969-07-20T20:17:40Z"); // -14182940000
  f.date_invalid = new Date(NaN);

  // --- regexps
  f.regexp_gi = /a+b/gi;
  f.regexp_all_flags = /x/dgimsuy; // every flag but v (v and u cannot combine)

  // --- array buffers and views
  f.array_buffer = Uint8Array.of(0, 1, 2, 254, 255).buffer;
  f.array_buffer_empty = new ArrayBuffer(0);
  f.uint8array = { u8: Uint8Array.of(0, 1, 127, 128, 255) };
  f.int8array = Int8Array.of(-128, -1, 0, 1, 127);
  f.uint8clampedarray = Uint8ClampedArray.of(0, 128, 255, 300, -5); // 300 → 255, -5 → 0
  f.int16array = Int16Array.of(-32768, -1, 0, 1, 32767);
  f.uint16array = Uint16Array.of(0, 1, 256, 65535);
  f.int32array = Int32Array.of(-2147483648, -1, 0, 1, 2147483647);
  f.uint32array = Uint32Array.of(0, 1, 65536, 4294967295);
  f.float32array = Float32Array.of(0, -0, 1.5, -3.25, Infinity, -Infinity, 3.4028234663852886e38);
  f.float64array = Float64Array.of(0, -0, Math.PI, 1e300, -Number.MIN_VALUE, Infinity);
  f.bigint64array = BigInt64Array.of(-(2n ** 63n), -1n, 0n, 1n, 2n ** 63n - 1n);
  f.biguint64array = BigUint64Array.of(0n, 1n, 2n ** 64n - 1n);
  if (hasFloat16Array) {
    // deno-lint-ignore no-explicit-any
    f.float16array = (globalThis as any).Float16Array.of(1, 0.5, -2, 65504, -0);
  }
  f.dataview = new DataView(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8).buffer, 2, 4);
  // A view into the middle of a larger buffer: the whole buffer is stored.
  f.typed_array_offset = new Uint16Array(Uint8Array.from({ length: 12 }, (_, i) => i).buffer, 4, 2);
  // Two views of one buffer: the buffer is stored once and referenced.
  const shared = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8).buffer;
  f.views_shared_buffer = { whole: new Uint8Array(shared), tail: new Int32Array(shared, 4, 1) };

  // --- boxed primitives
  f.boxed_true = new Boolean(true);
  f.boxed_false = new Boolean(false);
  f.boxed_number = new Number(2.5);
  f.boxed_bigint = Object(7n);
  f.boxed_string = new String("s");

  // --- errors (each carries a `stack`, which differs per run: only its presence is checked)
  f.error = new Error("m");
  f.error_no_message = new Error();
  f.type_error = new TypeError("t");
  f.range_error_cause = new RangeError("r", { cause: 42 });
  f.error_kinds = [
    new EvalError("e"),
    new ReferenceError("f"),
    new SyntaxError("s"),
    new URIError("u"),
  ];
  f.error_in_object = { e: new SyntaxError("bad", { cause: { code: 7 } }) };

  // --- identity: shared and circular references
  const s = { x: 1 };
  f.shared_ref = { a: s, b: s };
  const s2 = { y: 2 };
  f.shared_in_array = [s2, s2, { s2 }];
  const o: Record<string, unknown> = {};
  o.self = o;
  f.circular_object = o;
  const a: unknown[] = [1];
  a.push(a);
  f.circular_array = a;
  const m = new Map<string, unknown>();
  m.set("me", m);
  f.circular_map = m;

  return f;
}

// --- web objects Deno stores as host objects (Deno 2.8+): Blob, File, DOMException,
// CryptoKey. Async (WebCrypto), so a second function; write_values.ts and
// check_values.ts merge both. What Deno stores for each, and what it does not
// (a Blob's bytes): crates/openkv-js `HostType`.
//   web objects blob_empty blob blob_two_parts file dom_exception
//               dom_exception_default crypto_hmac crypto_aes crypto_ed25519
//               web_nested (a Blob three times, a File in a Map, a
//               DOMException in a Set: identity and nesting)
export async function hostObjectFixtures(): Promise<Record<string, unknown>> {
  const f: Record<string, unknown> = {};
  f.blob_empty = new Blob([]);
  f.blob = new Blob(["hello"], { type: "text/plain" });
  f.blob_two_parts = new Blob([Uint8Array.of(1, 2, 3), "hi"]);
  f.file = new File(["abc"], "a.txt", { type: "text/plain", lastModified: 1700000000123 });
  f.dom_exception = new DOMException("boom", "NotFoundError");
  f.dom_exception_default = new DOMException("plain");
  const bytes = (n: number, from: number) => Uint8Array.from({ length: n }, (_, i) => from + i);
  f.crypto_hmac = await crypto.subtle.importKey(
    "raw",
    bytes(32, 1),
    { name: "HMAC", hash: "SHA-256" },
    true,
    ["sign", "verify"],
  );
  f.crypto_aes = await crypto.subtle.importKey("raw", bytes(16, 100), "AES-GCM", false, [
    "encrypt",
    "decrypt",
  ]);
  // A valid Ed25519 public key (one Deno generated), so that the import succeeds.
  const ed = Uint8Array.from(
    "34204cd46644ef732d9ee5214bdb77f8b60acbd47d222d95cb4fb35a0526f2d8".match(/../g)!,
    (h) => parseInt(h, 16),
  );
  f.crypto_ed25519 = await crypto.subtle.importKey("raw", ed, "Ed25519", true, ["verify"]);
  const blob = new Blob(["shared"]);
  f.web_nested = {
    blob,
    list: [blob, blob],
    // lastModified out of the int32 range: V8 writes a small integral lastModified
    // sometimes as an int and sometimes as a double (webidl's conversion may leave a
    // heap number), so only a large one has one byte form to compare against.
    map: new Map([["f", new File([], "empty.bin", { lastModified: 1600000000000 })]]),
    set: new Set([new DOMException("in a set", "DataError")]),
  };
  return f;
}
