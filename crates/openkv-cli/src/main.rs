//! `openkv`: the command line of openkv.
//!
//! - `openkv serve`: a KV Connect server, so that `Deno.openKv("http://…")` works against it
//!   (or `https://…` with `--tls-cert`/`--tls-key`). `denokv`'s command line works unchanged
//!   (`openkv --sqlite-path X serve --access-token T`).
//! - `openkv get | set | delete | list | count | watch`: the data, with keys written in the
//!   syntax of `openkv::key::syntax` and values as typed JSON (`data.rs`).
//! - `openkv export | import`: a database as NDJSON and back (`transfer.rs`).
//! - `openkv info`: what a database holds, and where `--app` databases live.
//!
//! Exit codes: see [`exit`].

mod backup;
mod data;
mod db;
mod exit;
mod info;
mod logging;
mod manage;
mod output;
mod pitr;
mod signal;
mod transfer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::RangedU64ValueParser;
use clap::{Parser, Subcommand};
use openkv_server::{serve, ServerConfig, ServerLimits, TlsConfig};

use crate::db::{positive_duration, DbArgs};
use crate::exit::CliError;

// mimalloc rather than glibc's allocator: a KV Connect request allocates and frees many small
// buffers (HTTP/2 frames, protobuf, rows). Measured with h2load on point reads (2 cores,
// 3 alternating pairs): 8–12% fewer server CPU µs per request, sequential and 64 in flight.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Shown at the end of `openkv --help`.
const AFTER_HELP: &str = r#"Keys are written as a JSON-like array of typed parts:
  ["users", 12n, 3.5, true, b"AAE="]
  "text" (JSON escapes)   12n bigint (any size)   3.5, -0, NaN, Infinity number
  true / false            b"<base64>" Uint8Array
Values are typed JSON: plain JSON, plus tags for what JSON cannot hold ({"$bigint": "1"},
{"$date": "2024-01-02T03:04:05.678Z"}, {"$map": [[k, v]]}, {"$kvu64": "1"}, {"$bytes": "AAE="}, ...).

Exit codes: 0 success; 1 runtime failure (database, network, file, bad import line);
2 usage error (bad flag, malformed key/value/duration/cursor, no database given);
3 `get` found no entry.

Examples:
  openkv --db data.sqlite3 set '["users", "ada"]' '{"name": "Ada", "born": {"$date": "1815-12-10T00:00:00.000Z"}}'
  openkv --db data.sqlite3 get '["users", "ada"]'
  openkv --db http://127.0.0.1:4512 --access-token T list --prefix '["users"]' --limit 10
  openkv --app todo export -o todo.ndjson"#;

