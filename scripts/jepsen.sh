#!/usr/bin/env bash
# Jepsen-style runs of openkv (crates/openkv-jepsen): the workloads (registers, bank, append,
# stamps) on real processes under the nemesis, every history checked. The test command runs
# a short version of this in CI (crates/openkv-cli/tests/jepsen.rs); this is the long one.
#
#   scripts/jepsen.sh [--time 10m] [--seed N] [--topology T]... [--workload W]...
#                     [--faults kill,pause,delay,black-hole,reset,postgres-crash]
#                     [--no-nemesis] [--bug skip-checks|apply-twice|torn-batch|reuse-versionstamp]
#
# Topologies: embedded, serve-sqlite, serve-postgres (starts a PostgreSQL cluster of its own
# with scripts/postgres.sh), replica; default all, one after the other. Exit code 0: nothing
# found; 1: anomalies (the report names them and keeps the run's files and logs); 2: the
# harness failed. A failing run prints its seed: the same --seed replays the same operations
# and the same fault schedule.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet -p openkv-cli -p openkv-jepsen
exec target/release/openkv-jepsen "$@"
