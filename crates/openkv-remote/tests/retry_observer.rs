//! `RemoteConfig::on_retry`, the seam through which a program learns that the client is
//! retrying (the `openkv` command line says so on stderr): it is told of every retry, in
//! order, with the typed cause, and the retries use the whole `retry_timeout` before the
//! client gives up with `Error::Unavailable`.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openkv_core::clock::SystemClock;
use openkv_core::error::Error;
use openkv_remote::{RemoteBackend, RemoteConfig, RetryObserver};

/// A port of 127.0.0.1 nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether a refused connection is down `e`'s chain of causes, found by type.
fn refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(cause) = next {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        next = cause.source();
    }
    false
}

/// What the observer saw of one retry.
#[derive(Debug)]
struct Seen {
    url: String,
    retry: u32,
    pause: Duration,
    retry_timeout: Duration,
    refused: bool,
}

#[tokio::test]
async fn every_retry_is_told_and_the_whole_retry_timeout_is_used() {
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let mut config = RemoteConfig::default();
    config.access_token = Some("a-token-of-some-length".into());
    config.retry_timeout = Duration::from_millis(1500);
    config.rng_seed = Some(7);
    let log = seen.clone();
    config.on_retry = Some(RetryObserver::new(move |retry| {
        log.lock().unwrap().push(Seen {
            url: retry.url.to_owned(),
            retry: retry.retry,
            pause: retry.pause,
            retry_timeout: retry.retry_timeout,
            refused: refused(retry.failure),
        });
    }));
    let url = format!("http://127.0.0.1:{}", closed_port());
    let started = Instant::now();
    let err = RemoteBackend::open(&url, config, Arc::new(SystemClock)).await.unwrap_err();
    let waited = started.elapsed();

    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(refused(&err), "the refused connection is the typed cause: {err:?}");
    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 3, "a refused connection is retried several times: {seen:?}");
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.retry, i as u32 + 1, "{seen:?}");
        assert_eq!(s.url, format!("{url}/"));
        assert_eq!(s.retry_timeout, Duration::from_millis(1500));
        assert!(s.refused, "each failure carries the refused connection: {seen:?}");
    }
    // The pauses fill the retry timeout: the last one ends at the deadline.
    let paused: Duration = seen.iter().map(|s| s.pause).sum();
    assert!(paused >= Duration::from_millis(1400), "paused {paused:?} in all: {seen:?}");
    assert!(waited >= Duration::from_millis(1500), "gave up after {waited:?}");
    assert!(waited < Duration::from_secs(10), "gave up after {waited:?}");
}
