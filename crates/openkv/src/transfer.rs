//! Moving a database in and out as NDJSON, one entry per line (the [line format](crate::export)):
//! the engine of `openkv export` / `openkv import`, here so that every front end — the command
//! line, `openkv serve`'s web console, a program — imports and exports with the same
//! semantics and the same per-line report.
//!
//! - **Import**: an [`Importer`] takes lines one at a time (from a file, stdin, an upload) and
//!   commits them in batches, in line order; [`ImportReport`] says what it did,
//!   [`ImportStopped`] where it stopped and from which line to resume.
//! - **Export**: an [`ExportScan`] reads a key range in batches of raw entries, each batch one
//!   snapshot; a [`Snapshot`] is one consistent copy of the whole database to export from
//!   while others keep writing.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use openkv::transfer::{ExportScan, ImportOptions, Importer};
//! use openkv::{export::entry_line, key, Key, Kv};
//!
//! let source = Kv::open_in_memory().await?;
//! source.set(&key!["a"], b"1".to_vec()).await?;
//! let mut lines = Vec::new();
//! let mut scan = ExportScan::new(&source, &Key::default())?;
//! while let Some(batch) = scan.next_batch().await? {
//!     lines.extend(batch.iter().map(|entry| entry_line(entry).to_string()));
//! }
//!
//! let target = Kv::open_in_memory().await?;
//! let mut importer = Importer::new(&target, ImportOptions::new());
//! for (n, line) in lines.iter().enumerate() {
//!     importer.line(n as u64 + 1, line.as_bytes()).await.unwrap();
//! }
//! let report = importer.finish().await.unwrap();
//! assert_eq!((report.lines, report.written, report.errors), (1, 1, 0));
//! assert!(target.get(&key!["a"]).await?.is_some());
//! # Ok::<(), openkv::Error>(()) }).unwrap();
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};

use crate::backend::{BackupSummary, Consistency, Mutation, RawEntry, ReadRange};
use crate::error::{Error, Result};
use crate::export::{parse_line, LineError};
use crate::key::Key;
use crate::kv::Kv;
use crate::limits::Limits;
use crate::value::Value;

/// Entries per atomic commit unless [`ImportOptions::batch_size`] says otherwise (`openkv
/// import --batch-size`'s default).
pub const DEFAULT_IMPORT_BATCH_SIZE: usize = 500;

/// How many [`LineFailure`]s an [`ImportReport`] keeps unless
/// [`ImportOptions::keep_failures`] says otherwise (the command line prints as many); the
/// report counts them all.
pub const DEFAULT_FAILURES_KEPT: usize = 20;

/// Entries an [`ExportScan`] reads per batch at most (fewer if the database's
/// `max_read_entries` is lower): each batch is one read, and one snapshot.
pub const EXPORT_BATCH_SIZE: usize = 1000;

/// One line that could not be imported, and why, in words for the person who has to fix the
/// file (the parser's message, or the database's refusal: `Value too large …`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LineFailure {
    /// The line's number, as the caller gave it to [`Importer::line`] (1-based in a file).
    pub line: u64,
    /// Why it was not imported.
    pub message: String,
}

impl fmt::Display for LineFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Called with every line failure as it happens (see [`ImportOptions::on_failure`]).
type FailureObserver = Box<dyn FnMut(&LineFailure) + Send>;

/// How to import. Every setting has a default:
///
/// | setting | default |
/// |---|---|
/// | [`batch_size`](Self::batch_size) | [`DEFAULT_IMPORT_BATCH_SIZE`] (500) entries per commit |
/// | [`resume_from`](Self::resume_from) | line 1: nothing skipped |
/// | [`keep_failures`](Self::keep_failures) | [`DEFAULT_FAILURES_KEPT`] (20) |
/// | [`on_failure`](Self::on_failure) | none |
pub struct ImportOptions {
    batch_size: usize,
    resume_from: u64,
    keep_failures: usize,
    on_failure: Option<FailureObserver>,
}

