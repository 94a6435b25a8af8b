//! The end of a queue delivery attempt, decided once for every backend: remove the message,
//! retry it after the next backoff interval, or — out of retries — write its payload to its
//! dead-letter keys.

use super::plan::{to_json, Row, Rows};
use crate::backend::ChangeEvent;
use crate::error::Result;
use crate::queue::parse_stored_json as parse;
use crate::value::Value;
use crate::versionstamp::Versionstamp;

/// What a backend does with a running message whose attempt ended.
///
/// Deliberately not `#[non_exhaustive]`: every backend must carry out every decision, so a new
/// one must break the build of each backend (in or outside this crate) until it handles it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    /// Its delivery is over: delete the message (and its attempt count). If the last attempt
    /// failed, `dead_letters` are the keys that now receive its payload (see
    /// [`dead_letter_rows`]); empty when it was delivered.
    Remove {
        /// Where the payload goes, in the order the message lists them.
        dead_letters: Vec<Vec<u8>>,
    },
    /// It failed and has retries left: due again at `due_ms`, with the rest of its schedule.
    Retry {
        /// When it is due again, Unix milliseconds.
        due_ms: i64,
        /// The backoff schedule left after this retry, as the JSON column stores it.
        backoff_schedule: String,
    },
}

/// Decides the end of an attempt of message `id` from its stored JSON columns
/// (`backoff_schedule`, `keys_if_undelivered`). A column that is not the JSON Deno writes is a
/// corrupt row, reported as an error.
pub fn finish_attempt(
    id: &str,
    backoff_schedule: &str,
    keys_if_undelivered: &str,
    delivered: bool,
    now_ms: i64,
) -> Result<Finish> {
    if delivered {
        return Ok(Finish::Remove { dead_letters: Vec::new() });
    }
    let mut schedule: Vec<u32> = parse("backoff_schedule", id, backoff_schedule)?;
    if !schedule.is_empty() {
        let wait = schedule.remove(0);
        return Ok(Finish::Retry {
            due_ms: now_ms.saturating_add(i64::from(wait)),
            backoff_schedule: to_json(&schedule)?,
        });
    }
    let keys: Vec<Vec<u8>> = parse("keys_if_undelivered", id, keys_if_undelivered)?;
    tracing::warn!(
        "openkv: queue message {id} failed its last attempt; writing it to {} key(s)",
        keys.len()
    );
    Ok(Finish::Remove { dead_letters: keys })
}

/// The rows and the change event of the dead-letter writes of one finish call: every
/// `(key, V8 payload)` stored at `vs`, never expiring (a key listed twice gets the later
/// payload). `None` when there are none: nothing to write, no version to take.
pub fn dead_letter_rows(
    letters: Vec<(Vec<u8>, Vec<u8>)>,
    vs: Versionstamp,
) -> Option<(Rows, ChangeEvent)> {
    if letters.is_empty() {
        return None;
    }
    let keys: Vec<Vec<u8>> = letters.iter().map(|(k, _)| k.clone()).collect();
    let rows = letters
        .into_iter()
        .map(|(key, payload)| (key, Some(Row::new(&Value::V8(payload), vs, None))))
        .collect();
    Some((rows, ChangeEvent { versionstamp: vs, keys: keys.into() }))
}
