//! List selectors, options, cursors and the list stream.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use futures::Stream;

use crate::backend::{Consistency, RawEntry, ReadRange};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::kv::{Entry, Kv};
use crate::limits::{DEFAULT_LIST_BATCH_SIZE, MAX_LIST_BATCH_FROM_LIMIT};

/// Deno's cursor alphabet: URL-safe base64, written with padding, read with or without.
const CURSOR_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl Kv {
    /// Lists the entries a selector picks, as a stream fetched in batches.
    ///
    /// Fails at once (before any read) on a malformed selector, cursor or option.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use futures::TryStreamExt;
    /// use openkv::{key, Kv, ListOptions, Selector, Value};
    /// let kv = Kv::open_in_memory().await?;
    /// for name in ["alice", "bob", "carol"] {
    ///     kv.set(&key!["users", name], Value::Bytes(name.into())).await?;
    /// }
    /// let page: Vec<_> = kv
    ///     .list(Selector::prefix(key!["users"]), ListOptions::new().limit(2))?
    ///     .try_collect()
    ///     .await?;
    /// assert_eq!(page.len(), 2);
    /// assert_eq!(page[1].key, key!["users", "bob"]);
    /// # Ok::<(), openkv::Error>(()) }).unwrap();
    /// ```
    pub fn list(&self, selector: Selector, options: ListOptions) -> Result<ListStream> {
        ListStream::new(self.clone(), &selector, options)
    }
}

/// Which keys a [`Kv::list`] visits.
///
/// - [`Selector::prefix`]: every key that starts with the prefix, **not** the prefix itself.
/// - `.start(k)` / `.end(k)` on a prefix selector: only keys `>= k` / `< k` (one of the two).
/// - [`Selector::range`]: keys in `[start, end)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Selector {
    prefix: Option<Key>,
    start: Option<Key>,
    end: Option<Key>,
}

impl Selector {
    /// Keys strictly under `prefix`. The empty prefix selects every key.
    pub fn prefix(prefix: Key) -> Self {
        Selector { prefix: Some(prefix), start: None, end: None }
    }

    /// Keys in `[start, end)`.
    pub fn range(start: Key, end: Key) -> Self {
        Selector { prefix: None, start: Some(start), end: Some(end) }
    }

    /// Restricts a prefix selector to keys `>= start` (which must lie under the prefix).
    pub fn start(mut self, start: Key) -> Self {
        self.start = Some(start);
        self
    }

    /// Restricts a prefix selector to keys `< end` (which must lie under the prefix).
    pub fn end(mut self, end: Key) -> Self {
        self.end = Some(end);
        self
    }
}

/// The byte-level form of a selector (Deno's `RawSelector`).
#[derive(Clone, Debug)]
pub(crate) struct RawSelector {
    prefix: Option<Vec<u8>>,
    start: Option<Vec<u8>>,
    end: Option<Vec<u8>>,
}

impl RawSelector {
    pub(crate) fn new(s: &Selector) -> Result<Self> {
        let enc = |k: &Option<Key>| k.as_ref().map(Key::encode).transpose();
        let (prefix, start, end) = (enc(&s.prefix)?, enc(&s.start)?, enc(&s.end)?);
        match (&prefix, &start, &end) {
            (Some(_), Some(_), Some(_)) => Err(Error::InvalidSelector(
                "Selector can not specify both 'start' and 'end' key when specifying 'prefix'"
                    .into(),
            )),
            (Some(p), Some(k), None) if !k.starts_with(p) || k.len() == p.len() => Err(
                Error::InvalidSelector("Start key is not in the keyspace defined by prefix".into()),
            ),
            (Some(p), None, Some(k)) if !k.starts_with(p) || k.len() == p.len() => Err(
                Error::InvalidSelector("End key is not in the keyspace defined by prefix".into()),
            ),
            (None, Some(a), Some(b)) if a > b => {
                Err(Error::InvalidSelector("Start key is greater than end key".into()))
            }
            (None, _, _) if start.is_none() || end.is_none() => Err(Error::InvalidSelector(
                "a range selector needs both a start and an end key".into(),
            )),
            _ => Ok(RawSelector { prefix, start, end }),
        }
    }

