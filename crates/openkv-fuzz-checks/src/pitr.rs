//! Continuous backups (`openkv-backup`): the objects a restore reads from a bucket or a
//! directory anyone may have written to — Deno Deploy's format, openkv's seals and markers.

use openkv_backup::{LogName, SnapshotName};
use openkv_proto::backup as wire;

/// Target `pitr_object`: the first byte picks what the rest is — 0/1: a mutation range
/// (unsealed allowed / openkv's seal required), 2/3: a snapshot range (likewise), 4: an object
/// name. Decoding refuses or succeeds, never panics; what decodes is consistent: commits in
/// increasing boundary order, one change per key in key order, first/last versionstamps those
/// of the entries; a snapshot range encodes back to one that decodes to the same entries; a
/// name that parses prints back to a name that parses to the same.
pub fn pitr_object(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    match selector % 5 {
        s @ (0 | 1) => {
            let Ok(range) = wire::decode_mutation_range(rest, s == 1) else { return };
            assert!(range.commits.windows(2).all(|w| w[0].boundary < w[1].boundary));
            for commit in &range.commits {
                assert!(commit.changes.windows(2).all(|w| w[0].0 < w[1].0), "keys sorted, once");
            }
            if let Some(last) = range.commits.last() {
                assert_eq!(
                    &range.last[..10],
                    last.boundary.as_bytes(),
                    "the last entry ends the last commit"
                );
                assert!(range.first <= range.last);
            }
        }
        s @ (2 | 3) => {
            let Ok(entries) = wire::decode_snapshot_range(rest, s == 3) else { return };
            let again = wire::encode_snapshot_range(&entries);
            assert_eq!(wire::decode_snapshot_range(&again, true).unwrap(), entries);
        }
        _ => {
            let Ok(name) = std::str::from_utf8(rest) else { return };
            if let Ok(parsed) = LogName::parse(name) {
                assert_eq!(LogName::parse(&parsed.object()).unwrap(), parsed);
            }
            if let Ok(parsed) = SnapshotName::parse(name) {
                assert_eq!(SnapshotName::parse(&parsed.object()).unwrap(), parsed);
            }
        }
    }
}
