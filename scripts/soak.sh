#!/usr/bin/env bash
# A soak run (not in CI): an hour of mixed load with the nemesis — every workload, 15 minutes
# on each topology, every fault but kill -9 (a killed process starts a new series, hiding a
# slow leak) — sampling every process's resident memory, file descriptors, sockets and
# threads every 10 s. Fails (exit 1) if a checker finds an anomaly or a resource keeps growing
# (openkv-jepsen's soak.rs says how that is decided). Clients pause 20 ms between operations
# so that an hour's history stays checkable.
#
#   scripts/soak.sh [--time 15m] [other openkv-jepsen arguments]
#
# Samples go to target/soak/samples-<topology>.csv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p target/soak
exec scripts/jepsen.sh --time 15m --sample 10s --throttle 20ms \
  --faults pause,delay,black-hole,reset,postgres-crash,disk-full \
  --sample-csv target/soak/samples.csv "$@"