impl fmt::Debug for ImportOptions {
    // By hand: the observer is a closure.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportOptions")
            .field("batch_size", &self.batch_size)
            .field("resume_from", &self.resume_from)
            .field("keep_failures", &self.keep_failures)
            .field("on_failure", &self.on_failure.is_some())
            .finish()
    }
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            batch_size: DEFAULT_IMPORT_BATCH_SIZE,
            resume_from: 1,
            keep_failures: DEFAULT_FAILURES_KEPT,
            on_failure: None,
        }
    }
}

impl ImportOptions {
    /// The defaults in the table above.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most this many entries per atomic commit (at least 1); a batch also ends where the
    /// next entry would break the database's write limits (mutations per commit, total
    /// mutation and key sizes).
    pub fn batch_size(mut self, entries: usize) -> Self {
        self.batch_size = entries.max(1);
        self
    }

    /// Skips the lines numbered below `line` (counted as
    /// [`before_resume`](ImportReport::before_resume)): to resume an import that stopped,
    /// with the line its [`ImportStopped`] named. Lines are committed in order, batch by
    /// batch, so everything before that line is in the database already.
    pub fn resume_from(mut self, line: u64) -> Self {
        self.resume_from = line;
        self
    }

    /// Keeps the first `n` line failures in the report ([`ImportReport::failures`]); the
    /// others are only counted ([`ImportReport::errors`]), so a file of garbage cannot grow
    /// the report without bound.
    pub fn keep_failures(mut self, n: usize) -> Self {
        self.keep_failures = n;
        self
    }

    /// Calls `observe` with every line failure as it happens, kept in the report or not: to
    /// show them while the import runs (the command line prints each as
    /// `import: line N: message`). It runs on the importing task: it must be quick.
    pub fn on_failure(mut self, observe: impl FnMut(&LineFailure) + Send + 'static) -> Self {
        self.on_failure = Some(Box::new(observe));
        self
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// Lines given to the importer (every call of [`Importer::line`]).
    pub lines: u64,
    /// Entries committed.
    pub written: u64,
    /// Entries skipped because their `expireAt` had passed (by the database's clock).
    pub expired: u64,
    /// Lines skipped because they come before [`ImportOptions::resume_from`].
    pub before_resume: u64,
    /// Lines of white space only, skipped.
    pub blank: u64,
    /// Lines that could not be imported, all of them.
    pub errors: u64,
    /// The first of them ([`ImportOptions::keep_failures`]), in the order they were found:
    /// a line the database refuses is found when its batch is committed, after the parse
    /// failures of the lines read meanwhile.
    pub failures: Vec<LineFailure>,
}

impl ImportReport {
    /// The report as one JSON object (`openkv import --json`): `lines`, `written`,
    /// `skipped: {expired, beforeResume, blank}`, `errors` — the counts; the failures are
    /// [`failures`](Self::failures) (each serializes as `{"line": …, "message": …}`).
    pub fn json(&self) -> Json {
        json!({
            "lines": self.lines,
            "written": self.written,
            "skipped": {"expired": self.expired, "beforeResume": self.before_resume, "blank": self.blank},
            "errors": self.errors,
        })
    }

    /// The report as the sentence `openkv import` ends with.
    pub fn text(&self) -> String {
        format!(
            "import: read {} lines, wrote {} entries, skipped {} expired, {} before \
             --resume-from and {} blank lines; {} errors",
            self.lines, self.written, self.expired, self.before_resume, self.blank, self.errors
        )
    }
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StopCause {
    /// The database failed otherwise than by refusing the entries (unavailable, poisoned,
    /// closed, an unknown outcome, …): nothing from the stop's line on was written.
    #[error(transparent)]
    Database(Error),
    /// The caller stopped the import ([`Importer::interrupt`]).
    #[error("interrupted")]
    Interrupted,
    /// The importer had stopped already and was given more work: nothing was done.
    #[error("the import had stopped already")]
    AlreadyStopped,
}

/// An import stopped before [`line`](Self::line): every line before it is done (written,
/// skipped or failed), none from it on. Run the import again with
/// [`ImportOptions::resume_from`] that line to continue. It carries the report of what was
/// done ([`report`](Self::report)).
#[derive(Debug)]
pub struct ImportStopped {
    line: u64,
    cause: StopCause,
    // Boxed: the report is a few hundred bytes, and errors travel in `Result`s.
    report: Box<ImportReport>,
}

impl ImportStopped {
    /// The line to resume from.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Why the import stopped.
    pub fn cause(&self) -> &StopCause {
        &self.cause
    }

