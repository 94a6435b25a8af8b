//! `watch` over KV Connect: `POST <endpoint>/watch` (protocol version 3 only), answered by a
//! stream of frames — a `u32` little-endian length, then a `WatchOutput` message; a zero-length
//! frame is a keep-alive (servers send one about every 5 s).
//!
//! - **Frames are untrusted**: a length may be split across network chunks; a length over
//!   [`MAX_FRAME`] is [`Error::Protocol`] before anything is allocated for it; every message is
//!   checked against the watched keys (`wire::watch_output`).
//! - **Reconnects**: a stream that breaks (network error, a server restart or shutdown, no
//!   byte for [`idle_timeout`]) is opened again with the client's usual retry rules (backoff,
//!   `remote_retry_timeout`, one re-authentication). Between two connections the client waits
//!   a backoff too (50 ms doubling to 3 s, reset once a connection lasted that long), so a
//!   server that ends streams at once is not hammered. The first frame of a new connection is
//!   the whole state; it is emitted only if it differs from the last snapshot emitted.
//! - A protocol error, a 4xx, or a server unreachable for longer than the retry timeout is
//!   the stream's last item.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use rand::Rng;
use tokio::time::Instant;

use crate::backend::{RawEntry, WatchSnapshots};
use crate::client::{
    check_status, decode, lock, Attempt, RemoteBackend, FIRST_BACKOFF, MAX_BACKOFF,
};
use crate::error::{Error, Failure, Result};
use crate::versionstamp::Versionstamp;
use crate::wire;
use openkv_core::watch::{snapshot_stream, versions};

/// The largest frame accepted (a frame holds at most 10 entries of ≤ 64 KiB values by default;
/// this leaves room for raised limits without letting a bogus length allocate gigabytes).
pub(super) const MAX_FRAME: usize = 16 << 20;
/// Keep-alives come every ~5 s; a stream silent for this long is taken as broken.
const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// A watch request is open for as long as the watch runs; the client's per-request timeout
/// does not apply. (It is renewed, transparently, after this long.)
const MAX_CONNECTION_TIME: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a stream may stay silent: the request timeout, but at least three keep-alives.
fn idle_timeout(backend: &RemoteBackend) -> Duration {
    backend.config.request_timeout.max(MIN_IDLE_TIMEOUT)
}

fn unsupported(version: u32) -> Error {
    Error::Unsupported(format!(
        "watch needs KV Connect protocol version 3 (/watch), and the server chose version \
         {version}"
    ))
}

/// Splits a byte stream into frames.
#[derive(Debug, Default)]
pub(super) struct FrameDecoder {
    buffer: Vec<u8>,
}

impl FrameDecoder {
    pub(super) fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete frame's message bytes (empty for a keep-alive), or `None` until more
    /// bytes arrive.
    pub(super) fn next_frame(&mut self) -> Result<Option<Vec<u8>>> {
        let Some(header) = self.buffer.first_chunk::<4>() else { return Ok(None) };
        let length = u32::from_le_bytes(*header) as usize;
        if length > MAX_FRAME {
            return Err(Error::Protocol(format!(
                "a watch frame of {length} bytes (at most {MAX_FRAME} accepted)"
            )));
        }
        if self.buffer.len() < 4 + length {
            return Ok(None);
        }
        let frame = self.buffer[4..4 + length].to_vec();
        self.buffer.drain(..4 + length);
        Ok(Some(frame))
    }

    /// Bytes of an unfinished frame are buffered.
    fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }
}

/// [`Backend::watch`](crate::Backend::watch) for a remote database.
pub(super) fn follow(backend: Arc<RemoteBackend>, keys: Vec<Vec<u8>>) -> Result<WatchSnapshots> {
    // The metadata of open is still at hand: refuse at once on version 1 or 2. (A server
    // that changes its version later is caught when the stream connects.)
    let known = backend.metadata.read().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(metadata) = known.filter(|m| m.version < 3) {
        return Err(unsupported(metadata.version));
    }
    let body = openkv_proto::convert::watch_to_wire(&keys).encode_to_vec();
    let watch = RemoteWatch {
        backend,
        keys,
        body,
        state: None,
        emitted: None,
        connection: None,
        pause: FIRST_BACKOFF,
    };
    Ok(snapshot_stream(watch, |mut watch| async move {
        let item = watch.next().await?;
        Some((item, watch))
    }))
}

struct RemoteWatch {
    backend: Arc<RemoteBackend>,
    keys: Vec<Vec<u8>>,
    /// The encoded `Watch` request, sent again at each reconnect.
    body: Vec<u8>,
    /// The keys' state as the server last described it.
    state: Option<Vec<Option<RawEntry>>>,
    /// The versions of the last snapshot emitted.
    emitted: Option<Vec<Option<Versionstamp>>>,
    connection: Option<Connection>,
    /// The wait before the next reconnect.
    pause: Duration,
}

struct Connection {
    response: reqwest::Response,
    frames: FrameDecoder,
    opened: Instant,
}

/// Why a connection stopped giving frames.
enum Broken {
    /// Open a new connection.
    Reconnect(String),
    /// End the stream with this error.
    Fatal(Error),
}

