//! Queues on the in-memory backend: the engine's finish rule, used from outside the core
//! crate, delivers, retries and writes dead letters as on SQLite and PostgreSQL.

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openkv::{key, EnqueueOptions, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_retried_on_its_schedule_then_written_to_its_dead_letter_key() {
    let kv = openkv_memory::open();
    let dead = key!["dead"];
    let options = EnqueueOptions::new()
        .backoff_schedule([Duration::from_millis(10)])
        .keys_if_undelivered([dead.clone()]);
    kv.enqueue("fails twice", &options).await.unwrap();
    kv.enqueue("delivered", &EnqueueOptions::new()).await.unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let delivered = Arc::new(AtomicU32::new(0));
    let (a, d) = (attempts.clone(), delivered.clone());
    let listener = tokio::spawn(kv.clone().listen_queue(move |message| {
        let text: String = message.value.decode().unwrap();
        let ok = text == "delivered";
        if ok {
            d.fetch_add(1, Ordering::SeqCst);
        } else {
            // Attempt numbers come from the backend: 1, then 2 for the one retry.
            assert_eq!(message.attempt, a.fetch_add(1, Ordering::SeqCst) + 1);
        }
        async move {
            if ok {
                Ok(())
            } else {
                Err("refused")
            }
        }
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let entry = loop {
        if let Some(entry) = kv.get(&dead).await.unwrap() {
            break entry;
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(entry.value.decode::<String>().unwrap(), "fails twice");
    assert_eq!(attempts.load(Ordering::SeqCst), 2, "one attempt and one retry");
    assert_eq!(delivered.load(Ordering::SeqCst), 1);
    assert!(matches!(entry.value, Value::V8(_)), "dead letters are V8 values");
    kv.close().await.unwrap();
    let _ = listener.await;
}

/// Optional capabilities are types: this backend implements `QueueBackend` and not
/// `BackupBackend`, so `Backend::queues` hands out its queue and `Backend::backups` says no —
/// before any file is touched.
#[tokio::test]
async fn queues_are_a_capability_this_backend_has_and_backups_one_it_lacks() {
    use openkv::{Backend, ErrorClass, SystemClock};
    let backend = Arc::new(openkv_memory::MemoryBackend::new(Arc::new(SystemClock)));
    let queue = backend.clone().queues().expect("the memory backend delivers queue messages");
    assert_eq!(queue.queue_next_due().await.unwrap(), None);
    let refused = backend.clone().backups().err().expect("the memory backend has no backups");
    assert!(matches!(refused, openkv::Error::Unsupported(_)), "{refused:?}");
    assert_eq!(refused.class(), ErrorClass::Client);
    let kv = openkv::OpenOptions::new().with_backend(backend);
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-backup.sqlite3");
    let err = kv.restore_from(&missing).await.unwrap_err();
    // Refused for what the backend is, not for the missing file.
    assert!(matches!(err, openkv::Error::Unsupported(_)), "{err:?}");
    let err = kv.backup(dir.path().join("copy.sqlite3")).await.unwrap_err();
    assert!(matches!(err, openkv::Error::Unsupported(_)), "{err:?}");
    assert!(!dir.path().join("copy.sqlite3").exists());
}
