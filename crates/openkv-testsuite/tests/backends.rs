//! The behaviour suite over every backend: SQLite, KV Connect to `openkv serve`, KV Connect to
//! `denokv` (core behaviours only; it fails the strict ones, see the crate docs).

use openkv_testsuite::fixtures;
use openkv_testsuite::{backend_suite, core_behaviours, strict_behaviours};

core_behaviours!(backend_suite!(sqlite_core, fixtures::sqlite().await));
strict_behaviours!(backend_suite!(sqlite_strict, fixtures::sqlite().await));
core_behaviours!(backend_suite!(remote_openkv_core, fixtures::openkv_server().await));
strict_behaviours!(backend_suite!(remote_openkv_strict, fixtures::openkv_server().await));
core_behaviours!(backend_suite!(remote_denokv_core, fixtures::denokv().await));