#[derive(Parser)]
#[command(
    name = "openkv",
    version,
    about = "Deno KV, in Rust: serve, inspect and manage databases",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(flatten)]
    db: DbArgs,

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
    Serve(Box<ServeArgs>),
    /// Print the value of a key as typed JSON (exit 3 if the key has no entry).
    Get(data::GetArgs),
    /// Store a value under a key; prints the commit's versionstamp.
    Set(data::SetArgs),
    /// Delete keys (a missing key is not an error).
    Delete(data::DeleteArgs),
    /// List entries, one JSON object per line: {"key", "value", "versionstamp"}.
    ///
    /// The selector is Deno's: --prefix (keys strictly under it, default [] = every key),
    /// narrowed by --start or --end, or --start and --end alone for a range [start, end).
    List(data::ListArgs),
    /// Count the entries a selector picks (--prefix, --start, --end as for list).
    Count(data::CountArgs),
    /// Follow keys: print their entries now, then one line per change (a JSON array with one
    /// {"key", "value", "versionstamp"} per key, null value for no entry), until Ctrl-C or
    /// SIGTERM (exit 0).
    Watch(data::WatchArgs),
    /// Write entries as NDJSON: key (key syntax and encoded bytes), typed value, encoding,
    /// versionstamp, expiry.
    ///
    /// A progress bar with rate and ETA is drawn on stderr when it is a terminal; a summary
    /// line goes to stderr at the end.
    Export(transfer::ExportArgs),
    /// Read an export and write its entries, in atomic batches (new versionstamps).
    ///
    /// Entries whose expiry has passed are skipped; others keep their expiry time. A line
    /// that cannot be imported is reported (line number and why) and counted, and the import
    /// goes on (exit 1 at the end); a database failure stops it, naming the line to give to
    /// --resume-from. The report (lines read, entries written, skipped, errors) goes to
    /// stderr, and with --json also to stdout.
    Import(transfer::ImportArgs),
    /// Write an online backup of the database (a file, or a server's, downloaded) to a new
    /// FILE: one consistent snapshot taken while writers go on, verified (integrity check,
    /// Deno's schema) before it gets its name. Deno CLI opens it as is.
    Backup(backup::BackupArgs),
    /// Replace the database (--db or --app) with a backup, atomically, after checking the
    /// backup. A file: replaced whole; refused while open elsewhere unless --force. A server:
    /// the backup is uploaded and replaces the served content in one transaction.
    Restore(backup::RestoreArgs),
    /// Point-in-time recovery from a continuous backup (`openkv serve --backup-to`, or Deno
    /// Deploy's): list its recovery points. Restore with `openkv restore --from … --at …`,
    /// check with `openkv backup verify --from …`.
    #[command(subcommand)]
    Pitr(pitr::PitrCommand),
    /// Manage the databases of a server of many (`openkv serve --data-dir`), through its
    /// admin API: --db is the server's URL, --access-token an admin token reaching every
    /// database.
    #[command(subcommand)]
    Db(manage::DbCommand),
    /// Manage the access tokens of a server of many databases (`openkv serve --data-dir`):
    /// --db is the server's URL, --access-token an admin token reaching every database.
    #[command(subcommand)]
    Token(manage::TokenCommand),
    /// Summarize a database: schema version, number of live entries, latest versionstamp.
    /// Without --db or --app: where default databases (--app NAME) live. With --db the URL of
    /// a server of many databases: each one's figures (through its admin API).
    ///
    /// Opening a file migrates an older Deno schema to version 3, as Deno itself would.
    Info,
}