impl RemoteWatch {
    /// The next snapshot to emit; `None` once the database is closed.
    async fn next(&mut self) -> Option<Result<Vec<Option<RawEntry>>>> {
        loop {
            let connection = match &mut self.connection {
                Some(connection) => connection,
                None => match self.backend.open_watch(&self.body).await {
                    Ok(response) => self.connection.insert(Connection {
                        response,
                        frames: FrameDecoder::default(),
                        opened: Instant::now(),
                    }),
                    Err(Error::Closed) => return None,
                    Err(e) => return Some(Err(e)),
                },
            };
            let frame = match connection.next_frame(idle_timeout(&self.backend)).await {
                Ok(frame) => frame,
                Err(Broken::Fatal(e)) => return Some(Err(e)),
                Err(Broken::Reconnect(why)) => {
                    tracing::debug!("KV Connect watch stream broken, reconnecting: {why}");
                    let lived = connection.opened.elapsed();
                    self.connection = None;
                    self.wait_before_reconnecting(lived).await;
                    continue;
                }
            };
            if frame.is_empty() {
                continue; // keep-alive
            }
            let state = match decode(&frame, "watch")
                .and_then(|output| wire::watch_output(&self.keys, self.state.as_deref(), output))
            {
                Ok(state) => state,
                Err(e) => return Some(Err(e)),
            };
            let now = versions(&state);
            self.state = Some(state.clone());
            if self.emitted.as_ref() != Some(&now) {
                self.emitted = Some(now);
                return Some(Ok(state));
            }
        }
    }

    async fn wait_before_reconnecting(&mut self, lived: Duration) {
        if lived >= MAX_BACKOFF {
            self.pause = FIRST_BACKOFF; // it worked for a while: start over
        }
        let pause = self.pause.mul_f64(lock(&self.backend.rng).random_range(0.5..=1.0));
        self.pause = (self.pause * 2).min(MAX_BACKOFF);
        tokio::time::sleep(pause).await;
    }
}

impl Connection {
    async fn next_frame(&mut self, idle: Duration) -> std::result::Result<Vec<u8>, Broken> {
        loop {
            if let Some(frame) = self.frames.next_frame().map_err(Broken::Fatal)? {
                return Ok(frame);
            }
            let chunk = match tokio::time::timeout(idle, self.response.chunk()).await {
                Err(_) => return Err(Broken::Reconnect(format!("nothing received for {idle:?}"))),
                Ok(Err(e)) => return Err(Broken::Reconnect(e.to_string())),
                Ok(Ok(None)) => {
                    let cut = if self.frames.is_empty() { "" } else { " inside a frame" };
                    return Err(Broken::Reconnect(format!("the server ended the stream{cut}")));
                }
                Ok(Ok(Some(chunk))) => chunk,
            };
            self.frames.push(&chunk);
        }
    }
}

impl RemoteBackend {
    /// Opens a `/watch` stream: the response, once its status says the stream follows.
    async fn open_watch(&self, body: &[u8]) -> Result<reqwest::Response> {
        self.with_retries(true, |_| async move {
            let metadata = self.metadata().await.map_err(Attempt::Fail)?;
            if metadata.version < 3 {
                return Err(Attempt::Fail(unsupported(metadata.version)));
            }
            let request = self
                .data_request(&metadata, "watch", body.to_vec(), true)
                .timeout(MAX_CONNECTION_TIME);
            // The headers must come within the request timeout; the body takes its time.
            let response =
                match tokio::time::timeout(self.config.request_timeout, request.send()).await {
                    Err(_) => return Err(Attempt::Retry(Failure::new("watch: no answer in time"))),
                    Ok(Err(e)) => return Err(Attempt::Retry(Failure::caused("watch", e))),
                    Ok(Ok(response)) => response,
                };
            if response.status().is_success() {
                return Ok(response);
            }
            Err(match check_status(response, false).await {
                Err(attempt) => attempt,
                Ok(_) => {
                    Attempt::Retry(Failure::new("watch: a success status was not taken as one"))
                }
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(message: &[u8]) -> Vec<u8> {
        let mut out = (message.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(message);
        out
    }

    #[test]
    fn frames_split_anywhere_come_out_whole() {
        let mut stream = framed(b"first");
        stream.extend(framed(b""));
        stream.extend(framed(&[7; 300]));
        for chunk_size in [1, 2, 3, 5, 64, stream.len()] {
            let mut decoder = FrameDecoder::default();
            let mut frames = Vec::new();
            for chunk in stream.chunks(chunk_size) {
                decoder.push(chunk);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    frames.push(frame);
                }
            }
            assert_eq!(frames, vec![b"first".to_vec(), vec![], vec![7; 300]], "{chunk_size}");
            assert!(decoder.is_empty());
        }
    }

    #[test]
    fn a_huge_length_is_refused_before_any_allocation() {
        let mut decoder = FrameDecoder::default();
        decoder.push(&u32::MAX.to_le_bytes());
        assert!(matches!(decoder.next_frame(), Err(Error::Protocol(_))));
        let mut decoder = FrameDecoder::default();
        let length = ((MAX_FRAME + 1) as u32).to_le_bytes();
        decoder.push(&length[..3]);
        assert!(matches!(decoder.next_frame(), Ok(None)), "the length is not complete yet");
        decoder.push(&length[3..]);
        assert!(matches!(decoder.next_frame(), Err(Error::Protocol(_))));
    }
}
