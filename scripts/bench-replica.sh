#!/usr/bin/env bash
# Read replicas and the change log of `openkv serve`, with Rust KV Connect clients, on this
# machine, in one run.
#
# Builds the release `openkv` binary and the `bench-replica` program
# (crates/openkv-bench/src/bin/bench-replica.rs: the workloads and the report are described
# there) and runs it in a temporary directory. Each round, on fresh SQLite files:
#   - replication lag (p50/p99) while 64 writers set keys on the primary: sampled commits are
#     timed from the primary's acknowledgement until an eventual read on the replica sees them;
#   - eventual reads (64 readers) against the primary alone, then against the replica;
#   - replica apply rate: N entries written while the replica is killed, then its restart
#     timed until its status reaches the primary's head;
#   - bootstrap rate: a fresh replica of the primary's K + 64 + N entries;
#   - concurrent64_set with the change log on and with --log-retention off, side by side
#     (both servers up, taking turns in one-second slices).
# The report is one Markdown table (the median of the rounds, every round's figure, the
# targets) and the command line that produced it. Servers and clients share this machine's
# cores; nothing asserts timings.
#
# Usage: scripts/bench-replica.sh [--quick] [--dir DIR] [--keep] [bench-replica options]
#   --quick         a smoke run of about a minute (CI): 2 rounds of 2 s workloads, N = 20,000
#   --dir DIR       where to create the temporary directory (databases, server logs)
#   --keep          keep that directory
#   bench-replica options (defaults in brackets; --quick's in braces):
#   --rounds R [3] {2}   --seconds S [10] {2}   --warmup S [1] {0.5}
#   --apply-n N [200000] {20000}   --read-keys K [10000] {2000}   --clients C [64]
#   --pollers P [2]   --json FILE   --max-wait S [300] {10}: before each round, wait up to
#                     S seconds for the rest of the machine to quiet down (this VM is shared)
#
# Environment:
#   CARGO_TARGET_DIR   where cargo builds (default: target/)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

die() {
  echo "bench-replica: $*" >&2
  exit 1
}
step() { printf '\n==> %s\n' "$*" >&2; }

# The command line, as typed (for the report).
command_line="scripts/bench-replica.sh${*:+ $(printf '%q ' "$@")}"
command_line=${command_line% }

dir=${TMPDIR:-/tmp} keep=0 args=()
while (($#)); do
  case "$1" in
    --dir)
      (($# >= 2)) || die "--dir needs a value"
      dir=$2
      shift 2
      ;;
    --keep) keep=1 && args+=(--keep) && shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' && exit 0 ;;
    *) args+=("$1") && shift ;;
  esac
done
[[ -d "$dir" ]] || die "--dir $dir is not a directory"
command -v cargo >/dev/null 2>&1 || die "cargo is required to build openkv and bench-replica"

step "cargo build --release (openkv, bench-replica)"
cargo build --release -p openkv-cli -p openkv-bench --bin openkv --bin bench-replica
target=${CARGO_TARGET_DIR:-$root/target}
[[ "$target" = /* ]] || target="$root/$target"

# --- processes and cleanup ----------------------------------------------------
# bench-replica starts and stops the servers itself and keeps their pids in $work/servers.pid:
# on any exit the trap stops bench-replica (client_pid) and whatever servers it left.
work=$(mktemp -d "$dir/openkv-bench-replica.XXXXXX")
server_pid='' client_pid=''
bench_name=bench-replica
# shellcheck source=scripts/bench-lib.sh
source "$root/scripts/bench-lib.sh"
replica_cleanup() {
  local status=$?
  set +e # (exit N) below must not end the trap
  # Word-split by bench_cleanup: one pid a line.
  server_pid=$(cat "$work/servers.pid" 2>/dev/null)
  (exit "$status")
  bench_cleanup # reads the status from $?
}
bench_traps
trap replica_cleanup EXIT

# The binaries of this build, for the whole run, even if target/ is rebuilt meanwhile (a hard
# link costs no space; a copy if the directory is on another file system).
mkdir "$work/bin"
for bin in openkv bench-replica; do
  ln "$target/release/$bin" "$work/bin/$bin" 2>/dev/null || cp "$target/release/$bin" "$work/bin/$bin"
done

step "bench-replica ${args[*]:-}"
echo "Servers: $("$work/bin/openkv" --version), git $(git describe --always --dirty 2>/dev/null || echo '?')"
status=0
"$work/bin/bench-replica" --openkv "$work/bin/openkv" --dir "$work" \
  --pid-file "$work/servers.pid" --command-line "$command_line" "${args[@]}" &
client_pid=$!
wait "$client_pid" || status=$?
client_pid=''
((status == 0)) || die "bench-replica failed (status $status)"
