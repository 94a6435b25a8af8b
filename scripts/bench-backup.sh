#!/usr/bin/env bash
# Continuous backup of `openkv serve` (--backup-to) to S3-compatible storage, with Rust KV
# Connect clients, on this machine, in one run.
#
# Builds the release `openkv` binary and the `bench-backup` program
# (crates/openkv-bench/src/bin/bench-backup.rs: the workloads and the report are described
# there), builds s3s-fs (an S3-compatible server over a directory, from crates.io) if needed,
# starts it on 127.0.0.1 over a scratch directory and runs bench-backup against it. Each round,
# on fresh SQLite files and fresh backup prefixes, servers with --backup-interval 1s:
#   - backup lag (p50/p99) while 64 writers set keys: every commit acknowledged in the window
#     is timed until a listing of the bucket's logs/ (every 20 ms) shows an object reaching
#     its versionstamp (and, as a cross-check, until the status endpoint's shippedVersion does);
#   - restore rate: N entries written with the backup on (all in the log), then
#     `openkv restore --from s3://… --at latest` timed end to end; then the same file backed up
#     anew (a snapshot of the N entries, N/100 more in the log), restored and timed;
#   - concurrent64_set with and without --backup-to, side by side (both servers up, taking
#     turns in 5-second slices; the backup catches up between slices, untimed).
# The report is one Markdown table (the median of the rounds, every round's figure, the
# targets) and the command line that produced it. Servers, s3s-fs and clients share this
# machine's cores; nothing asserts timings.
#
# Usage: scripts/bench-backup.sh [--quick] [--local] [--dir DIR] [--keep] [bench-backup options]
#   --quick         a smoke run of about a minute: 2 rounds, 2 s of lag, 4 s per server in 2 s
#                   slices, N = 20,000
#   --local         back up to a local directory instead of s3s-fs (no S3 protocol)
#   --dir DIR       where to create the temporary directory (databases, s3s-fs's files, logs)
#   --keep          keep that directory
#   bench-backup options (defaults in brackets; --quick's in braces):
#   --rounds R [3] {2}   --seconds S [10] {2} (lag)   --warmup S [1] {0.5}
#   --cost-seconds S [20] {4}   --slice S [5] {2}   --entries N [200000] {20000}
#   --clients C [64]   --interval-ms MS [1000]   --poll-ms MS [20]   --json FILE
#   --max-wait S [300] {10}: before each round, wait up to S seconds for the rest of the
#                     machine to quiet down (this VM is shared)
#
# Environment:
#   CARGO_TARGET_DIR   where cargo builds (default: target/)
#   OPENKV_S3S_FS      an s3s-fs binary to use (default: target/tools/s3s-fs-0.14.1/bin/s3s-fs,
#                      built with `cargo install` if missing)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

die() {
  echo "bench-backup: $*" >&2
  exit 1
}
step() { printf '\n==> %s\n' "$*" >&2; }

# The command line, as typed (for the report).
command_line="scripts/bench-backup.sh${*:+ $(printf '%q ' "$@")}"
command_line=${command_line% }

dir=${TMPDIR:-/tmp} keep=0 local=0 args=()
while (($#)); do
  case "$1" in
    --dir)
      (($# >= 2)) || die "--dir needs a value"
      dir=$2
      shift 2
      ;;
    --keep) keep=1 && args+=(--keep) && shift ;;
    --local) local=1 && shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' && exit 0 ;;
    *) args+=("$1") && shift ;;
  esac
done
[[ -d "$dir" ]] || die "--dir $dir is not a directory"
command -v cargo >/dev/null 2>&1 || die "cargo is required to build openkv and bench-backup"

