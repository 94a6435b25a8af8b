//! What every handler shares. The bottom module of the server next to `config` and
//! `response`: the endpoint modules and the router (`lib.rs`) import it, it imports none of
//! them.

use std::sync::Arc;

use openkv::catalog::DatabaseName;
use openkv::Kv;

use crate::config::ServerConfig;
use crate::limits::Admission;
use crate::metrics::{DatabaseHttp, HttpMetrics};
use crate::tokens::Tokens;

/// What every handler of one database reads: the store, the configuration, and the flag that
/// ends its streams.
pub(crate) struct AppState {
    pub(crate) kv: Kv,
    pub(crate) config: ServerConfig,
    pub(crate) database_id: String,
    /// Flips to `true` at shutdown or when the database is deleted, ending watch streams,
    /// queue waits and log streams (graceful shutdown waits for every response body to
    /// finish, and a watch never finishes by itself).
    pub(crate) stopping: tokio::sync::watch::Receiver<bool>,
    /// The per-request limits' counters: watch streams per token, queue long polls (shared
    /// by every database of the server).
    pub(crate) admission: Arc<Admission>,
    /// The database's name on a server of many (`None`: the one database of a
    /// single-database server).
    pub(crate) database: Option<DatabaseName>,
    /// Where its endpoints are: `""` on a single-database server, `/databases/<name>` on one
    /// of many (the metadata's endpoint URLs start with it).
    pub(crate) base_path: String,
    /// The tokens that may reach it (shared by every database of the server).
    pub(crate) tokens: Arc<Tokens>,
    /// The server's HTTP metrics (auth failures; every database's counters for `/metrics`).
    pub(crate) metrics: Arc<HttpMetrics>,
    /// This database's request counters (`None` with [`ServerConfig::metrics`] off).
    pub(crate) http: Option<Arc<DatabaseHttp>>,
}
