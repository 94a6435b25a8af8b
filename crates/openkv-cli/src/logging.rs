//! The process's log (`tracing`, on stderr, filtered by `RUST_LOG`, `info` by default): lines
//! of text for people, or one JSON object per line for machines (`serve --log-format json`).

use tracing_subscriber::EnvFilter;

/// `openkv serve --log-format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// A line of text per event, for people.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, the event's fields (message,
    /// status, …) and the span it happened in (a request's request_id, method and path).
    Json,
}

/// Installs the log for the whole process.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let log = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => log.init(),
        // The current span only, not the list of all: a request's line is logged in its own
        // `request` span (openkv_server's log_request), which nothing in the server nests.
        LogFormat::Json => log.json().with_current_span(true).with_span_list(false).init(),
    }
}
