//! Continuous backups (`openkv_backup`): `openkv pitr list`, `openkv restore --from … --at …`
//! and `openkv backup verify`. The writing side is `openkv serve --backup-to`.

use std::path::PathBuf;
use std::time::Instant;

use openkv_backup::{Catalog, Location, PointInTime, RestoreSummary, S3Options};

use crate::db::{Access, DbArgs};
use crate::exit::{CliError, CliResult};

/// Where a continuous backup is, and how to reach it.
#[derive(clap::Args, Debug, Clone)]
pub struct FromArgs {
    /// The backup: a directory (a path or file:///DIR) or s3://BUCKET/PREFIX (credentials and
    /// region from the AWS environment variables: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_REGION, default us-east-1). openkv's backups and Deno Deploy's both read.
    #[arg(long = "from", value_name = "LOCATION")]
    pub from: String,
    #[command(flatten)]
    pub s3: S3Args,
}

/// `--s3-endpoint`, shared by every command that reaches object storage.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct S3Args {
    /// The URL of S3-compatible storage other than AWS (MinIO, s3s-fs, R2, …), e.g.
    /// http://127.0.0.1:9000: path-style requests to ENDPOINT/BUCKET/KEY.
    #[arg(long, env = "OPENKV_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
}

impl S3Args {
    pub fn options(&self) -> S3Options {
        match &self.s3_endpoint {
            Some(endpoint) => S3Options::default().endpoint(endpoint.clone()),
            None => S3Options::default(),
        }
    }
}

/// `openkv pitr`'s commands.
#[derive(clap::Subcommand, Debug)]
pub enum PitrCommand {
    /// Print the recovery points of a continuous backup, oldest first: one line each with
    /// its versionstamp, when it committed (RFC 3339) and whether it is a snapshot or a
    /// commit. Any of them (or any time) can be given to `openkv restore --from … --at`.
    List(ListArgs),
}

/// `openkv pitr list`'s options.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub from: FromArgs,
    /// Only points committed at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = rfc3339_ms)]
    pub start: Option<i64>,
    /// Only points committed before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = rfc3339_ms)]
    pub end: Option<i64>,
}

fn rfc3339_ms(text: &str) -> Result<i64, String> {
    match PointInTime::parse(text) {
        Ok(PointInTime::Time(ms)) => Ok(ms),
        _ => Err("expected an RFC 3339 time, e.g. 2026-12-04T08:30:00Z".into()),
    }
}

fn location(from: &FromArgs) -> CliResult<Location> {
    Location::parse(&from.from, &from.s3.options())
        .map_err(|e| CliError::kv(format!("--from {}", from.from), e))
}

async fn catalog(from: &FromArgs) -> CliResult<Catalog> {
    let location = location(from)?;
    Catalog::open(&location).await.map_err(|e| CliError::kv(format!("reading {location}"), e))
}

/// `openkv pitr list`.
pub async fn list(args: ListArgs) -> CliResult {
    let catalog = catalog(&args.from).await?;
    let points = catalog
        .recovery_points(args.start, args.end)
        .await
        .map_err(|e| CliError::kv("reading the backup's log", e))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for point in &points {
        let time =
            point.committed_at_ms.map(openkv_backup::format_ms).unwrap_or_else(|| "-".into());
        let kind = if point.snapshot { "snapshot" } else { "commit" };
        crate::output::write_line(&mut out, &format!("{}\t{time}\t{kind}", point.versionstamp))?;
    }
    crate::output::flush(&mut out)?;
    eprintln!("openkv: {} recovery points", points.len());
    Ok(())
}

fn describe(summary: &RestoreSummary) -> String {
    let at = summary.committed_at_ms.map(openkv_backup::format_ms).unwrap_or_else(|| "-".into());
    let mut text = format!(
        "versionstamp {} (committed {at}): {} entries ({} from snapshot {}, then {} commits)",
        summary.versionstamp,
        summary.entries,
        summary.base_entries,
        summary.base_generation,
        summary.commits
    );
    if summary.versionstamps_truncated > 0 {
        text.push_str(&format!(
            "; {} versionstamps kept their commit counter only (a Deno-format SQLite file has \
             no room for the batch index of a PostgreSQL or Deno Deploy source)",
            summary.versionstamps_truncated
        ));
    }
    if summary.reached_end {
        text.push_str(
            "; the time asked for is after the backup's last commit: this is its last point",
        );
    }
    text
}

