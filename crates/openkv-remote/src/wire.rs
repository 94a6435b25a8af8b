//! The checks of a server's answers, client side. The mapping itself (requests to the wire,
//! entries and values from it) is the shared wire layer's (`openkv_proto::convert`); here the
//! answers of a server we must not trust blindly are checked against what was asked, and a
//! malformed one is [`Error::Protocol`].

use openkv_proto as proto;
use proto::convert::{self, WireError};
use proto::{AtomicWriteStatus, SnapshotReadStatus};

use crate::backend::{AtomicWrite, CommitOutcome, RawEntry, ReadRange};
use crate::error::{Error, Failure, Result};

/// A wire decoding failure in a server's answer: the server broke the protocol.
fn protocol(e: WireError) -> Error {
    Error::Protocol(e.0)
}

fn entry_from_wire(e: proto::KvEntry) -> Result<RawEntry> {
    convert::entry_from_wire(e).map_err(protocol)
}

/// The entries of a read, checked: one list per requested range, each within its range and
/// limit (a server that answers otherwise would corrupt `list`'s paging).
pub(super) fn snapshot_read_output(
    request: &[ReadRange],
    output: proto::SnapshotReadOutput,
    version: u32,
    strong: bool,
) -> Result<Vec<Vec<RawEntry>>> {
    if output.read_disabled
        || (version >= 3 && output.status == SnapshotReadStatus::SrReadDisabled as i32)
    {
        return Err(Error::Unavailable(Failure::new("the server has reads disabled")));
    }
    if version >= 3 && output.status != SnapshotReadStatus::SrSuccess as i32 {
        return Err(Error::Protocol(format!("snapshot read status {}", output.status)));
    }
    if strong && !output.read_is_strongly_consistent {
        return Err(Error::Protocol("a strong read was not answered strongly consistent".into()));
    }
    if output.ranges.len() != request.len() {
        return Err(Error::Protocol(format!(
            "{} ranges requested, {} answered",
            request.len(),
            output.ranges.len()
        )));
    }
    request
        .iter()
        .zip(output.ranges)
        .map(|(range, answer)| {
            if answer.values.len() > range.limit as usize {
                return Err(Error::Protocol(format!(
                    "{} entries answered for a limit of {}",
                    answer.values.len(),
                    range.limit
                )));
            }
            answer
                .values
                .into_iter()
                .map(|e| {
                    if e.key < range.start || e.key >= range.end {
                        return Err(Error::Protocol("an entry outside its read range".into()));
                    }
                    entry_from_wire(e)
                })
                .collect()
        })
        .collect()
}

/// The state of the watched `keys` after one `WatchOutput` frame, checked: one answer per key,
/// each entry for its own key. A key reported unchanged keeps its entry from `previous` (the
/// state after the last frame; `None` before the first, when every key must be reported).
pub(super) fn watch_output(
    keys: &[Vec<u8>],
    previous: Option<&[Option<RawEntry>]>,
    output: proto::WatchOutput,
) -> Result<Vec<Option<RawEntry>>> {
    match SnapshotReadStatus::try_from(output.status) {
        Ok(SnapshotReadStatus::SrSuccess) => {}
        Ok(SnapshotReadStatus::SrReadDisabled) => {
            return Err(Error::Unavailable(Failure::new("the server has reads disabled")))
        }
        _ => return Err(Error::Protocol(format!("watch status {}", output.status))),
    }
    if output.keys.len() != keys.len() {
        return Err(Error::Protocol(format!(
            "{} keys watched, {} answered",
            keys.len(),
            output.keys.len()
        )));
    }
    keys.iter()
        .zip(output.keys)
        .enumerate()
        .map(|(i, (key, answer))| {
            if !answer.changed {
                return match (previous, answer.entry_if_changed) {
                    (Some(previous), None) => Ok(previous[i].clone()),
                    (None, _) => Err(Error::Protocol(
                        "a watched key was reported unchanged before its first state".into(),
                    )),
                    (_, Some(_)) => {
                        Err(Error::Protocol("an unchanged watched key came with an entry".into()))
                    }
                };
            }
            match answer.entry_if_changed {
                None => Ok(None),
                Some(e) if e.key != *key => {
                    Err(Error::Protocol("a watch answer holds an entry of another key".into()))
                }
                Some(e) => entry_from_wire(e).map(Some),
            }
        })
        .collect()
}

