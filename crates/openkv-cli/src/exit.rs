//! Errors of the command line, and the exit code each one gives.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (also: `watch` stopped by Ctrl-C or SIGTERM, output closed early by a pipe) |
//! | 1 | a runtime failure: the database, the network, a file, a bad line in an import |
//! | 2 | a usage error: unknown flag, malformed key, value, duration or cursor, a selector or key the database refuses before doing anything, no database given |
//! | 3 | `get`: the key has no entry |

use std::fmt;
use std::process::ExitCode;

/// Why a command failed; each kind has its own exit code.
#[derive(Debug)]
pub enum CliError {
    /// The command line is wrong (exit 2).
    Usage(String),
    /// Something failed while running (exit 1).
    Runtime(String),
    /// `get` found no entry (exit 3).
    NotFound(String),
}

impl CliError {
    /// The process exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::Runtime(_) => 1,
            CliError::Usage(_) => 2,
            CliError::NotFound(_) => 3,
        })
    }

    /// An engine error, in a context (`"cannot read [\"a\"]"`): a usage error if the engine
    /// refused the request itself before doing anything (bad key, selector, cursor, option,
    /// size), else a runtime error.
    pub fn kv(context: impl fmt::Display, e: openkv::Error) -> CliError {
        use openkv::Error as E;
        let message = format!("{context}: {e}");
        match e {
            E::InvalidKey(_)
            | E::KeyTooLargeForWrite { .. }
            | E::KeyTooLargeForRead { .. }
            | E::ValueTooLarge { .. }
            | E::InvalidSelector(_)
            | E::InvalidCursor(_)
            | E::InvalidOption(_)
            | E::TooManyWatchedKeys { .. } => CliError::Usage(message),
            _ => CliError::Runtime(message),
        }
    }

    /// An I/O error, in a context (`"cannot read data.ndjson"`).
    pub fn io(context: impl fmt::Display, e: std::io::Error) -> CliError {
        CliError::Runtime(format!("{context}: {e}"))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Runtime(m) | CliError::NotFound(m) => f.write_str(m),
        }
    }
}

/// The result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;
