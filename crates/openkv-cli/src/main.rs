//! `openkv`: the command line of openkv.
//!
//! Today it inspects a database (`openkv info`); the full tool (get/set/list, export/import,
//! backup/restore, `serve`) is being built issue by issue (see ARCHITECTURE.md).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use futures::TryStreamExt;
use openkv::{Key, Kv, ListOptions, Selector};

#[derive(Parser)]
#[command(name = "openkv", version, about = "Deno KV, in Rust: inspect and manage databases")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Summarize a database: schema version, number of live entries, latest versionstamp.
    ///
    /// Works on files written by Deno CLI (`Deno.openKv(path)`) and by openkv. Opening a file
    /// migrates an older Deno schema to version 3, as Deno itself would.
    Info {
        /// Path of the SQLite database file.
        #[arg(long)]
        db: String,
    },
}

async fn info(db: &str) -> openkv::Result<()> {
    if !std::path::Path::new(db).exists() {
        return Err(openkv::Error::Storage(format!("no database at {db}")));
    }
    let kv = Kv::open(db).await?;
    let mut entries = 0u64;
    let mut latest = openkv::Versionstamp::ZERO;
    let mut stream =
        kv.list(Selector::prefix(Key::default()), ListOptions::new().batch_size(1000))?;
    while let Some(e) = stream.try_next().await? {
        entries += 1;
        latest = latest.max(e.versionstamp);
    }
    kv.close().await?;
    println!("database:        {db}");
    println!("schema version:  {}", openkv::SCHEMA_VERSION);
    println!("live entries:    {entries}");
    println!("latest entry at: {latest}");
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("openkv: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Info { db } => info(&db).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("openkv: {e}");
            ExitCode::FAILURE
        }
    }
}
