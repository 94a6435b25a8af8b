//! The engine's errors.

use std::sync::Arc;

/// Everything that can go wrong in openkv.
///
/// Limit violations carry Deno's own message text so that a user sees the same words in Rust,
/// over KV Connect and in the Deno CLI.
#[derive(Debug, thiserror::Error, Clone)]
#[non_exhaustive]
pub enum Error {
    /// A key is not valid where it was used (empty key in a write, unencodable bigint, …).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// Bytes that should be an encoded key are not one (unknown tag, truncated part, bad UTF-8).
    #[error("invalid encoded key: {0}")]
    InvalidEncodedKey(String),
    /// A stored or supplied value is malformed (unknown encoding, LE64 not 8 bytes, …).
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// A stored value does not fit the Rust type it was decoded into (a string where a number
    /// was expected, an integer out of range, …).
    #[error("the stored value does not fit the requested type: {0}")]
    Deserialize(String),
    /// A versionstamp is not 10 bytes / 20 hex digits.
    #[error("invalid versionstamp: {0}")]
    InvalidVersionstamp(String),
    /// A key of a write is over [`Limits::max_write_key_size`](crate::Limits).
    #[error("Key too large for write (max {max} bytes)")]
    KeyTooLargeForWrite {
        /// The limit.
        max: usize,
        /// The encoded size of the key.
        size: usize,
    },
    /// A key of a read or check is over [`Limits::max_read_key_size`](crate::Limits).
    #[error("Key too large for read (max {max} bytes)")]
    KeyTooLargeForRead {
        /// The limit.
        max: usize,
        /// The encoded size of the key.
        size: usize,
    },
    /// A value or enqueue payload is over [`Limits::max_value_size`](crate::Limits).
    #[error("Value too large (max {max} bytes)")]
    ValueTooLarge {
        /// The limit.
        max: usize,
        /// The size of the value.
        size: usize,
    },
    /// A snapshot read has more ranges (a `get_many` more keys) than allowed.
    #[error("Too many ranges (max {max})")]
    TooManyRanges {
        /// The limit.
        max: usize,
    },
    /// A watch follows more keys than [`Limits::max_watched_keys`](crate::Limits) (Deno's
    /// text).
    #[error("Too many keys (max {max})")]
    TooManyWatchedKeys {
        /// The limit.
        max: usize,
    },
    /// A read asks for more entries than allowed.
    #[error("Too many entries (max {max})")]
    TooManyEntries {
        /// The limit.
        max: usize,
    },
    /// An atomic write has more checks than allowed.
    #[error("Too many checks (max {max})")]
    TooManyChecks {
        /// The limit.
        max: usize,
    },
    /// An atomic write has more mutations and enqueues than allowed.
    #[error("Too many mutations (max {max})")]
    TooManyMutations {
        /// The limit.
        max: usize,
    },
    /// An atomic write is larger in total than allowed.
    #[error("Total mutation size too large (max {max} bytes)")]
    TotalMutationSizeTooLarge {
        /// The limit.
        max: usize,
    },
    /// The keys of an atomic write are larger in total than allowed.
    #[error("Total key size too large (max {max} bytes)")]
    TotalKeySizeTooLarge {
        /// The limit.
        max: usize,
    },
    /// A list selector is malformed (start outside the prefix, start after end, …).
    #[error("{0}")]
    InvalidSelector(String),
    /// A list cursor is not valid for its selector.
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
    /// A list or read option is out of range (`limit` 0, …).
    #[error("{0}")]
    InvalidOption(String),
    /// An enqueue's options are out of range (delay, backoff schedule, keys_if_undelivered).
    #[error("{0}")]
    InvalidEnqueue(String),
    /// sum/min/max met a value or operand that is not a `KvU64`, e.g.
    /// "Failed to perform 'sum' mutation on a non-U64 value in the database". Nothing of the
    /// atomic write was applied.
    #[error("{0}")]
    TypeMismatch(String),
    /// The file's schema is newer than this build understands, or not Deno KV's.
    #[error("unsupported database schema: {0}")]
    UnsupportedSchema(String),
    /// The disk is full; the write was not applied. The store stays usable.
    #[error("disk full: the write was not applied ({0})")]
    DiskFull(String),
    /// Another process held the database's write lock for longer than the busy timeout.
    #[error("database is busy: another connection held the write lock for too long ({0})")]
    Busy(String),
    /// An I/O or storage error. If it struck a write, the store is now poisoned.
    #[error("storage error: {0}")]
    Storage(String),
    /// An earlier I/O failure or a panic in a background task left the store in an unknown
    /// state; it refuses writes until it is reopened.
    #[error("the store refuses writes after an earlier failure (reopen it): {0}")]
    Poisoned(Arc<str>),
    /// A bug in openkv was detected before it could do harm (the operation was rolled back).
    /// Please report it.
    #[error("internal error (please report it): {0}")]
    Internal(String),
    /// The `Kv` was closed.
    #[error("the database is closed")]
    Closed,
    /// A remote server refused the request with a 4xx status; its own message follows.
    /// Sending the same request again cannot succeed.
    #[error("the server refused the request (HTTP {status}): {message}")]
    Remote {
        /// The HTTP status.
        status: u16,
        /// The server's plain-text explanation.
        message: String,
    },
    /// The server has writes disabled (KV Connect's `AW_WRITE_DISABLED`, e.g. a read-only
    /// `openkv serve`).
    #[error("the database is read-only: the server has writes disabled")]
    WriteDisabled,
    /// A remote server could not be reached, or kept failing, for longer than the retry
    /// timeout. Nothing was written by the failed call.
    #[error("the remote database is unavailable: {0}")]
    Unavailable(String),
    /// A write was sent but the connection failed before its answer arrived: it may or may not
    /// have been applied. Read the keys to find out before writing again.
    #[error("the write was sent but its outcome is unknown (the answer was lost): {0}")]
    OutcomeUnknown(String),
    /// A remote server answered something the protocol does not allow.
    #[error("the server broke the KV Connect protocol: {0}")]
    Protocol(String),
    /// The operation is not available on this backend.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl Error {
    /// True for errors that say the request itself was wrong (bad key, limit, type mismatch):
    /// retrying the same request cannot succeed. A server maps these to 4xx.
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            Error::Storage(_)
                | Error::Poisoned(_)
                | Error::Closed
                | Error::DiskFull(_)
                | Error::Busy(_)
                | Error::UnsupportedSchema(_)
                | Error::Internal(_)
                | Error::Unavailable(_)
                | Error::OutcomeUnknown(_)
                | Error::Protocol(_)
        )
    }
}

/// SQLite's errors, classified by their code (never by text). Here, not in `openkv-sqlite`,
/// because Rust's orphan rule allows the `?` conversion only in the crate of `Error`; behind
/// the `rusqlite` feature, which only `openkv-sqlite` turns on.
#[cfg(feature = "rusqlite")]
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => Error::DiskFull(e.to_string()),
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
                Error::Busy(e.to_string())
            }
            _ => Error::Storage(e.to_string()),
        }
    }
}

/// `Result` with openkv's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
