//! Bugs injected on purpose, to prove each checker fails when the store misbehaves: a wrapper
//! around a client's requests that breaks one promise the way a buggy engine would, while
//! everything underneath is the real thing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::ops::{BoxFuture, Exec, OpError, Request, Response};

/// A promise to break.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Bug {
    /// Commits ignore their checks (a check skipped): lost updates.
    SkipChecks,
    /// A commit's sets are applied again a moment after it returned (a commit applied twice).
    ApplyTwice,
    /// A commit's sets are split over two commits, the second without checks (a torn batch).
    TornBatch,
    /// Every commit of a client reports its first commit's versionstamp (a versionstamp reused).
    ReuseVersionstamp,
    /// Queue listeners acknowledge one message in twenty without handling it (a queue that
    /// loses messages).
    DropMessages,
}

impl Bug {
    /// Every bug.
    pub const ALL: [Bug; 5] = [
        Bug::SkipChecks,
        Bug::ApplyTwice,
        Bug::TornBatch,
        Bug::ReuseVersionstamp,
        Bug::DropMessages,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Bug::SkipChecks => "skip-checks",
            Bug::ApplyTwice => "apply-twice",
            Bug::TornBatch => "torn-batch",
            Bug::ReuseVersionstamp => "reuse-versionstamp",
            Bug::DropMessages => "drop-messages",
        }
    }

    /// The bug called `name`.
    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// A client with a bug.
pub struct Buggy {
    inner: Arc<dyn Exec>,
    bug: Bug,
    last_stamp: Mutex<Option<[u8; 10]>>,
}

impl Buggy {
    /// `inner`, broken by `bug`.
    pub fn new(inner: Arc<dyn Exec>, bug: Bug) -> Buggy {
        Buggy { inner, bug, last_stamp: Mutex::new(None) }
    }
}

impl Exec for Buggy {
    fn exec(&self, request: Request) -> BoxFuture<'_, Result<Response, OpError>> {
        Box::pin(async move {
            let Request::Commit { checks, sets } = request else {
                // Reads and enqueues pass untouched.
                return self.inner.exec(request).await;
            };
            match self.bug {
                // A listener's bug (workload::queue_handler): commits pass untouched.
                Bug::DropMessages => self.inner.exec(Request::Commit { checks, sets }).await,
                Bug::SkipChecks => self.inner.exec(Request::Commit { checks: vec![], sets }).await,
                Bug::ApplyTwice => {
                    let first =
                        self.inner.exec(Request::Commit { checks, sets: sets.clone() }).await?;
                    if matches!(first, Response::Committed(_)) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        self.inner.exec(Request::Commit { checks: vec![], sets }).await?;
                    }
                    Ok(first)
                }
                Bug::TornBatch => {
                    let mut sets = sets;
                    let rest = sets.split_off(1.min(sets.len()));
                    let first = self.inner.exec(Request::Commit { checks, sets }).await?;
                    if matches!(first, Response::Committed(_)) && !rest.is_empty() {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        self.inner.exec(Request::Commit { checks: vec![], sets: rest }).await?;
                    }
                    Ok(first)
                }
                Bug::ReuseVersionstamp => {
                    let answer = self.inner.exec(Request::Commit { checks, sets }).await?;
                    let Response::Committed(stamp) = answer else { return Ok(answer) };
                    let mut last = self.last_stamp.lock().unwrap_or_else(|e| e.into_inner());
                    // The client's first versionstamp, again and again.
                    let reported = last.unwrap_or(stamp);
                    *last = Some(reported);
                    Ok(Response::Committed(reported))
                }
            }
        })
    }
}
