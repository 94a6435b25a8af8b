#!/usr/bin/env bash
# `openkv serve` on PostgreSQL (one server, and two servers sharing one schema) against
# `openkv serve` on a SQLite file, with 64 Rust KV Connect clients, on this machine, in one run.
#
# Builds the release `openkv` binary and the `bench-postgres` program
# (crates/openkv-bench/src/bin/bench-postgres.rs: the workloads and the report are described
# there), starts a throwaway PostgreSQL cluster with scripts/postgres.sh (fsync and
# synchronous_commit on) unless a URL is given, runs the benchmark, and stops and removes the
# cluster on exit. Every setup works on a fresh database (SQLite file / PostgreSQL schema).
# PostgreSQL, the servers and the clients all share this machine's cores: the report says how
# busy each was.
#
# Usage: scripts/bench-postgres.sh [--pg-url URL] [bench-postgres options]
#   --pg-url URL   use this PostgreSQL database (postgres://USER@HOST:PORT/DB) instead of a
#                  throwaway cluster; each setup creates a fresh schema in it
#   bench-postgres options (defaults in brackets):
#   --seconds N [10]  --warmup S [1]  --clients C [64]  --setups sqlite,pg1,pg2
#   --workloads check_set,set,get  --dir DIR  --json FILE
#   --max-wait S [300]  before each setup, wait up to S s for the machine to be quiet
#
# Environment:
#   OPENKV_BENCH_POSTGRES_URL   same as --pg-url
#   CARGO_TARGET_DIR            where cargo builds (default: target/)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() {
  echo "bench-postgres: $*" >&2
  exit 1
}
step() { printf '\n==> %s\n' "$*" >&2; }

pg_url=${OPENKV_BENCH_POSTGRES_URL:-}
args=()
while (($#)); do
  case "$1" in
    --pg-url)
      (($# >= 2)) || die "--pg-url needs a value"
      pg_url=$2
      shift 2
      ;;
    *)
      args+=("$1")
      shift
      ;;
  esac
done

step "cargo build --release (openkv, bench-postgres)"
cargo build --release -p openkv-cli -p openkv-bench --bin openkv --bin bench-postgres
target=${CARGO_TARGET_DIR:-$PWD/target}
[[ "$target" = /* ]] || target="$PWD/$target"

if [[ -z "$pg_url" ]]; then
  step "starting a throwaway PostgreSQL cluster (scripts/postgres.sh)"
  pg_dir="$(mktemp -d -t openkv-bench-postgres.XXXXXX)"
  # As root the cluster runs as an unprivileged user, which must reach the directory.
  chmod 755 "$pg_dir"
  trap 'scripts/postgres.sh stop "$pg_dir" || rmdir "$pg_dir" 2>/dev/null || true' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  pg_url="$(scripts/postgres.sh start "$pg_dir")"
fi
echo "PostgreSQL: $pg_url" >&2

step "bench-postgres ${args[*]:-}"
"$target/release/bench-postgres" --openkv "$target/release/openkv" --pg-url "$pg_url" "${args[@]}"
