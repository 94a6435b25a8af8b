//! The HTTP side of the client: the connection, the metadata exchange and its refresh, one
//! call with retries and their rules, the queue extension's calls. `lib.rs` builds the
//! `Backend` on it and `watch.rs` the `/watch` follower; this module imports neither.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openkv_proto::queue as queue_ext;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{header, StatusCode, Url};
use tokio::time::Instant;

use crate::clock::Clock;
use crate::error::{Error, Failure, Result};
use crate::queue::QueueSignal;

/// The protocol versions this client speaks, offered in the metadata exchange.
pub(crate) const SUPPORTED_VERSIONS: [u32; 3] = [1, 2, 3];
/// Metadata is re-fetched this long before it expires...
pub(crate) const REFRESH_MARGIN: Duration = Duration::from_secs(10);
/// ...and at least this often (Deno's client does the same).
pub(crate) const MAX_METADATA_AGE: Duration = Duration::from_secs(60);
/// The first retry waits about this long; each further one twice as long, up to the cap.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(50);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(3);
/// How much of a server's error text goes into an error message.
pub(crate) const MAX_MESSAGE_CHARS: usize = 1000;

/// The remote-specific settings of `openkv::OpenOptions`.
#[derive(Clone)]
#[non_exhaustive]
pub struct RemoteConfig {
    /// The bearer token; `None`: `DENO_KV_ACCESS_TOKEN` from the environment.
    pub access_token: Option<String>,
    /// How long failing requests are retried before `Error::Unavailable`.
    pub retry_timeout: Duration,
    /// The longest one request may take.
    pub request_timeout: Duration,
    /// Extra trust anchors (PEM), for servers with a private CA or a self-signed certificate.
    pub root_certificates: Vec<Vec<u8>>,
    /// Seeds retry jitter (tests); `None`: from the OS.
    pub rng_seed: Option<u64>,
    /// Told before every pause between two attempts of a request (the seam through which a
    /// program says "still trying" while the retries run); `None`: nobody is told.
    pub on_retry: Option<RetryObserver>,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            access_token: None,
            retry_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            root_certificates: Vec::new(),
            rng_seed: None,
            on_retry: None,
        }
    }
}

impl std::fmt::Debug for RemoteConfig {
    // By hand: the access token must never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("access_token", &self.access_token.as_ref().map(|_| "<hidden>"))
            .field("retry_timeout", &self.retry_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("root_certificates", &self.root_certificates.len())
            .field("rng_seed", &self.rng_seed)
            .field("on_retry", &self.on_retry)
            .finish()
    }
}

/// One failed attempt of a request that is about to be retried: what
/// [`RemoteConfig::on_retry`] is told, before the pause.
#[derive(Debug)]
#[non_exhaustive]
pub struct RemoteRetry<'a> {
    /// The database's URL, as opened.
    pub url: &'a str,
    /// Why the attempt failed. Its [`source`](std::error::Error::source) chain holds the
    /// typed cause when there is one (a refused connection is a [`std::io::Error`] of kind
    /// `ConnectionRefused` down that chain); a 5xx answer has none.
    pub failure: &'a Failure,
    /// Which retry of this request follows: 1 for the first. Each request counts its own.
    pub retry: u32,
    /// How long the client waits before that retry.
    pub pause: Duration,
    /// How long this request may go on retrying in all ([`RemoteConfig::retry_timeout`]).
    pub retry_timeout: Duration,
}

