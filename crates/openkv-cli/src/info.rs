//! `openkv info`: what a database holds, and where default databases live.

use futures::TryStreamExt;
use openkv::{Key, ListOptions, Selector};

use crate::db::{Access, DbArgs};
use crate::exit::{CliError, CliResult};

/// The application name `info` uses to show the default location's shape.
const EXAMPLE_APP: &str = "NAME";

pub async fn info(db: &DbArgs) -> CliResult {
    if db.db.is_none() && db.app.is_none() {
        return print_default_location();
    }
    let location = db.location()?;
    if location.default_for_app && !std::path::Path::new(&location.target).exists() {
        println!("database:        {} (default for --app; not created yet)", location.target);
        return Ok(());
    }
    let kv = db.open_at(&location, Access::Read).await?;
    let mut entries = 0u64;
    let mut latest = openkv::Versionstamp::ZERO;
    let mut stream = kv
        .list(Selector::prefix(Key::default()), ListOptions::new().batch_size(1000))
        .map_err(|e| CliError::kv("cannot list", e))?;
    while let Some(e) = stream.try_next().await.map_err(|e| CliError::kv("cannot list", e))? {
        entries += 1;
        latest = latest.max(e.versionstamp);
    }
    let replica = kv.replica_status().await.map_err(|e| CliError::kv("cannot ask", e))?;
    kv.close().await.map_err(|e| CliError::kv("cannot close the database", e))?;
    println!("database:        {}", crate::db::redact_password(&location.target));
    if !location.remote && !location.postgres {
        println!("schema version:  {}", openkv::SCHEMA_VERSION);
    }
    println!("live entries:    {entries}");
    println!("latest entry at: {latest}");
    if let Some(r) = replica {
        // A read replica (openkv serve --replica-of): how far behind its primary it is.
        let now = openkv::Clock::now_ms(&openkv::SystemClock);
        println!(
            "replica of:      a primary at version {} (applied {})",
            r.primary_head, r.applied
        );
        println!("replica lag:     {} versions, {} ms", r.lag_versions(), r.lag_ms(now));
        println!(
            "bootstraps:      {} (records applied since start: {})",
            r.bootstraps, r.records_applied
        );
        if let Some(e) = &r.last_error {
            println!("last error:      {e}");
        }
    }
    Ok(())
}

/// Without --db or --app: where `--app NAME` databases are.
fn print_default_location() -> CliResult {
    let example = openkv::default_database_path(EXAMPLE_APP)
        .map_err(|e| CliError::kv("no default database location", e))?;
    println!("no --db given; the default database of an application (--app {EXAMPLE_APP}) is");
    println!("default database: {}", example.display());
    Ok(())
}