pub(super) fn atomic_write_output(
    write: &AtomicWrite,
    output: proto::AtomicWriteOutput,
) -> Result<CommitOutcome> {
    match AtomicWriteStatus::try_from(output.status) {
        Ok(AtomicWriteStatus::AwSuccess) => Ok(CommitOutcome::Committed {
            versionstamp: convert::versionstamp_from_wire(&output.versionstamp)
                .map_err(protocol)?,
        }),
        Ok(AtomicWriteStatus::AwCheckFailure) => {
            if let Some(bad) =
                output.failed_checks.iter().find(|&&i| i as usize >= write.checks.len())
            {
                return Err(Error::Protocol(format!(
                    "failed check index {bad} of {} checks",
                    write.checks.len()
                )));
            }
            Ok(CommitOutcome::CheckFailed { failed_checks: output.failed_checks })
        }
        Ok(AtomicWriteStatus::AwWriteDisabled) => Err(Error::WriteDisabled),
        _ => Err(Error::Protocol(format!("atomic write status {}", output.status))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::versionstamp::Versionstamp;
    use openkv_core::Value;
    use proto::ValueEncoding;

    fn range(start: &[u8], end: &[u8], limit: u32) -> ReadRange {
        ReadRange { start: start.to_vec(), end: end.to_vec(), limit, reverse: false }
    }

    fn entry(key: &[u8], versionstamp: Vec<u8>, encoding: ValueEncoding) -> proto::KvEntry {
        proto::KvEntry {
            key: key.to_vec(),
            value: 7u64.to_le_bytes().to_vec(),
            encoding: encoding as i32,
            versionstamp,
        }
    }

    fn answer(entries: Vec<Vec<proto::KvEntry>>) -> proto::SnapshotReadOutput {
        proto::SnapshotReadOutput {
            ranges: entries.into_iter().map(|values| proto::ReadRangeOutput { values }).collect(),
            read_disabled: false,
            read_is_strongly_consistent: true,
            status: SnapshotReadStatus::SrSuccess as i32,
        }
    }

    #[test]
    fn a_good_answer_decodes() {
        let request = [range(b"a", b"c", 2)];
        let good = answer(vec![vec![entry(b"b", vec![0; 10], ValueEncoding::VeLe64)]]);
        let out = snapshot_read_output(&request, good, 3, true).unwrap();
        assert_eq!(out[0][0].value, Value::U64(7));
    }

    #[test]
    fn impossible_answers_are_protocol_errors() {
        let request = [range(b"a", b"c", 1)];
        let ok = || entry(b"b", vec![0; 10], ValueEncoding::VeLe64);
        let cases = [
            (
                "outside the range",
                answer(vec![vec![entry(b"c", vec![0; 10], ValueEncoding::VeLe64)]]),
            ),
            ("over the limit", answer(vec![vec![ok(), ok()]])),
            ("too many ranges", answer(vec![vec![], vec![]])),
            (
                "short versionstamp",
                answer(vec![vec![entry(b"b", vec![0; 9], ValueEncoding::VeLe64)]]),
            ),
            (
                "unknown encoding",
                answer(vec![vec![entry(b"b", vec![0; 10], ValueEncoding::VeUnspecified)]]),
            ),
            (
                "not strong",
                proto::SnapshotReadOutput {
                    read_is_strongly_consistent: false,
                    ..answer(vec![vec![]])
                },
            ),
            ("status unset", proto::SnapshotReadOutput { status: 0, ..answer(vec![vec![]]) }),
        ];
        for (why, output) in cases {
            let result = snapshot_read_output(&request, output, 3, true);
            assert!(matches!(result, Err(Error::Protocol(_))), "{why}: {result:?}");
        }
        let mut lying = answer(vec![vec![]]);
        lying.read_disabled = true;
        assert!(matches!(
            snapshot_read_output(&request, lying, 3, true),
            Err(Error::Unavailable(_))
        ));
        // Version 1 and 2 servers do not send a status.
        let v1 = proto::SnapshotReadOutput { status: 0, ..answer(vec![vec![ok()]]) };
        assert!(snapshot_read_output(&request, v1, 1, true).is_ok());
    }

    #[test]
    fn write_answers_are_checked() {
        let write = AtomicWrite {
            checks: vec![crate::backend::Check { key: b"k".to_vec(), versionstamp: None }],
            ..AtomicWrite::default()
        };
        let out = |status: AtomicWriteStatus, versionstamp: Vec<u8>, failed_checks: Vec<u32>| {
            proto::AtomicWriteOutput { status: status as i32, versionstamp, failed_checks }
        };
        let committed =
            atomic_write_output(&write, out(AtomicWriteStatus::AwSuccess, vec![1; 10], vec![]));
        assert_eq!(committed.unwrap().versionstamp(), Some(Versionstamp([1; 10])));
        let failed =
            atomic_write_output(&write, out(AtomicWriteStatus::AwCheckFailure, vec![], vec![0]));
        assert_eq!(failed.unwrap(), CommitOutcome::CheckFailed { failed_checks: vec![0] });
        for (why, bad) in [
            ("short versionstamp", out(AtomicWriteStatus::AwSuccess, vec![1; 3], vec![])),
            ("check index out of range", out(AtomicWriteStatus::AwCheckFailure, vec![], vec![1])),
            ("status unset", out(AtomicWriteStatus::AwUnspecified, vec![], vec![])),
        ] {
            assert!(matches!(atomic_write_output(&write, bad), Err(Error::Protocol(_))), "{why}");
        }
        let disabled =
            atomic_write_output(&write, out(AtomicWriteStatus::AwWriteDisabled, vec![], vec![]));
        assert!(matches!(disabled, Err(Error::WriteDisabled)));
    }

    #[test]
    fn watch_frames_update_the_state_and_are_checked() {
        let keys = vec![b"a".to_vec(), b"b".to_vec()];
        let changed = |e: Option<proto::KvEntry>| proto::WatchKeyOutput {
            changed: true,
            entry_if_changed: e,
        };
        let unchanged = proto::WatchKeyOutput { changed: false, entry_if_changed: None };
        let frame = |keys: Vec<proto::WatchKeyOutput>| proto::WatchOutput {
            status: SnapshotReadStatus::SrSuccess as i32,
            keys,
        };
        let a = || entry(b"a", vec![1; 10], ValueEncoding::VeLe64);
        let first = watch_output(&keys, None, frame(vec![changed(Some(a())), changed(None)]));
        let first = first.unwrap();
        assert_eq!(first[0].as_ref().map(|e| e.versionstamp), Some(Versionstamp([1; 10])));
        assert_eq!(first[1], None);
        // "Unchanged" keeps the previous entry; "changed" without an entry means absent.
        let next = watch_output(&keys, Some(&first), frame(vec![unchanged.clone(), changed(None)]));
        assert_eq!(next.unwrap(), first);
        let gone = watch_output(&keys, Some(&first), frame(vec![changed(None), unchanged.clone()]));
        assert_eq!(gone.unwrap(), vec![None, None]);

        let bad = [
            ("unchanged before any state", None, frame(vec![unchanged.clone(), changed(None)])),
            ("one answer for two keys", Some(&first), frame(vec![changed(None)])),
            ("entry of another key", Some(&first), frame(vec![changed(None), changed(Some(a()))])),
            (
                "short versionstamp",
                Some(&first),
                frame(vec![
                    changed(Some(entry(b"a", vec![1; 3], ValueEncoding::VeLe64))),
                    unchanged,
                ]),
            ),
            ("status unset", Some(&first), proto::WatchOutput { status: 0, keys: vec![] }),
        ];
        for (why, previous, output) in bad {
            let result = watch_output(&keys, previous.map(|p| p.as_slice()), output);
            assert!(matches!(result, Err(Error::Protocol(_))), "{why}: {result:?}");
        }
    }
}