/// A function told of every retry ([`RemoteConfig::on_retry`]). It runs on the task making
/// the request, before the pause: it must be quick and must not block.
#[derive(Clone)]
pub struct RetryObserver(Arc<dyn Fn(&RemoteRetry<'_>) + Send + Sync>);

impl RetryObserver {
    /// An observer calling `observe`.
    pub fn new(observe: impl Fn(&RemoteRetry<'_>) + Send + Sync + 'static) -> RetryObserver {
        RetryObserver(Arc::new(observe))
    }
}

impl std::fmt::Debug for RetryObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryObserver")
    }
}

/// What the metadata exchange told us.
#[derive(Debug)]
pub(crate) struct Metadata {
    pub(crate) version: u32,
    pub(crate) database_id: uuid::Uuid,
    /// Endpoint base URLs, without a trailing `/`.
    pub(crate) strong: String,
    pub(crate) eventual: Option<String>,
    pub(crate) token: String,
    /// Unix milliseconds.
    pub(crate) expires_at_ms: i64,
    pub(crate) refresh_at: Instant,
}

/// The metadata response, as JSON. Every field is required by the protocol.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MetadataJson {
    version: u32,
    database_id: String,
    endpoints: Vec<EndpointJson>,
    token: String,
    expires_at: String,
}

#[derive(serde::Deserialize)]
pub(crate) struct EndpointJson {
    url: String,
    consistency: String,
}

/// A running long-poll task (`wait_for_due`) and the signal it bumps.
pub(crate) type QueueWaiter = (Arc<QueueSignal>, tokio::task::JoinHandle<()>);

/// A KV Connect server as a [`Backend`](crate::backend::Backend).
pub struct RemoteBackend {
    pub(crate) url: Url,
    pub(crate) access_token: String,
    pub(crate) http: reqwest::Client,
    pub(crate) config: RemoteConfig,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metadata: RwLock<Option<Arc<Metadata>>>,
    /// Held while fetching metadata, so concurrent requests wait for one fetch.
    pub(crate) refreshing: tokio::sync::Mutex<()>,
    pub(crate) rng: Mutex<StdRng>,
    pub(crate) closed: AtomicBool,
    /// The long-poll task behind [`QueueBackend::queue_wakeup`](crate::backend::QueueBackend::queue_wakeup) and its signal, once a listener
    /// asked for it.
    pub(crate) queue_waiter: Mutex<Option<QueueWaiter>>,
    /// Signalled by every `queue_take`: after the server said a message is due, the long-poll
    /// waits for the listener to take before asking again (else, with the listener busy and
    /// the message left due, it would ask in a tight loop).
    pub(crate) queue_taken: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for RemoteBackend {
    // By hand: the access token must never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBackend").field("url", &self.url.as_str()).finish_non_exhaustive()
    }
}

