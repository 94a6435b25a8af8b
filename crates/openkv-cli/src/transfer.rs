//! `openkv export` and `openkv import`: a database as NDJSON, one entry per line, and back.
//!
//! The line format (one entry as a JSON object: `key`, `keyBytes`, `value`, `encoding`,
//! `versionstamp`, `expireAt`) is the library's, [`openkv::export`], where import's parser is
//! fuzzed; so is the engine ([`openkv::transfer`]: the importer and its report, the range
//! scan, the snapshot), which `openkv serve`'s console shares. What stays here is the command
//! line's own: reading the input, the output file, the progress bar, the messages.
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
use openkv::export::entry_line;
use openkv::transfer::{
    ExportScan, ImportOptions, ImportReport, ImportStopped, Importer, Snapshot, SnapshotError,
};
use openkv::{Key, Kv};

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
const MAX_ERRORS_SHOWN: u64 = openkv::transfer::DEFAULT_FAILURES_KEPT as u64;

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

/// A scan of the keys strictly under `prefix` (as `list --prefix`).
fn prefix_scan(kv: &Kv, prefix: &Key) -> CliResult<ExportScan> {
    ExportScan::new(kv, prefix).map_err(|e| CliError::kv("invalid --prefix", e))
}

/// The next batch of a scan, or `None` at its end.
async fn next_batch(scan: &mut ExportScan) -> CliResult<Option<Vec<openkv::RawEntry>>> {
    scan.next_batch().await.map_err(|e| CliError::kv("cannot read the database", e))
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
    // A prefix that does not encode is refused before the database is opened.
    prefix.encode().map_err(|e| CliError::kv("invalid --prefix", e))?;
    let kv = db.open(Access::Read).await?;
    // With --snapshot: the copy (in a directory of its own until the export is done).
    let snapshot =
        if args.snapshot { Some(snapshot_copy(&kv, args.output.as_deref()).await?) } else { None };
    let kv = snapshot.as_ref().map_or(&kv, Snapshot::kv);
    let show = !args.no_progress && std::io::stderr().is_terminal();
    let total = if show {
        // One pass to count, so the bar can tell the rate against a total and an ETA.
        let mut scan = prefix_scan(kv, &prefix)?;
        let mut n = 0u64;
        while let Some(batch) = next_batch(&mut scan).await? {
            n += batch.len() as u64;
        }
        Some(n)
    } else {
        None
    };
    let bar = progress(show, total, "entries");
    let mut sink = Sink::open(args.output.as_deref())?;
    let mut scan = prefix_scan(kv, &prefix)?;
    let mut counts = (0u64, 0u64, 0u64); // entries, expiring, undecodable
    let written: CliResult = async {
        while let Some(batch) = next_batch(&mut scan).await? {
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
    if let Some(snapshot) = snapshot {
        // The copy is closed before its directory goes; nothing of it is kept, and a failure
        // to remove it does not undo the export.
        let _ = snapshot.close().await;
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
/// one consistent snapshot to export from. The directory is removed with the snapshot.
async fn snapshot_copy(kv: &Kv, output: Option<&Path>) -> CliResult<Snapshot> {
    let parent = output
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(std::env::temp_dir, Path::to_path_buf);
    let snapshot = Snapshot::take(kv, &parent).await.map_err(|e| match e {
        SnapshotError::Scratch { parent, source } => {
            CliError::io(format!("creating a directory in {}", parent.display()), source)
        }
        SnapshotError::Backup(e) => CliError::kv("export --snapshot: copying the database", e),
        SnapshotError::Open(e) => CliError::kv("export --snapshot: opening the copy", e),
        // A kind of failure added to the library later: its own words.
        other => CliError::Runtime(format!("export --snapshot: {other}")),
    })?;
    let summary = snapshot.summary();
    eprintln!("export: snapshot of {} entries taken ({} bytes)", summary.entries, summary.size);
    Ok(snapshot)
}

/// The error an import stop is: its text tells the line to resume from.
fn stopped(stop: ImportStopped) -> (ImportReport, CliResult) {
    let error = CliError::Runtime(stop.to_string());
    (stop.into_report(), Err(error))
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
    let (report, result) = run_import(&kv, input, &args, &interrupted, &bar).await;
    watcher.abort();
    bar.finish_and_clear();
    let closed = crate::data::close(&kv).await;
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

/// Feeds the input to an [`Importer`], line by line, until its end, an interruption or a
/// stop; answers the report in every case, and the error that ended the import early.
async fn run_import(
    kv: &Kv,
    mut input: Box<dyn BufRead>,
    args: &ImportArgs,
    interrupted: &AtomicBool,
    bar: &ProgressBar,
) -> (ImportReport, CliResult) {
    let shown = bar.clone();
    let mut count = 0u64;
    let options = ImportOptions::new()
        // clap holds it to 1..=1000.
        .batch_size(args.batch_size as usize)
        .resume_from(args.resume_from)
        .on_failure(move |failure| {
            // Printed as they happen, the first ones; the bar steps aside for each.
            count += 1;
            if count <= MAX_ERRORS_SHOWN {
                shown.suspend(|| eprintln!("import: line {}: {}", failure.line, failure.message));
            } else if count == MAX_ERRORS_SHOWN + 1 {
                shown.suspend(|| eprintln!("import: more errors; only the count is reported"));
            }
        });
    let mut importer = Importer::new(kv, options);
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = match input.read_until(b'\n', &mut buf) {
            Ok(n) => n,
            Err(e) => {
                // The pending batch is dropped: the report counts what was committed.
                let error = CliError::io(format!("cannot read the input after line {line_no}"), e);
                return (importer.report().clone(), Err(error));
            }
        };
        if n == 0 {
            break;
        }
        if interrupted.load(Ordering::SeqCst) {
            return stopped(importer.interrupt(line_no + 1).await);
        }
        line_no += 1;
        bar.inc(n as u64);
        if let Err(stop) = importer.line(line_no, &buf).await {
            return stopped(stop);
        }
    }
    match importer.finish().await {
        Ok(report) => (report, Ok(())),
        Err(stop) => stopped(stop),
    }
}