    /// What the import did until it stopped.
    pub fn report(&self) -> &ImportReport {
        &self.report
    }

    /// The report, owned.
    pub fn into_report(self) -> ImportReport {
        *self.report
    }
}

impl fmt::Display for ImportStopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = self.line;
        write!(
            f,
            "import stopped at line {line}: {}. The lines before it are written; run again \
             with --resume-from {line} to continue",
            self.cause
        )
    }
}

impl std::error::Error for ImportStopped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.cause {
            StopCause::Database(e) => Some(e),
            StopCause::Interrupted | StopCause::AlreadyStopped => None,
        }
    }
}

/// The entries waiting for the next commit, and their line numbers.
struct Batch {
    entries: Vec<(u64, Mutation)>,
    bytes: usize,
    key_bytes: usize,
}

impl Batch {
    fn new() -> Self {
        Batch { entries: Vec::new(), bytes: 0, key_bytes: 0 }
    }

    /// What `m` adds to the commit's total mutation size, as the limits count it.
    fn size(m: &Mutation) -> usize {
        m.key.len() + m.kind.value().map_or(0, Value::encoded_len)
    }

    /// Whether `m` fits in this batch without breaking a write limit. An empty batch takes
    /// anything: an entry too large for any commit is the database's to refuse, and then
    /// only its own line fails.
    fn fits(&self, m: &Mutation, max_entries: usize, limits: &Limits) -> bool {
        self.entries.is_empty()
            || (self.entries.len() < max_entries.min(limits.max_mutations)
                && self.bytes + Self::size(m) <= limits.max_total_mutation_size
                && self.key_bytes + m.key.len() <= limits.max_total_key_size)
    }

    fn push(&mut self, line: u64, m: Mutation) {
        self.bytes += Self::size(&m);
        self.key_bytes += m.key.len();
        self.entries.push((line, m));
    }
}

/// Imports export lines into a database, one line at a time, in batches committed atomically
/// in line order:
///
/// - a blank line is skipped ([`blank`](ImportReport::blank)), as is a line numbered below
///   [`resume_from`](ImportOptions::resume_from) and an entry whose `expireAt` has passed by
///   the database's clock ([`OpenOptions::clock`](crate::OpenOptions::clock));
/// - a line that is not UTF-8 or not an entry ([`parse_line`]) fails alone: a
///   [`LineFailure`], and the import goes on;
/// - a batch holds up to [`batch_size`](ImportOptions::batch_size) entries, fewer where the
///   next would break the write limits. If the database refuses a batch as a client error (a
///   key or value over a limit), each of its entries is committed alone, so that only the
///   bad lines fail; any other failure stops the import ([`ImportStopped`], naming the line
///   to resume from).
///
/// Nothing is committed until a batch is full: call [`finish`](Self::finish) at the end of
/// the input. A full batch commits in a task of its own (a tokio task: the importer must be
/// used inside a tokio runtime) while the next one is parsed; a batch's commit starts only
/// after the one before it ended, so batches still commit in line order and a stop still
/// means "everything before this line is in". Dropping an importer drops its pending batch,
/// uncommitted; a batch whose commit already started may still commit.
pub struct Importer {
    kv: Kv,
    limits: Limits,
    batch_size: usize,
    resume_from: u64,
    keep_failures: usize,
    on_failure: Option<FailureObserver>,
    batch: Batch,
    /// The commit of the batch before `batch`, if it has not been settled yet.
    in_flight: Option<tokio::task::JoinHandle<Committed>>,
    report: ImportReport,
    /// The line an earlier call stopped at: the importer does nothing more.
    stopped: Option<u64>,
}