/// Why one attempt failed, and whether another may follow.
pub(crate) enum Attempt {
    /// Worth retrying after a pause. The last one's failure becomes the source of the
    /// `Unavailable` when the retries run out.
    Retry(Failure),
    /// The data-path token was refused: fetch metadata again, then retry once at once.
    Reauthenticate(String),
    /// Final.
    Fail(Error),
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn truncate(mut text: String) -> String {
    if let Some((cut, _)) = text.char_indices().nth(MAX_MESSAGE_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Parses `expiresAt`: RFC 3339, `Z` or a numeric offset (denokv writes `+00:00`). The text is
/// a server's: the offset is cut by bytes only where they are ASCII digits (a multi-byte
/// character there once made the client panic: fuzz/regressions/kv_connect_answer/).
pub(crate) fn parse_expires_at(text: &str) -> Result<i64> {
    let bad = || Error::Protocol(format!("expiresAt {text:?} is not an RFC 3339 timestamp"));
    let two_digits = |a: u8, b: u8| {
        (a.is_ascii_digit() && b.is_ascii_digit())
            .then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
            .ok_or_else(bad)
    };
    let at = text.len().checked_sub(6);
    let (local, offset_ms) = match at.and_then(|i| Some((i, text.get(i..)?.as_bytes()))) {
        Some((i, &[sign @ (b'+' | b'-'), h1, h2, b':', m1, m2])) => {
            let (hours, minutes) = (two_digits(h1, h2)?, two_digits(m1, m2)?);
            let sign = if sign == b'-' { -1 } else { 1 };
            (&text[..i], sign * (hours * 60 + minutes) * 60_000)
        }
        _ => (text.strip_suffix('Z').unwrap_or(text), 0),
    };
    let time = humantime::parse_rfc3339_weak(local).map_err(|_| bad())?;
    let ms = match time.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).map_err(|_| bad())?,
        Err(e) => -i64::try_from(e.duration().as_millis()).map_err(|_| bad())?,
    };
    Ok(ms - offset_ms)
}

/// The metadata exchange's answer (`body`, from the server at `url`), checked: a version we
/// speak, a UUID, a strong endpoint, an `expiresAt` we can read. Now is `now_ms`.
pub(crate) fn parse_metadata(url: &Url, now_ms: i64, body: &[u8]) -> Result<Metadata> {
    let json: MetadataJson = serde_json::from_slice(body)
        .map_err(|e| Error::Protocol(format!("metadata is not the expected JSON: {e}")))?;
    if !SUPPORTED_VERSIONS.contains(&json.version) {
        return Err(Error::Protocol(format!(
            "the server chose protocol version {}, not one of {SUPPORTED_VERSIONS:?}",
            json.version
        )));
    }
    let database_id = uuid::Uuid::parse_str(&json.database_id).map_err(|e| {
        Error::Protocol(format!("databaseId {:?} is not a UUID: {e}", json.database_id))
    })?;
    let mut strong = None;
    let mut eventual = None;
    for endpoint in &json.endpoints {
        // Version 1 endpoint URLs are absolute; later ones are relative to the metadata URL.
        let resolved =
            if json.version == 1 { Url::parse(&endpoint.url) } else { url.join(&endpoint.url) }
                .map_err(|e| Error::Protocol(format!("endpoint URL {:?}: {e}", endpoint.url)))?;
        let base = resolved.as_str().trim_end_matches('/').to_owned();
        match endpoint.consistency.as_str() {
            "strong" => strong = strong.or(Some(base)),
            "eventual" => eventual = eventual.or(Some(base)),
            other => tracing::debug!("ignoring an endpoint of unknown consistency {other:?}"),
        }
    }
    let strong =
        strong.ok_or_else(|| Error::Protocol("the metadata lists no strong endpoint".into()))?;
    let expires_at_ms = parse_expires_at(&json.expires_at)?;
    let valid_for = Duration::from_millis(u64::try_from(expires_at_ms - now_ms).unwrap_or(0));
    // Refresh a margin before expiry and at least every minute; never in a busy loop.
    let refresh_in =
        valid_for.saturating_sub(REFRESH_MARGIN).min(MAX_METADATA_AGE).max(Duration::from_secs(1));
    Ok(Metadata {
        version: json.version,
        database_id,
        strong,
        eventual,
        token: json.token,
        expires_at_ms,
        refresh_at: Instant::now() + refresh_in,
    })
}

impl RemoteBackend {
    /// Connects: builds the HTTP client and runs the first metadata exchange, so that a wrong
    /// URL or token fails here rather than at the first read.
    pub async fn open(
        url: &str,
        config: RemoteConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<RemoteBackend> {
        let url = Url::parse(url)
            .map_err(|e| Error::InvalidOption(format!("invalid database URL {url:?}: {e}")))?;
        let access_token = match &config.access_token {
            Some(token) => token.clone(),
            None => std::env::var("DENO_KV_ACCESS_TOKEN").map_err(|_| {
                Error::InvalidOption(
                    "a remote database needs an access token: set OpenOptions::access_token \
                     or the DENO_KV_ACCESS_TOKEN environment variable"
                        .into(),
                )
            })?,
        };
        let mut http = reqwest::Client::builder()
            .user_agent(concat!("openkv/", env!("CARGO_PKG_VERSION")))
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)));
        for pem in &config.root_certificates {
            let cert = reqwest::Certificate::from_pem(pem).map_err(|e| {
                Error::InvalidOption(format!("invalid root certificate (PEM expected): {e}"))
            })?;
            http = http.add_root_certificate(cert);
        }
        let http = http
            .build()
            .map_err(|e| Error::InvalidOption(format!("cannot build the HTTP client: {e}")))?;
        let rng = match config.rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let backend = RemoteBackend {
            url,
            access_token,
            http,
            config,
            clock,
            metadata: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            rng: Mutex::new(rng),
            closed: AtomicBool::new(false),
            queue_waiter: Mutex::new(None),
            queue_taken: Arc::new(tokio::sync::Notify::new()),
        };
        backend.metadata().await?;
        Ok(backend)
    }

    /// Current metadata, fetched again when due. A failed refresh while the old metadata is
    /// still valid keeps using it (the server may be restarting); once it has expired, the
    /// failure is the caller's.
    pub(crate) async fn metadata(&self) -> Result<Arc<Metadata>> {
        if let Some(current) = self.fresh_metadata() {
            return Ok(current);
        }
        let _one_fetch = self.refreshing.lock().await;
        if let Some(current) = self.fresh_metadata() {
            return Ok(current); // another task fetched it while we waited
        }
        let stale = self.metadata.read().unwrap_or_else(|p| p.into_inner()).clone();
        match self.with_retries(false, |_| self.fetch_metadata()).await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                *self.metadata.write().unwrap_or_else(|p| p.into_inner()) = Some(fresh.clone());
                Ok(fresh)
            }
            Err(e) => match stale {
                Some(old)
                    if old.expires_at_ms > self.clock.now_ms()
                        && !matches!(e, Error::Remote { .. }) =>
                {
                    tracing::warn!(
                        "refreshing KV Connect metadata failed, still using the old: {e}"
                    );
                    Ok(old)
                }
                _ => Err(e),
            },
        }
    }

    pub(crate) fn fresh_metadata(&self) -> Option<Arc<Metadata>> {
        let current = self.metadata.read().unwrap_or_else(|p| p.into_inner()).clone()?;
        (Instant::now() < current.refresh_at).then_some(current)
    }

    pub(crate) fn forget_metadata(&self) {
        *self.metadata.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub(crate) async fn fetch_metadata(&self) -> std::result::Result<Metadata, Attempt> {
        let response = self
            .http
            .post(self.url.clone())
            .bearer_auth(&self.access_token)
            .header(header::CONTENT_TYPE, "application/json")
            .body(format!("{{\"supportedVersions\":{SUPPORTED_VERSIONS:?}}}"))
            .send()
            .await
            .map_err(|e| unsent(format!("metadata exchange with {}", self.url), e))?;
        let body = check_status(response, false).await?;
        parse_metadata(&self.url, self.clock.now_ms(), &body).map_err(Attempt::Fail)
    }

    /// Runs `attempt` until it succeeds, fails finally, or `retry_timeout` is over. The
    /// argument tells the attempt whether it follows a refused token.
    pub(crate) async fn with_retries<'a, T, F, Fut>(
        &'a self,
        can_reauthenticate: bool,
        attempt: F,
    ) -> Result<T>
    where
        F: Fn(bool) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, Attempt>> + 'a,
    {
        let deadline = Instant::now() + self.config.retry_timeout;
        let mut backoff = FIRST_BACKOFF;
        let mut reauthenticated = false;
        let mut retries = 0u32;
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            let why = match attempt(reauthenticated).await {
                Ok(value) => return Ok(value),
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Reauthenticate(why)) if can_reauthenticate && !reauthenticated => {
                    reauthenticated = true;
                    self.forget_metadata();
                    tracing::debug!("data-path token refused, fetching metadata again: {why}");
                    continue;
                }
                Err(Attempt::Reauthenticate(why)) => {
                    return Err(Error::Remote { status: 401, message: why })
                }
                Err(Attempt::Retry(why)) => why,
            };
            // Full jitter in [backoff/2, backoff]: clients that failed together spread out.
            // The last pause ends at the deadline, for one last attempt then: the whole
            // retry timeout is used (a server coming up late in it is still reached).
            let now = Instant::now();
            if now >= deadline {
                let message =
                    format!("gave up after retrying for {:?}: {why}", self.config.retry_timeout);
                return Err(Error::Unavailable(Failure::with_source(message, Arc::new(why))));
            }
            let pause = {
                let mut rng = lock(&self.rng);
                backoff.mul_f64(rng.random_range(0.5..=1.0))
            }
            .min(deadline - now);
            tracing::debug!("KV Connect request failed, retrying in {pause:?}: {why}");
            retries = retries.saturating_add(1);
            if let Some(RetryObserver(observe)) = &self.config.on_retry {
                observe(&RemoteRetry {
                    url: self.url.as_str(),
                    failure: &why,
                    retry: retries,
                    pause,
                    retry_timeout: self.config.retry_timeout,
                });
            }
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// A data-path request (`snapshot_read`, `atomic_write`, `watch`) with the headers of the
    /// protocol version in use.
    pub(crate) fn data_request(
        &self,
        metadata: &Metadata,
        op: &str,
        body: Vec<u8>,
        eventual: bool,
    ) -> reqwest::RequestBuilder {
        let base = match (&metadata.eventual, eventual) {
            (Some(replica), true) => replica,
            _ => &metadata.strong,
        };
        let request = self
            .http
            .post(format!("{base}/{op}"))
            .bearer_auth(&metadata.token)
            .header(header::CONTENT_TYPE, content_type(op))
            .body(body);
        if metadata.version == 1 {
            request.header("x-transaction-domain-id", metadata.database_id.to_string())
        } else {
            request
                .header("x-denokv-database-id", metadata.database_id.to_string())
                .header("x-denokv-version", metadata.version.to_string())
        }
    }

    /// One data-path request (`snapshot_read` or `atomic_write`), with retries. `write`
    /// selects the careful retry rules for non-idempotent requests.
    pub(crate) async fn call(
        &self,
        op: &str,
        body: Vec<u8>,
        eventual: bool,
        write: bool,
    ) -> Result<(Arc<Metadata>, Vec<u8>)> {
        self.with_retries(true, |_| {
            let body = body.clone();
            async move {
                let metadata = self.metadata().await.map_err(Attempt::Fail)?;
                let request = self.data_request(&metadata, op, body, eventual);
                let response = match request.send().await {
                    Ok(response) => response,
                    // Never reached the server: safe to send again, even a write.
                    Err(e) if e.is_connect() => return Err(unsent(op.to_string(), e)),
                    Err(e) if write => {
                        return Err(Attempt::Fail(Error::OutcomeUnknown(Failure::caused(op, e))))
                    }
                    Err(e) => return Err(Attempt::Retry(Failure::caused(op, e))),
                };
                let body = check_status(response, write).await?;
                Ok((metadata, body))
            }
        })
        .await
    }
}

