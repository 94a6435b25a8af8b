//! The engine's errors, and the class of each (what a caller should do about it).

use std::fmt;
use std::sync::Arc;

/// Everything that can go wrong in openkv.
///
/// Limit violations carry Deno's own message text so that a user sees the same words in Rust,
/// over KV Connect and in the Deno CLI.
///
/// What to *do* about an error is its [`class`](Error::class): decide retries, HTTP statuses
/// and the like by class (or by matching variants), never by the message's text. Errors that
/// come from another library ([`rusqlite`], `tokio-postgres`, `reqwest`, [`std::io`],
/// `serde_json`) keep it: [`std::error::Error::source`] walks to it, so a caller can downcast.
#[derive(Debug, thiserror::Error, Clone)]
#[non_exhaustive]
pub enum Error {
    /// A key is not valid where it was used (empty key in a write, unencodable bigint, …).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// Bytes that should be an encoded key are not one (unknown tag, truncated part, bad UTF-8).
    #[error("invalid encoded key: {0}")]
    InvalidEncodedKey(String),
    /// A supplied value is malformed (unknown encoding, LE64 not 8 bytes, a Rust value that
    /// cannot be stored, …). A *stored* row that does not decode is [`Error::Corrupt`].
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
    /// The file is not a usable backup (not SQLite, fails `PRAGMA integrity_check`, not Deno
    /// KV's schema or another version of it). Given to a restore, it is the caller's mistake:
    /// nothing was changed; restore another file.
    #[error("{0}")]
    InvalidBackup(#[source] Failure),
    /// The database's schema is newer than this build understands, or not Deno KV's. Use a
    /// newer openkv, or another file or PostgreSQL schema.
    #[error("unsupported database schema: {0}")]
    UnsupportedSchema(String),
    /// The disk is full; the write was not applied. The store stays usable: free some space
    /// and write again.
    #[error("disk full: the write was not applied ({0})")]
    DiskFull(#[source] Failure),
    /// Another process held the database's write lock for longer than the busy timeout.
    /// Nothing was applied; try again once that process is done.
    #[error("database is busy: another connection held the write lock for too long ({0})")]
    Busy(#[source] Failure),
    /// An I/O or storage error (the file, the directory, SQLite or PostgreSQL failed). If it
    /// struck a SQLite write, the store is now poisoned ([`Error::Poisoned`]): reopen it once
    /// the storage is healthy.
    #[error("storage error: {0}")]
    Storage(#[source] Failure),
    /// A stored row is malformed: a queue message whose JSON columns are not the JSON Deno
    /// writes, a value of an unknown encoding or a wrong length, a column of the wrong type.
    /// Only that row is affected — the store goes on (it is not poisoned). Fix or delete the
    /// row named in the message (e.g. with `sqlite3`), or restore a backup.
    #[error("corrupt stored data: {0}")]
    Corrupt(#[source] Failure),
    /// An earlier I/O failure or a panic in a background task left the store in an unknown
    /// state; it refuses writes until it is reopened. The earlier failure is the source.
    #[error("the store refuses writes after an earlier failure (reopen it): {0}")]
    Poisoned(#[source] Failure),
    /// A bug in openkv was detected before it could do harm (the operation was rolled back).
    /// Please report it.
    #[error("internal error (please report it): {0}")]
    Internal(String),
    /// The `Kv` was closed; open the database again to go on.
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
    /// A remote server (or PostgreSQL) could not be reached, or kept failing, for longer than
    /// the retry timeout. Nothing was written by the failed call; try again later.
    #[error("the remote database is unavailable: {0}")]
    Unavailable(#[source] Failure),
    /// A write was sent but the connection failed before its answer arrived: it may or may not
    /// have been applied. Read the keys to find out before writing again.
    #[error("the write was sent but its outcome is unknown (the answer was lost): {0}")]
    OutcomeUnknown(#[source] Failure),
    /// A remote server answered something the protocol does not allow.
    #[error("the server broke the KV Connect protocol: {0}")]
    Protocol(String),
    /// The operation is not available on this backend (the message says what to use instead).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An operator's change (`QueueChange::DueNow`) met a queue message that is being
    /// delivered: it is leased to a listener, whose attempt decides what happens next. Nothing
    /// was changed; wait for the attempt to end, or remove the message. (A conflict with the
    /// message's state, as HTTP's 409.)
    #[error("queue message {id} is being delivered (leased to a listener until its attempt ends): it cannot be made due now")]
    QueueMessageInFlight {
        /// The message's id.
        id: String,
    },
}

/// What an error means for its caller: whether to fix the request, retry, reopen the store, or
/// check what happened. [`Error::class`] gives it; `openkv serve` maps it to an HTTP status and
/// the SQLite backend decides by it whether a failure poisons the store.
///
/// Every variant of [`Error`] has exactly one class, chosen in one exhaustive `match`, so a
/// new variant cannot be added without deciding what it means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The request itself is wrong (bad key, over a limit, type mismatch, invalid backup,
    /// an operation this backend does not have, a remote 4xx, a change that conflicts with a
    /// queue message's state): the same request cannot succeed as things stand. A server
    /// answers 4xx.
    Client,
    /// A passing condition (a busy lock, a full disk, an unreachable server or PostgreSQL):
    /// nothing was applied and the same request may succeed later. A server answers 503.
    Transient,
    /// A write may or may not have been applied (its answer was lost). Not safe to repeat
    /// blindly: read first. Kept apart from `Transient` because retrying could apply it twice.
    /// A server answers 500.
    OutcomeUnknown,
    /// The store refuses writes after an earlier fatal failure, until it is reopened. Apart
    /// from `Storage` because it is the consequence, not the failure: a supervisor restarts
    /// or reopens rather than retries. A server answers 503.
    Poisoned,
    /// The handle was closed (or the server is shutting down). Apart from `Transient`: this
    /// handle will never work again. A server answers 503.
    Closed,
    /// The storage layer failed (I/O error, SQLite or PostgreSQL error): on the SQLite write
    /// path it poisons the store, since what reached the disk is unknown. A server answers 500.
    Storage,
    /// A stored row is malformed. It concerns that row only, so unlike `Storage` it never
    /// poisons the store; retrying does not help until the row is repaired. A server answers
    /// 500.
    Corrupt,
    /// The database's schema is one this build cannot use (newer, or not Deno KV's): an
    /// operator's matter (upgrade openkv), neither the request's fault nor a passing state.
    /// A server answers 500.
    Incompatible,
    /// A bug, in openkv or in the server it talks to (a KV Connect protocol violation):
    /// report it. A server answers 500.
    Internal,
}

impl ErrorClass {
    /// True if an error of this class on a backend's write path leaves its storage in a state
    /// nobody can vouch for, so the backend must poison itself: only [`ErrorClass::Storage`].
    /// A corrupt row concerns that row only; a full disk or a busy lock passes. Decided here,
    /// in one exhaustive `match`, for every backend (in this crate or outside it).
    pub fn poisons_the_store(self) -> bool {
        match self {
            ErrorClass::Storage => true,
            ErrorClass::Client
            | ErrorClass::Transient
            | ErrorClass::OutcomeUnknown
            | ErrorClass::Poisoned
            | ErrorClass::Closed
            | ErrorClass::Corrupt
            | ErrorClass::Incompatible
            | ErrorClass::Internal => false,
        }
    }
}

impl Error {
    /// What this error means for its caller; see [`ErrorClass`].
    pub fn class(&self) -> ErrorClass {
        use ErrorClass as C;
        // No wildcard: a new variant does not compile until it is classified here.
        match self {
            Error::InvalidKey(_)
            | Error::InvalidEncodedKey(_)
            | Error::InvalidValue(_)
            | Error::Deserialize(_)
            | Error::InvalidVersionstamp(_)
            | Error::KeyTooLargeForWrite { .. }
            | Error::KeyTooLargeForRead { .. }
            | Error::ValueTooLarge { .. }
            | Error::TooManyRanges { .. }
            | Error::TooManyWatchedKeys { .. }
            | Error::TooManyEntries { .. }
            | Error::TooManyChecks { .. }
            | Error::TooManyMutations { .. }
            | Error::TotalMutationSizeTooLarge { .. }
            | Error::TotalKeySizeTooLarge { .. }
            | Error::InvalidSelector(_)
            | Error::InvalidCursor(_)
            | Error::InvalidOption(_)
            | Error::InvalidEnqueue(_)
            | Error::TypeMismatch(_)
            | Error::InvalidBackup(_)
            | Error::Remote { .. }
            | Error::WriteDisabled
            | Error::Unsupported(_)
            | Error::QueueMessageInFlight { .. } => C::Client,
            Error::DiskFull(_) | Error::Busy(_) | Error::Unavailable(_) => C::Transient,
            Error::OutcomeUnknown(_) => C::OutcomeUnknown,
            Error::Poisoned(_) => C::Poisoned,
            Error::Closed => C::Closed,
            Error::Storage(_) => C::Storage,
            Error::Corrupt(_) => C::Corrupt,
            Error::UnsupportedSchema(_) => C::Incompatible,
            Error::Internal(_) | Error::Protocol(_) => C::Internal,
        }
    }

    /// True for errors that say the request itself was wrong (bad key, limit, type mismatch):
    /// retrying the same request cannot succeed. A server maps these to 4xx.
    pub fn is_client_error(&self) -> bool {
        self.class() == ErrorClass::Client
    }

    /// A storage failure described in words, with no underlying error.
    pub fn storage(message: impl Into<String>) -> Error {
        Error::Storage(Failure::new(message))
    }

    /// A storage failure caused by `source` (an [`std::io::Error`], say), in a context
    /// (`"creating backup.sqlite3"`); the message is `context: source`.
    pub fn storage_caused(
        context: impl fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Storage(Failure::caused(context, source))
    }

    /// A malformed stored row, described in words.
    pub fn corrupt(message: impl Into<String>) -> Error {
        Error::Corrupt(Failure::new(message))
    }

    /// A malformed stored row (`what`, e.g. `"queue message 7: its backoff_schedule"`) and why
    /// it does not decode.
    pub fn corrupt_caused(
        what: impl fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Corrupt(Failure::caused(what, source))
    }
}

/// The words and the underlying error of a failure that came from elsewhere (the file system,
/// SQLite, PostgreSQL, the network, a stored row's JSON): the payload of [`Error::Storage`],
/// [`Error::Corrupt`], [`Error::Unavailable`], [`Error::Poisoned`] and their kind.
///
/// Its text is complete on its own — it already ends with the underlying error's message, so
/// printing an [`Error`] shows the cause without walking the chain (the texts are the ones
/// openkv always printed) — and [`source`](std::error::Error::source) gives the underlying
/// error itself, typed, for downcasting. Cheap to clone: the source is shared.
///
/// ```
/// use openkv_core::{Error, Failure};
///
/// let io = std::io::Error::new(std::io::ErrorKind::Other, "disk on fire");
/// let err = Error::Storage(Failure::caused("writing the batch", io));
/// // The text carries the cause; the chain carries it typed.
/// assert!(err.to_string().contains("disk on fire"));
/// let mut source = std::error::Error::source(&err);
/// let mut found = None;
/// while let Some(cause) = source {
///     found = found.or(cause.downcast_ref::<std::io::Error>());
///     source = cause.source();
/// }
/// assert_eq!(found.map(|e| e.to_string()), Some("disk on fire".to_string()));
/// ```
#[derive(Clone)]
pub struct Failure {
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Failure {
    /// A failure described in words only.
    pub fn new(message: impl Into<String>) -> Failure {
        Failure { message: message.into(), source: None }
    }

    /// A failure caused by `source`, in a context: the message is `context: source`.
    pub fn caused(
        context: impl fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Failure {
        Failure { message: format!("{context}: {source}"), source: Some(Arc::new(source)) }
    }

    /// A failure with its own message and an underlying error (shared, not copied).
    pub fn with_source(
        message: impl Into<String>,
        source: Arc<dyn std::error::Error + Send + Sync + 'static>,
    ) -> Failure {
        Failure { message: message.into(), source: Some(source) }
    }

    /// The failure's text (the same as its `Display`).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Failure");
        d.field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The underlying error itself (not the `Arc`, whose own `Error` impl would skip a link
        // of the chain): what a caller downcasts to.
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// SQLite's errors, classified by their code (never by text). Here, not in `openkv-sqlite`,
/// because Rust's orphan rule allows the `?` conversion only in the crate of `Error`; behind
/// the `rusqlite` feature, which only `openkv-sqlite` turns on.
#[cfg(feature = "rusqlite")]
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        // Column types and conversions fail only on a row that is not what its table says:
        // that row is corrupt, the database is fine.
        let row_does_not_decode = matches!(
            e,
            rusqlite::Error::FromSqlConversionFailure(..)
                | rusqlite::Error::InvalidColumnType(..)
                | rusqlite::Error::IntegralValueOutOfRange(..)
                | rusqlite::Error::Utf8Error(..)
        );
        if row_does_not_decode {
            return Error::corrupt_caused("a stored row does not decode", e);
        }
        let code = e.sqlite_error_code();
        // The text is SQLite's own, as it always was; the error itself is kept as the source.
        let failure = Failure::with_source(e.to_string(), Arc::new(e));
        match code {
            Some(ErrorCode::DiskFull) => Error::DiskFull(failure),
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => Error::Busy(failure),
            _ => Error::Storage(failure),
        }
    }
}

/// `Result` with openkv's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    // The conversion exists only with the feature (openkv-sqlite turns it on).
    #[cfg(feature = "rusqlite")]
    #[test]
    fn sqlite_errors_keep_their_source_and_class() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let e: Error = conn.execute("not sql", []).unwrap_err().into();
        assert_eq!(e.class(), ErrorClass::Storage);
        let source = std::error::Error::source(&e).expect("a source");
        let sqlite = std::error::Error::source(source).expect("the rusqlite error");
        assert!(sqlite.downcast_ref::<rusqlite::Error>().is_some(), "{sqlite:?}");
        // The text is SQLite's, as before the source was kept.
        assert!(e.to_string().starts_with("storage error: near \"not\""), "{e}");

        let row: Error =
            conn.query_row("select 'text'", [], |r| r.get::<_, i64>(0)).unwrap_err().into();
        assert_eq!(row.class(), ErrorClass::Corrupt);
    }

    #[test]
    fn classes() {
        assert!(Error::TooManyChecks { max: 10 }.is_client_error());
        assert!(Error::Unsupported("x".into()).is_client_error());
        // The request conflicts with the message's state: the caller's to resolve, not a
        // server failure.
        assert!(Error::QueueMessageInFlight { id: "m".into() }.is_client_error());
        assert_eq!(Error::corrupt("x").class(), ErrorClass::Corrupt);
        assert!(!Error::corrupt("x").is_client_error());
        assert_eq!(Error::storage("x").class(), ErrorClass::Storage);
        assert_eq!(Error::Closed.class(), ErrorClass::Closed);
    }
}
