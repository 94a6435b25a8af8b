//! `openkv export` and `openkv import`: a database as NDJSON, one entry per line, and back.
//!
//! The line format (one entry as a JSON object: `key`, `keyBytes`, `value`, `encoding`,
//! `versionstamp`, `expireAt`) is the library's, [`openkv::export`], where import's parser is
//! fuzzed.
//!
//! Export reads in batches of up to 1000 entries, each batch one snapshot (not the whole
//! export, which would need a transaction as long as the export), unless `--snapshot` asks for
//! one consistent snapshot: then it first makes an online backup (as `openkv backup`) into a
//! temporary directory beside the output and exports that copy. Import commits batches
//! atomically (500 entries by default, fewer when the batch would exceed the write limits), in
//! file order; see [`ImportArgs::resume_from`] for resuming.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use openkv::export::{entry_line, parse_line, LineError};
use openkv::{Consistency, Key, Kv, Mutation, RawEntry, ReadRange, Value};
use serde_json::{json, Value as Json};

use crate::data::key_arg;
use crate::db::{Access, DbArgs};
use crate::exit::{CliError, CliResult};
use crate::output::write_line;

/// `openkv export`'s options.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Export only keys strictly under this prefix (as `list --prefix`); default: every key.
    #[arg(long, value_name = "KEY")]
    pub prefix: Option<String>,
    /// Write to FILE (replaced only once the export is complete) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// Export one consistent snapshot, even while others write: first copy the database with
    /// an online backup (as `openkv backup`; into a temporary directory beside --output, or the
    /// system's), then export the copy. Needs the copy's space and time; a SQLite file or
    /// `openkv serve`, not PostgreSQL or denokv. Without it each batch of 1000 is a snapshot.
    #[arg(long)]
    pub snapshot: bool,
}

/// `openkv import`'s options.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Read from FILE instead of stdin.
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Start at line N (1-based), skipping the lines before it: to resume an import that
    /// stopped, with the line its report named. Entries are written in file order, batch by
    /// batch, so everything before that line is in the database already.
    #[arg(long, value_name = "LINE", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub resume_from: u64,
    /// Entries per atomic commit (fewer when a batch would exceed the write limits).
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub batch_size: u64,
    /// Also print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

/// At most this many per-line errors are printed; the report counts them all.
const MAX_ERRORS_SHOWN: u64 = 20;

/// A progress bar on stderr when it is a terminal (and not turned off), else nothing.
fn progress(enabled: bool, total: Option<u64>, unit: &str) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let template = match (total, unit) {
        (Some(_), "bytes") => {
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({binary_bytes_per_sec}, ETA {eta}) {msg}"
        }
        (Some(_), _) => {
            "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} entries ({rate}, ETA {eta}) {msg}"
        }
        (None, _) => "{spinner} [{elapsed_precise}] {human_pos} bytes read ({binary_bytes_per_sec}) {msg}",
    };
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::no_length(),
    };
    // The templates are constants; were one rejected, indicatif's plain bar stands in.
    let style = ProgressStyle::with_template(template);
    let style = style.unwrap_or_else(|_| ProgressStyle::default_bar()).with_key(
        "rate",
        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0}/s", state.per_sec());
        },
    );
    bar.set_style(style);
    bar
}

/// The encoded range `list --prefix` visits: keys strictly under `prefix`.
fn prefix_range(prefix: &Key) -> CliResult<(Vec<u8>, Vec<u8>)> {
    let p = prefix.encode().map_err(|e| CliError::kv("invalid --prefix", e))?;
    Ok(([p.as_slice(), &[0x00]].concat(), [p.as_slice(), &[0xff]].concat()))
}

/// A range read in batches, each one snapshot.
struct RangeScan<'a> {
    kv: &'a Kv,
    start: Vec<u8>,
    end: Vec<u8>,
    done: bool,
}

