//! # openkv-jepsen — openkv's promises, checked under faults
//!
//! Jepsen's method on openkv's real paths: clients run workloads against real processes
//! (embedded handles in two processes on one SQLite file; the KV Connect client against
//! `openkv serve` on SQLite; two servers on one PostgreSQL; a read replica), each operation
//! recorded with when it was invoked and how it ended (ok, failed, or unknown); a nemesis
//! kills, pauses and partitions processes and links meanwhile; then checkers test the whole
//! history against the model openkv promises:
//!
//! | workload    | operations                              | checked for                          |
//! |-------------|-----------------------------------------|--------------------------------------|
//! | `registers` | read, write, compare-and-set (check+set)| linearizability per key (WGL search) |
//! | `bank`      | transfers with checks; snapshot reads   | every snapshot holds the total       |
//! | `append`    | transactions appending to lists         | strict serializability (Elle-style)  |
//! | `stamps`    | commits of fresh keys                   | versionstamps unique, increasing in real time, shared by a commit; nothing lost, nothing extra |
//! | `queue`     | enqueues; listeners killed and restarted| at least once; dead letters only after the schedule |
//!
//! The checkers are pure functions over histories ([`checker`]), each proven able to fail by
//! a bug injected on purpose ([`bugs`]). docs/design.md §15 argues what they prove.
//!
//! ```
//! use openkv_jepsen::checker::linear::{check_register, RegCall, RegRet, Verdict};
//! use openkv_jepsen::history::{Op, Outcome};
//!
//! // A write that completed, then a read (invoked after it) that did not see it.
//! let history = vec![
//!     Op { client: 0, invoke: 0, complete: Some(10), call: RegCall::Write(1), outcome: Outcome::Ok(RegRet::Written) },
//!     Op { client: 1, invoke: 20, complete: Some(30), call: RegCall::Read, outcome: Outcome::Ok(RegRet::Read(None)) },
//! ];
//! assert!(matches!(check_register(&history, 1_000), Verdict::NotLinearizable { .. }));
//! ```
//!
//! Run it with `scripts/jepsen.sh` (every topology, `--time`, `--seed`), or one topology
//! with the `openkv-jepsen` binary.

pub mod bugs;
pub mod checker;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod ops;
pub mod proxy;
pub mod run;
pub mod soak;
pub mod worker;
pub mod workload;

pub use bugs::Bug;
pub use cluster::{Env, Topology};
pub use run::{run, Report, RunConfig};
pub use workload::Workload;
