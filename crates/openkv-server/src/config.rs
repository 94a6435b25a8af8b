//! How the server runs ([`ServerConfig`] and its builders, [`WebhookConfig`]) and why it could not start
//! ([`ServeError`]).

use std::time::Duration;

use openkv::Error;

use crate::limits::ServerLimits;
use crate::tls::TlsConfig;

/// How the server runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The bearer token clients must present (at least 12 characters).
    pub access_token: String,
    /// Refuse writes (`AW_WRITE_DISABLED`).
    pub read_only: bool,
    /// Serve HTTPS with this certificate instead of plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Push every queue message to this webhook (see [`WebhookConfig`]).
    pub queue_webhook: Option<WebhookConfig>,
    /// Read replicas of this database (their base URLs, e.g. `http://replica:4512`), listed
    /// in the metadata as `eventual` endpoints: clients that route eventual reads (`@deno/kv`,
    /// openkv's) send those there. Default: none.
    pub replica_endpoints: Vec<String>,
    /// What one client may hold of the server: connections, timeouts, header and body sizes,
    /// watch streams, queue long polls (see [`ServerLimits`]). Default: every default.
    pub limits: ServerLimits,
    /// A continuous backup's status, shown by the status endpoint. Default: none.
    pub backup: Option<tokio::sync::watch::Receiver<openkv_backup::BackupStatus>>,
    /// `/readyz` answers 503 for a read replica further behind its primary than this.
    /// Default: [`DEFAULT_READY_MAX_LAG`] (10 s).
    pub ready_max_lag: Duration,
    /// Count requests for `/metrics` and serve it. Default: on. Off, no request is counted
    /// and `/metrics` answers 404 (the engine's own counters are kept either way: they cost
    /// a few atomic adds per batch).
    pub metrics: bool,
    /// A token that reads `/metrics` and nothing else (for a Prometheus scraper; the access
    /// token and admin tokens of every database read it too). Default: none.
    pub metrics_token: Option<String>,
    /// Serve `/metrics`, `/healthz` and `/readyz` without a token on this address too (a
    /// listener of its own, for a private network). Default: none.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Serve the web console at `/console` and its API (`/console/api/…`, for tokens as any
    /// endpoint). Default: on.
    pub console: bool,
}

/// [`ServerConfig::ready_max_lag`]'s default: a replica 10 s behind is one to take out of a
/// load balancer's rotation, not one to restart.
pub const DEFAULT_READY_MAX_LAG: Duration = Duration::from_secs(10);

impl ServerConfig {
    /// A read-write server requiring `access_token`.
    pub fn new(access_token: impl Into<String>) -> Self {
        ServerConfig {
            access_token: access_token.into(),
            read_only: false,
            tls: None,
            queue_webhook: None,
            replica_endpoints: Vec::new(),
            limits: ServerLimits::default(),
            backup: None,
            ready_max_lag: DEFAULT_READY_MAX_LAG,
            metrics: true,
            metrics_token: None,
            metrics_addr: None,
            console: true,
        }
    }

    /// Delivers queue messages to a webhook (needs a writable server).
    pub fn queue_webhook(mut self, webhook: WebhookConfig) -> Self {
        self.queue_webhook = Some(webhook);
        self
    }

    /// Lists a read replica's base URL in the metadata (see `replica_endpoints`).
    pub fn replica_endpoint(mut self, url: impl Into<String>) -> Self {
        self.replica_endpoints.push(url.into());
        self
    }

    /// Sets `read_only`.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Serves under `limits` instead of the defaults (see [`ServerLimits`]).
    pub fn limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Shows a continuous backup's status in the status endpoint
    /// (`openkv_backup::ContinuousBackup::subscribe`).
    pub fn backup_status(
        mut self,
        status: tokio::sync::watch::Receiver<openkv_backup::BackupStatus>,
    ) -> Self {
        self.backup = Some(status);
        self
    }

    /// Sets `ready_max_lag`.
    pub fn ready_max_lag(mut self, lag: Duration) -> Self {
        self.ready_max_lag = lag;
        self
    }

    /// Sets `console` (on by default).
    pub fn console(mut self, on: bool) -> Self {
        self.console = on;
        self
    }

    /// Sets `metrics` (on by default).
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    /// Sets `metrics_token`.
    pub fn metrics_token(mut self, token: impl Into<String>) -> Self {
        self.metrics_token = Some(token.into());
        self
    }

    /// Sets `metrics_addr`.
    pub fn metrics_addr(mut self, addr: std::net::SocketAddr) -> Self {
        self.metrics_addr = Some(addr);
        self
    }

    /// Serves HTTPS with `tls` (see [`TlsConfig::from_pem_files`]).
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The access token is too short to be a secret.
    #[error("the access token must be at least 12 characters long")]
    WeakToken,
    /// A queue webhook on a read-only server (delivery changes the queue).
    #[error(
        "a read-only server cannot deliver queue messages: drop --queue-webhook or --read-only"
    )]
    ReadOnlyWebhook,
    /// A limit that would refuse everything (a zero), or that the HTTP layer cannot apply.
    #[error("{0}")]
    InvalidLimits(String),
    /// A setting for one database given to a server of many ([`crate::serve_many`]).
    #[error("{0} serves one database: not on a server of many databases")]
    NotWithManyDatabases(&'static str),
    /// The catalog of many databases could not be read at startup.
    #[error("cannot read the catalog of databases: {0}")]
    Catalog(#[source] openkv::catalog::CatalogError),
    /// The database could not give its id.
    #[error("cannot read the database id: {0}")]
    Database(#[from] Error),
    /// The listener failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Where and how the server pushes queue messages.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// The URL each message is POSTed to.
    pub url: String,
    /// How long one POST may take before it counts as a failed attempt (default 30 s).
    pub timeout: Duration,
}

impl WebhookConfig {
    /// A webhook at `url` with the default timeout.
    pub fn new(url: impl Into<String>) -> Self {
        WebhookConfig { url: url.into(), timeout: Duration::from_secs(30) }
    }
}