step "cargo build --release (openkv, bench-backup)"
cargo build --release -p openkv-cli -p openkv-bench --bin openkv --bin bench-backup
target=${CARGO_TARGET_DIR:-$root/target}
[[ "$target" = /* ]] || target="$root/$target"

# s3s-fs, as scripts/test.sh builds it (the continuous-backup tests use the same binary).
s3s_version=0.14.1
s3s_bin=${OPENKV_S3S_FS:-$root/target/tools/s3s-fs-$s3s_version/bin/s3s-fs}
if ((!local)) && [[ ! -x "$s3s_bin" ]]; then
  [[ -z "${OPENKV_S3S_FS:-}" ]] || die "OPENKV_S3S_FS=$OPENKV_S3S_FS is not an executable"
  s3s_root="$root/target/tools/s3s-fs-$s3s_version"
  step "building s3s-fs $s3s_version (cargo install --locked) into $s3s_root"
  cargo install s3s-fs --version "=$s3s_version" --features binary --locked --root "$s3s_root" --quiet
fi

# --- processes and cleanup ----------------------------------------------------
# bench-backup starts and stops the openkv servers itself and keeps their pids in
# $work/servers.pid; this script starts s3s-fs (s3_pid). On any exit the trap stops
# bench-backup (client_pid), whatever servers it left, then s3s-fs.
work=$(mktemp -d "$dir/openkv-bench-backup.XXXXXX")
server_pid='' client_pid='' s3_pid=''
bench_name=bench-backup
# shellcheck source=scripts/bench-lib.sh
source "$root/scripts/bench-lib.sh"
backup_cleanup() {
  local status=$?
  set +e # (exit N) below must not end the trap
  # Word-split by bench_cleanup: one pid a line; s3s-fs last.
  server_pid="$(cat "$work/servers.pid" 2>/dev/null) $s3_pid"
  (exit "$status")
  bench_cleanup # reads the status from $?
}
bench_traps
trap backup_cleanup EXIT

# The binaries of this build, for the whole run, even if target/ is rebuilt meanwhile (a hard
# link costs no space; a copy if the directory is on another file system).
mkdir "$work/bin"
for bin in openkv bench-backup; do
  ln "$target/release/$bin" "$work/bin/$bin" 2>/dev/null || cp "$target/release/$bin" "$work/bin/$bin"
done

if ((local)); then
  storage_args=(--backup-dir "$work/backups")
  storage="a directory ($work/backups)"
else
  # Throwaway credentials: s3s-fs checks the requests' signatures against them.
  export AWS_ACCESS_KEY_ID=openkvbench AWS_SECRET_ACCESS_KEY=openkvbenchsecret AWS_REGION=us-east-1
  unset AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_DEFAULT_REGION OPENKV_S3_ENDPOINT
  bucket=bench
  mkdir -p "$work/s3/$bucket"
  port=$(free_port)
  step "s3s-fs $s3s_version on 127.0.0.1:$port over $work/s3"
  "$s3s_bin" --host 127.0.0.1 --port "$port" --access-key "$AWS_ACCESS_KEY_ID" \
    --secret-key "$AWS_SECRET_ACCESS_KEY" "$work/s3" >"$work/s3s-fs.log" 2>&1 &
  s3_pid=$!
  for _ in $(seq 200); do
    port_open "$port" && break
    alive "$s3_pid" || die "s3s-fs exited: $(cat "$work/s3s-fs.log")"
    sleep 0.05
  done
  port_open "$port" || die "s3s-fs did not listen on 127.0.0.1:$port within 10 s"
  storage_args=(--s3-endpoint "http://127.0.0.1:$port" --bucket "$bucket")
  storage="s3s-fs $s3s_version at http://127.0.0.1:$port, bucket $bucket"
fi

step "bench-backup ${args[*]:-}"
echo "Servers: $("$work/bin/openkv" --version), git $(git describe --always --dirty 2>/dev/null || echo '?'); backups: $storage"
status=0
"$work/bin/bench-backup" --openkv "$work/bin/openkv" --dir "$work" "${storage_args[@]}" \
  --pid-file "$work/servers.pid" --command-line "$command_line" "${args[@]}" &
client_pid=$!
wait "$client_pid" || status=$?
client_pid=''
((status == 0)) || die "bench-backup failed (status $status)"