/// What a batch's commit did.
struct Committed {
    written: u64,
    /// Lines the database refused, and why.
    failed: Vec<(u64, String)>,
    /// The line the import must stop at, and the failure that stopped it.
    stopped: Option<(u64, Error)>,
}

impl fmt::Debug for Importer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Importer")
            .field("batch_size", &self.batch_size)
            .field("resume_from", &self.resume_from)
            .field("pending", &self.batch.entries.len())
            .field("report", &self.report)
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

impl Importer {
    /// An importer into `kv` (a clone of the handle: the importer may move to another task).
    pub fn new(kv: &Kv, options: ImportOptions) -> Importer {
        Importer {
            kv: kv.clone(),
            limits: kv.limits().clone(),
            batch_size: options.batch_size,
            resume_from: options.resume_from,
            keep_failures: options.keep_failures,
            on_failure: options.on_failure,
            batch: Batch::new(),
            in_flight: None,
            report: ImportReport::default(),
            stopped: None,
        }
    }

    /// What the import did so far (the pending batch is not written yet).
    pub fn report(&self) -> &ImportReport {
        &self.report
    }

    /// Takes line number `line_no` (the caller counts: 1-based, increasing), with or without
    /// its line break. It may commit the batch before it; then an [`ImportStopped`] ends the
    /// import (the importer refuses more work afterwards).
    pub async fn line(&mut self, line_no: u64, bytes: &[u8]) -> Result<(), ImportStopped> {
        if let Some(line) = self.stopped {
            return Err(self.stop(line, StopCause::AlreadyStopped));
        }
        self.report.lines += 1;
        if line_no < self.resume_from {
            self.report.before_resume += 1;
            return Ok(());
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            self.fail(line_no, "not UTF-8 text".into());
            return Ok(());
        };
        if text.trim().is_empty() {
            self.report.blank += 1;
            return Ok(());
        }
        let mutation = match parse_line(text) {
            Ok(mutation) => mutation,
            Err(LineError(message)) => {
                self.fail(line_no, message);
                return Ok(());
            }
        };
        // The database's clock, so that what is skipped here is what a read there would
        // no longer see.
        if mutation.expire_at_ms.is_some_and(|at| at <= self.kv.now_ms()) {
            self.report.expired += 1;
            return Ok(());
        }
        if !self.batch.fits(&mutation, self.batch_size, &self.limits) {
            self.commit().await?;
        }
        self.batch.push(line_no, mutation);
        Ok(())
    }

    /// Counts line `line_no` as one the caller could not hand over (a line longer than it
    /// is willing to hold, say): a failure of that line with `message`, reported as a bad
    /// line is. Lines before `resume_from` are skipped as usual.
    pub fn reject(&mut self, line_no: u64, message: impl Into<String>) {
        self.report.lines += 1;
        if line_no < self.resume_from {
            self.report.before_resume += 1;
            return;
        }
        self.fail(line_no, message.into());
    }

    /// Commits the pending batch and returns the report: the end of a complete input.
    pub async fn finish(mut self) -> Result<ImportReport, ImportStopped> {
        if let Some(line) = self.stopped {
            return Err(self.stop(line, StopCause::AlreadyStopped));
        }
        self.commit().await?;
        self.settle().await?;
        Ok(self.report)
    }

    /// Stops the import before line `next_line` (the first line not given to
    /// [`line`](Self::line)): commits the pending batch, then returns the stop
    /// ([`StopCause::Interrupted`]) naming `next_line` — or, if that commit fails, the stop
    /// it caused, naming an earlier line.
    pub async fn interrupt(mut self, next_line: u64) -> ImportStopped {
        if let Some(line) = self.stopped {
            return self.stop(line, StopCause::AlreadyStopped);
        }
        let committed = match self.commit().await {
            Ok(()) => self.settle().await,
            Err(stopped) => Err(stopped),
        };
        match committed {
            Ok(()) => self.stop(next_line, StopCause::Interrupted),
            Err(stopped) => stopped,
        }
    }

