//! The objects of a backup and their names (docs/design.md §16):
//!
//! ```text
//! <prefix>differential                                   the newest snapshot's versionstamp (20 hex digits)
//! <prefix>snapshots/0001_<generation>_<seq>.bin          snapshot ranges (16 hex digits each)
//! <prefix>logs/0001_<monoseq>_<first12>_<last12>.bin     mutation ranges, names in upload order
//! <prefix>openkv/backup.json                             openkv wrote this backup
//! <prefix>openkv/generations/<generation>.json           a snapshot is complete: its version, epoch, …
//! ```
//!
//! Deploy's readers (denokv) use the first three only and never look under `openkv/`.

use serde::{Deserialize, Serialize};

use openkv_core::error::{Error, Result};
use openkv_core::versionstamp::Versionstamp;

/// The object that marks a backup's base snapshot for Deploy's readers.
pub const DIFFERENTIAL: &str = "differential";
/// Where snapshot ranges live.
pub const SNAPSHOTS: &str = "snapshots/";
/// Where mutation ranges live.
pub const LOGS: &str = "logs/";
/// openkv's mark on a location it writes.
pub const BACKUP_MARK: &str = "openkv/backup.json";
/// Where openkv records complete snapshots.
pub const GENERATIONS: &str = "openkv/generations/";

/// The name format openkv writes (Deploy's version 1).
const FORMAT_VERSION: u16 = 1;

/// A snapshot range's name, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SnapshotName {
    /// 0 (Deploy's legacy names) or 1.
    pub format_version: u16,
    /// The snapshot it belongs to (openkv: the generation).
    pub monoseq: u64,
    /// Its number within the snapshot.
    pub seq: u64,
}

impl SnapshotName {
    /// The name openkv writes for range `seq` of generation `generation`.
    pub fn new(generation: u64, seq: u64) -> SnapshotName {
        SnapshotName { format_version: FORMAT_VERSION, monoseq: generation, seq }
    }

    /// The object name (under the prefix).
    pub fn object(&self) -> String {
        format!(
            "{SNAPSHOTS}{}_{:016x}.bin",
            monoseq_part(self.format_version, self.monoseq),
            self.seq
        )
    }

    /// Parses an object name under `snapshots/`.
    pub fn parse(name: &str) -> Result<SnapshotName> {
        let parts = split(name, SNAPSHOTS)?;
        let (format_version, monoseq, rest) = version_and_monoseq(name, &parts)?;
        match rest {
            [seq] => Ok(SnapshotName { format_version, monoseq, seq: hex_u64(name, seq)? }),
            _ => Err(unexpected(name)),
        }
    }
}

/// A mutation range's name, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogName {
    /// 0 (Deploy's legacy names) or 1.
    pub format_version: u16,
    /// Its place in upload order.
    pub monoseq: u64,
    /// The first entry's 12-byte versionstamp.
    pub first: [u8; 12],
    /// The last entry's (its last commit's boundary).
    pub last: [u8; 12],
}

impl LogName {
    /// The name openkv writes for range number `monoseq`.
    pub fn new(monoseq: u64, first: [u8; 12], last: [u8; 12]) -> LogName {
        LogName { format_version: FORMAT_VERSION, monoseq, first, last }
    }

    /// The object name (under the prefix).
    pub fn object(&self) -> String {
        format!(
            "{LOGS}{}_{}_{}.bin",
            monoseq_part(self.format_version, self.monoseq),
            hex::encode(self.first),
            hex::encode(self.last)
        )
    }

    /// Parses an object name under `logs/`.
    pub fn parse(name: &str) -> Result<LogName> {
        let parts = split(name, LOGS)?;
        let (format_version, monoseq, rest) = version_and_monoseq(name, &parts)?;
        let [first, last] = rest else { return Err(unexpected(name)) };
        let stamp = |text: &str| -> Result<[u8; 12]> {
            let mut out = [0u8; 12];
            hex::decode_to_slice(text, &mut out).map_err(|_| unexpected(name))?;
            Ok(out)
        };
        Ok(LogName { format_version, monoseq, first: stamp(first)?, last: stamp(last)? })
    }

    /// The versionstamp of the commit the range ends with.
    pub fn last_boundary(&self) -> Versionstamp {
        let mut vs = [0u8; 10];
        vs.copy_from_slice(&self.last[..10]);
        Versionstamp(vs)
    }
}

/// The name's start: `0001_<monoseq>` (version 1), or Deploy's legacy `<epoch>_<tsn>`.
fn monoseq_part(format_version: u16, monoseq: u64) -> String {
    match format_version {
        0 => format!("{:016x}_{:016x}", monoseq >> 32, monoseq & 0xffff_ffff),
        v => format!("{v:04x}_{monoseq:016x}"),
    }
}

fn unexpected(name: &str) -> Error {
    Error::InvalidBackup(openkv_core::Failure::new(format!(
        "{name}: not an object name of Deno Deploy's backup format"
    )))
}

fn split<'a>(name: &'a str, dir: &str) -> Result<Vec<&'a str>> {
    let stem = name
        .strip_prefix(dir)
        .and_then(|n| n.strip_suffix(".bin"))
        .filter(|n| !n.contains('/'))
        .ok_or_else(|| unexpected(name))?;
    Ok(stem.split('_').collect())
}

fn hex_u64(name: &str, text: &str) -> Result<u64> {
    u64::from_str_radix(text, 16).map_err(|_| unexpected(name))
}

