//! Which database a command works on (`--db`, `--app`), and opening it (`--access-token`,
//! `--ca-cert`, `--timeout`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use openkv::{Kv, OpenOptions};

use crate::exit::{CliError, CliResult};

/// The global options that say which database to open.
#[derive(clap::Args, Debug, Clone)]
pub struct DbArgs {
    /// The database: a SQLite file (created if missing by the commands that write; files
    /// written by Deno CLI work), or the http(s):// URL of a KV Connect server (`openkv
    /// serve`, `denokv`). `--sqlite-path` is accepted too, as `denokv` spells it.
    #[arg(long, global = true, alias = "sqlite-path", env = "OPENKV_DB")]
    pub db: Option<String>,

    /// Use the default database of the application NAME instead of --db:
    /// DATA_DIR/openkv/NAME/kv.sqlite3, DATA_DIR being the platform's per-user data directory
    /// (`openkv info` shows where that is).
    #[arg(long, global = true, value_name = "NAME", conflicts_with = "db")]
    pub app: Option<String>,

    /// The access token of a remote database (else $DENO_KV_ACCESS_TOKEN, as Deno reads it).
    #[arg(long, global = true, env = "OPENKV_ACCESS_TOKEN", hide_env_values = true)]
    pub access_token: Option<String>,

    /// A PEM CA certificate to trust for an https:// database (a private CA).
    #[arg(long, global = true, value_name = "PEM", env = "OPENKV_CA_CERT")]
    pub ca_cert: Option<PathBuf>,

    /// How long a command on an http(s):// database keeps retrying a server it cannot reach
    /// (or that answers 5xx) before it fails with exit 1: 500ms, 5s, 2m. It says so on stderr
    /// once when it starts retrying. Not used by `serve` (a replica follows its primary for
    /// as long as it runs).
    #[arg(
        long,
        global = true,
        value_name = "DURATION",
        env = "OPENKV_TIMEOUT",
        default_value = "5s",
        value_parser = positive_duration
    )]
    pub timeout: humantime::Duration,
}

/// A duration flag that must not be zero (humantime's syntax: 10s, 2m, 1h30m).
pub fn positive_duration(text: &str) -> Result<humantime::Duration, String> {
    let duration: humantime::Duration = text.parse().map_err(|e| format!("{e}"))?;
    if duration.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    Ok(duration)
}

/// Whether a command may create the database.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    /// Reads only: a missing file is an error, never a new empty database.
    Read,
    /// Writes: a missing file is created (and, for `--app`, its directories).
    Write,
}

/// Where the database is.
#[derive(Debug, Clone)]
pub struct Location {
    /// The path or URL, as given to `Kv::open`.
    pub target: String,
    /// An http(s):// URL.
    pub remote: bool,
    /// A postgres:// URL (a server the tool must not treat as a file).
    pub postgres: bool,
    /// Chosen by `--app` (the default location).
    pub default_for_app: bool,
}

impl DbArgs {
    /// The database the options name: `--db`, else `--app`'s default location.
    pub fn location(&self) -> CliResult<Location> {
        if let Some(db) = &self.db {
            let remote = db.starts_with("http://") || db.starts_with("https://");
            let postgres = db.starts_with("postgres://") || db.starts_with("postgresql://");
            return Ok(Location { target: db.clone(), remote, postgres, default_for_app: false });
        }
        if let Some(app) = &self.app {
            let path = openkv::default_database_path(app)
                .map_err(|e| CliError::kv("no default database location", e))?;
            let target = path
                .to_str()
                .ok_or_else(|| {
                    CliError::Runtime(format!("the path {} is not UTF-8", path.display()))
                })?
                .to_owned();
            return Ok(Location { target, remote: false, postgres: false, default_for_app: true });
        }
        Err(CliError::Usage(
            "no database given: pass --db <path or http(s) URL> (or set OPENKV_DB), or --app \
             NAME for that application's default database"
                .into(),
        ))
    }