    fn stop(&mut self, line: u64, cause: StopCause) -> ImportStopped {
        self.stopped = Some(line);
        ImportStopped { line, cause, report: Box::new(self.report.clone()) }
    }

    fn fail(&mut self, line: u64, message: String) {
        self.report.errors += 1;
        let failure = LineFailure { line, message };
        if let Some(observe) = &mut self.on_failure {
            observe(&failure);
        }
        if self.report.failures.len() < self.keep_failures {
            self.report.failures.push(failure);
        }
    }

    /// Starts the commit of the pending batch, after the previous batch's commit ended (and
    /// was settled: a stop there stops the import before this batch).
    async fn commit(&mut self) -> Result<(), ImportStopped> {
        let batch = std::mem::replace(&mut self.batch, Batch::new());
        self.settle().await?;
        if !batch.entries.is_empty() {
            self.in_flight = Some(tokio::spawn(commit_batch(self.kv.clone(), batch)));
        }
        Ok(())
    }

    /// Waits for the batch commit in flight, if any, and counts what it did.
    async fn settle(&mut self) -> Result<(), ImportStopped> {
        let Some(task) = self.in_flight.take() else { return Ok(()) };
        let committed = task.await.map_err(|e| {
            // The task panicked or was cancelled: nothing is known of its batch, and the
            // import cannot say where to resume.
            let line = self.report.lines;
            self.stop(
                line,
                StopCause::Database(Error::Internal(format!("an import commit task failed: {e}"))),
            )
        })?;
        self.report.written += committed.written;
        for (line, message) in committed.failed {
            self.fail(line, message);
        }
        match committed.stopped {
            Some((line, e)) => Err(self.stop(line, StopCause::Database(e))),
            None => Ok(()),
        }
    }
}

/// Commits `batch` atomically. If the database refuses it as a request (a key or value over
/// a limit), each entry is committed alone so that only the bad ones fail; any other failure
/// stops the import, naming the line to resume from.
async fn commit_batch(kv: Kv, batch: Batch) -> Committed {
    let mut done = Committed { written: 0, failed: Vec::new(), stopped: None };
    let Some(&(first_line, _)) = batch.entries.first() else { return done };
    let op = batch.entries.iter().fold(kv.atomic(), |op, (_, m)| op.mutate(m.clone()));
    match op.commit().await {
        Ok(_) => done.written = batch.entries.len() as u64,
        Err(e) if e.is_client_error() && batch.entries.len() > 1 => {
            for (line, m) in batch.entries {
                match kv.atomic().mutate(m).commit().await {
                    Ok(_) => done.written += 1,
                    Err(e) if e.is_client_error() => done.failed.push((line, e.to_string())),
                    Err(e) => {
                        done.stopped = Some((line, e));
                        break;
                    }
                }
            }
        }
        Err(e) if e.is_client_error() => done.failed.push((first_line, e.to_string())),
        Err(e) => done.stopped = Some((first_line, e)),
    }
    done
}

/// Reads the entries of a key range in batches of up to [`EXPORT_BATCH_SIZE`], in key order,
/// with strong reads. Each batch is one snapshot, not the whole scan (which would need a
/// transaction as long as the export): for one consistent export of a database others write
/// to, scan a [`Snapshot`].
#[derive(Debug)]
pub struct ExportScan {
    kv: Kv,
    start: Vec<u8>,
    end: Vec<u8>,
    done: bool,
}

impl ExportScan {
    /// The entries strictly under `prefix`, as `list` with a prefix selector visits them
    /// (every entry for the empty key). Fails only if `prefix` does not encode.
    pub fn new(kv: &Kv, prefix: &Key) -> Result<ExportScan> {
        let p = prefix.encode()?;
        let start = [p.as_slice(), &[0x00]].concat();
        let end = [p.as_slice(), &[0xff]].concat();
        Ok(ExportScan::range(kv, start, end))
    }

