//! Key codec properties: decode(encode(k)) == k, and encoded order == semantic order.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use num_bigint::BigInt;
use openkv::{Key, KeyPart};
use proptest::prelude::*;

fn part() -> impl Strategy<Value = KeyPart> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..12).prop_map(KeyPart::Bytes),
        ".{0,8}".prop_map(KeyPart::String),
        any::<i64>().prop_map(KeyPart::from),
        (any::<bool>(), prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(neg, mag)| {
            let n = BigInt::from_bytes_be(num_bigint::Sign::Plus, &mag);
            KeyPart::Int(if neg { -n } else { n })
        }),
        any::<f64>().prop_map(KeyPart::Float),
        prop::sample::select(vec![
            0.0,
            -0.0,
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE
        ])
        .prop_map(KeyPart::Float),
        any::<bool>().prop_map(KeyPart::Bool),
    ]
}

fn key() -> impl Strategy<Value = Key> {
    prop::collection::vec(part(), 0..5).prop_map(Key::new)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, rng_seed: proptest::test_runner::RngSeed::Fixed(1), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn round_trip(k in key()) {
        let bytes = k.encode().unwrap();
        let back = Key::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &k);
        prop_assert_eq!(back.encode().unwrap(), bytes);
    }

    #[test]
    fn encoded_order_is_semantic_order(a in key(), b in key()) {
        prop_assert_eq!(a.encode().unwrap().cmp(&b.encode().unwrap()), a.cmp(&b));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(k) = Key::decode(&bytes) {
            // Whatever decodes re-encodes to the same bytes, except NaN payloads (canonicalised).
            let again = k.encode().unwrap();
            prop_assert_eq!(Key::decode(&again).unwrap(), k);
        }
    }
}

#[test]
fn semantic_order_across_types() {
    // Deno's upstream "key ordering" test: [u8] < "a" < 1n < 3.25 < false < true.
    let parts = [
        KeyPart::Bytes(vec![1]),
        KeyPart::String("a".into()),
        KeyPart::from(1),
        KeyPart::Float(3.25),
        KeyPart::Bool(false),
        KeyPart::Bool(true),
    ];
    for w in parts.windows(2) {
        let (a, b) = (Key::new(vec![w[0].clone()]), Key::new(vec![w[1].clone()]));
        assert!(a.encode().unwrap() < b.encode().unwrap(), "{a} < {b}");
    }
    let nums = [f64::NEG_INFINITY, -1.5, -0.0, 0.0, 1e-300, 2.0, f64::INFINITY, f64::NAN];
    for w in nums.windows(2) {
        let (a, b) = (Key::new(vec![w[0].into()]), Key::new(vec![w[1].into()]));
        assert!(a.encode().unwrap() < b.encode().unwrap(), "{a} < {b}");
    }
    let ints: Vec<BigInt> = vec![
        -(BigInt::from(1) << 800usize),
        -(BigInt::from(1) << 64usize),
        BigInt::from(-256),
        BigInt::from(-1),
        BigInt::from(0),
        BigInt::from(255),
        BigInt::from(u64::MAX),
        BigInt::from(1) << 64usize,
        BigInt::from(1) << 800usize,
    ];
    for w in ints.windows(2) {
        let (a, b) = (Key::new(vec![w[0].clone().into()]), Key::new(vec![w[1].clone().into()]));
        assert!(a.encode().unwrap() < b.encode().unwrap(), "{a} < {b}");
    }
}