/// `openkv serve`'s options.
#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4512")]
    addr: String,
    /// The token clients must present; at least 12 characters.
    #[arg(long, env = "OPENKV_ACCESS_TOKEN", hide_env_values = true)]
    access_token: Option<String>,
    /// The log on stderr (level: RUST_LOG, default info): text for people, or json, one
    /// object per line for machines. Each request runs in a span `request` carrying its
    /// request_id (the client's x-request-id when well formed, else a new one; answered in
    /// the x-request-id header), method and path.
    #[arg(long, value_enum, env = "OPENKV_LOG_FORMAT", value_name = "FORMAT", default_value_t)]
    log_format: logging::LogFormat,
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
    /// Deliver queue messages by POSTing each to this URL as JSON (the typed JSON rendering
    /// of the value), with headers x-openkv-message-id and x-openkv-attempt. A 2xx answer
    /// means delivered; anything else is a failed attempt, retried per the message's backoff
    /// schedule (docs/protocol-extensions.md).
    #[arg(long, env = "OPENKV_QUEUE_WEBHOOK", value_name = "URL")]
    queue_webhook: Option<String>,
    /// How long one webhook POST may take before it counts as failed.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    queue_webhook_timeout: std::time::Duration,
    /// How much change log to keep for read replicas: an age (90s, 30m, 24h, 7d), a size
    /// (512MiB, 1GiB), or both (24h,1GiB); `off` keeps none (replicas cannot follow, and
    /// commits leave a gap that makes them bootstrap again). Records older, or beyond the
    /// size, are pruned in the background.
    #[arg(long, default_value = "24h,1GiB", value_name = "AGE,SIZE")]
    log_retention: String,
    /// Serve as a read replica of the openkv serve at URL: --db is the local SQLite copy
    /// (bootstrapped from the primary's snapshot, then kept up to date from its change log;
    /// resumed after a restart). Reads are served from the copy (strong ones once it caught
    /// up with the primary, else by the primary), writes and queues go to the primary. The
    /// --access-token is used to reach the primary and accepted from clients.
    #[arg(long, value_name = "URL", conflicts_with_all = ["queue_webhook", "replica_endpoint"])]
    replica_of: Option<String>,
    /// A read replica of this database (its base URL, e.g. http://10.0.0.2:4512), listed in
    /// the metadata as an eventual-consistency endpoint, so that clients routing eventual
    /// reads (@deno/kv, openkv's) send them there. Repeatable.
    #[arg(long, value_name = "URL")]
    replica_endpoint: Vec<String>,
    /// With a PostgreSQL --db: answer eventual reads (those sent to this server's
    /// /v2/eventual endpoint: clients route `consistency: "eventual"` reads there when the
    /// metadata lists it, e.g. with --replica-endpoint <this server's URL>) from this hot
    /// standby of the primary's cluster (a postgres:// URL; it takes --db's openkv_schema when
    /// it names none). Strong reads, writes, watches and queues stay on the primary; while the
    /// standby is down or fails, eventual reads are answered by the primary (a warning at most
    /// every 10 s).
    #[arg(
        long,
        value_name = "POSTGRES_URL",
        value_parser = postgres_url,
        conflicts_with = "replica_of"
    )]
    read_replica: Option<String>,
    /// Close a connection that has not delivered a complete request header within this long:
    /// from its start for its first request, from the first byte of each later one. A client
    /// trickling half a header (slowloris) cannot hold a connection.
    #[arg(
        long,
        value_name = "DURATION",
        default_value_t = openkv_server::DEFAULT_HEADER_TIMEOUT.into(),
        value_parser = positive_duration,
        help_heading = LIMITS
    )]
    header_timeout: humantime::Duration,
    /// Close a connection with no request in flight for this long (a watch stream or a queue
    /// wait in progress is in flight; HTTP/2 gets GOAWAY first).
    #[arg(
        long,
        value_name = "DURATION",
        default_value_t = openkv_server::DEFAULT_IDLE_TIMEOUT.into(),
        value_parser = positive_duration,
        help_heading = LIMITS
    )]
    idle_timeout: humantime::Duration,
    /// Serve at most this many connections at once (TLS handshakes included); one more is
    /// closed as soon as it is accepted, and a warning logged. Lowered to fit the process's
    /// open-file limit (ulimit -n) if that is smaller.
    #[arg(
        long,
        value_name = "N",
        default_value_t = openkv_server::DEFAULT_MAX_CONNECTIONS,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..),
        help_heading = LIMITS
    )]
    max_connections: usize,
    /// The largest request header, in bytes: 431 beyond (HTTP/1 then closes the connection).
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = openkv_server::DEFAULT_MAX_HEADER_BYTES,
        value_parser = RangedU64ValueParser::<usize>::new()
            .range(openkv_server::MIN_HEADER_BYTES as u64..=u64::from(u32::MAX)),
        help_heading = LIMITS
    )]
    max_header_bytes: usize,
    /// The largest request body, in bytes: 413 beyond, after reading at most this much
    /// (restore uploads, streamed to disk, are not limited) [default: twice the largest atomic
    /// write plus 1 MiB: 2686976]
    #[arg(
        long,
        value_name = "BYTES",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..),
        help_heading = LIMITS
    )]
    max_request_body: Option<usize>,
    /// Watch streams one access token may hold open at once: 429 beyond.
    #[arg(
        long,
        value_name = "N",
        default_value_t = openkv_server::DEFAULT_MAX_WATCHES_PER_TOKEN,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..),
        help_heading = LIMITS
    )]
    max_watches_per_token: usize,
    /// Queue long polls (/v2/openkv/queue/wait) held at once, all clients together: 429
    /// beyond.
    #[arg(
        long,
        value_name = "N",
        default_value_t = openkv_server::DEFAULT_MAX_QUEUE_WAITS,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..),
        help_heading = LIMITS
    )]
    max_queue_waits: usize,
    /// Back the database up continuously to LOCATION: a directory (a path or file:///DIR) or
    /// S3-compatible storage (s3://BUCKET/PREFIX; credentials and region from the AWS
    /// environment variables, --s3-endpoint for storage other than AWS). A snapshot first,
    /// then the change log every --backup-interval, in Deno Deploy's backup format (denokv's
    /// `pitr` tools and `serve --sync-from-s3` read it). Restore with `openkv restore --from
    /// LOCATION --at POINT`. Storage that fails is retried; the database keeps serving, and
    /// the lag shows in the status endpoint and the log.
    #[arg(long, value_name = "LOCATION", conflicts_with = "replica_of", help_heading = BACKUP)]
    backup_to: Option<String>,
    /// How often the change log is shipped (commits reach the backup about this long after
    /// they are acknowledged).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = positive_duration, help_heading = BACKUP)]
    backup_interval: humantime::Duration,
    /// Take a new snapshot this long after the last one, so restores replay at most this much
    /// log; `off`: only the first.
    #[arg(long, value_name = "DURATION|off", default_value = "24h", value_parser = duration_or_off, help_heading = BACKUP)]
    snapshot_every: OffOr,
    /// Keep what restoring to any point of this last stretch of time needs, and delete older
    /// snapshots and log; `off`: keep everything.
    #[arg(long, value_name = "DURATION|off", default_value = "7d", value_parser = duration_or_off, help_heading = BACKUP)]
    backup_retention: OffOr,
    #[command(flatten)]
    s3: pitr::S3Args,
    /// Serve every database of DIR instead of one --db: a directory (one SQLite file per
    /// database, NAME.sqlite3, created if missing) or a PostgreSQL URL (one schema per
    /// database, kv_NAME). Each is at /databases/NAME/connect
    /// (`Deno.openKv("http://ADDR/databases/NAME/connect")`); `openkv db` and `openkv token`
    /// manage them. --access-token is the all-powerful token; scoped tokens live in DIR
    /// (openkv-tokens.json) or in PostgreSQL (schema openkv_catalog).
    #[arg(
        long,
        value_name = "DIR|POSTGRES_URL",
        env = "OPENKV_DATA_DIR",
        conflicts_with_all = ["replica_of", "queue_webhook", "backup_to", "read_replica", "replica_endpoint"]
    )]
    data_dir: Option<String>,
    /// A token that reads GET /metrics and nothing else, for a Prometheus scraper (the access
    /// token and admin tokens of every database read it too).
    #[arg(long, env = "OPENKV_METRICS_TOKEN", hide_env_values = true, help_heading = MONITORING)]
    metrics_token: Option<String>,
    /// Serve /metrics, /healthz and /readyz on this address too, without a token (plain
    /// HTTP; for a private network or a sidecar), e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR", help_heading = MONITORING)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Count nothing per request and answer /metrics with 404 (the engine's own counters,
    /// a few atomic adds per commit batch, stay).
    #[arg(long, conflicts_with_all = ["metrics_token", "metrics_addr"], help_heading = MONITORING)]
    no_metrics: bool,
    /// /readyz answers 503 while this server, a read replica, is further behind its primary.
    #[arg(long, value_name = "DURATION", default_value_t = openkv_server::DEFAULT_READY_MAX_LAG.into(), value_parser = positive_duration, help_heading = MONITORING)]
    ready_max_lag: humantime::Duration,
    /// Do not serve the web console (/console and its API; see README "Console").
    #[arg(long)]
    no_console: bool,
}