    /// The entries whose encoded keys are in `start..end`.
    pub fn range(kv: &Kv, start: Vec<u8>, end: Vec<u8>) -> ExportScan {
        ExportScan { kv: kv.clone(), start, end, done: false }
    }

    /// The next batch, or `None` once the range is read (an empty range gives one empty
    /// batch first).
    pub async fn next_batch(&mut self) -> Result<Option<Vec<RawEntry>>> {
        if self.done {
            return Ok(None);
        }
        let limit = self.kv.limits().max_read_entries.min(EXPORT_BATCH_SIZE) as u32;
        let range =
            ReadRange { start: self.start.clone(), end: self.end.clone(), limit, reverse: false };
        let batch = self
            .kv
            .snapshot_read(vec![range], Consistency::Strong)
            .await?
            .pop()
            .unwrap_or_default();
        match batch.last() {
            // A full batch may have more behind it: go on just after its last key.
            Some(last) if batch.len() == limit as usize => {
                self.start = [last.key.as_slice(), &[0x00]].concat();
            }
            _ => self.done = true,
        }
        Ok(Some(batch))
    }
}

/// Why a [`Snapshot`] could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The scratch directory could not be created in `parent`.
    #[error("creating a directory in {}: {source}", parent.display())]
    Scratch {
        /// Where it was to be created.
        parent: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// The online backup failed: [`Error::Unsupported`] from a backend that cannot make one
    /// (PostgreSQL), or the backup's own error.
    #[error("copying the database: {0}")]
    Backup(#[source] Error),
    /// The copy, made and verified, did not open.
    #[error("opening the copy: {0}")]
    Open(#[source] Error),
}

/// One consistent copy of a database, opened: what to export from while others keep writing
/// (`openkv export --snapshot`). It is an online backup ([`Kv::backup`]: every write
/// acknowledged before it started, none after) into a new scratch directory, removed with the
/// copy when the snapshot is [closed](Self::close) or dropped.
///
/// It needs a backend that makes backups: a SQLite file, or a KV Connect server that has
/// openkv's backup endpoint (`openkv serve`; the server makes the copy and it is downloaded).
/// PostgreSQL, `denokv` and a custom backend without [`Backend::backups`](crate::Backend::backups)
/// refuse it with [`SnapshotError::Backup`] holding [`Error::Unsupported`]. It needs the
/// copy's space in the scratch directory's file system, and the copy's time.
#[derive(Debug)]
pub struct Snapshot {
    kv: Kv,
    summary: BackupSummary,
    // Declared last: dropped after the handle above.
    dir: tempfile::TempDir,
}

impl Snapshot {
    /// Copies `kv` into a new directory under `scratch_parent` (named `.openkv-export-…`,
    /// so that a leftover is recognisable) and opens the copy.
    pub async fn take(
        kv: &Kv,
        scratch_parent: &Path,
    ) -> std::result::Result<Snapshot, SnapshotError> {
        let dir =
            tempfile::Builder::new().prefix(".openkv-export-").tempdir_in(scratch_parent).map_err(
                |source| SnapshotError::Scratch { parent: scratch_parent.to_owned(), source },
            )?;
        let path = dir.path().join("snapshot.sqlite3");
        let summary = kv.backup(&path).await.map_err(SnapshotError::Backup)?;
        let copy = Kv::open(&path).await.map_err(SnapshotError::Open)?;
        Ok(Snapshot { kv: copy, summary, dir })
    }

    /// The copy, to read (an [`ExportScan`] over it, say). Writes to it are possible and
    /// lost with it.
    pub fn kv(&self) -> &Kv {
        &self.kv
    }

    /// What the backup copied: entries and bytes.
    pub fn summary(&self) -> &BackupSummary {
        &self.summary
    }

    /// Closes the copy, then removes it. Dropping the snapshot removes the directory too, but
    /// without waiting for the copy's store to close first.
    pub async fn close(self) -> Result<()> {
        let closed = self.kv.close().await;
        let removed = self.dir.close();
        closed?;
        removed.map_err(|e| Error::storage_caused("removing the snapshot's directory", e))
    }
}
