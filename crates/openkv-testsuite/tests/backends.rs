//! The behaviour suite over every backend: SQLite, the in-memory backend of `openkv-memory` (a
//! crate outside the core, proving the public backend seam), PostgreSQL (a fresh schema per test, on
//! `$OPENKV_TEST_POSTGRES_URL`), KV Connect to `openkv serve` on SQLite and on PostgreSQL, KV
//! Connect to `denokv` (core behaviours only; it fails the strict ones, see the crate docs).

// Test code: a panic is how a test fails (the lint wall in the root Cargo.toml is for products).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openkv_testsuite::fixtures;
use openkv_testsuite::{
    backend_suite, clocked_backend_suite, core_behaviours, queue_console_behaviours,
    strict_behaviours,
};

core_behaviours!(backend_suite!(sqlite_core, fixtures::sqlite().await));
strict_behaviours!(backend_suite!(sqlite_strict, fixtures::sqlite().await));
core_behaviours!(backend_suite!(memory_core, fixtures::memory().await));
strict_behaviours!(backend_suite!(memory_strict, fixtures::memory().await));
core_behaviours!(backend_suite!(postgres_core, fixtures::postgres().await));
strict_behaviours!(backend_suite!(postgres_strict, fixtures::postgres().await));
core_behaviours!(backend_suite!(remote_openkv_core, fixtures::openkv_server().await));
strict_behaviours!(backend_suite!(remote_openkv_strict, fixtures::openkv_server().await));
core_behaviours!(backend_suite!(
    remote_openkv_postgres_core,
    fixtures::openkv_server_on_postgres().await
));
strict_behaviours!(backend_suite!(
    remote_openkv_postgres_strict,
    fixtures::openkv_server_on_postgres().await
));
core_behaviours!(backend_suite!(remote_denokv_core, fixtures::denokv().await));

// The queue console (listing, remove, due now) on every backend that delivers queue messages;
// a KV Connect database refuses it.
queue_console_behaviours!(clocked_backend_suite!(sqlite_queue_console, fixtures::sqlite_on));
queue_console_behaviours!(clocked_backend_suite!(memory_queue_console, fixtures::memory_on));
queue_console_behaviours!(clocked_backend_suite!(postgres_queue_console, fixtures::postgres_on));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_openkv_queue_console_is_unsupported() {
    let fixture = fixtures::openkv_server().await.unwrap();
    openkv_testsuite::queue_console::queue_console_is_unsupported(&fixture.kv).await;
    fixture.finish().await;
}