    fn range_start(&self) -> Vec<u8> {
        match (&self.start, &self.prefix) {
            (Some(s), _) => s.clone(),
            (None, Some(p)) => [p.as_slice(), &[0x00]].concat(),
            (None, None) => unreachable!("validated: a range selector has a start"),
        }
    }

    fn range_end(&self) -> Vec<u8> {
        match (&self.end, &self.prefix) {
            (Some(e), _) => e.clone(),
            (None, Some(p)) => [p.as_slice(), &[0xff]].concat(),
            (None, None) => unreachable!("validated: a range selector has an end"),
        }
    }

    /// What cursors are relative to: the prefix, or the common bytes of start and end.
    fn common_prefix(&self) -> &[u8] {
        if let Some(p) = &self.prefix {
            return p;
        }
        let (a, b) = (self.start.as_deref().unwrap_or(&[]), self.end.as_deref().unwrap_or(&[]));
        let n = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        &a[..n]
    }

    /// The cursor pointing after `key` (Deno's format).
    pub(crate) fn encode_cursor(&self, key: &[u8]) -> String {
        let p = self.common_prefix();
        CURSOR_B64.encode(key.strip_prefix(p).unwrap_or(key))
    }

    /// The `[start, end)` bytes to read, resuming after `cursor` if given.
    pub(crate) fn bounds(&self, reverse: bool, cursor: Option<&str>) -> Result<(Vec<u8>, Vec<u8>)> {
        let Some(cursor) = cursor else {
            return Ok((self.range_start(), self.range_end()));
        };
        let rest = CURSOR_B64
            .decode(cursor)
            .map_err(|e| Error::InvalidCursor(format!("not URL-safe base64: {e}")))?;
        let at = [self.common_prefix(), &rest].concat();
        let (first, last) = if reverse {
            (self.range_start(), at)
        } else {
            ([at.as_slice(), &[0x00]].concat(), self.range_end())
        };
        if self.start.as_ref().is_some_and(|s| first < *s)
            || self.end.as_ref().is_some_and(|e| last > *e)
            || self.prefix.as_ref().is_some_and(|p| !first.starts_with(p) || !last.starts_with(p))
        {
            return Err(Error::InvalidCursor("the cursor is outside the selector's range".into()));
        }
        Ok((first, last))
    }
}

/// Options of [`Kv::list`]. `ListOptions::default()`: no limit, ascending, no cursor, batch
/// size 100 (or `limit` clamped to 500 when only `limit` is given), strong consistency.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ListOptions {
    /// Stop after this many entries (at least 1).
    pub limit: Option<usize>,
    /// Resume after the entry a previous list's [`ListStream::cursor`] pointed at.
    pub cursor: Option<String>,
    /// Visit keys in descending order.
    pub reverse: bool,
    /// Entries fetched per round trip to the store (1 to 1000).
    pub batch_size: Option<usize>,
    /// Read consistency.
    pub consistency: Consistency,
}

impl ListOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets `limit`.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }
    /// Sets `cursor`.
    pub fn cursor(mut self, c: impl Into<String>) -> Self {
        self.cursor = Some(c.into());
        self
    }
    /// Sets `reverse`.
    pub fn reverse(mut self, r: bool) -> Self {
        self.reverse = r;
        self
    }
    /// Sets `batch_size`.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = Some(n);
        self
    }
    /// Sets `consistency`.
    pub fn consistency(mut self, c: Consistency) -> Self {
        self.consistency = c;
        self
    }
}

type Fetch = Pin<Box<dyn Future<Output = Result<Vec<RawEntry>>> + Send>>;