    /// Opens the database the options name.
    pub async fn open(&self, access: Access) -> CliResult<Kv> {
        let location = self.location()?;
        self.open_at(&location, access).await
    }

    /// Opens `location`.
    pub async fn open_at(&self, location: &Location, access: Access) -> CliResult<Kv> {
        let target = &location.target;
        let mut options = OpenOptions::new();
        // Set once the server was retried: a failure to open is then the retries running out.
        let retried = Arc::new(AtomicBool::new(false));
        if location.remote {
            let token = self
                .access_token
                .clone()
                .or_else(|| std::env::var("DENO_KV_ACCESS_TOKEN").ok())
                .ok_or_else(|| {
                    CliError::Usage(format!(
                        "{target} needs an access token: pass --access-token or set \
                         OPENKV_ACCESS_TOKEN (or DENO_KV_ACCESS_TOKEN)"
                    ))
                })?;
            options = options.access_token(token);
            if let Some(pem) = &self.ca_cert {
                let pem = std::fs::read(pem)
                    .map_err(|e| CliError::io(format!("cannot read {}", pem.display()), e))?;
                options = options.remote_root_certificate(pem);
            }
            options = options
                .remote_retry_timeout(*self.timeout)
                .remote_on_retry(announce_retries(target, self.timeout, retried.clone()));
        } else if target != ":memory:" && !location.postgres && !Path::new(target).exists() {
            match access {
                Access::Read => return Err(CliError::Runtime(format!("no database at {target}"))),
                Access::Write if location.default_for_app => {
                    if let Some(dir) = Path::new(target).parent() {
                        std::fs::create_dir_all(dir).map_err(|e| {
                            CliError::io(format!("cannot create {}", dir.display()), e)
                        })?;
                    }
                }
                Access::Write => {}
            }
        }
        options.open(target).await.map_err(|e| match e {
            openkv::Error::Unavailable(failure) if retried.load(Ordering::Relaxed) => {
                CliError::Runtime(format!(
                    "cannot reach {} ({}): gave up after {} (--timeout)",
                    redact_password(target),
                    root_cause(&failure),
                    self.timeout
                ))
            }
            e => CliError::kv(format!("cannot open {}", redact_password(target)), e),
        })
    }
}

/// The remote client's retry observer: says on stderr, the first time only, that the server
/// at `target` is being retried and for how long; sets `retried`.
fn announce_retries(
    target: &str,
    timeout: humantime::Duration,
    retried: Arc<AtomicBool>,
) -> impl Fn(&openkv::RemoteRetry<'_>) + Send + Sync + 'static {
    let server = redact_password(target);
    move |retry| {
        if !retried.swap(true, Ordering::Relaxed) {
            eprintln!(
                "openkv: cannot reach {server} ({}); retrying for up to {timeout} (--timeout)",
                root_cause(retry.failure)
            );
        }
    }
}

/// Why a request failed, in a few words: the kind of the operating system's error down the
/// failure's chain ("connection refused"), else the innermost error's own text (a 5xx
/// answer's "HTTP 503: …", a name that does not resolve).
fn root_cause(failure: &openkv::Failure) -> String {
    let mut innermost: &(dyn std::error::Error + 'static) = failure;
    while let Some(cause) = innermost.source() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.raw_os_error().is_some() {
                return io.kind().to_string();
            }
        }
        innermost = cause;
    }
    innermost.to_string()
}

/// `url` with the password of a `scheme://user:password@host` URL replaced by `***`, for
/// messages and logs.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_password;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_password("postgres://kv:s3cret@db:5432/app?openkv_schema=a"),
            "postgres://kv:***@db:5432/app?openkv_schema=a"
        );
        assert_eq!(redact_password("postgres://kv@db/app"), "postgres://kv@db/app");
        assert_eq!(redact_password("data.sqlite3"), "data.sqlite3");
    }
}
