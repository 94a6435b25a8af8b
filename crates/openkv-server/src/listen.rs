//! Accepting and serving connections under the connection limits of [`ServerLimits`]: the cap
//! on open connections, the header and idle timeouts, the header size; and graceful shutdown.
//!
//! hyper-util's automatic builder serves each connection (HTTP/1.1, or HTTP/2 when the client
//! opens with the HTTP/2 preface: h2c with prior knowledge, or after ALPN `h2` over TLS), as
//! `axum::serve` did, with the header size limits it cannot set. The timeouts are ours, on one
//! clock per connection (`Activity`), because hyper's do not fit:
//! - hyper's HTTP/1 `header_read_timeout` starts when it begins waiting for a request, so on a
//!   kept-alive connection it also closes a client that merely has nothing to ask — after 10 s
//!   instead of the idle timeout, racing that client's next request;
//! - nothing in hyper bounds the wait for the first bytes (the HTTP/2 preface is read before
//!   HTTP/1's timer exists) or an idle HTTP/2 connection.
//!
//! So: a connection must deliver its first complete request within the header timeout; after
//! that it may stay idle (no request in flight: a watch stream or a queue long poll counts as
//! one in flight until its body ends) up to the idle timeout, and on HTTP/1 each later request
//! header must be complete within the header timeout of its first byte. (On HTTP/2, bytes
//! between requests are frames — pings, window updates — so there only the idle timeout
//! bounds a connection after its first request.)
//!
//! hyper-util's `GracefulShutdown` is not used: it owns the connection future, and the idle
//! timeout must ask the same connection to close. One `select!` per connection does both, as
//! `axum::serve` does.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, Response, Version};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::limits::ServerLimits;

/// A connection taken off a listener, holding its place under the connection cap.
pub(crate) struct Accepted<Io> {
    pub(crate) io: Io,
    pub(crate) peer: SocketAddr,
    /// Dropped with the connection, freeing its place.
    pub(crate) slot: OwnedSemaphorePermit,
}

/// Where connections come from: plain TCP ([`Admitting`]), or TLS on top of it
/// (`tls::TlsListener`).
pub(crate) trait Accept: Send + 'static {
    /// The connection's byte stream.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The next connection. Cancel-safe: a connection is never lost by dropping the future.
    fn accept(&mut self) -> impl Future<Output = Accepted<Self::Io>> + Send;
}

/// The TCP listener under the connection cap: a connection beyond it is closed as soon as it
/// is accepted (the client sees the connection closed, at once, instead of waiting in the
/// kernel's backlog), and the connections being served are not touched.
pub(crate) struct Admitting {
    tcp: TcpListener,
    slots: Arc<Semaphore>,
    cap: usize,
    /// Refusals are logged at most every [`REFUSAL_LOG_INTERVAL`].
    last_warning: Option<Instant>,
    refused_since_warning: u64,
}

/// How often a warning about refused connections is logged at most: under a flood, one line
/// per refusal would be a flood of its own.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Admitting {
    pub(crate) fn new(tcp: TcpListener, cap: usize) -> Admitting {
        Admitting {
            tcp,
            slots: Arc::new(Semaphore::new(cap)),
            cap,
            last_warning: None,
            refused_since_warning: 0,
        }
    }

    fn refused(&mut self, peer: SocketAddr) {
        self.refused_since_warning += 1;
        let now = Instant::now();
        if self.last_warning.is_some_and(|last| now < last + REFUSAL_LOG_INTERVAL) {
            return;
        }
        tracing::warn!(
            %peer,
            "refused {} connection(s) since the last warning: already serving {} connections, \
             the limit (ServerLimits::max_connections, --max-connections)",
            self.refused_since_warning,
            self.cap
        );
        self.last_warning = Some(now);
        self.refused_since_warning = 0;
    }
}

impl Accept for Admitting {
    type Io = TcpStream;

    async fn accept(&mut self) -> Accepted<TcpStream> {
        loop {
            let (tcp, peer) = match self.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            };
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                // Dropped: closed without a byte.
                self.refused(peer);
                continue;
            };
            // TCP_NODELAY: a response written in pieces (watch frames, TLS records) must not
            // wait ~40 ms for the client's delayed ACK (Nagle), nor sequential requests stall.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(%peer, "cannot set TCP_NODELAY: {e}");
            }
            return Accepted { io: tcp, peer, slot };
        }
    }
}

