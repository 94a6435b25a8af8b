//! JavaScript values, as Deno stores them: the typed model [`JsValue`], its V8 wire format
//! (`ValueSerializer` bytes, what `Value::V8` holds), serde support and a typed JSON rendering.
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

mod json;
mod serde;
mod v8;
mod value;

pub use json::{from_json, to_json, try_to_json, value_from_json, value_to_json, JsonError};
pub use serde::{
    from_js, to_js, JsBigInt, JsBytes, JsDate, JsMap, JsSerdeError, JsSet, JsUndefined,
};
pub use v8::{decode_v8, encode_v8, V8Error, MAX_DEPTH, V8_WRITE_VERSION};
pub use value::{ErrorKind, JsArray, JsError, JsValue, ViewKind};
