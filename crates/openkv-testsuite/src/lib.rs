//! One behaviour suite, run over every backend openkv has.
//!
//! [`behaviours`] holds the tests as plain `async fn(&Kv)`; each sees a fresh, empty database.
//! [`fixtures`] opens such a database on each backend: a SQLite file, a fresh schema on a
//! PostgreSQL server, `openkv serve` (on a SQLite file, and on a PostgreSQL schema) reached
//! through the KV Connect client (a real HTTP server on 127.0.0.1), and the reference server
//! `denokv` reached the same way. [`backend_suite!`] turns the behaviours into one `#[test]` per
//! backend and behaviour, so a failure names both. A new backend adds a fixture and one macro
//! call, and inherits every test.
//!
//! Behaviours come in two groups: `core` (what any Deno KV backend must do) and `strict`
//! (what openkv does and `denokv` gets wrong — see shared/spec/KV-CONNECT.md §8). `denokv`
//! runs only `core`; every other backend, PostgreSQL included, runs both.
//!
//! A third group, [`queue_console`] (listing the queue, removing a message, making one due
//! now), moves time by hand: [`clocked_backend_suite!`] runs it over fixtures that take a
//! `ManualClock` (`fixtures::sqlite_on`, `memory_on`, `postgres_on`), the backends that
//! deliver queue messages; a KV Connect database refuses it (`tests/backends.rs`).
//!
//! The PostgreSQL fixtures ([`fixtures::postgres`], [`fixtures::openkv_server_on_postgres`],
//! and [`fixtures::postgres_url`] for tests that open the store themselves) need a server:
//! `OPENKV_TEST_POSTGRES_URL`, a base URL such as `postgres://openkv@127.0.0.1:54329/openkv`
//! (no `openkv_schema`: each fixture adds a fresh `t_<random hex>` schema, so tests never share
//! data, and leaves it behind). `scripts/test.sh` starts a throwaway cluster for it with
//! `scripts/postgres.sh` (trust authentication on 127.0.0.1, fsync on) and removes it at exit;
//! to run these tests by hand:
//!
//! ```text
//! dir=$(mktemp -d) && chmod 755 $dir
//! export OPENKV_TEST_POSTGRES_URL=$(scripts/postgres.sh start $dir)
//! cargo test -p openkv-testsuite postgres
//! scripts/postgres.sh stop $dir
//! ```
//!
//! Without the variable the PostgreSQL tests pass without running (after a note on stderr),
//! unless `OPENKV_REQUIRE_POSTGRES=1` — which the test script sets, so CI never skips them.

// Test code: this crate is the behaviour suite, whose panics are test failures (the lint wall
// in the root Cargo.toml is for product code).
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod behaviours;
pub mod fixtures;
pub mod queue_console;

/// Generates `#[tokio::test]`s: `backend_suite!(module_name, fixture_expression; test, …)`.
/// The fixture expression is evaluated once per test and must give an
/// `Option<fixtures::Fixture>` (`None`: the backend is not available here, see the fixture).
#[macro_export]
macro_rules! backend_suite {
    ($module:ident, $fixture:expr; $($test:ident),+ $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(fixture) = $fixture else { return };
                    $crate::behaviours::$test(&fixture.kv).await;
                    fixture.finish().await;
                }
            )+
        }
    };
}

/// The names of the `core` behaviours, for [`backend_suite!`].
#[macro_export]
macro_rules! core_behaviours {
    ($callback:ident ! ($($args:tt)*)) => {
        $callback!($($args)*;
            set_get_delete,
            value_encodings_round_trip,
            serde_values_round_trip,
            keys_of_every_type_sort_by_encoding,
            list_selectors_and_options,
            list_cursor_resumes_where_it_stopped,
            list_pages_past_one_read,
            get_many_answers_in_order,
            versionstamps_increase_and_are_shared_by_a_commit,
            check_on_missing_and_present_keys,
            mutations_apply_in_order,
            u64_sum_min_max,
            versionstamped_keys,
            limits_are_enforced_before_sending,
            eventual_reads_see_acknowledged_writes,
            database_id_is_stable,
            close_refuses_further_use,
            failed_checks_name_every_index,
            js_number_sums_with_limits,
            watch_sees_changes,
        );
    };
}

/// The names of the `strict` behaviours, for [`backend_suite!`].
#[macro_export]
macro_rules! strict_behaviours {
    ($callback:ident ! ($($args:tt)*)) => {
        $callback!($($args)*;
            a_failing_mutation_rolls_back_the_write,
            expired_keys_are_invisible_at_once,
            database_id_is_not_nil,
        );
    };
}

/// Generates `#[tokio::test]`s of the [`queue_console`] behaviours, which move time by hand:
/// `clocked_backend_suite!(module_name, fixture_fn; test, …)`. Each test makes a
/// [`ManualClock`](openkv::ManualClock) at [`queue_console::START_MS`] and calls
/// `fixture_fn(clock)`, which must give an `Option<fixtures::Fixture>` whose backend reads that
/// clock (`None`: the backend is not available here).
#[macro_export]
macro_rules! clocked_backend_suite {
    ($module:ident, $fixture:path; $($test:ident),+ $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let clock = ::openkv::ManualClock::new($crate::queue_console::START_MS);
                    let Some(fixture) = $fixture(clock.clone()).await else { return };
                    $crate::queue_console::$test(&fixture.kv, &clock).await;
                    fixture.finish().await;
                }
            )+
        }
    };
}

/// The names of the queue console behaviours ([`queue_console`]), for
/// [`clocked_backend_suite!`]: every backend that delivers queue messages runs them.
#[macro_export]
macro_rules! queue_console_behaviours {
    ($callback:ident ! ($($args:tt)*)) => {
        $callback!($($args)*;
            queue_listing_counts_states_and_order,
            queue_listing_follows_failed_attempts,
            queue_remove_waiting_and_running,
            queue_due_now,
        );
    };
}