/// A duration, or `off`.
#[derive(Clone, Copy, Debug)]
struct OffOr(Option<std::time::Duration>);

fn duration_or_off(text: &str) -> Result<OffOr, String> {
    if text == "off" {
        return Ok(OffOr(None));
    }
    positive_duration(text).map(|d| OffOr(Some(*d)))
}

/// The help section of `openkv serve`'s metrics.
const MONITORING: &str = "Monitoring (Prometheus metrics, health)";

/// The monitoring flags of `openkv serve` applied to `config`.
fn monitoring(mut config: ServerConfig, args: &ServeArgs) -> ServerConfig {
    config = config
        .metrics(!args.no_metrics)
        .ready_max_lag(*args.ready_max_lag)
        .console(!args.no_console);
    if let Some(token) = &args.metrics_token {
        config = config.metrics_token(token.clone());
    }
    if let Some(addr) = args.metrics_addr {
        config = config.metrics_addr(addr);
    }
    config
}

/// The help section of `openkv serve`'s continuous backup.
const BACKUP: &str = "Continuous backup (point-in-time recovery; Deno Deploy's format)";

/// The help section of `openkv serve`'s limits (openkv_server::ServerLimits).
const LIMITS: &str = "Limits (what one client may hold of the server)";

/// The server's limits from the flags.
fn server_limits(args: &ServeArgs) -> ServerLimits {
    let limits = ServerLimits::default()
        .header_timeout(*args.header_timeout)
        .idle_timeout(*args.idle_timeout)
        .max_connections(args.max_connections)
        .max_header_bytes(args.max_header_bytes)
        .max_watches_per_token(args.max_watches_per_token)
        .max_queue_waits(args.max_queue_waits);
    match args.max_request_body {
        Some(bytes) => limits.max_request_body(bytes),
        None => limits,
    }
}

