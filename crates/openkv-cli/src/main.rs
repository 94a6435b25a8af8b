//! `openkv`: the command line of openkv.
//!
//! - `openkv serve`: a KV Connect server, so that `Deno.openKv("http://…")` works against it
//!   (or `https://…` with `--tls-cert`/`--tls-key`). `denokv`'s command line works unchanged
//!   (`openkv --sqlite-path X serve --access-token T`).
//! - `openkv info`: what a database holds.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use futures::TryStreamExt;
use openkv::{Key, Kv, ListOptions, Selector};
use openkv_server::{serve, ServerConfig, TlsConfig};

#[derive(Parser)]
#[command(
    name = "openkv",
    version,
    about = "Deno KV, in Rust: serve, inspect and manage databases"
)]
struct Cli {
    /// The database: a SQLite file (created if missing; files written by Deno CLI work).
    /// `--sqlite-path` is accepted too, as `denokv` spells it.
    #[arg(long, global = true, alias = "sqlite-path", env = "OPENKV_DB")]
    db: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the database over KV Connect (`Deno.openKv("http://ADDR")`, or "https://HOST:PORT"
    /// with --tls-cert and --tls-key).
    ///
    /// Clients authenticate with the access token (Deno reads it from DENO_KV_ACCESS_TOKEN).
    /// SIGTERM or SIGINT stops the server gracefully: it stops accepting, finishes requests in
    /// flight and closes the database.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:4512")]
        addr: String,
        /// The token clients must present; at least 12 characters.
        #[arg(long, env = "OPENKV_ACCESS_TOKEN", hide_env_values = true)]
        access_token: Option<String>,
        /// Refuse writes (clients see the protocol's write-disabled status).
        #[arg(long)]
        read_only: bool,
        /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate chain, the server's
        /// certificate first. Needs --tls-key.
        #[arg(long, env = "OPENKV_TLS_CERT", value_name = "PEM", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert (PKCS#8, RSA PKCS#1 or EC SEC1, unencrypted).
        #[arg(long, env = "OPENKV_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Summarize a database: schema version, number of live entries, latest versionstamp.
    ///
    /// Opening a file migrates an older Deno schema to version 3, as Deno itself would.
    Info,
}

fn db_path(cli_db: Option<String>) -> Result<String, String> {
    cli_db.ok_or_else(|| "no database given: pass --db <path> (or --sqlite-path)".to_string())
}

async fn info(db: &str) -> Result<(), String> {
    if !std::path::Path::new(db).exists() {
        return Err(format!("no database at {db}"));
    }
    let kv = Kv::open(db).await.map_err(|e| e.to_string())?;
    let mut entries = 0u64;
    let mut latest = openkv::Versionstamp::ZERO;
    let mut stream = kv
        .list(Selector::prefix(Key::default()), ListOptions::new().batch_size(1000))
        .map_err(|e| e.to_string())?;
    while let Some(e) = stream.try_next().await.map_err(|e| e.to_string())? {
        entries += 1;
        latest = latest.max(e.versionstamp);
    }
    kv.close().await.map_err(|e| e.to_string())?;
    println!("database:        {db}");
    println!("schema version:  {}", openkv::SCHEMA_VERSION);
    println!("live entries:    {entries}");
    println!("latest entry at: {latest}");
    Ok(())
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}

async fn run_serve(
    db: &str,
    addr: &str,
    token: Option<String>,
    read_only: bool,
    tls_files: Option<(PathBuf, PathBuf)>,
) -> Result<(), String> {
    let token = token
        .or_else(|| std::env::var("DENO_KV_ACCESS_TOKEN").ok())
        .ok_or("no access token: pass --access-token or set OPENKV_ACCESS_TOKEN")?;
    // Before opening the database, so a bad certificate does not leave a new empty file.
    let tls = match tls_files {
        Some((cert, key)) => Some(TlsConfig::from_pem_files(cert, key).map_err(|e| e.to_string())?),
        None => None,
    };
    let kv = Kv::open(db).await.map_err(|e| format!("cannot open {db}: {e}"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // One line on stdout, so scripts (and tests) learn the port when asked for port 0.
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("openkv: serving {db} at {scheme}://{local}");
    let mut config = ServerConfig::new(token).read_only(read_only);
    if let Some(tls) = tls {
        config = config.tls(tls);
    }
    let served = serve(kv.clone(), listener, config, shutdown_signal()).await;
    // Whatever happened, close the store: queued writes finish before the process exits.
    let closed = kv.close().await;
    served.map_err(|e| e.to_string())?;
    closed.map_err(|e| format!("closing the database failed: {e}"))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
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
        let db = db_path(cli.db)?;
        match cli.command {
            Command::Info => info(&db).await,
            Command::Serve { addr, access_token, read_only, tls_cert, tls_key } => {
                // clap's `requires` makes these both present or both absent.
                let tls_files = tls_cert.zip(tls_key);
                run_serve(&db, &addr, access_token, read_only, tls_files).await
            }
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
