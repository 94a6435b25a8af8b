#!/usr/bin/env bash
# openkv as the database grows: 10k, 1M and 10M entries, on a SQLite file and on PostgreSQL, on
# this machine, in one run.
#
# Builds the release `openkv` binary and the `bench-scale` program
# (crates/openkv-bench/src/bin/bench-scale.rs: the data, each row and the targets are described
# there), starts a throwaway PostgreSQL cluster with scripts/postgres.sh (fsync on) unless
# --no-postgres or a URL is given, runs the sizes, stops and removes the cluster on exit, and
# prints one Markdown table per backend (one column per size) and the targets. Per size:
# an NDJSON file in `openkv export`'s format, imported with `openkv import` into each backend;
# backup and restore times (SQLite); cold and warm random gets on 1 and 2 threads; a
# 1,000-entry list; a prefix count; set and check+set throughput; size on disk; peak RSS.
# Cold gets drop the OS page cache (root only) and, on the throwaway cluster, restart
# PostgreSQL (empty shared_buffers).
#
#   scripts/bench-scale.sh --sizes 10k --seconds 1      # a smoke run, well under a minute
#   scripts/bench-scale.sh --sizes 10k,1m               # ~10 minutes on this VM
#   scripts/bench-scale.sh                              # 10k, 1m, 10m: hours, ~30 GB of disk
#
# Usage: scripts/bench-scale.sh [--no-postgres] [--pg-url URL] [--dir DIR] [bench-scale options]
#   --no-postgres  SQLite only (same as --backends sqlite)
#   --pg-url URL   use this PostgreSQL database (postgres://USER@HOST:PORT/DB) instead of a
#                  throwaway cluster; each size creates a fresh schema in it (dropped at the
#                  end unless --keep); its shared_buffers stay warm for the cold gets
#   --dir DIR      where the temporary directory (NDJSON, SQLite files, backups) and the
#                  throwaway cluster go [${TMPDIR:-/tmp}]: it needs the disk space
#   bench-scale options (defaults in brackets):
#   --sizes 10k,1m,10m  --backends sqlite,pg  --seconds S [3] (each get run, the list row)
#   --writes W [20000] (sets; check+set: W/10)  --seed N [1]  --keep  --json FILE
#   --max-wait S [300]  before each timed step, wait up to S s for the machine to be quiet
#
# Environment:
#   OPENKV_BENCH_POSTGRES_URL   same as --pg-url
#   CARGO_TARGET_DIR            where cargo builds (default: target/)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

die() {
  echo "bench-scale: $*" >&2
  exit 1
}
step() { printf '\n==> %s\n' "$*" >&2; }

pg_url=${OPENKV_BENCH_POSTGRES_URL:-}
dir=${TMPDIR:-/tmp} backends=sqlite,pg args=()
while (($#)); do
  case "$1" in
    --pg-url)
      (($# >= 2)) || die "--pg-url needs a value"
      pg_url=$2
      shift 2
      ;;
    --no-postgres) backends=sqlite && shift ;;
    --backends)
      (($# >= 2)) || die "--backends needs a value"
      backends=$2
      shift 2
      ;;
    --dir)
      (($# >= 2)) || die "--dir needs a value"
      dir=$2
      shift 2
      ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' && exit 0 ;;
    *) args+=("$1") && shift ;;
  esac
done
[[ -d "$dir" ]] || die "--dir $dir is not a directory"
dir=$(cd "$dir" && pwd -P)
[[ -x /usr/bin/time ]] || echo "bench-scale: no /usr/bin/time (Debian: apt-get install time):" \
  "the import's, backup's and restore's peak RSS will read n/a" >&2

step "cargo build --release (openkv, bench-scale)"
cargo build --release -p openkv-cli -p openkv-bench --bin openkv --bin bench-scale
target=${CARGO_TARGET_DIR:-$root/target}
[[ "$target" = /* ]] || target="$root/$target"

pg_args=()
if [[ ",$backends," == *,pg,* ]]; then
  if [[ -z "$pg_url" ]]; then
    step "starting a throwaway PostgreSQL cluster (scripts/postgres.sh) in $dir"
    pg_dir="$(mktemp -d "$dir/openkv-bench-scale-pg.XXXXXX")"
    # As root the cluster runs as an unprivileged user, which must reach the directory.
    chmod 755 "$pg_dir"
    trap 'scripts/postgres.sh stop "$pg_dir" || rmdir "$pg_dir" 2>/dev/null || true' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    pg_url="$(scripts/postgres.sh start "$pg_dir")"
    # Before each cold run: an immediate stop (after bench-scale's CHECKPOINT) and a start, so
    # that shared_buffers are empty.
    pg_args=(--pg-restart "$(printf '%q halt %q && %q resume %q' "$root/scripts/postgres.sh" \
      "$pg_dir" "$root/scripts/postgres.sh" "$pg_dir")")
  fi
  echo "PostgreSQL: $pg_url" >&2
  pg_args+=(--pg-url "$pg_url")
fi

step "bench-scale --backends $backends ${args[*]:-}"
echo "openkv: $("$target/release/openkv" --version), git $(git describe --always --dirty 2>/dev/null || echo '?')"
"$target/release/bench-scale" --openkv "$target/release/openkv" --dir "$dir" \
  --backends "$backends" "${pg_args[@]}" "${args[@]}"
