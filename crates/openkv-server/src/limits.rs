//! Every limit of the server, in one place: how much of the server one client may hold —
//! connections, time without sending a request, header and body bytes, long-lived watch
//! streams and queue long polls — so that a slow, broken or hostile client cannot starve the
//! others. [`ServerLimits`] holds the settings (each default a named constant below, with the
//! reason for its value), set with [`ServerConfig::limits`](crate::ServerConfig::limits);
//! `Admission` holds the counters the handlers check.
//!
//! The store's own limits (key and value sizes, mutations per write, keys per watch) are
//! [`openkv::Limits`], checked once in `Kv`; these are the server's.
//!
//! | limit | default | at the limit |
//! |---|---|---|
//! | [`header_timeout`](ServerLimits::header_timeout) | [`DEFAULT_HEADER_TIMEOUT`] | connection closed |
//! | [`idle_timeout`](ServerLimits::idle_timeout) | [`DEFAULT_IDLE_TIMEOUT`] | connection closed (HTTP/2: `GOAWAY` first) |
//! | [`max_header_bytes`](ServerLimits::max_header_bytes) | [`DEFAULT_MAX_HEADER_BYTES`] | 431, connection closed (HTTP/2: the stream refused) |
//! | [`max_connections`](ServerLimits::max_connections) | [`DEFAULT_MAX_CONNECTIONS`] | a new connection is closed at once |
//! | [`max_request_body`](ServerLimits::max_request_body) | twice the largest atomic write + 1 MiB (2,686,976 bytes) | 413 |
//! | [`max_watches_per_token`](ServerLimits::max_watches_per_token) | [`DEFAULT_MAX_WATCHES_PER_TOKEN`] | 429 |
//! | [`max_queue_waits`](ServerLimits::max_queue_waits) | [`DEFAULT_MAX_QUEUE_WAITS`] | 429 |

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::response::plain;

/// How long a client may take to deliver a complete request header: from the connection's
/// start (after the TLS handshake) for its first request, and from the first byte of each
/// later one. A real client sends its header in one packet, within milliseconds; 10 s leaves
/// room for a very slow link while a client that trickles half a header (slowloris) loses its
/// connection every 10 s instead of holding it for ever. The same as the TLS handshake's
/// [`DEFAULT_HANDSHAKE_TIMEOUT`](crate::DEFAULT_HANDSHAKE_TIMEOUT).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may stay open with no request in flight. Longer than the clients'
/// own idle timeouts — reqwest's pool (openkv's Rust client) keeps an idle connection 90 s,
/// Node's undici 4 s — so that it is the client that closes an idle connection: a server that
/// closes first races the client's next request on it, and a write lost that way is an
/// unknown outcome. A watch stream or a queue long poll in progress is a request in flight,
/// never idle.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The largest request header, in bytes (HTTP/1: the request line and the headers; HTTP/2:
/// the header list as SETTINGS_MAX_HEADER_LIST_SIZE counts it). KV Connect's headers (the
/// token, the database id, the protocol version) take well under 1 KiB; 32 KiB leaves room for
/// long tokens and a proxy's headers, twice Node's default, while 4096 connections filling
/// their header buffers hold at most 128 MiB. On HTTP/1 it is also the connection's read
/// buffer, so it cannot be smaller than [`MIN_HEADER_BYTES`].
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;

/// The smallest [`ServerLimits::max_header_bytes`]: hyper's smallest HTTP/1 read buffer.
pub const MIN_HEADER_BYTES: usize = 8 * 1024;

