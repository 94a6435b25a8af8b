//! V8 codec properties: arbitrary bytes never panic (and decode or fail quickly); every
//! generated value survives encode → decode; what decodes re-encodes to a value that decodes
//! to the same thing. (The fuzz target `fuzz/fuzz_targets/v8_decode.rs` runs the same checks
//! coverage-guided.)

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use num_bigint::BigInt;
use openkv::{decode_v8, encode_v8, ErrorKind, HostType, JsArray, JsError, JsValue, ViewKind};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

fn leaf() -> impl Strategy<Value = JsValue> {
    prop_oneof![
        Just(JsValue::Undefined),
        Just(JsValue::Null),
        any::<bool>().prop_map(JsValue::Bool),
        any::<f64>().prop_map(JsValue::Number),
        any::<i32>().prop_map(|n| JsValue::Number(n.into())),
        prop::collection::vec(any::<u8>(), 0..20)
            .prop_map(|b| JsValue::BigInt(BigInt::from_signed_bytes_le(&b))),
        ".{0,12}".prop_map(JsValue::String),
        prop::collection::vec(any::<u16>(), 0..6).prop_map(|u| match String::from_utf16(&u) {
            Ok(s) => JsValue::String(s),
            Err(_) => JsValue::StringUtf16(u),
        }),
        any::<f64>().prop_map(JsValue::Date),
        ("[a-z+*]{0,6}", any::<u8>())
            .prop_map(|(s, f)| JsValue::RegExp { source: s, flags: f.into() }),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(JsValue::ArrayBuffer),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(JsValue::uint8_array),
        (prop::sample::select(ViewKind::ALL.to_vec()), prop::collection::vec(any::<u8>(), 0..32))
            .prop_map(|(kind, bytes)| {
                let size = kind.element_size();
                let len = bytes.len() as u32 / size * size;
                JsValue::View {
                    kind,
                    buffer: Box::new(JsValue::ArrayBuffer(bytes)),
                    byte_offset: 0,
                    byte_length: len,
                }
            }),
        any::<bool>().prop_map(JsValue::BooleanObject),
        any::<f64>().prop_map(JsValue::NumberObject),
        any::<i64>().prop_map(|n| JsValue::BigIntObject(n.into())),
        ".{0,6}".prop_map(JsValue::StringObject),
    ]
}

fn value() -> impl Strategy<Value = JsValue> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        let key = "[a-z0-9$]{0,4}";
        prop_oneof![
            prop::collection::vec((key, inner.clone()), 0..5).prop_map(JsValue::Object),
            (
                prop::collection::vec(prop::option::of(inner.clone()), 0..5),
                prop::collection::vec(("[a-z]{1,3}", inner.clone()), 0..2)
            )
                .prop_map(|(items, properties)| JsValue::Array(JsArray { items, properties })),
            (
                prop::collection::btree_map(0u32..1_000_000, inner.clone(), 0..4),
                1_000_000u32..2_000_000
            )
                .prop_map(|(els, length)| JsValue::SparseArray {
                    length,
                    elements: els.into_iter().collect(),
                    properties: vec![],
                }),
            prop::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(JsValue::Map),
            prop::collection::vec(inner.clone(), 0..4).prop_map(JsValue::Set),
            // Host objects (Blob, …): a state object with a known `type` first, or any state.
            (
                prop::sample::select(HostType::ALL.to_vec()),
                prop::collection::vec((key, inner.clone()), 0..4)
            )
                .prop_map(|(class, props)| JsValue::host_object(class, props)),
            inner.clone().prop_map(|state| JsValue::HostObject(Box::new(state))),
            (prop::option::of(".{0,8}"), prop::option::of(inner.clone())).prop_map(
                |(message, cause)| {
                    JsValue::Error(Box::new(JsError {
                        kind: ErrorKind::RangeError,
                        message,
                        stack: None,
                        cause,
                    }))
                }
            ),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3000,
        rng_seed: RngSeed::Fixed(16),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_values_round_trip(v in value()) {
        let bytes = encode_v8(&v).unwrap();
        prop_assert_eq!(decode_v8(&bytes).unwrap(), v);
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..96)) {
        // Half the cases get a valid header, so the decoder gets past it.
        if bytes.len() > 2 && bytes[0] % 2 == 0 {
            bytes[0] = 0xff;
            bytes[1] = 0x0f;
        }
        if let Ok(v) = decode_v8(&bytes) {
            let again = encode_v8(&v).unwrap();
            prop_assert_eq!(decode_v8(&again).unwrap(), v);
        }
    }

    #[test]
    fn mutated_valid_bytes_never_panic(v in value(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = encode_v8(&v).unwrap();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let _ = decode_v8(&bytes);
        bytes.truncate(i);
        let _ = decode_v8(&bytes);
    }
}

#[test]
fn hostile_lengths_do_not_allocate() {
    // Claims of 4 billion elements / bytes backed by nothing fail before allocating.
    for bytes in [
        &[0xff, 0x0f, b'A', 0xff, 0xff, 0xff, 0xff, 0x0f][..],
        &[0xff, 0x0f, b'B', 0xff, 0xff, 0xff, 0xff, 0x0f],
        &[0xff, 0x0f, b'"', 0xff, 0xff, 0xff, 0xff, 0x0f],
        &[0xff, 0x0f, b'Z', 0xff, 0xff, 0xff, 0xff, 0x0f],
    ] {
        assert!(decode_v8(bytes).is_err());
    }
    // A sparse array's length is just a number: a billion-long array with one element is fine.
    let v = decode_v8(&[
        0xff, 0x0f, b'a', 0x80, 0x94, 0xeb, 0xdc, 0x03, b'@', 0, 0x80, 0x94, 0xeb, 0xdc, 0x03,
    ])
    .unwrap();
    assert_eq!(
        v,
        JsValue::SparseArray { length: 1_000_000_000, elements: vec![], properties: vec![] }
    );
}

#[test]
fn maximum_depth_fits_a_small_thread_stack() {
    //! Hostile input at the nesting limit must fail or decode on an ordinary thread, never
    //! overflow its stack (which aborts the process). 512 nested arrays, then one more level.
    let depth = openkv::js::MAX_DEPTH;
    for levels in [depth - 1, depth + 1] {
        let mut bytes = vec![0xff, 0x0f];
        for _ in 0..levels {
            bytes.extend_from_slice(&[b'A', 1]);
        }
        bytes.push(b'0');
        for _ in 0..levels {
            bytes.extend_from_slice(&[b'$', 0, 1]);
        }
        // 1 MiB: half of tokio's default worker stack.
        let ok = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                let decoded = decode_v8(&bytes);
                if let Ok(v) = &decoded {
                    let again = encode_v8(v).unwrap();
                    assert_eq!(&decode_v8(&again).unwrap(), v);
                    let json = openkv::to_json(v);
                    assert_eq!(&openkv::from_json(&json).unwrap(), v);
                }
                decoded.is_ok()
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert_eq!(ok, levels < depth, "{levels} levels");
    }
}
