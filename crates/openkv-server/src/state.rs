//! What every handler shares. The bottom module of the server next to `config` and
//! `response`: the endpoint modules and the router (`lib.rs`) import it, it imports none of
//! them.

use std::sync::Arc;

use openkv::Kv;

use crate::config::ServerConfig;
use crate::limits::Admission;

/// What every handler reads: the store, the configuration, and the shutdown flag.
pub(crate) struct AppState {
    pub(crate) kv: Kv,
    pub(crate) config: ServerConfig,
    pub(crate) database_id: String,
    /// Flips to `true` at shutdown, ending watch streams (graceful shutdown waits for every
    /// response body to finish, and a watch never finishes by itself).
    pub(crate) stopping: tokio::sync::watch::Receiver<bool>,
    /// The per-request limits' counters: watch streams per token, queue long polls.
    pub(crate) admission: Arc<Admission>,
}
