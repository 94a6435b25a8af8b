//! Keys as people type them (the CLI's arguments, the console's search box): a JSON-like array
//! of typed parts, parsed by hand so that every mistake gets a column and a word on what was
//! expected.
//!
//! ```text
//! key     = "[" [ part *( "," part ) ] "]"          (whitespace allowed around everything)
//! part    = string | bytes | bigint | number | "true" | "false"
//! string  = a JSON string: "users", "line\nbreak", "caf\u00e9"   → string
//! bytes   = b"<standard base64, padded>": b"AAE=" is [0, 1]; b"" → Uint8Array
//! bigint  = an integer followed by n: 12n, -1n, 0n, any size      → bigint
//! number  = a JSON number: 12, -3.5, 1e-7; also -0, NaN, Infinity, -Infinity → number
//! ```
//!
//! As in JavaScript, `12` is a number (an `f64`) and `12n` a bigint: they are different keys.
//! `-0` is a number different from `0` (Deno keeps them apart); all `NaN`s are one key, but for
//! their sign: the encoding keeps a NaN with the sign bit set apart, written `-NaN`. A
//! number too large for an `f64` (`1e400`) is an error rather than a silent `Infinity`. Strings
//! use JSON's escapes; a lone surrogate (`"\ud800"`) is refused, since key strings are
//! Unicode text.
//!
//! [`format_key`] prints a key in the same syntax, so that what `openkv list` prints can be
//! pasted back: `parse_key(&format_key(k)) == k` for every key.
//!
//! ```
//! use openkv_core::key::syntax::{format_key, parse_key};
//! use openkv_core::{key, KeyPart};
//! let k = parse_key(r#"["users", 12n, 3.5, true, b"AAE="]"#)?;
//! assert_eq!(k.parts()[1], KeyPart::from(12));
//! assert_eq!(format_key(&k), r#"["users", 12n, 3.5, true, b"AAE="]"#);
//! let err = parse_key(r#"["users", 12x]"#).unwrap_err();
//! assert_eq!(err.column, 13);
//! # Ok::<(), openkv_core::key::syntax::KeySyntaxError>(())
//! ```

use crate::key::{Key, KeyPart};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use num_bigint::BigInt;

/// An example shown with every error, so a user sees the shape of a key.
const EXAMPLE: &str = r#"keys look like ["users", 12n, 3.5, true, b"AAE="]"#;

/// Where and why a key does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySyntaxError {
    /// 1-based column (in characters) of the offending place.
    pub column: usize,
    /// What was expected and what was found.
    pub message: String,
}

impl std::fmt::Display for KeySyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at column {}: {} ({EXAMPLE})", self.column, self.message)
    }
}

impl std::error::Error for KeySyntaxError {}

/// Parses a key written in the syntax of this module.
pub fn parse_key(input: &str) -> Result<Key, KeySyntaxError> {
    let mut p = Parser { input, pos: 0 };
    p.skip_ws();
    p.expect(b'[', "'[' to start the key")?;
    let mut parts = Vec::new();
    p.skip_ws();
    if p.peek() == Some(b']') {
        p.pos += 1;
    } else {
        loop {
            p.skip_ws();
            parts.push(p.part()?);
            p.skip_ws();
            match p.peek() {
                Some(b',') => p.pos += 1,
                Some(b']') => {
                    p.pos += 1;
                    break;
                }
                _ => return Err(p.error_here("',' or ']' after a key part")),
            }
        }
    }
    p.skip_ws();
    if p.pos < input.len() {
        return Err(p.error_here("nothing after the closing ']'"));
    }
    Ok(Key::new(parts))
}

/// Prints a key in the syntax [`parse_key`] reads.
pub fn format_key(key: &Key) -> String {
    let parts: Vec<String> = key.parts().iter().map(format_part).collect();
    format!("[{}]", parts.join(", "))
}