impl RangeScan<'_> {
    async fn next_batch(&mut self) -> CliResult<Option<Vec<RawEntry>>> {
        if self.done {
            return Ok(None);
        }
        let limit = self.kv.limits().max_read_entries.min(1000) as u32;
        let range =
            ReadRange { start: self.start.clone(), end: self.end.clone(), limit, reverse: false };
        let batch = self
            .kv
            .snapshot_read(vec![range], Consistency::Strong)
            .await
            .map_err(|e| CliError::kv("cannot read the database", e))?
            .pop()
            .unwrap_or_default();
        match batch.last() {
            Some(last) if batch.len() == limit as usize => {
                self.start = [last.key.as_slice(), &[0x00]].concat();
            }
            _ => self.done = true,
        }
        Ok(Some(batch))
    }
}

/// Where an export goes: stdout; a new or regular file, through a temporary file renamed
/// over it at the end; anything else (a device such as /dev/null, a pipe, a symbolic link),
/// written directly — renaming over those would replace them.
enum Sink {
    Stdout(BufWriter<std::io::Stdout>),
    Direct(BufWriter<File>, PathBuf),
    File { out: BufWriter<File>, tmp: PathBuf, dest: PathBuf },
}

impl Sink {
    fn open(dest: Option<&Path>) -> CliResult<Sink> {
        let Some(dest) = dest else {
            return Ok(Sink::Stdout(BufWriter::new(std::io::stdout())));
        };
        if std::fs::symlink_metadata(dest).is_ok_and(|m| !m.file_type().is_file()) {
            let file = File::create(dest)
                .map_err(|e| CliError::io(format!("cannot open {}", dest.display()), e))?;
            return Ok(Sink::Direct(BufWriter::new(file), dest.to_owned()));
        }
        let name = dest
            .file_name()
            .ok_or_else(|| CliError::Usage(format!("-o {}: not a file name", dest.display())))?;
        let tmp = dest.with_file_name(format!(
            ".{}.openkv-export-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = File::create(&tmp)
            .map_err(|e| CliError::io(format!("cannot create {}", tmp.display()), e))?;
        Ok(Sink::File { out: BufWriter::new(file), tmp, dest: dest.to_owned() })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Stdout(out) => out,
            Sink::Direct(out, _) | Sink::File { out, .. } => out,
        }
    }

    /// Flushes; a file is synced and renamed over its destination.
    fn finish(self) -> CliResult {
        match self {
            Sink::Stdout(mut out) => crate::output::flush(&mut out),
            Sink::Direct(mut out, dest) => {
                out.flush().map_err(|e| CliError::io(format!("cannot write {}", dest.display()), e))
            }
            Sink::File { out, tmp, dest } => {
                let context = format!("cannot write {}", dest.display());
                let file = out.into_inner().map_err(|e| CliError::io(&context, e.into_error()))?;
                file.sync_all().map_err(|e| CliError::io(&context, e))?;
                std::fs::rename(&tmp, &dest).map_err(|e| CliError::io(&context, e))
            }
        }
    }

    /// Removes a temporary file after a failure.
    fn abandon(self) {
        if let Sink::File { tmp, .. } = self {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

pub async fn export(db: &DbArgs, args: ExportArgs) -> CliResult {
    let prefix = match &args.prefix {
        Some(text) => key_arg("--prefix key", text)?,
        None => Key::default(),
    };
    let (start, end) = prefix_range(&prefix)?;
    let kv = db.open(Access::Read).await?;
    // With --snapshot: the copy, and the directory that holds it until the export is done.
    let (kv, copy_dir) = if args.snapshot {
        let (copy, dir) = snapshot_copy(&kv, args.output.as_deref()).await?;
        (copy, Some(dir))
    } else {
        (kv, None)
    };
    let show = !args.no_progress && std::io::stderr().is_terminal();
    let total = if show {
        // One pass to count, so the bar can tell the rate against a total and an ETA.
        let mut scan = RangeScan { kv: &kv, start: start.clone(), end: end.clone(), done: false };
        let mut n = 0u64;
        while let Some(batch) = scan.next_batch().await? {
            n += batch.len() as u64;
        }
        Some(n)
    } else {
        None
    };
    let bar = progress(show, total, "entries");
    let mut sink = Sink::open(args.output.as_deref())?;
    let mut scan = RangeScan { kv: &kv, start, end, done: false };
    let mut counts = (0u64, 0u64, 0u64); // entries, expiring, undecodable
    let written: CliResult = async {
        while let Some(batch) = scan.next_batch().await? {
            for raw in &batch {
                let line = entry_line(raw);
                counts.0 += 1;
                counts.1 += u64::from(!line["expireAt"].is_null());
                counts.2 += u64::from(line.get("valueBytes").is_some());
                write_line(sink.writer(), &line.to_string())?;
            }
            bar.inc(batch.len() as u64);
        }
        Ok(())
    }
    .await;
    bar.finish_and_clear();
    if let Some(dir) = copy_dir {
        // The copy is closed before its directory goes; nothing of it is kept.
        let _ = kv.close().await;
        drop(dir);
    }
    if let Err(e) = written {
        sink.abandon();
        return Err(e);
    }
    sink.finish()?;
    let to = args.output.as_ref().map_or("stdout".into(), |p| p.display().to_string());
    let (entries, expiring, undecodable) = counts;
    let mut report = format!("export: {entries} entries to {to} ({expiring} with an expiry)");
    if undecodable > 0 {
        report += &format!(
            "; {undecodable} V8 values this build cannot decode were exported as valueBytes"
        );
    }
    eprintln!("{report}");
    Ok(())
}

/// An online backup of `kv` in a new temporary directory (beside `output` if given), opened:
/// one consistent snapshot to export from. The directory is removed when dropped.
async fn snapshot_copy(kv: &Kv, output: Option<&Path>) -> CliResult<(Kv, tempfile::TempDir)> {
    let parent = output
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(std::env::temp_dir, Path::to_path_buf);
    let dir = tempfile::Builder::new()
        .prefix(".openkv-export-")
        .tempdir_in(&parent)
        .map_err(|e| CliError::io(format!("creating a directory in {}", parent.display()), e))?;
    let path = dir.path().join("snapshot.sqlite3");
    let summary = kv
        .backup(&path)
        .await
        .map_err(|e| CliError::kv("export --snapshot: copying the database", e))?;
    eprintln!("export: snapshot of {} entries taken ({} bytes)", summary.entries, summary.size);
    let copy = Kv::open(&path)
        .await
        .map_err(|e| CliError::kv("export --snapshot: opening the copy", e))?;
    Ok((copy, dir))
}

/// What an import did.
#[derive(Debug, Default)]
struct Report {
    lines: u64,
    written: u64,
    expired: u64,
    before_resume: u64,
    blank: u64,
    errors: u64,
}

impl Report {
    fn json(&self) -> Json {
        json!({
            "lines": self.lines,
            "written": self.written,
            "skipped": {"expired": self.expired, "beforeResume": self.before_resume, "blank": self.blank},
            "errors": self.errors,
        })
    }

    fn text(&self) -> String {
        format!(
            "import: read {} lines, wrote {} entries, skipped {} expired, {} before \
             --resume-from and {} blank lines; {} errors",
            self.lines, self.written, self.expired, self.before_resume, self.blank, self.errors
        )
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

    fn size(m: &Mutation) -> usize {
        m.key.len() + m.kind.value().map_or(0, Value::encoded_len)
    }

    /// Whether `m` fits in this batch without breaking a write limit.
    fn fits(&self, m: &Mutation, max_entries: usize, limits: &openkv::Limits) -> bool {
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

/// Reads import input and tells how far it got.
struct Importer<'a> {
    kv: &'a Kv,
    report: Report,
    bar: ProgressBar,
}

impl Importer<'_> {
    fn line_error(&mut self, line: u64, message: &str) {
        self.report.errors += 1;
        if self.report.errors <= MAX_ERRORS_SHOWN {
            self.bar.suspend(|| eprintln!("import: line {line}: {message}"));
        } else if self.report.errors == MAX_ERRORS_SHOWN + 1 {
            self.bar.suspend(|| eprintln!("import: more errors; only the count is reported"));
        }
    }

    /// Commits a batch atomically. If the database refuses it as a request (a key or value
    /// over a limit), each entry is committed alone so that only the bad ones fail; any other
    /// failure stops the import, naming the line to resume from.
    async fn commit(&mut self, batch: Batch) -> CliResult {
        let Some(&(first_line, _)) = batch.entries.first() else { return Ok(()) };
        let op = batch.entries.iter().fold(self.kv.atomic(), |op, (_, m)| op.mutate(m.clone()));
        match op.commit().await {
            Ok(_) => {
                self.report.written += batch.entries.len() as u64;
                Ok(())
            }
            Err(e) if e.is_client_error() && batch.entries.len() > 1 => {
                for (line, m) in batch.entries {
                    match self.kv.atomic().mutate(m).commit().await {
                        Ok(_) => self.report.written += 1,
                        Err(e) if e.is_client_error() => self.line_error(line, &e.to_string()),
                        Err(e) => return Err(stopped_at(line, &e)),
                    }
                }
                Ok(())
            }
            Err(e) if e.is_client_error() => {
                self.line_error(first_line, &e.to_string());
                Ok(())
            }
            Err(e) => Err(stopped_at(first_line, &e)),
        }
    }
}

/// The error that stops an import before `line`, telling how to resume.
fn stopped_at(line: u64, why: &dyn std::fmt::Display) -> CliError {
    CliError::Runtime(format!(
        "import stopped at line {line}: {why}. The lines before it are written; run again \
         with --resume-from {line} to continue"
    ))
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| d.as_millis() as i64)
}

pub async fn import(db: &DbArgs, args: ImportArgs) -> CliResult {
    let (input, size): (Box<dyn BufRead>, Option<u64>) = match &args.input {
        Some(path) if path.as_os_str() != "-" => {
            let context = format!("cannot read {}", path.display());
            let file = File::open(path).map_err(|e| CliError::io(&context, e))?;
            let size = file.metadata().map_err(|e| CliError::io(&context, e))?.len();
            (Box::new(BufReader::with_capacity(1 << 20, file)), Some(size))
        }
        _ => (Box::new(std::io::stdin().lock()), None),
    };
    let kv = db.open(Access::Write).await?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn({
        let interrupted = interrupted.clone();
        async move {
            crate::signal::shutdown_signal().await;
            interrupted.store(true, Ordering::SeqCst);
            // The import stops at its next line; if it is stuck waiting for input, leave
            // anyway (every committed batch stays committed).
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            eprintln!("import: interrupted while waiting for input");
            std::process::exit(1);
        }
    });
    let bar = progress(!args.no_progress, size, "bytes");
    let mut importer = Importer { kv: &kv, report: Report::default(), bar };
    let result = run_import(&mut importer, input, &args, &interrupted).await;
    watcher.abort();
    importer.bar.finish_and_clear();
    let closed = crate::data::close(&kv).await;
    let report = importer.report;
    eprintln!("{}", report.text());
    if args.json {
        println!("{}", report.json());
    }
    result?;
    closed?;
    if report.errors > 0 {
        return Err(CliError::Runtime(format!(
            "{} lines could not be imported (see above)",
            report.errors
        )));
    }
    Ok(())
}

async fn run_import(
    importer: &mut Importer<'_>,
    mut input: Box<dyn BufRead>,
    args: &ImportArgs,
    interrupted: &AtomicBool,
) -> CliResult {
    let limits = importer.kv.limits().clone();
    let max_entries = args.batch_size as usize;
    let mut batch = Batch::new();
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .map_err(|e| CliError::io(format!("cannot read the input after line {line_no}"), e))?;
        if n == 0 {
            break;
        }
        if interrupted.load(Ordering::SeqCst) {
            importer.commit(batch).await?;
            return Err(stopped_at(line_no + 1, &"interrupted"));
        }
        line_no += 1;
        importer.report.lines += 1;
        importer.bar.inc(n as u64);
        if line_no < args.resume_from {
            importer.report.before_resume += 1;
            continue;
        }
        let Ok(text) = std::str::from_utf8(&buf) else {
            importer.line_error(line_no, "not UTF-8 text");
            continue;
        };
        if text.trim().is_empty() {
            importer.report.blank += 1;
            continue;
        }
        let mutation = match parse_line(text) {
            Ok(mutation) => mutation,
            Err(LineError(message)) => {
                importer.line_error(line_no, &message);
                continue;
            }
        };
        if mutation.expire_at_ms.is_some_and(|at| at <= now_ms()) {
            importer.report.expired += 1;
            continue;
        }
        if !batch.fits(&mutation, max_entries, &limits) {
            importer.commit(std::mem::replace(&mut batch, Batch::new())).await?;
        }
        batch.push(line_no, mutation);
    }
    importer.commit(batch).await
}