/// A request that failed before the server could act on it: retried, unless the server's
/// certificate was refused (that does not get better by retrying; the message says how to
/// trust a private CA).
pub(crate) fn unsent(what: String, e: reqwest::Error) -> Attempt {
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    if certificate_refused(&e) {
        let message = format!(
            "{what}: the server's TLS certificate was refused ({chain}); for a private CA or a \
             self-signed certificate, use OpenOptions::remote_root_certificate"
        );
        return Attempt::Fail(Error::Unavailable(Failure::with_source(message, Arc::new(e))));
    }
    Attempt::Retry(Failure::with_source(format!("{what}: {chain}"), Arc::new(e)))
}

/// Whether a TLS handshake in `e`'s chain of causes failed over a certificate: a
/// [`rustls::Error`] about one, found by type.
pub(crate) fn certificate_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(cause) = next {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return is_certificate_error(tls);
        }
        next = match cause.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            // tokio-rustls hands rustls's error up inside an `io::Error` (which hyper-rustls
            // wraps in another): an `io::Error`'s own `source()` skips the error it wraps, so
            // look inside it with `get_ref`.
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => cause.source(),
        };
    }
    false
}

/// rustls's errors that mean a certificate was refused, by us (the server's) or by the server
/// (ours, in an alert).
pub(crate) fn is_certificate_error(e: &rustls::Error) -> bool {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::NoCertificatesPresented
        | rustls::Error::InvalidCertRevocationList(_) => true,
        rustls::Error::AlertReceived(alert) => matches!(
            alert,
            A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::CertificateRequired
                | A::UnknownCA
        ),
        // Any other TLS failure (a protocol mismatch, say) is retried as before.
        _ => false,
    }
}

