//! openkv's queue-delivery extension of KV Connect (docs/protocol-extensions.md): the JSON
//! bodies of `POST <endpoint>/openkv/queue/{take,wait,renew,finish}` and the bounds the server
//! enforces — one definition for the server, which refuses what is out of bounds, and the
//! client, which asks within them.

use std::ops::RangeInclusive;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Most messages one `take` hands out.
pub const MAX_TAKE: usize = 100;
/// Longest a `wait` may be asked to wait, in milliseconds.
pub const MAX_WAIT_MS: u64 = 60_000;
/// Shortest and longest lease a remote listener may ask for, in milliseconds.
pub const LEASE_RANGE_MS: RangeInclusive<u64> = 1_000..=300_000;
/// Where the extension lives, below the data-path endpoint.
pub const PATH_PREFIX: &str = "openkv/queue/";

/// A lease in milliseconds, within [`LEASE_RANGE_MS`]: a client asking within the bounds beats
/// being refused.
pub fn lease_ms_within_bounds(lease: Duration) -> u64 {
    let ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
    ms.clamp(*LEASE_RANGE_MS.start(), *LEASE_RANGE_MS.end())
}

/// `take`: lease up to `max` due messages for `lease_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TakeRequest {
    /// How many messages at most (1 to [`MAX_TAKE`]).
    pub max: usize,
    /// The lease, within [`LEASE_RANGE_MS`].
    pub lease_ms: u64,
}

/// The answer to `take`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TakeResponse {
    /// The messages taken, earliest due first.
    pub messages: Vec<TakenMessage>,
}

/// One message taken by `take`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TakenMessage {
    /// The message id, for `renew` and `finish`.
    pub id: String,
    /// The V8-serialized message, base64 (standard alphabet, padded).
    pub payload: String,
    /// When it was due, Unix milliseconds.
    pub due_ms: i64,
    /// Which delivery attempt this is, from 1.
    pub attempt: u32,
}

/// `wait`: answer once a message is due, or after `timeout_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaitRequest {
    /// At most [`MAX_WAIT_MS`].
    pub timeout_ms: u64,
}

/// The answer to `wait`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitResponse {
    /// A message is due (`false`: the timeout passed, or the server is stopping).
    pub due: bool,
}

/// `renew`: extend the leases of running messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenewRequest {
    /// The messages' ids.
    pub ids: Vec<String>,
    /// The new lease from now, within [`LEASE_RANGE_MS`].
    pub lease_ms: u64,
}

/// `finish`: the outcomes of delivery attempts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FinishRequest {
    /// One outcome per message.
    pub results: Vec<FinishResult>,
}

/// The outcome of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FinishResult {
    /// The message id.
    pub id: String,
    /// The handler succeeded.
    pub delivered: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(v: T) {
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), v, "{json}");
    }

    #[test]
    fn every_message_round_trips_in_the_documented_json() {
        round_trip(TakeRequest { max: 3, lease_ms: 5000 });
        round_trip(WaitRequest { timeout_ms: 20_000 });
        round_trip(RenewRequest { ids: vec!["a".into()], lease_ms: 1000 });
        round_trip(FinishRequest {
            results: vec![FinishResult { id: "a".into(), delivered: false }],
        });
        round_trip(TakeResponse {
            messages: vec![TakenMessage {
                id: "a".into(),
                payload: "AAE=".into(),
                due_ms: 7,
                attempt: 2,
            }],
        });
        round_trip(WaitResponse { due: true });
        // The field names are the protocol (docs/protocol-extensions.md): camelCase.
        let take = serde_json::to_value(TakeRequest { max: 1, lease_ms: 2 }).unwrap();
        assert_eq!(take, serde_json::json!({"max": 1, "leaseMs": 2}));
        assert!(serde_json::from_str::<TakeRequest>(r#"{"max":1,"leaseMs":2,"x":0}"#).is_err());
    }

    #[test]
    fn leases_are_asked_within_the_servers_bounds() {
        assert_eq!(lease_ms_within_bounds(Duration::from_millis(10)), 1_000);
        assert_eq!(lease_ms_within_bounds(Duration::from_secs(5)), 5_000);
        assert_eq!(lease_ms_within_bounds(Duration::from_secs(3600)), 300_000);
        assert_eq!(lease_ms_within_bounds(Duration::MAX), 300_000);
    }
}