/// What `axum::serve` did: errors of one connection are ignored; others (out of file
/// descriptors) are logged and accepting pauses a second, instead of spinning.
async fn accept_error(e: io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        return;
    }
    tracing::error!("accepting a connection failed: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The two timeouts every connection runs under.
#[derive(Clone, Copy, Debug)]
struct Timeouts {
    header: Duration,
    idle: Duration,
}

/// Serves `app` on every connection `acceptor` hands over until `shutdown` completes (which
/// flips `stopping`, ending watch streams and long polls); then stops accepting (the listener
/// is dropped: the port is closed), asks every connection to close once its requests in
/// flight are answered, and returns when all are closed.
pub(crate) async fn run<A: Accept>(
    mut acceptor: A,
    app: Router,
    limits: &ServerLimits,
    shutdown: impl Future<Output = ()>,
    stopping: watch::Receiver<bool>,
) {
    let builder = Arc::new(http_builder(limits));
    let timeouts = Timeouts { header: limits.header_timeout, idle: limits.idle_timeout };
    // Every connection task holds a receiver; `closed()` is when the last one is gone.
    let (open_tx, open_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = acceptor.accept() => accepted,
            () = &mut shutdown => break,
        };
        let connection = serve_connection(
            builder.clone(),
            app.clone(),
            accepted,
            timeouts,
            stopping.clone(),
            open_rx.clone(),
        );
        tokio::spawn(connection);
    }
    drop(acceptor);
    drop(open_rx);
    open_tx.closed().await;
}

/// HTTP/1.1 and HTTP/2 with the header size limit. hyper's own HTTP/1 header timeout is off:
/// ours replaces it (see the module's comment).
fn http_builder(limits: &ServerLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header must fit in the read buffer: beyond it hyper answers 431 and closes.
    // (`ServerLimits::invalid` refused a size below hyper's minimum.)
    builder.http1().header_read_timeout(None).max_buf_size(limits.max_header_bytes);
    // Beyond it h2 answers the stream 431 and refuses it; the connection goes on.
    let list = u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX);
    builder.http2().max_header_list_size(list);
    builder
}

/// Serves one connection to its end: the client closed it, a timeout did, or shutdown did.
async fn serve_connection<Io>(
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Router,
    accepted: Accepted<Io>,
    timeouts: Timeouts,
    mut stopping: watch::Receiver<bool>,
    _open: watch::Receiver<()>,
) where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Accepted { io, peer, slot: _slot } = accepted;
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched { io, activity: activity.clone() });
    let service = Tracked { app: TowerToHyperService::new(app), activity: activity.clone() };
    let mut connection = pin!(builder.serve_connection(io, service));
    // When it was asked to close (idle, or shutdown): HTTP/1 closes once no request is in
    // flight, HTTP/2 sends GOAWAY and closes once its streams are done.
    let mut closing: Option<Instant> = None;
    let mut stop_seen = false;
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                return;
            }
            _ = stopping.wait_for(|stop| *stop), if !stop_seen => {
                stop_seen = true;
                if closing.is_none() {
                    closing = Some(Instant::now());
                    connection.as_mut().graceful_shutdown();
                }
            }
            expired = activity.expired(timeouts, closing) => match expired {
                Expired::Header => {
                    tracing::debug!(
                        %peer,
                        "closing a connection: no complete request header within {:?}",
                        timeouts.header
                    );
                    return;
                }
                Expired::Idle if closing.is_none() => {
                    closing = Some(Instant::now());
                    connection.as_mut().graceful_shutdown();
                }
                // Asked to close a header timeout ago, idle, and still open: an HTTP/2 client
                // that does not answer GOAWAY's ping.
                Expired::Idle => return,
            }
        }
    }
}

/// Why a connection's clock ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expired {
    /// No complete request header in time: closed at once.
    Header,
    /// No request in flight for the idle timeout: asked to close.
    Idle,
}

/// One connection's clock: whether a request is in flight, since when not, and whether a new
/// HTTP/1 request header has begun to arrive.
struct Activity {
    state: Mutex<ActivityState>,
    /// Wakes the watchdog (`expired`) when its deadline may have moved earlier: the last
    /// request in flight ended, or a header began.
    changed: Notify,
}