fn format_part(part: &KeyPart) -> String {
    match part {
        KeyPart::String(s) => serde_json::Value::from(s.as_str()).to_string(),
        KeyPart::Bytes(b) => format!("b\"{}\"", BASE64.encode(b)),
        KeyPart::Int(n) => format!("{n}n"),
        KeyPart::Float(x) => format_number(*x),
        // Exhaustive on purpose: a new part type must get a syntax here (and in `part`).
        KeyPart::Bool(b) => b.to_string(),
    }
}

/// A number as JavaScript would print it, in a form that reads back exactly: integers without
/// a fraction (`3`, `-0`), others in Rust's shortest round-trip form (`0.1`, `1e-7`, `1e300`),
/// `NaN` (`-NaN` with the sign bit set), `Infinity`, `-Infinity`.
pub fn format_number(x: f64) -> String {
    if x.is_nan() {
        if x.is_sign_negative() { "-NaN" } else { "NaN" }.into()
    } else if x.is_infinite() {
        if x > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if x == 0.0 && x.is_sign_negative() {
        "-0".into()
    } else if x.fract() == 0.0 && x.abs() < 1e21 {
        format!("{x}")
    } else {
        format!("{x:?}")
    }
}

struct Parser<'a> {
    input: &'a str,
    /// Byte offset into `input`.
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.as_bytes().get(self.pos).copied()
    }

    fn rest(&self) -> &str {
        &self.input[self.pos..]
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn column_at(&self, pos: usize) -> usize {
        self.input[..pos].chars().count() + 1
    }

    fn error_at(&self, pos: usize, message: String) -> KeySyntaxError {
        KeySyntaxError { column: self.column_at(pos), message }
    }

    /// "expected X, found Y" at the current position.
    fn error_here(&self, expected: &str) -> KeySyntaxError {
        let found = match self.rest().chars().next() {
            None => "the end of the key".to_owned(),
            Some(c) => format!("{c:?}"),
        };
        self.error_at(self.pos, format!("expected {expected}, found {found}"))
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), KeySyntaxError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error_here(what))
        }
    }

    fn part(&mut self) -> Result<KeyPart, KeySyntaxError> {
        let rest = self.rest();
        match self.peek() {
            Some(b'"') => self.string().map(KeyPart::String),
            Some(b'b') if rest.starts_with("b\"") => self.bytes().map(KeyPart::Bytes),
            Some(b'-' | b'0'..=b'9' | b'N' | b'I' | b'+' | b'.') => self.number(),
            _ if rest.starts_with("true") => {
                self.pos += 4;
                Ok(KeyPart::Bool(true))
            }
            _ if rest.starts_with("false") => {
                self.pos += 5;
                Ok(KeyPart::Bool(false))
            }
            Some(b'\'') => Err(self.error_at(
                self.pos,
                "strings take double quotes (\"…\"), not single quotes".into(),
            )),
            _ => Err(self.error_here(
                "a key part: a \"string\", a number, a bigint like 12n, true, false or \
                 b\"<base64>\"",
            )),
        }
    }

    /// A JSON string, the opening quote at `pos`.
    fn string(&mut self) -> Result<String, KeySyntaxError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.rest().chars().next() else {
                return Err(self.error_at(start, "this string has no closing '\"'".into()));
            };
            match c {
                '"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                '\\' => {
                    let escape_at = self.pos;
                    self.pos += 1;
                    let Some(e) = self.peek() else {
                        return Err(self.error_at(start, "this string has no closing '\"'".into()));
                    };
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode_escape(escape_at)?),
                        _ => {
                            return Err(self.error_at(
                                escape_at,
                                format!(
                                    "unknown escape \\{}: use \\\" \\\\ \\/ \\b \\f \\n \\r \\t \
                                     or \\uXXXX",
                                    self.input[escape_at + 1..].chars().next().unwrap_or(' ')
                                ),
                            ))
                        }
                    }
                }
                c if (c as u32) < 0x20 => {
                    return Err(self.error_at(
                        self.pos,
                        format!(
                            "a control character (U+{:04X}) inside a string must be escaped \
                             (\\n, \\t, \\u00XX)",
                            c as u32
                        ),
                    ))
                }
                c => {
                    out.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
    }

    /// The 4 hex digits after `\u` (at `pos`), and a low surrogate's `\uXXXX` after a high one.
    fn unicode_escape(&mut self, escape_at: usize) -> Result<char, KeySyntaxError> {
        let first = self.hex4(escape_at)?;
        let code = match first {
            0xD800..=0xDBFF => {
                if !self.rest().starts_with("\\u") {
                    return Err(self.lone_surrogate(escape_at, first));
                }
                self.pos += 2;
                let second = self.hex4(self.pos - 2)?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.lone_surrogate(escape_at, first));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.lone_surrogate(escape_at, first)),
            _ => first,
        };
        char::from_u32(code).ok_or_else(|| {
            self.error_at(escape_at, format!("\\u{code:04X} is not a Unicode scalar value"))
        })
    }

    fn hex4(&mut self, escape_at: usize) -> Result<u32, KeySyntaxError> {
        let digits = self.rest().get(..4).filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()));
        let Some(code) = digits.and_then(|d| u32::from_str_radix(d, 16).ok()) else {
            return Err(self.error_at(escape_at, "\\u must be followed by 4 hex digits".into()));
        };
        self.pos += 4;
        Ok(code)
    }

    fn lone_surrogate(&self, at: usize, unit: u32) -> KeySyntaxError {
        self.error_at(
            at,
            format!("\\u{unit:04x} is half of a surrogate pair; key strings must be Unicode text"),
        )
    }

    /// `b"<base64>"`, the `b` at `pos`.
    fn bytes(&mut self) -> Result<Vec<u8>, KeySyntaxError> {
        let start = self.pos;
        self.pos += 2;
        let Some(len) = self.rest().find('"') else {
            return Err(self.error_at(start, "these bytes have no closing '\"'".into()));
        };
        let text = &self.rest()[..len];
        let decoded = BASE64.decode(text).map_err(|e| {
            self.error_at(
                start + 2,
                format!("b\"…\" holds standard base64 with padding (b\"AAE=\" is [0, 1]): {e}"),
            )
        })?;
        self.pos += len + 1;
        Ok(decoded)
    }

    /// A JSON number, a bigint (`-?digits n`), `NaN`, `Infinity` or `-Infinity`.
    fn number(&mut self) -> Result<KeyPart, KeySyntaxError> {
        let start = self.pos;
        for (word, value) in [
            ("NaN", f64::NAN),
            ("-NaN", -f64::NAN),
            ("Infinity", f64::INFINITY),
            ("-Infinity", f64::NEG_INFINITY),
        ] {
            if self.rest().starts_with(word) {
                self.pos += word.len();
                return Ok(KeyPart::Float(value));
            }
        }
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        self.digits();
        let int_digits = &self.input[int_start..self.pos];
        if int_digits.is_empty() {
            return Err(self.error_here("a digit (numbers look like 12, -3.5 or 1e-7)"));
        }
        if int_digits.len() > 1 && int_digits.starts_with('0') {
            return Err(
                self.error_at(int_start, "a number cannot start with 0 (write 12, not 012)".into())
            );
        }
        if self.peek() == Some(b'n') {
            self.pos += 1;
            let n: BigInt = self.input[start..self.pos - 1]
                .parse()
                .map_err(|_| self.error_at(start, "not a whole number before n".into()))?;
            return Ok(KeyPart::Int(n));
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.error_here("a digit after the decimal point"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.error_here("a digit in the exponent"));
            }
        }
        if self.peek() == Some(b'n') {
            return Err(self.error_at(
                start,
                "a bigint is a whole number followed by n (12n), with no fraction or exponent"
                    .into(),
            ));
        }
        let text = &self.input[start..self.pos];
        let x: f64 =
            text.parse().map_err(|_| self.error_at(start, format!("{text} is not a number")))?;
        if x.is_infinite() {
            return Err(self.error_at(
                start,
                format!("{text} is too large for a number (an f64); write Infinity, or a bigint"),
            ));
        }
        Ok(KeyPart::Float(x))
    }

    /// Skips ASCII digits; how many.
    fn digits(&mut self) -> usize {
        let n = self.rest().bytes().take_while(u8::is_ascii_digit).count();
        self.pos += n;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key;
    use proptest::prelude::*;

    fn parse(s: &str) -> Key {
        parse_key(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> KeySyntaxError {
        parse_key(s).expect_err(s)
    }

    #[test]
    fn every_part_type() {
        let k = parse(r#"["users", 12n, 3.5, true, false, b"AAE=", -0, NaN, Infinity, -Infinity]"#);
        let parts = k.parts();
        assert_eq!(parts[0], KeyPart::String("users".into()));
        assert_eq!(parts[1], KeyPart::Int(12.into()));
        assert_eq!(parts[2], KeyPart::Float(3.5));
        assert_eq!(parts[3], KeyPart::Bool(true));
        assert_eq!(parts[4], KeyPart::Bool(false));
        assert_eq!(parts[5], KeyPart::Bytes(vec![0, 1]));
        assert!(matches!(parts[6], KeyPart::Float(x) if x == 0.0 && x.is_sign_negative()));
        assert!(matches!(parts[7], KeyPart::Float(x) if x.is_nan() && x.is_sign_positive()));
        assert_eq!(parts[8], KeyPart::Float(f64::INFINITY));
        assert_eq!(parts[9], KeyPart::Float(f64::NEG_INFINITY));
    }

    #[test]
    fn nan_payloads_are_one_key_but_the_sign_is_kept() {
        let payload = f64::from_bits(0x7ff0_0000_0000_0001);
        assert_eq!(parse("[NaN]"), key![payload]);
        assert_eq!(format_key(&key![payload]), "[NaN]");
        let negative = f64::from_bits(0xfff8_0000_0000_0001);
        assert_eq!(format_key(&key![negative]), "[-NaN]");
        assert_eq!(parse("[-NaN]"), key![negative]);
        assert_ne!(parse("[-NaN]"), parse("[NaN]"));
    }

    #[test]
    fn numbers_and_bigints_are_different_keys() {
        assert_eq!(parse("[12]"), key![12.0]);
        assert_eq!(parse("[12n]"), key![12]);
        assert_ne!(parse("[12]"), parse("[12n]"));
        assert_ne!(parse("[0]"), parse("[-0]"));
        assert_eq!(parse("[1e3, -2.5E-3, 0.1]"), key![1000.0, -0.0025, 0.1]);
    }

    #[test]
    fn bigints_of_any_size() {
        let big = "123456789012345678901234567890123456789012345678901234567890";
        let k = parse(&format!("[-{big}n]"));
        assert_eq!(k.parts()[0], KeyPart::Int(-big.parse::<BigInt>().unwrap()));
        assert_eq!(parse("[0n, -0n]"), key![0, 0]);
    }

    #[test]
    fn strings_take_json_escapes() {
        let k = parse(r#"["a\"b\\c\/d\b\f\n\r\t", "caf\u00e9", "\ud83d\ude00", "日本"]"#);
        assert_eq!(k, key!["a\"b\\c/d\u{8}\u{c}\n\r\t", "café", "😀", "日本"]);
    }

    #[test]
    fn whitespace_and_the_empty_key() {
        assert_eq!(parse("[]"), Key::default());
        assert_eq!(parse("  [ ]  "), Key::default());
        assert_eq!(parse("[\n \"a\" ,\t1n ]"), key!["a", 1]);
        assert_eq!(parse(r#"[b""]"#), key![Vec::<u8>::new()]);
    }

    #[test]
    fn malformed_keys_say_where_and_what() {
        let cases: &[(&str, usize, &str)] = &[
            ("users", 1, "expected '[' to start the key, found 'u'"),
            ("", 1, "expected '[' to start the key, found the end of the key"),
            (r#"["a""#, 5, "expected ',' or ']' after a key part, found the end"),
            (r#"["a" "b"]"#, 6, "expected ',' or ']' after a key part, found '\"'"),
            (r#"["a",]"#, 6, "expected a key part"),
            (r#"["abc]"#, 2, "this string has no closing"),
            ("['a']", 2, "not single quotes"),
            ("[12x]", 4, "expected ',' or ']'"),
            ("[012]", 2, "cannot start with 0"),
            ("[1.]", 4, "a digit after the decimal point"),
            ("[1e]", 4, "a digit in the exponent"),
            ("[1.5n]", 2, "a bigint is a whole number"),
            ("[1e400]", 2, "too large for a number"),
            ("[-]", 3, "expected a digit"),
            ("[+1]", 2, "expected a digit"),
            ("[nan]", 2, "expected a key part"),
            (r#"[b"AAE"]"#, 4, "standard base64 with padding"),
            (r#"[b"AAE=]"#, 2, "these bytes have no closing"),
            (r#"["\x"]"#, 3, "unknown escape \\x"),
            (r#"["\u12"]"#, 3, "4 hex digits"),
            (r#"["\ud800"]"#, 3, "half of a surrogate pair"),
            (r#"["\udc00x"]"#, 3, "half of a surrogate pair"),
            ("[\"a\nb\"]", 4, "control character (U+000A)"),
            ("[true] x", 8, "nothing after the closing ']'"),
            ("[1] []", 5, "nothing after the closing ']'"),
            ("[tru]", 2, "expected a key part"),
            ("[\"é\", x]", 7, "expected a key part"),
        ];
        for (input, column, needle) in cases {
            let e = err(input);
            assert_eq!(e.column, *column, "{input}: {e}");
            assert!(e.to_string().contains(needle), "{input}: {e} does not say {needle:?}");
            assert!(e.to_string().contains(EXAMPLE), "{input}: {e}");
        }
    }

    #[test]
    fn printing_uses_the_same_syntax() {
        let k = key!["users", 12, 3.5, true, b"\x00\x01", -0.0, f64::NAN, "a\"\n", 1e300, 1e-7];
        assert_eq!(
            format_key(&k),
            r#"["users", 12n, 3.5, true, b"AAE=", -0, NaN, "a\"\n", 1e300, 1e-7]"#
        );
        assert_eq!(format_key(&key![1.0, 100.0, 1e21]), "[1, 100, 1e21]");
        assert_eq!(format_key(&Key::default()), "[]");
    }

    fn part_strategy() -> impl Strategy<Value = KeyPart> {
        prop_oneof![
            any::<String>().prop_map(KeyPart::String),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(KeyPart::Bytes),
            any::<i128>().prop_map(|n| KeyPart::Int(n.into())),
            (any::<i128>(), any::<u64>())
                .prop_map(|(a, b)| KeyPart::Int(BigInt::from(a) * BigInt::from(b) * 7919)),
            any::<f64>().prop_map(KeyPart::Float),
            any::<u64>().prop_map(|bits| KeyPart::Float(f64::from_bits(bits))),
            any::<bool>().prop_map(KeyPart::Bool),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn printed_keys_parse_back_to_the_same_key(parts in proptest::collection::vec(part_strategy(), 0..6)) {
            let key = Key::new(parts);
            let text = format_key(&key);
            let back = parse_key(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(&back, &key, "{}", text);
            prop_assert_eq!(back.encode().unwrap(), key.encode().unwrap());
            prop_assert_eq!(format_key(&back), text);
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,40}") {
            let _ = parse_key(&s);
        }
    }
}