/// `--read-replica`'s value: a PostgreSQL URL.
fn postgres_url(url: &str) -> Result<String, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(url.to_owned())
    } else {
        Err("a PostgreSQL hot standby's postgres:// or postgresql:// URL".to_owned())
    }
}

async fn run_serve(db: &str, args: ServeArgs) -> Result<(), String> {
    let limits = server_limits(&args);
    let base = ServerConfig::new(String::new()).read_only(args.read_only).limits(limits);
    let base = monitoring(base, &args);
    let ServeArgs { addr, access_token, tls_cert, tls_key, .. } = args;
    // clap's `requires` makes these both present or both absent.
    let tls_files = tls_cert.zip(tls_key);
    let token = serve_token(access_token)?;
    // Before opening the database, so a bad certificate does not leave a new empty file.
    let tls = match tls_files {
        Some((cert, key)) => Some(TlsConfig::from_pem_files(cert, key).map_err(|e| e.to_string())?),
        None => None,
    };
    let shown = db::redact_password(db);
    let retention = match args.log_retention.as_str() {
        "off" => None,
        spec => Some(openkv::changelog::LogRetention::parse(spec).map_err(|e| e.to_string())?),
    };
    let mut options = openkv::OpenOptions::new();
    if let Some(retention) = retention {
        options = options.change_log(retention);
    }
    if let Some(standby) = args.read_replica.clone() {
        options = options.postgres_read_replica(standby);
    }
    let kv = match &args.replica_of {
        None => options.open(db).await.map_err(|e| format!("cannot open {shown}: {e}"))?,
        Some(primary) => options
            .access_token(token.clone())
            .open_replica(primary, db, openkv::ReplicaOptions::default())
            .await
            .map_err(|e| format!("cannot follow {primary} into {shown}: {e}"))?,
    };
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // One line on stdout, so scripts (and tests) learn the port when asked for port 0.
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("openkv: serving {shown} at {scheme}://{local}");
    if let Some(primary) = &args.replica_of {
        tracing::info!("a read replica of {primary}");
    }
    let mut config = base;
    config.access_token = token;
    for url in &args.replica_endpoint {
        config = config.replica_endpoint(url.clone());
    }
    if let Some(tls) = tls {
        config = config.tls(tls);
    }
    if let Some(url) = args.queue_webhook {
        let mut webhook = openkv_server::WebhookConfig::new(url);
        webhook.timeout = args.queue_webhook_timeout;
        config = config.queue_webhook(webhook);
    }
    let backup = match &args.backup_to {
        None => None,
        Some(to) => {
            let location = openkv_backup::Location::parse(to, &args.s3.options())
                .map_err(|e| format!("--backup-to {to}: {e}"))?;
            let source = kv.replication_source().map_err(|e| {
                format!("--backup-to needs the change log (not --log-retention off): {e}")
            })?;
            let mut options = openkv_backup::ShipOptions::default();
            options.interval = *args.backup_interval;
            options.snapshot_every = args.snapshot_every.0;
            options.retention = args.backup_retention.0;
            tracing::info!("backing up continuously to {location}");
            Some(openkv_backup::ContinuousBackup::start(source, location, options))
        }
    };
    if let Some(backup) = &backup {
        config = config.backup_status(backup.subscribe());
    }
    let served = serve(kv.clone(), listener, config, signal::shutdown_signal()).await;
    // Ship what was committed before the end, then close the store: queued writes finish
    // before the process exits.
    if let Some(backup) = backup {
        backup.stop(std::time::Duration::from_secs(10)).await;
    }
    let closed = kv.close().await;
    served.map_err(|e| e.to_string())?;
    closed.map_err(|e| format!("closing the database failed: {e}"))
}