/// The entries of a [`Kv::list`], fetched in batches as the stream is polled.
///
/// A `Stream` of `Result<Entry>`. After an error the stream ends.
pub struct ListStream {
    kv: Kv,
    selector: RawSelector,
    start: Vec<u8>,
    end: Vec<u8>,
    reverse: bool,
    consistency: Consistency,
    batch_size: usize,
    limit: Option<usize>,
    yielded: usize,
    buffer: VecDeque<RawEntry>,
    last_batch: bool,
    done: bool,
    exhausted: bool,
    last_key: Option<Vec<u8>>,
    pending: Option<(Fetch, usize)>,
}

impl std::fmt::Debug for ListStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListStream").field("selector", &self.selector).finish_non_exhaustive()
    }
}

impl ListStream {
    pub(crate) fn new(kv: Kv, selector: &Selector, options: ListOptions) -> Result<Self> {
        let max = kv.limits().max_read_entries;
        if options.limit == Some(0) {
            return Err(Error::InvalidOption("limit must be positive".into()));
        }
        let batch_size = match (options.batch_size, options.limit) {
            (Some(0), _) => return Err(Error::InvalidOption("batchSize must be positive".into())),
            (Some(b), _) if b > max => return Err(Error::TooManyEntries { max }),
            (Some(b), _) => b,
            (None, Some(l)) => l.min(MAX_LIST_BATCH_FROM_LIMIT).min(max),
            (None, None) => DEFAULT_LIST_BATCH_SIZE.min(max),
        };
        let raw = RawSelector::new(selector)?;
        let (start, end) = raw.bounds(options.reverse, options.cursor.as_deref())?;
        let limits = kv.limits();
        crate::validate::read_key(limits, &start)?;
        Ok(ListStream {
            kv,
            selector: raw,
            start,
            end,
            reverse: options.reverse,
            consistency: options.consistency,
            batch_size,
            limit: options.limit,
            yielded: 0,
            buffer: VecDeque::new(),
            last_batch: false,
            done: false,
            exhausted: false,
            last_key: None,
            pending: None,
        })
    }

    /// Where a later list with the same selector can resume, like Deno's `iter.cursor`:
    /// `None` before the first entry was yielded, `Some("")` once the selector's range is
    /// exhausted, else the position after the last entry yielded.
    pub fn cursor(&self) -> Option<String> {
        if self.exhausted {
            return Some(String::new());
        }
        self.last_key.as_ref().map(|k| self.selector.encode_cursor(k))
    }

    fn start_fetch(&mut self) -> (Fetch, usize) {
        let remaining = self.limit.map_or(usize::MAX, |l| l - self.yielded);
        let n = self.batch_size.min(remaining);
        let range = ReadRange {
            start: self.start.clone(),
            end: self.end.clone(),
            limit: n as u32,
            reverse: self.reverse,
        };
        let kv = self.kv.clone();
        let consistency = self.consistency;
        let fut = async move {
            let mut out = kv.snapshot_read(vec![range], consistency).await?;
            Ok(out.pop().unwrap_or_default())
        };
        (Box::pin(fut), n)
    }
}

impl Stream for ListStream {
    type Item = Result<Entry>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if this.limit.is_some_and(|l| this.yielded >= l) {
                this.done = true;
                return Poll::Ready(None);
            }
            if let Some(raw) = this.buffer.pop_front() {
                this.yielded += 1;
                let entry = Entry::from_raw(raw.clone());
                this.last_key = Some(raw.key);
                if entry.is_err() {
                    this.done = true;
                }
                return Poll::Ready(Some(entry));
            }
            if this.last_batch {
                this.done = true;
                this.exhausted = true;
                return Poll::Ready(None);
            }
            let pending = match this.pending.take() {
                Some(pending) => pending,
                None => this.start_fetch(),
            };
            let (fut, asked) = this.pending.insert(pending);
            let asked = *asked;
            match fut.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    this.pending = None;
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Ok(batch)) => {
                    this.pending = None;
                    if batch.len() < asked {
                        this.last_batch = true;
                    }
                    if let Some(last) = batch.last() {
                        if this.reverse {
                            this.end = last.key.clone();
                        } else {
                            this.start = [last.key.as_slice(), &[0x00]].concat();
                        }
                    }
                    this.buffer.extend(batch);
                }
            }
        }
    }
}
