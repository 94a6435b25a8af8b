//! openkv-js: JavaScript values as Deno stores them in Deno KV — the typed model [`JsValue`],
//! its V8 wire format (`ValueSerializer` bytes, what a V8-encoded KV value holds), serde support
//! ([`to_js`] / [`from_js`]) and a lossless typed JSON rendering ([`to_json`] / [`from_json`],
//! [`stored_to_json`] / [`stored_from_json`] for a whole stored value).
//!
//! The bottom layer of openkv: it knows nothing of keys, versionstamps or storage, and depends
//! on no other openkv crate. `openkv-core` builds on it (the commit planner's `sum`/`min`/`max`
//! read V8 numbers; `Value` converts to and from [`JsValue`]). Most programs use it through the
//! `openkv` facade, which re-exports all of it.
//!
//! # Contract
//! - [`decode_v8`] reads what Deno writes (V8 serialization format versions 13 to 16) and
//!   rejects anything else with a [`V8Error`], never a panic; [`encode_v8`] writes bytes Deno
//!   reads (format [`V8_WRITE_VERSION`]), and decoding them gives back an equal value.
//! - [`from_json`] reads back exactly what [`to_json`] writes; bad JSON is a [`JsonError`] that
//!   names the place.
//! - Nesting is bounded by [`MAX_DEPTH`] everywhere, so hostile input cannot overflow the stack.
//!
//! ```
//! use openkv_js::{decode_v8, encode_v8, from_json, to_json, JsValue};
//! let value = JsValue::object([("n", JsValue::BigInt(12.into())), ("s", JsValue::from("x"))]);
//! let bytes = encode_v8(&value).unwrap();
//! assert_eq!(decode_v8(&bytes).unwrap(), value);
//! let json = to_json(&value);
//! assert_eq!(json, serde_json::json!({"n": {"$bigint": "12"}, "s": "x"}));
//! assert_eq!(from_json(&json).unwrap(), value);
//! ```
//!
//! # Identity: shared and circular references
//! V8 gives every object (plain objects, arrays, maps, sets, dates, regexps, boxed
//! primitives, array buffers, views, errors) an id in the order it is first written, and writes
//! a later occurrence of the same object as a reference to that id. [`JsValue`] is a tree, so it
//! keeps that scheme: the first occurrence holds the content, and a later one is
//! [`JsValue::Ref`]`(id)`, where `id` counts objects in the order a depth-first, left-to-right
//! walk of the tree meets them (an `ArrayBuffer` under a view is met before the view). A
//! self-referencing object is `Ref` to its own id, e.g. `const o = {}; o.self = o` is
//! `Object([("self", Ref(0))])`. Decoding and encoding preserve this exactly.

// A library reports through its return values, never on stdout/stderr; the rest of the lint
// wall is `[workspace.lints]` in the root Cargo.toml.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod json;
mod serde;
mod v8;
mod value;
mod web;

pub use json::{
    from_json, stored_from_json, stored_to_json, to_json, try_to_json, JsonError, Stored,
};
pub use serde::{
    from_js, to_js, JsBigInt, JsBytes, JsDate, JsMap, JsSerdeError, JsSet, JsUndefined,
};
pub use v8::{decode_v8, encode_v8, V8Error, MAX_DEPTH, V8_WRITE_VERSION};
pub use value::{host_type, ErrorKind, HostType, JsArray, JsError, JsValue, ViewKind};
pub use web::{JsBlob, JsBlobPart, JsCryptoKey, JsDomException, JsFile};
