//! The client's decoding of a server's answers, callable without a server: the entry points of
//! openkv's fuzz targets (`crates/openkv-fuzz-checks`). Not an API (hidden from the docs, no
//! stability promise): each function is exactly what the client runs on the bytes a server
//! sent, since a malicious or broken server is a peer too, and what it sends must never make
//! the client panic — only [`Error::Protocol`] and its kin.

use crate::backend::{AtomicWrite, CommitOutcome, QueuedMessage, RawEntry, ReadRange};
use crate::client::{decode, parse_metadata};
use crate::error::{Error, Result};
use crate::watch::FrameDecoder;
use crate::wire;

/// What the metadata exchange took from a server's answer, for the fuzz targets' checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataSummary {
    /// The protocol version the server chose.
    pub version: u32,
    /// The strong endpoint's base URL (no trailing `/`).
    pub strong: String,
    /// The eventual endpoint's, if any.
    pub eventual: Option<String>,
    /// When the data-path token expires, Unix milliseconds.
    pub expires_at_ms: i64,
}

/// A metadata exchange's answer `body` from the server at `url` (an `http(s)://` URL), at
/// `now_ms`.
pub fn metadata_answer(url: &str, now_ms: i64, body: &[u8]) -> Result<MetadataSummary> {
    let url = reqwest::Url::parse(url).map_err(|e| Error::InvalidOption(e.to_string()))?;
    let m = parse_metadata(&url, now_ms, body)?;
    Ok(MetadataSummary {
        version: m.version,
        strong: m.strong,
        eventual: m.eventual,
        expires_at_ms: m.expires_at_ms,
    })
}

/// A `snapshot_read` answer to `request` (protocol `version`; `strong`: the read went to the
/// strong endpoint).
pub fn snapshot_read_answer(
    request: &[ReadRange],
    body: &[u8],
    version: u32,
    strong: bool,
) -> Result<Vec<Vec<RawEntry>>> {
    wire::snapshot_read_output(request, decode(body, "snapshot_read")?, version, strong)
}

/// An `atomic_write` answer to `write`.
pub fn atomic_write_answer(write: &AtomicWrite, body: &[u8]) -> Result<CommitOutcome> {
    wire::atomic_write_output(write, decode(body, "atomic_write")?)
}

/// A `/watch` stream of `keys` arriving in `chunks` (cut anywhere): the keys' state after each
/// frame that is not a keep-alive, up to the first error, which ends the list as a watch
/// stream ends. (A stream that stops inside a frame simply has no state for that frame: the
/// client would reconnect.)
pub fn watch_answer<'a>(
    keys: &[Vec<u8>],
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<Result<Vec<Option<RawEntry>>>> {
    let mut frames = FrameDecoder::default();
    let mut state: Option<Vec<Option<RawEntry>>> = None;
    let mut out = Vec::new();
    for chunk in chunks {
        frames.push(chunk);
        loop {
            let next = frames.next_frame().and_then(|frame| match frame {
                None => Ok(None),
                Some(frame) if frame.is_empty() => Ok(Some(None)), // a keep-alive
                Some(frame) => decode(&frame, "watch")
                    .and_then(|output| wire::watch_output(keys, state.as_deref(), output))
                    .map(|s| Some(Some(s))),
            });
            match next {
                Ok(None) => break,
                Ok(Some(None)) => continue,
                Ok(Some(Some(now))) => {
                    state = Some(now.clone());
                    out.push(Ok(now));
                }
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

/// A queue `take` answer (openkv's extension): the messages the client hands its listener.
pub fn queue_take_answer(body: &[u8]) -> Result<Vec<QueuedMessage>> {
    crate::take_answer(body)
}
