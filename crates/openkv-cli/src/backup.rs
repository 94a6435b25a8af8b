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
pub struct BackupArgs {
    /// Where to write the backup: a new file (an existing file is never overwritten).
    #[arg(value_name = "FILE")]
    pub dest: PathBuf,
}

/// `openkv restore`'s options.
#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// The backup to restore (checked before anything is touched).
    #[arg(value_name = "BACKUP")]
    pub backup: PathBuf,
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

/// `openkv restore BACKUP`.
pub async fn restore(db: &DbArgs, args: RestoreArgs) -> CliResult {
    let location = db.location()?;
    let started = Instant::now();
    let bar = spinner("restoring");
    // A server (KV Connect or PostgreSQL) is restored live, through the store; a file is
    // replaced.
    let (restored, into) = if location.remote || location.postgres {
        let kv = db.open_at(&location, Access::Read).await?;
        let restored = kv.restore_from(&args.backup).await;
        let _ = kv.close().await;
        (restored, "into")
    } else {
        let target = PathBuf::from(&location.target);
        let backup = args.backup.clone();
        let restored = tokio::task::spawn_blocking(move || {
            openkv::restore_backup(&backup, &target, args.force)
        })
        .await
        .map_err(|e| CliError::Runtime(format!("the restore panicked: {e}")))?;
        (restored, "to")
    };
    bar.finish_and_clear();
    let summary = restored.map_err(|e| {
        CliError::kv(format!("restore of {} refused or failed", args.backup.display()), e)
    })?;
    report(
        &format!(
            "{} restored {into} {}",
            args.backup.display(),
            crate::db::redact_password(&location.target)
        ),
        &summary,
        started,
    );
    Ok(())
}