/// The body type of a data-path operation: protobuf, but JSON for openkv's extensions.
pub(crate) fn content_type(op: &str) -> &'static str {
    if op.starts_with("openkv/") {
        "application/json"
    } else {
        "application/x-protobuf"
    }
}

impl RemoteBackend {
    /// One call of the queue extension. Every one of them may be repeated safely (taking
    /// twice only leases more; renewing and finishing twice are no-ops), so all are retried
    /// like reads. A server without the extension (`denokv`) answers 404.
    pub(crate) async fn queue_call(
        &self,
        op: &str,
        body: &impl serde::Serialize,
    ) -> Result<Vec<u8>> {
        let op = format!("{}{op}", queue_ext::PATH_PREFIX);
        let body = serde_json::to_vec(body)
            .map_err(|e| Error::Internal(format!("encoding a queue request: {e}")))?;
        match self.call(&op, body, false, false).await {
            Ok((_, answer)) => Ok(answer),
            Err(Error::Remote { status: 404, .. }) => Err(Error::Unsupported(
                "the server does not deliver queue messages to remote listeners (openkv \
                 serve does; denokv does not)"
                    .into(),
            )),
            Err(e) => Err(e),
        }
    }
}

/// The longest a long-poll for due queue messages waits at the server (it is also kept under
/// half the request timeout).
pub(crate) const QUEUE_WAIT: Duration = Duration::from_secs(20);