/// `openkv restore --from LOCATION --at POINT`: rebuilds the database as it was at the point
/// into `--db`: a new file; an existing file (replaced atomically, as `openkv restore FILE`
/// does); or a server (uploaded, replacing its content live).
pub async fn restore(db: &DbArgs, from: &FromArgs, at: &str, force: bool) -> CliResult {
    let point = PointInTime::parse(at).map_err(|e| CliError::kv("--at", e))?;
    let target = db.location()?;
    let catalog = catalog(from).await?;
    let started = Instant::now();
    let fail = |e| CliError::kv(format!("restore from {} refused or failed", from.from), e);
    let path = PathBuf::from(&target.target);
    let summary = if target.postgres {
        // Rebuilt in place, in one PostgreSQL transaction, whole versionstamps kept: readers
        // see the old content until the commit; a refused restore rolls back.
        let kv = db.open_at(&target, Access::Write).await?;
        let result = async {
            let session = kv.begin_restore().await?;
            let mut summary = catalog.restore_into(point, None, session.as_ref(), true).await?;
            summary.entries = session.commit().await?.entries;
            Ok::<_, openkv::Error>(summary)
        }
        .await;
        let _ = kv.close().await;
        result.map_err(fail)?
    } else if !target.remote && !path.exists() {
        catalog.restore_to_file(point, None, &path).await.map_err(fail)?
    } else {
        // Built into a scratch file first: the target is only touched once the rebuild
        // verified.
        let scratch = tempfile::Builder::new()
            .prefix(".openkv-restore-")
            .tempdir_in(if target.remote {
                std::env::temp_dir()
            } else {
                path.parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map_or(".".into(), |p| p.to_path_buf())
            })
            .map_err(|e| CliError::io("creating a scratch directory", e))?;
        let built = scratch.path().join("restore.sqlite3");
        let summary = catalog.restore_to_file(point, None, &built).await.map_err(fail)?;
        if target.remote {
            let kv = db.open_at(&target, Access::Read).await?;
            let restored = kv.restore_from(&built).await;
            let _ = kv.close().await;
            restored.map_err(|e| CliError::kv("uploading the restored database", e))?;
        } else {
            let built = built.clone();
            tokio::task::spawn_blocking(move || openkv::restore_backup(&built, &path, force))
                .await
                .map_err(|e| CliError::Runtime(format!("the restore panicked: {e}")))?
                .map_err(|e| CliError::kv("replacing the target", e))?;
        }
        summary
    };
    eprintln!(
        "openkv: restored {} into {} at {} in {:.2} s",
        from.from,
        crate::db::redact_password(&target.target),
        describe(&summary),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `openkv backup verify`'s options.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub from: FromArgs,
}

/// `openkv backup verify --from LOCATION`.
pub async fn verify(args: VerifyArgs) -> CliResult {
    let catalog = catalog(&args.from).await?;
    let scratch =
        tempfile::tempdir().map_err(|e| CliError::io("creating a scratch directory", e))?;
    let started = Instant::now();
    let summary = catalog
        .verify(scratch.path())
        .await
        .map_err(|e| CliError::kv(format!("{} does not verify", args.from.from), e))?;
    let last =
        summary.last_committed_at_ms.map(openkv_backup::format_ms).unwrap_or_else(|| "-".into());
    println!(
        "{}: ok — {} snapshots, {} log ranges, {} commits replayed, {} entries, recovery points \
         {} to {} (committed {last}), verified in {:.2} s",
        args.from.from,
        summary.snapshots,
        summary.ranges,
        summary.commits,
        summary.entries,
        summary.first,
        summary.last,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