/// How many connections the server serves at once (TLS handshakes in progress included).
/// Every connection costs a file descriptor and some memory (buffers, HTTP/2 state: tens of
/// KiB); 4096 is far more than the clients of one database need — a Deno process keeps one
/// HTTP/2 connection, an HTTP/1 client a few — and small enough that the server cannot run out
/// of file descriptors (when the process's limit is lower, the cap is lowered to fit, see
/// `connection_cap`): without a cap, `accept` fails once they are gone and the store cannot
/// open files either.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// How many watch streams (`/v2/watch` and `/v2/eventual/watch`) one access token may hold
/// open at once. Each costs a change-feed subscription and a read of its keys whenever one of
/// them changes; 1024 serves an application watching a few keys per user of a busy page
/// through one token, while a client that leaks watches in a loop meets a 429 long before the
/// server's memory or the store's read capacity runs out.
pub const DEFAULT_MAX_WATCHES_PER_TOKEN: usize = 1024;

/// How many queue long polls (`/v2/openkv/queue/wait`) the server holds at once, all clients
/// together. A listening process holds one at a time (the Rust client, `@openkv/client`), so
/// 1024 serves 1024 listener processes; beyond it a 429, which the Rust client retries after
/// a pause (its listener polls `take` meanwhile).
pub const DEFAULT_MAX_QUEUE_WAITS: usize = 1024;

/// File descriptors kept out of the connection cap for everything else the process opens: the
/// database and its journal per pooled SQLite connection, PostgreSQL connections, backups,
/// the replication client.
const FD_RESERVE: usize = 256;

/// The server's limits (see the module's table). `ServerLimits::default()` has every default
/// constant; the builder methods change one each.
///
/// ```
/// use std::time::Duration;
/// use openkv_server::{ServerConfig, ServerLimits};
///
/// let limits = ServerLimits::default()
///     .max_connections(512)
///     .header_timeout(Duration::from_secs(5));
/// let config = ServerConfig::new("a-long-access-token").limits(limits);
/// assert_eq!(config.limits.max_connections, 512);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerLimits {
    /// See [`DEFAULT_HEADER_TIMEOUT`]: a connection whose request header is not complete in
    /// time is closed without an answer.
    pub header_timeout: Duration,
    /// See [`DEFAULT_IDLE_TIMEOUT`]: a connection with no request in flight for this long is
    /// closed (HTTP/2: `GOAWAY`, then closed if the client is still silent a header timeout
    /// later).
    pub idle_timeout: Duration,
    /// See [`DEFAULT_MAX_HEADER_BYTES`]: a larger header is answered 431 (HTTP/1 then closes
    /// the connection, HTTP/2 refuses the stream). At least [`MIN_HEADER_BYTES`]. HTTP/1 also
    /// allows at most 100 header lines (hyper's limit; 431 beyond).
    pub max_header_bytes: usize,
    /// See [`DEFAULT_MAX_CONNECTIONS`]: a connection beyond it is closed as soon as it is
    /// accepted, without touching the others, and a warning is logged (at most every 10 s).
    pub max_connections: usize,
    /// The largest request body of the data path and the other endpoints that read theirs
    /// whole (413 beyond, after reading at most this much: a larger upload is never buffered).
    /// `None`, the default: twice the largest atomic write the store accepts plus 1 MiB for
    /// the protobuf framing — 2,686,976 bytes with Deno's limits. A restore upload is
    /// streamed to disk and not limited.
    pub max_request_body: Option<usize>,
    /// See [`DEFAULT_MAX_WATCHES_PER_TOKEN`]: one more is answered 429.
    pub max_watches_per_token: usize,
    /// See [`DEFAULT_MAX_QUEUE_WAITS`]: one more is answered 429.
    pub max_queue_waits: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_request_body: None,
            max_watches_per_token: DEFAULT_MAX_WATCHES_PER_TOKEN,
            max_queue_waits: DEFAULT_MAX_QUEUE_WAITS,
        }
    }
}