/// The task behind a remote [`QueueBackend::queue_wakeup`](crate::backend::QueueBackend::queue_wakeup): asks the server (openkv's queue `wait`,
/// docs/protocol-extensions.md) to answer once a message is due, and bumps the signal when it
/// does. It ends when no listener holds the signal any more, when the backend is gone or
/// closed, and when the server cannot wait (denokv, a read-only server): the listener then
/// relies on its poll interval, as it always can.
pub(crate) async fn wait_for_due(
    backend: std::sync::Weak<RemoteBackend>,
    signal: Arc<QueueSignal>,
    taken: Arc<tokio::sync::Notify>,
) {
    let mut pause = FIRST_BACKOFF;
    loop {
        let Some(remote) = backend.upgrade() else { return };
        let wait = QUEUE_WAIT.min(remote.config.request_timeout / 2);
        let timeout_ms = u64::try_from(wait.as_millis()).unwrap_or(queue_ext::MAX_WAIT_MS);
        let body = queue_ext::WaitRequest { timeout_ms: timeout_ms.min(queue_ext::MAX_WAIT_MS) };
        let answer = tokio::select! {
            _ = signal.closed() => return,
            answer = remote.queue_call("wait", &body) => answer,
        };
        drop(remote);
        match answer.and_then(|a| {
            serde_json::from_slice::<queue_ext::WaitResponse>(&a)
                .map_err(|e| Error::Protocol(format!("queue wait answer: {e}")))
        }) {
            Ok(queue_ext::WaitResponse { due: true }) => {
                pause = FIRST_BACKOFF;
                signal.wake();
                tokio::select! {
                    _ = signal.closed() => return,
                    _ = taken.notified() => {}
                }
            }
            Ok(queue_ext::WaitResponse { due: false }) => pause = FIRST_BACKOFF,
            Err(Error::Closed) => return,
            Err(e @ (Error::Unsupported(_) | Error::Remote { .. })) => {
                tracing::debug!("queue long-poll unavailable, the listener polls: {e}");
                return;
            }
            Err(e) => {
                // The server may be restarting: the listener still polls meanwhile.
                tracing::debug!("queue long-poll failed, trying again in {pause:?}: {e}");
                tokio::select! {
                    _ = signal.closed() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// The body of a 2xx answer; otherwise what to do about the status.
pub(crate) async fn check_status(
    response: reqwest::Response,
    write: bool,
) -> std::result::Result<Vec<u8>, Attempt> {
    let status = response.status();
    let body = response.bytes().await;
    if status.is_success() {
        return match body {
            Ok(bytes) => Ok(bytes.to_vec()),
            Err(e) if write => Err(Attempt::Fail(Error::OutcomeUnknown(Failure::caused(
                "the connection failed while reading the answer",
                e,
            )))),
            Err(e) => Err(Attempt::Retry(Failure::caused("reading the answer", e))),
        };
    }
    let message =
        truncate(body.map(|b| String::from_utf8_lossy(&b).trim().to_owned()).unwrap_or_default());
    let described = format!("HTTP {}: {message}", status.as_u16());
    if status == StatusCode::UNAUTHORIZED {
        return Err(Attempt::Reauthenticate(message));
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        // Only 503 and 429 promise that nothing was applied: `openkv serve` answers 503 for a
        // passing condition (a busy or full store, PostgreSQL unreachable) and 500 when a
        // write's outcome is unknown (PostgreSQL's connection lost during COMMIT) or the
        // storage failed part-way; a gateway's 502/504 may come after the server applied it.
        // Resending such a write could apply it twice — or, with checks, report a failed check
        // for a write that did apply (found by openkv-jepsen's append workload on PostgreSQL).
        let nothing_applied =
            matches!(status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS);
        if write && !nothing_applied {
            return Err(Attempt::Fail(Error::OutcomeUnknown(Failure::new(described))));
        }
        return Err(Attempt::Retry(Failure::new(described)));
    }
    Err(Attempt::Fail(Error::Remote { status: status.as_u16(), message }))
}

pub(crate) fn decode<M: Message + Default>(bytes: &[u8], what: &str) -> Result<M> {
    M::decode(bytes).map_err(|e| Error::Protocol(format!("the {what} answer is not valid: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_certificate_is_recognized_by_type_not_by_words() {
        // As hyper-rustls hands it up: rustls's error in tokio-rustls's io::Error, in another.
        let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let nested =
            std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, refused));
        assert!(certificate_refused(&nested));
        assert!(!certificate_refused(&std::io::Error::other(rustls::Error::HandshakeNotComplete)));
        // The same words without the type: retried like any other connection failure.
        let words = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        assert!(!certificate_refused(&words));
    }

    #[test]
    fn expires_at_accepts_the_forms_servers_send() {
        let z = parse_expires_at("2026-11-26T10:00:00Z").unwrap();
        assert_eq!(parse_expires_at("2026-11-26T10:00:00+00:00").unwrap(), z);
        assert_eq!(parse_expires_at("2026-11-26T10:00:00.250Z").unwrap(), z + 250);
        assert_eq!(parse_expires_at("2026-11-26T12:00:00+02:00").unwrap(), z);
        assert_eq!(parse_expires_at("2026-11-26T05:30:00-04:30").unwrap(), z);
        for bad in [
            "",
            "tomorrow",
            "2026-11-26",
            "2026-11-26T10:00:00+0x:00",
            "2026-11-26T10:00:00+-1:00",
            // A multi-byte character where the offset's digits would be (a panic, once).
            "2026-01-02T03:04:05+0\u{e9}00",
            "2026-01-02T03:04:05\u{e9}00:00",
        ] {
            assert!(matches!(parse_expires_at(bad), Err(Error::Protocol(_))), "{bad:?}");
        }
    }

    #[test]
    fn long_server_messages_are_cut() {
        let cut = truncate("é".repeat(MAX_MESSAGE_CHARS + 5));
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short".into()), "short");
    }
}
