//! Versionstamps: the 10-byte commit versions of Deno KV.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// The version of one commit: 10 bytes, compared as bytes, shown as 20 lowercase hex digits.
///
/// Every commit gets a versionstamp greater than every earlier commit's, across restarts and
/// across processes sharing a file; all mutations of one atomic write share it. In the SQLite
/// backend the first 8 bytes are the big-endian commit counter kept in `data_version` and the
/// last 2 bytes are zero, as in Deno's own files.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Versionstamp(pub [u8; 10]);

impl Versionstamp {
    /// `00000000000000000000`: below every real versionstamp.
    pub const ZERO: Versionstamp = Versionstamp([0; 10]);

    /// The versionstamp for a commit counter, as Deno's SQLite backend derives it.
    pub fn from_version(version: u64) -> Self {
        let mut b = [0u8; 10];
        b[..8].copy_from_slice(&version.to_be_bytes());
        Versionstamp(b)
    }

    /// The commit counter in the first 8 bytes.
    pub fn version(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(b)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 10] {
        &self.0
    }

    /// From raw bytes; anything but exactly 10 bytes is [`Error::InvalidVersionstamp`].
    pub fn from_slice(b: &[u8]) -> Result<Self, Error> {
        let arr: [u8; 10] = b.try_into().map_err(|_| {
            Error::InvalidVersionstamp(format!("expected 10 bytes, got {}", b.len()))
        })?;
        Ok(Versionstamp(arr))
    }

    /// The 20 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Versionstamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Versionstamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Versionstamp({})", self.to_hex())
    }
}

impl FromStr for Versionstamp {
    type Err = Error;
    /// Parses exactly 20 hex digits (either case), like Deno's `check()` does.
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.len() != 20 {
            return Err(Error::InvalidVersionstamp(format!(
                "expected 20 hex characters, got {:?}",
                s
            )));
        }
        let mut b = [0u8; 10];
        hex::decode_to_slice(s, &mut b)
            .map_err(|_| Error::InvalidVersionstamp(format!("not hexadecimal: {s:?}")))?;
        Ok(Versionstamp(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_parse_order() {
        let v = Versionstamp::from_version(1);
        assert_eq!(v.to_string(), "00000000000000010000");
        assert_eq!("00000000000000010000".parse::<Versionstamp>().unwrap(), v);
        assert_eq!(v.version(), 1);
        assert!(Versionstamp::ZERO < v);
        assert!(Versionstamp::from_version(255) < Versionstamp::from_version(256));
        for bad in ["", "0000000000000001000", "000000000000000100000", "zz000000000000010000"] {
            assert!(matches!(bad.parse::<Versionstamp>(), Err(Error::InvalidVersionstamp(_))));
        }
        assert!(Versionstamp::from_slice(&[0; 9]).is_err());
    }
}