impl ServerLimits {
    /// Sets [`header_timeout`](Self::header_timeout).
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Sets [`idle_timeout`](Self::idle_timeout).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets [`max_header_bytes`](Self::max_header_bytes).
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes;
        self
    }

    /// Sets [`max_connections`](Self::max_connections).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    /// Sets [`max_request_body`](Self::max_request_body).
    pub fn max_request_body(mut self, bytes: usize) -> Self {
        self.max_request_body = Some(bytes);
        self
    }

    /// Sets [`max_watches_per_token`](Self::max_watches_per_token).
    pub fn max_watches_per_token(mut self, watches: usize) -> Self {
        self.max_watches_per_token = watches;
        self
    }

    /// Sets [`max_queue_waits`](Self::max_queue_waits).
    pub fn max_queue_waits(mut self, waits: usize) -> Self {
        self.max_queue_waits = waits;
        self
    }

    /// The body limit to serve `store` with: [`max_request_body`](Self::max_request_body), or
    /// by default the largest atomic write `store` accepts, twice, plus 1 MiB — room for the
    /// protobuf framing of the largest legal write.
    pub(crate) fn request_body_for(&self, store: &openkv::Limits) -> usize {
        self.max_request_body.unwrap_or(store.max_total_mutation_size * 2 + (1 << 20))
    }

    /// Why these limits cannot serve (a zero that would refuse everything, a header limit
    /// hyper cannot apply), or `None`.
    pub(crate) fn invalid(&self) -> Option<String> {
        let zero = [
            ("header_timeout", self.header_timeout.is_zero()),
            ("idle_timeout", self.idle_timeout.is_zero()),
            ("max_connections", self.max_connections == 0),
            ("max_request_body", self.max_request_body == Some(0)),
            ("max_watches_per_token", self.max_watches_per_token == 0),
            ("max_queue_waits", self.max_queue_waits == 0),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, zero)| *zero) {
            return Some(format!("the server limit {name} must not be zero"));
        }
        if self.max_header_bytes < MIN_HEADER_BYTES || u32::try_from(self.max_header_bytes).is_err()
        {
            return Some(format!(
                "the server limit max_header_bytes must be between {MIN_HEADER_BYTES} and {}, not {}",
                u32::MAX,
                self.max_header_bytes
            ));
        }
        None
    }
}

/// The connection cap to serve with: `configured`, lowered when the process may not open that
/// many file descriptors plus [`FD_RESERVE`] (a cap above the descriptor limit is no cap: the
/// descriptors run out first, for the store too). Read from `/proc/self/limits` (Linux);
/// elsewhere `configured` as it is.
pub(crate) fn connection_cap(configured: usize) -> usize {
    let Some(descriptors) = open_files_limit() else { return configured };
    let room = descriptors.saturating_sub(FD_RESERVE).max(descriptors / 2).max(1);
    if room < configured {
        tracing::warn!(
            "serving at most {room} connections, not {configured}: the process may open only \
             {descriptors} files (raise it with `ulimit -n`)"
        );
        return room;
    }
    configured
}

/// The soft limit on open files, if the platform tells it.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    // "Max open files            1024                 1048576              files"
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

/// A key derived from an access token, for the per-token counters: a keyed hash, so the
/// secret itself is never kept in a map (a later issue adds several scoped tokens).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TokenKey(u64);

/// The counters behind the per-request limits, shared by the handlers (in `AppState`).
pub(crate) struct Admission {
    limits: ServerLimits,
    /// Keys the token hashes; random per process.
    hasher: std::hash::RandomState,
    /// Open watch streams per token; a token with none has no entry.
    watches: Mutex<HashMap<TokenKey, usize>>,
    queue_waits: Arc<Semaphore>,
}

impl Admission {
    pub(crate) fn new(limits: ServerLimits) -> Arc<Admission> {
        Arc::new(Admission {
            queue_waits: Arc::new(Semaphore::new(limits.max_queue_waits)),
            limits,
            hasher: std::hash::RandomState::new(),
            watches: Mutex::new(HashMap::new()),
        })
    }

    /// The counters' key for the token a request presented (it passed the authentication
    /// layer already; no token at all counts as one key of its own).
    pub(crate) fn token_key(&self, token: Option<&str>) -> TokenKey {
        TokenKey(self.hasher.hash_one(token))
    }

