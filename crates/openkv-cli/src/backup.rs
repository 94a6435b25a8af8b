//! `openkv backup` and `openkv restore`.
//!
//! A backup is an online, consistent copy of a live database ([`openkv::Kv::backup`]): of a
//! file, made here; of a server (`--db https://…`), made by the server and downloaded. Either
//! way it is verified (`PRAGMA integrity_check`, Deno's schema) before it gets its name. A
//! restore verifies the backup, then replaces the target file atomically; it refuses a target
//! that is open elsewhere unless `--force`. Into a server (`--db https://…`), the backup is
//! uploaded and the server replaces its database's content in one transaction while it keeps
//! serving ([`openkv::Kv::restore_from`]).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::db::{Access, DbArgs};
use crate::exit::{CliError, CliResult};

/// `openkv backup`'s options.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackupArgs {
    /// Where to write the backup: a new file (an existing file is never overwritten).
    #[arg(value_name = "FILE", required = true)]
    pub dest: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
}

/// `openkv backup`'s subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum BackupCommand {
    /// Check a continuous backup (`openkv serve --backup-to`, or Deno Deploy's): replay its
    /// snapshots and log into a scratch database and check every object, the log's chain,
    /// the snapshots' counts and the result's integrity. Exit 0 if it verifies, 1 if not
    /// (with the reason and the object).
    Verify(crate::pitr::VerifyArgs),
}

/// `openkv restore`'s options.
#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// The backup to restore (checked before anything is touched).
    #[arg(value_name = "BACKUP", required_unless_present = "from", conflicts_with = "from")]
    pub backup: Option<PathBuf>,
    /// Restore from a continuous backup at this location (a directory, file:///DIR or
    /// s3://BUCKET/PREFIX) to the point --at: into a new file, an existing one (replaced
    /// atomically) or a server (--db URL).
    #[arg(long, value_name = "LOCATION", requires = "at")]
    pub from: Option<String>,
    /// The point to restore to: a versionstamp (20 hex digits; the state after the
    /// transaction that contains it), an RFC 3339 time (the state after the last transaction
    /// committed by then) or `latest`. See `openkv pitr list`.
    #[arg(long, value_name = "POINT", requires = "from")]
    pub at: Option<String>,
    #[command(flatten)]
    pub s3: crate::pitr::S3Args,
    /// Replace the target even though it looks open elsewhere (its -wal/-shm files exist).
    /// Only when nothing uses it: its last user crashed.
    #[arg(long)]
    pub force: bool,
}

/// A spinner on stderr while a long step runs, if stderr is a terminal.
fn spinner(message: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner().with_message(message);
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.enable_steady_tick(Duration::from_millis(100));
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

fn report(what: &str, summary: &openkv::BackupSummary, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "openkv: {what}: {} entries, {} queued messages, {:.1} MB in {secs:.2} s ({:.1} MB/s), \
         verified",
        summary.entries,
        summary.queued_messages,
        summary.size as f64 / 1e6,
        summary.size as f64 / 1e6 / secs.max(1e-9)
    );
}

/// `openkv backup FILE`.
pub async fn backup(db: &DbArgs, args: BackupArgs) -> CliResult {
    let dest = match (args.command, args.dest) {
        (Some(BackupCommand::Verify(verify)), _) => return crate::pitr::verify(verify).await,
        (None, Some(dest)) => dest,
        (None, None) => return Err(CliError::Usage("openkv backup FILE: FILE is missing".into())),
    };
    let args = Dest { dest };
    let kv = db.open(Access::Read).await?;
    let started = Instant::now();
    let bar = spinner("backing up");
    let result = kv.backup(&args.dest).await;
    bar.finish_and_clear();
    let closed = kv.close().await;
    let summary =
        result.map_err(|e| CliError::kv(format!("backup to {} failed", args.dest.display()), e))?;
    closed.map_err(|e| CliError::kv("closing the database", e))?;
    report(&format!("backup written to {}", args.dest.display()), &summary, started);
    Ok(())
}

struct Dest {
    dest: PathBuf,
}

/// `openkv restore BACKUP` (or `--from LOCATION --at POINT`).
pub async fn restore(db: &DbArgs, args: RestoreArgs) -> CliResult {
    let backup = match (&args.from, &args.at, &args.backup) {
        (Some(from), Some(at), _) => {
            let from = crate::pitr::FromArgs { from: from.clone(), s3: args.s3.clone() };
            return crate::pitr::restore(db, &from, at, args.force).await;
        }
        (_, _, Some(backup)) => backup.clone(),
        _ => {
            return Err(CliError::Usage(
                "openkv restore BACKUP, or --from LOCATION --at POINT".into(),
            ))
        }
    };
    let location = db.location()?;
    let started = Instant::now();
    let bar = spinner("restoring");
    // A server (KV Connect or PostgreSQL) is restored live, through the store; a file is
    // replaced.
    let (restored, into) = if location.remote || location.postgres {
        let kv = db.open_at(&location, Access::Read).await?;
        let restored = kv.restore_from(&backup).await;
        let _ = kv.close().await;
        (restored, "into")
    } else {
        let target = PathBuf::from(&location.target);
        let backup = backup.clone();
        let restored = tokio::task::spawn_blocking(move || {
            openkv::restore_backup(&backup, &target, args.force)
        })
        .await
        .map_err(|e| CliError::Runtime(format!("the restore panicked: {e}")))?;
        (restored, "to")
    };
    bar.finish_and_clear();
    let summary = restored.map_err(|e| {
        CliError::kv(format!("restore of {} refused or failed", backup.display()), e)
    })?;
    report(
        &format!(
            "{} restored {into} {}",
            backup.display(),
            crate::db::redact_password(&location.target)
        ),
        &summary,
        started,
    );
    Ok(())
}