/// Deploy's two name formats: `0001_<monoseq>_…` (version 1), or the legacy
/// `<epoch>_<tsn>_…` (version 0, monoseq = epoch << 32 | tsn).
fn version_and_monoseq<'a, 'b>(
    name: &str,
    parts: &'b [&'a str],
) -> Result<(u16, u64, &'b [&'a str])> {
    match parts {
        [version, monoseq, rest @ ..] if version.len() == 4 => {
            let version = u16::from_str_radix(version, 16).map_err(|_| unexpected(name))?;
            if version != 1 {
                return Err(Error::InvalidBackup(openkv_core::Failure::new(format!(
                    "{name}: name format version {version} is not one this build reads (0 or 1)"
                ))));
            }
            Ok((version, hex_u64(name, monoseq)?, rest))
        }
        [epoch, tsn, rest @ ..] => {
            let (epoch, tsn) = (hex_u64(name, epoch)?, hex_u64(name, tsn)?);
            if epoch >= u64::from(u32::MAX) || tsn >= u64::from(u32::MAX) {
                return Err(unexpected(name));
            }
            Ok((0, (epoch << 32) | tsn, rest))
        }
        _ => Err(unexpected(name)),
    }
}

/// `openkv/backup.json`: this location is an openkv backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupMark {
    /// `openkv-backup/1`.
    pub format: String,
    /// When the first snapshot was started, Unix ms.
    pub created_at_ms: i64,
}

/// The format string of [`BackupMark`].
pub const MARK_FORMAT: &str = "openkv-backup/1";

/// `openkv/generations/<generation>.json`: a complete snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Generation {
    /// Its number (the snapshot ranges' monoseq).
    pub generation: u64,
    /// The commit counter it was read at.
    pub version: u64,
    /// Its recovery point's versionstamp (20 hex digits): what `differential` says.
    pub versionstamp: String,
    /// The source's change-log epoch.
    pub epoch: String,
    /// When it was read (the source's clock), Unix ms.
    pub taken_at_ms: i64,
    /// The source's versionstamps carry a batch index (PostgreSQL).
    pub batch_index: bool,
    /// How many snapshot ranges it has (`seq` 0 to ranges − 1).
    pub ranges: u64,
    /// How many entries.
    pub entries: u64,
    /// The log starts afresh here (the first snapshot, or the source's log could not be
    /// continued): no restore replays across it from an older snapshot.
    pub restarts_log: bool,
}

impl Generation {
    /// Its object name.
    pub fn object(generation: u64) -> String {
        format!("{GENERATIONS}{generation:016x}.json")
    }

    /// The versionstamp of its recovery point.
    pub fn boundary(&self) -> Result<Versionstamp> {
        self.versionstamp.parse().map_err(|_| {
            Error::InvalidBackup(openkv_core::Failure::new(format!(
                "{}: versionstamp {:?} is not 20 hex digits",
                Generation::object(self.generation),
                self.versionstamp
            )))
        })
    }
}

/// A Unix-milliseconds time as RFC 3339 with milliseconds (`2026-12-04T08:30:00.123Z`).
pub fn format_ms(ms: i64) -> String {
    let time =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}

/// Parses the content of `differential`: exactly 20 hex digits.
pub fn parse_differential(body: &[u8]) -> Result<Versionstamp> {
    let mut vs = [0u8; 10];
    hex::decode_to_slice(body, &mut vs).map_err(|_| {
        Error::InvalidBackup(openkv_core::Failure::new(format!(
            "{DIFFERENTIAL}: expected exactly 20 hex digits, found {:?}",
            String::from_utf8_lossy(&body[..body.len().min(40)])
        )))
    })?;
    Ok(Versionstamp(vs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_in_upload_order() {
        let a = LogName::new(9, [0; 12], [1; 12]);
        let b = LogName::new(10, [0; 12], [0; 12]);
        assert_eq!(LogName::parse(&a.object()).unwrap(), a);
        assert!(a.object() < b.object(), "names sort by monoseq first");
        assert_eq!(
            SnapshotName::new(1, 2).object(),
            "snapshots/0001_0000000000000001_0000000000000002.bin"
        );
        assert_eq!(
            SnapshotName::parse(&SnapshotName::new(1, 2).object()).unwrap(),
            SnapshotName::new(1, 2)
        );
        // Deploy's legacy names.
        let legacy =
            SnapshotName::parse("snapshots/0000000000000002_0000000000000003_0000000000000004.bin")
                .unwrap();
        assert_eq!((legacy.format_version, legacy.monoseq, legacy.seq), (0, (2 << 32) | 3, 4));
        assert_eq!(
            SnapshotName::parse(&legacy.object()).unwrap(),
            legacy,
            "legacy names print back"
        );
        for bad in [
            "snapshots/",
            "snapshots/x.bin",
            "snapshots/0002_0000000000000001_0000000000000002.bin",
            "snapshots/0001_0000000000000001_0000000000000002.txt",
            "snapshots/a/0001_0000000000000001_0000000000000002.bin",
            "logs/0001_01_00_00.bin",
        ] {
            assert!(SnapshotName::parse(bad).is_err() && LogName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn differential_is_exactly_twenty_hex_digits() {
        assert_eq!(
            parse_differential(b"0000000000000001000a").unwrap().to_hex(),
            "0000000000000001000a"
        );
        assert!(parse_differential(b"0000000000000001000a\n").is_err());
        assert!(parse_differential(b"00").is_err());
    }
}