    /// A slot for one more watch stream of `token`, held until the stream ends (the slot is
    /// moved into the response body, which is dropped when the stream ends or the client goes
    /// away); or the 429 that refuses it.
    pub(crate) fn watch(self: &Arc<Self>, token: TokenKey) -> Result<WatchSlot, Box<Response>> {
        let max = self.limits.max_watches_per_token;
        let mut watches = self.watches.lock().unwrap_or_else(PoisonError::into_inner);
        let open = watches.entry(token).or_insert(0);
        if *open >= max {
            return Err(Box::new(plain(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many watch streams: this access token already has {max} open, the \
                     server's limit; end one before starting another"
                ),
            )));
        }
        *open += 1;
        Ok(WatchSlot { admission: self.clone(), token })
    }

    /// A slot for one more queue long poll, held while it waits; or the 429 that refuses it.
    pub(crate) fn queue_wait(&self) -> Result<OwnedSemaphorePermit, Box<Response>> {
        self.queue_waits.clone().try_acquire_owned().map_err(|_| {
            let max = self.limits.max_queue_waits;
            Box::new(plain(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many queue waits: the server already holds {max}, its limit; poll \
                     take, or wait again later"
                ),
            ))
        })
    }
}

/// One open watch stream of a token; dropping it frees the slot.
pub(crate) struct WatchSlot {
    admission: Arc<Admission>,
    token: TokenKey,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut watches = self.admission.watches.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = watches.get_mut(&self.token) {
            *open -= 1;
            if *open == 0 {
                watches.remove(&self.token);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_slots_count_per_token_and_free_on_drop() {
        let admission = Admission::new(ServerLimits::default().max_watches_per_token(2));
        let (a, b) = (admission.token_key(Some("token-a")), admission.token_key(Some("token-b")));
        assert_ne!(a, b);
        assert_eq!(a, admission.token_key(Some("token-a")));
        let first = admission.watch(a).unwrap();
        let second = admission.watch(a).unwrap();
        let Err(refused) = admission.watch(a) else { panic!("a third watch of two allowed") };
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let other = admission.watch(b).expect("another token has slots of its own");
        drop(first);
        let again = admission.watch(a).expect("a freed slot is free");
        drop((again, second, other));
        assert!(admission.watches.lock().unwrap().is_empty(), "no entry for no stream");
    }

    #[test]
    fn queue_waits_are_capped() {
        let admission = Admission::new(ServerLimits::default().max_queue_waits(1));
        let held = admission.queue_wait().unwrap();
        assert_eq!(admission.queue_wait().unwrap_err().status(), StatusCode::TOO_MANY_REQUESTS);
        drop(held);
        assert!(admission.queue_wait().is_ok());
    }

    #[test]
    fn the_default_body_limit_follows_the_store() {
        let deno = openkv::Limits::default();
        assert_eq!(ServerLimits::default().request_body_for(&deno), 2_686_976);
        let bigger = openkv::Limits::default().with_max_value_size(4 << 20);
        assert!(ServerLimits::default().request_body_for(&bigger) > 8 << 20);
        assert_eq!(ServerLimits::default().max_request_body(1000).request_body_for(&deno), 1000);
    }

    #[test]
    fn zeros_and_tiny_header_limits_are_invalid() {
        assert_eq!(ServerLimits::default().invalid(), None);
        let zero = ServerLimits::default().max_connections(0).invalid().unwrap();
        assert!(zero.contains("max_connections"), "{zero}");
        let tiny = ServerLimits::default().max_header_bytes(100).invalid().unwrap();
        assert!(tiny.contains("max_header_bytes"), "{tiny}");
        assert!(ServerLimits::default().idle_timeout(Duration::ZERO).invalid().is_some());
    }

    #[test]
    fn the_connection_cap_fits_the_file_limit() {
        let cap = connection_cap(usize::MAX);
        if let Some(files) = open_files_limit() {
            assert!(cap < files, "{cap} connections with {files} files");
        }
        assert_eq!(connection_cap(1), 1);
    }
}