/// The access token of `openkv serve`: --access-token, OPENKV_ACCESS_TOKEN or
/// DENO_KV_ACCESS_TOKEN.
fn serve_token(access_token: Option<String>) -> Result<String, String> {
    access_token
        .or_else(|| std::env::var("DENO_KV_ACCESS_TOKEN").ok())
        .ok_or_else(|| "no access token: pass --access-token or set OPENKV_ACCESS_TOKEN".into())
}

/// `openkv serve --data-dir`: every database of a directory or PostgreSQL database.
async fn run_serve_many(args: ServeArgs) -> Result<(), String> {
    let limits = server_limits(&args);
    let token = serve_token(args.access_token.clone())?;
    let tls = match args.tls_cert.clone().zip(args.tls_key.clone()) {
        Some((cert, key)) => Some(TlsConfig::from_pem_files(cert, key).map_err(|e| e.to_string())?),
        None => None,
    };
    let data_dir = args.data_dir.clone().unwrap_or_default();
    let shown = db::redact_password(&data_dir);
    let mut options = openkv::OpenOptions::new();
    if args.log_retention != "off" {
        let retention = openkv::changelog::LogRetention::parse(&args.log_retention)
            .map_err(|e| e.to_string())?;
        options = options.change_log(retention);
    }
    let catalog = openkv::open_catalog(&data_dir)
        .await
        .map_err(|e| format!("cannot open the data directory {shown}: {e}"))?;
    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // One line on stdout, so scripts (and tests) learn the port when asked for port 0.
    println!(
        "openkv: serving the databases of {shown} at {scheme}://{local}/databases/NAME/connect"
    );
    let mut config =
        monitoring(ServerConfig::new(token).read_only(args.read_only).limits(limits), &args);
    if let Some(tls) = tls {
        config = config.tls(tls);
    }
    openkv_server::serve_many(catalog, options, listener, config, signal::shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = match &cli.command {
        Command::Serve(args) => args.log_format,
        _ => logging::LogFormat::Text,
    };
    logging::init(log_format);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("openkv: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let db = cli.db;
    let result = rt.block_on(async {
        match cli.command {
            Command::Info => {
                if manage::info(&db).await? {
                    return Ok(());
                }
                info::info(&db).await
            }
            Command::Db(command) => manage::db(&db, command).await,
            Command::Token(command) => manage::token(&db, command).await,
            Command::Serve(args) if args.data_dir.is_some() => {
                if db.db.is_some() || db.app.is_some() {
                    return Err(CliError::Usage(
                        "--data-dir serves every database of a directory, --db one database: \
                         pass one of them"
                            .into(),
                    ));
                }
                run_serve_many(*args).await.map_err(CliError::Runtime)
            }
            Command::Serve(args) => {
                let location = db.location()?;
                if args.read_replica.is_some() && !location.postgres {
                    return Err(CliError::Usage(
                        "--read-replica needs a PostgreSQL --db (postgres://…): it names a hot \
                         standby of that database's cluster"
                            .into(),
                    ));
                }
                run_serve(&location.target, *args).await.map_err(CliError::Runtime)
            }
            Command::Get(args) => data::get(&db, args).await,
            Command::Set(args) => data::set(&db, args).await,
            Command::Delete(args) => data::delete(&db, args).await,
            Command::List(args) => data::list(&db, args).await,
            Command::Count(args) => data::count(&db, args).await,
            Command::Watch(args) => data::watch(&db, args).await,
            Command::Export(args) => transfer::export(&db, args).await,
            Command::Import(args) => transfer::import(&db, args).await,
            Command::Backup(args) => backup::backup(&db, args).await,
            Command::Restore(args) => backup::restore(&db, args).await,
            Command::Pitr(pitr::PitrCommand::List(args)) => pitr::list(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A log read by machines gets the reason as one more JSON line, not as plain text.
        Err(e) if log_format == logging::LogFormat::Json => {
            tracing::error!("{e}");
            e.exit_code()
        }
        Err(e) => {
            eprintln!("openkv: {e}");
            e.exit_code()
        }
    }
}