struct ActivityState {
    /// Requests whose response body has not ended.
    in_flight: usize,
    /// When the connection last had no request in flight: its start, or the end of its last
    /// request.
    since: Instant,
    /// Requests received.
    requests: u64,
    /// An HTTP/2 connection: bytes while idle are its frames (pings, window updates), not a
    /// request header.
    http2: bool,
    /// HTTP/1, no request in flight: when the first byte of the next request arrived.
    header_since: Option<Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                since: Instant::now(),
                requests: 0,
                http2: false,
                header_since: None,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ActivityState> {
        // Nothing panics while holding it; were it poisoned, the counts are still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request arrived (its header is complete); it is in flight until the returned guard,
    /// moved into its response body, is dropped.
    fn begin(self: &Arc<Self>, version: Version) -> InFlight {
        let mut state = self.lock();
        state.in_flight += 1;
        state.requests += 1;
        state.header_since = None;
        state.http2 |= version == Version::HTTP_2;
        InFlight(self.clone())
    }

    fn end(&self) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.since = Instant::now();
            drop(state);
            self.changed.notify_one();
        }
    }

    /// Bytes arrived: with no request in flight on HTTP/1, the next request's header began.
    fn received(&self) {
        let mut state = self.lock();
        if state.in_flight == 0
            && state.requests > 0
            && !state.http2
            && state.header_since.is_none()
        {
            state.header_since = Some(Instant::now());
            drop(state);
            self.changed.notify_one();
        }
    }

    /// When the clock runs out and why; `None` while a request is in flight. Once asked to
    /// close (`closing`: since when), an idle connection gets a header timeout of grace from
    /// then, not a whole idle timeout.
    fn deadline(&self, timeouts: Timeouts, closing: Option<Instant>) -> Option<(Instant, Expired)> {
        let state = self.lock();
        if state.in_flight > 0 {
            return None;
        }
        if state.requests == 0 {
            return Some((state.since + timeouts.header, Expired::Header));
        }
        // A request arriving is not idle: it has the header timeout, whatever the idle one.
        if let Some(since) = state.header_since {
            return Some((since + timeouts.header, Expired::Header));
        }
        let idle = match closing {
            Some(asked) => asked.max(state.since) + timeouts.header,
            None => state.since + timeouts.idle,
        };
        Some((idle, Expired::Idle))
    }

    /// Completes when the clock runs out.
    async fn expired(&self, timeouts: Timeouts, closing: Option<Instant>) -> Expired {
        loop {
            match self.deadline(timeouts, closing) {
                None => self.changed.notified().await,
                Some((at, why)) if Instant::now() >= at => return why,
                // Woken early: the state changed; look again.
                Some((at, _)) => tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = self.changed.notified() => {}
                },
            }
        }
    }
}

/// One request in flight on a connection, until dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The connection's bytes, telling its `Activity` when some arrive.
struct Watched<Io> {
    io: Io,
    activity: Arc<Activity>,
}

impl<Io: AsyncRead + Unpin> AsyncRead for Watched<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.received();
        }
        polled
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Watched<Io> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        // hyper queues a response's pieces for one `writev` only if the stream says it can.
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The router as hyper's service, counting each request in flight until its response body
/// ends (or is dropped: the client went away).
struct Tracked {
    app: TowerToHyperService<Router>,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin(request.version());
        let answer = hyper::service::Service::call(&self.app, request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| TrackedBody { body, _in_flight: in_flight }))
        })
    }
}

/// A response body holding its request's [`InFlight`].
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts =
        Timeouts { header: Duration::from_secs(10), idle: Duration::from_secs(120) };

    #[tokio::test(start_paused = true)]
    async fn the_first_request_must_come_within_the_header_timeout() {
        let activity = Arc::new(Activity::new());
        let started = Instant::now();
        assert_eq!(activity.expired(TIMEOUTS, None).await, Expired::Header);
        assert_eq!(started.elapsed(), TIMEOUTS.header);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_end_of_the_last_request() {
        let activity = Arc::new(Activity::new());
        let request = activity.begin(Version::HTTP_11);
        // In flight: never expires, however long.
        let waiting =
            tokio::time::timeout(Duration::from_secs(3600), activity.expired(TIMEOUTS, None));
        assert!(waiting.await.is_err(), "a request in flight is not idle");
        let ended = Instant::now();
        drop(request);
        assert_eq!(activity.expired(TIMEOUTS, None).await, Expired::Idle);
        assert_eq!(ended.elapsed(), TIMEOUTS.idle);
        // Asked to close long after it went idle: a header timeout of grace from then.
        tokio::time::advance(Duration::from_secs(30)).await;
        let asked = Instant::now();
        assert_eq!(activity.expired(TIMEOUTS, Some(asked)).await, Expired::Idle);
        assert_eq!(asked.elapsed(), TIMEOUTS.header);
    }

    #[tokio::test(start_paused = true)]
    async fn an_http1_header_begun_while_idle_has_the_header_timeout() {
        let activity = Arc::new(Activity::new());
        drop(activity.begin(Version::HTTP_11));
        tokio::time::advance(Duration::from_secs(60)).await;
        let first_byte = Instant::now();
        activity.received();
        assert_eq!(activity.expired(TIMEOUTS, None).await, Expired::Header);
        assert_eq!(first_byte.elapsed(), TIMEOUTS.header);
        // On HTTP/2 bytes while idle are frames: only the idle timeout counts.
        let h2 = Arc::new(Activity::new());
        drop(h2.begin(Version::HTTP_2));
        h2.received();
        assert_eq!(h2.expired(TIMEOUTS, None).await, Expired::Idle);
    }
}
