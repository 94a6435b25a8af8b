#!/usr/bin/env bash
# The one command that runs every openkv test:
#   1. installs the pinned Deno CLI (tests/deno/package.json) if needed and
#      exports DENO_BIN for the interoperability tests;
#   2. builds the reference server denokv (for the shared backend suite);
#   2b. builds s3s-fs (an S3-compatible server over a directory, from crates.io)
#      for the continuous-backup tests, which start it themselves;
#   2c. installs promtool (Debian's prometheus package) if needed: the /metrics
#      output is checked by Prometheus's own linter;
#   2d. installs h2load (Debian's nghttp2-client) if needed, for the README's
#      benchmark commands;
#   2e. installs Chromium (Debian's chromium package) if needed and the browser
#      tests' pinned npm packages (npm ci in tests/console: playwright-core,
#      axe-core, @deno/kv) for the web console's tests, which drive it headless;
#   3. cargo fmt --check and cargo clippy -D warnings (the lint step);
#   4. starts a throwaway PostgreSQL cluster (scripts/postgres.sh: installs
#      Debian's postgresql package if needed) and a streaming hot standby of it
#      for the PostgreSQL backend's tests, exports OPENKV_TEST_POSTGRES_URL,
#      OPENKV_TEST_POSTGRES_STANDBY_URL and OPENKV_REQUIRE_POSTGRES=1, and stops
#      and removes both when this script exits, failed or not;
#   5. cargo test --workspace --release (unit, integration, property, crash and
#      doc tests; release mode keeps property/crash tests fast; the real Deno CLI
#      and Node drive openkv serve, also through the JS client in clients/js);
#   6. scripts/readme-commands.sh: every command README.md shows, run as written
#      (servers started and probed, benchmarks in a short form; that script
#      lists what it does not run and why). Only in a full run: with arguments
#      for `cargo test` it is skipped;
#   7. scripts/fuzz.sh: every fuzz target (fuzz/: the decoders a network peer or a
#      file reaches) for 20 s on a scratch copy of its committed corpus, two at a
#      time, after installing the pinned cargo-fuzz and building the targets (6-9
#      min on a fresh machine in all, nearly all of it the build); a crash fails
#      the run and leaves the input in fuzz/regressions/. Only in a full run, like
#      step 6. (The committed inputs are replayed in step 5 anyway, without the
#      fuzzer: crates/openkv-fuzz-checks/tests/corpus.rs.)
#
# Usage: scripts/test.sh [extra args passed to `cargo test`]
#   e.g. scripts/test.sh -p openkv interop -- --nocapture
#
# Environment:
#   OPENKV_SKIP_LINT=1   skip cargo fmt + clippy (quick local iterations only;
#                        CI always lints).
#   OPENKV_TEST_POSTGRES_URL=postgres://USER@HOST:PORT/DB
#                        use this PostgreSQL server instead of starting one
#                        (each test works in a fresh schema of that database);
#                        then OPENKV_TEST_POSTGRES_STANDBY_URL must name a hot
#                        standby of it (streaming replication) too.
#   OPENKV_PROMTOOL=PATH the promtool binary to check /metrics with (default:
#                        promtool on the PATH, installed if missing).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

# --- Deno CLI ---------------------------------------------------------------
deno_dir=tests/deno
deno_bin="$deno_dir/node_modules/.bin/deno"
# The binary's mtime is not usable (`npm install` writes package-lock.json after
# it, so it always looks stale); compare against a stamp touched after a
# successful install instead.
stamp="$deno_dir/node_modules/.openkv-installed"
if [[ ! -x "$deno_bin" || ! -e "$stamp" || "$deno_dir/package-lock.json" -nt "$stamp" ]]; then
  step "installing the pinned Deno CLI (npm ci --prefix $deno_dir)"
  npm ci --prefix "$deno_dir" --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi
export DENO_BIN="$PWD/$deno_bin"
deno_version="$("$DENO_BIN" --version)"
echo "${deno_version%%$'\n'*}"

# --- denokv, the reference server -------------------------------------------
# The behaviour suite runs over denokv too (crates/openkv-testsuite): the KV
# Connect client must work against it. Built once into target/tools (a few
# minutes on a fresh machine); OPENKV_REQUIRE_DENOKV=1 makes its absence fail.
denokv_version=0.14.0
denokv_root="$PWD/target/tools/denokv-$denokv_version"
if [[ ! -x "$denokv_root/bin/denokv" ]]; then
  step "building denokv $denokv_version (cargo install --locked) into $denokv_root"
  cargo install denokv --version "=$denokv_version" --locked --root "$denokv_root" --quiet
fi
export OPENKV_DENOKV="$denokv_root/bin/denokv"
export OPENKV_REQUIRE_DENOKV=1

# --- s3s-fs, S3-compatible storage for continuous backups ----------------------
# The continuous-backup tests (crates/openkv-cli/tests/continuous_backup.rs) start
# it on 127.0.0.1 over a scratch directory, stop it to play an outage, and let
# denokv's pitr tools read what openkv wrote through it.
s3s_version=0.14.1
s3s_root="$PWD/target/tools/s3s-fs-$s3s_version"
if [[ ! -x "$s3s_root/bin/s3s-fs" ]]; then
  step "building s3s-fs $s3s_version (cargo install --locked) into $s3s_root"
  cargo install s3s-fs --version "=$s3s_version" --features binary --locked --root "$s3s_root" --quiet
fi
export OPENKV_S3S_FS="$s3s_root/bin/s3s-fs"
export OPENKV_REQUIRE_S3S_FS=1

# --- promtool, Prometheus's linter of the text format -------------------------
# `promtool check metrics` reads what openkv serve's /metrics renders
# (crates/openkv-server/src/metrics.rs). Installed once, from Debian's
# prometheus package (only root can); OPENKV_REQUIRE_PROMTOOL=1 makes its
# absence a failure instead of a skipped check.
if [[ -z "${OPENKV_PROMTOOL:-}" ]] && ! command -v promtool >/dev/null; then
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "promtool is missing and only root can install it (apt-get install prometheus)," \
      "or set OPENKV_PROMTOOL to a promtool binary" >&2
    exit 2
  fi
  step "installing promtool (Debian's prometheus package)"
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >&2
fi
OPENKV_PROMTOOL="${OPENKV_PROMTOOL:-$(command -v promtool)}"
export OPENKV_PROMTOOL
export OPENKV_REQUIRE_PROMTOOL=1

# --- h2load, for the benchmark commands the README shows ------------------------
# scripts/bench-server.sh measures the servers alone with h2load; the README's
# `--raw-only` command (run short by scripts/readme-commands.sh) needs it. Installed
# once, from Debian's nghttp2-client package (only root can).
if ! command -v h2load >/dev/null; then
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "h2load is missing and only root can install it (apt-get install nghttp2-client)" >&2
    exit 2
  fi
  step "installing h2load (Debian's nghttp2-client package)"
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nghttp2-client >&2
fi

# --- Chromium, for the web console's browser tests ----------------------------------
# crates/openkv-cli/tests/console.rs runs tests/console/console.test.mjs: playwright-core
# drives Debian's Chromium (never a browser download), axe-core checks accessibility.
# Installed once (only root can); OPENKV_REQUIRE_CHROMIUM=1 makes a missing browser or
# package a failure instead of a skipped test.
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM" ]]; then
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "Chromium is missing at $CHROMIUM and only root can install it" \
      "(apt-get install chromium), or set CHROMIUM to a Chromium binary" >&2
    exit 2
  fi
  step "installing Chromium (Debian's chromium package)"
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >&2
fi
export CHROMIUM
"$CHROMIUM" --version
console_dir=tests/console
console_stamp="$console_dir/node_modules/.openkv-installed"
if [[ ! -e "$console_stamp" || "$console_dir/package-lock.json" -nt "$console_stamp" ]]; then
  step "installing the console tests' npm packages (npm ci --prefix $console_dir)"
  npm ci --prefix "$console_dir" --no-audit --no-fund --loglevel=error
  touch "$console_stamp"
fi
export OPENKV_REQUIRE_CHROMIUM=1

# --- lint -------------------------------------------------------------------
if [[ "${OPENKV_SKIP_LINT:-}" == 1 ]]; then
  step "OPENKV_SKIP_LINT=1: skipping cargo fmt and cargo clippy"
else
  step "cargo fmt --all -- --check"
  cargo fmt --all -- --check
  step "cargo clippy --workspace --all-targets -- -D warnings"
  cargo clippy --workspace --all-targets -- -D warnings
  step "cargo doc (warnings are errors: broken links, bad HTML in docs)"
  RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
fi

# --- PostgreSQL, for the PostgreSQL backend ---------------------------------
# A throwaway cluster and a streaming hot standby of it (eventual reads from a
# standby: `--read-replica`), each in a temporary directory, stopped and removed
# on exit (on failure and Ctrl-C too). OPENKV_REQUIRE_POSTGRES=1 makes the
# PostgreSQL tests fail, not skip, if a URL were missing.
if [[ -n "${OPENKV_TEST_POSTGRES_URL:-}" ]]; then
  step "PostgreSQL: using OPENKV_TEST_POSTGRES_URL=$OPENKV_TEST_POSTGRES_URL"
  if [[ -z "${OPENKV_TEST_POSTGRES_STANDBY_URL:-}" ]]; then
    echo "OPENKV_TEST_POSTGRES_URL is set, OPENKV_TEST_POSTGRES_STANDBY_URL is not: name a hot" \
      "standby of that server too (scripts/postgres.sh standby makes one)" >&2
    exit 2
  fi
  echo "PostgreSQL standby: $OPENKV_TEST_POSTGRES_STANDBY_URL"
else
  step "starting a throwaway PostgreSQL cluster and a hot standby (scripts/postgres.sh)"
  pg_dir="$(mktemp -d -t openkv-postgres.XXXXXX)"
  pg_standby_dir="$(mktemp -d -t openkv-postgres-standby.XXXXXX)"
  # The cluster runs as an unprivileged user when we are root: let it reach the
  # directories (postgres.sh hands the directories themselves over to that user).
  chmod 755 "$pg_dir" "$pg_standby_dir"
  # The standby first. (If a start failed before making its cluster, stop
  # refuses the directory: then only an empty directory is left to remove.)
  stop_postgres() {
    scripts/postgres.sh stop "$pg_standby_dir" || rmdir "$pg_standby_dir" 2>/dev/null || true
    scripts/postgres.sh stop "$pg_dir" || rmdir "$pg_dir" 2>/dev/null || true
  }
  trap stop_postgres EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  OPENKV_TEST_POSTGRES_URL="$(scripts/postgres.sh start "$pg_dir")"
  export OPENKV_TEST_POSTGRES_URL
  echo "PostgreSQL: $OPENKV_TEST_POSTGRES_URL"
  OPENKV_TEST_POSTGRES_STANDBY_URL="$(scripts/postgres.sh standby "$pg_dir" "$pg_standby_dir")"
  export OPENKV_TEST_POSTGRES_STANDBY_URL
  # Where it lives: a test crashes it for real (postgres.sh halt) and starts it again.
  export OPENKV_TEST_POSTGRES_STANDBY_DIR="$pg_standby_dir" OPENKV_REQUIRE_STANDBY_DIR=1
  echo "PostgreSQL standby: $OPENKV_TEST_POSTGRES_STANDBY_URL"
fi
export OPENKV_REQUIRE_POSTGRES=1

# --- tests ------------------------------------------------------------------
step "cargo test --workspace --release $*"
cargo test --workspace --release "$@"

# --- the README's commands ----------------------------------------------------
# Last, as it needs all of the above: the Deno CLI, denokv and PostgreSQL. A run
# narrowed to some tests skips it (it builds and runs for a few minutes).
if (($#)); then
  step "arguments given: skipping the README's commands (scripts/readme-commands.sh)"
else
  step "the README's commands (scripts/readme-commands.sh)"
  scripts/readme-commands.sh
fi

# --- fuzzing --------------------------------------------------------------------
# A bounded run of every fuzz target; skipped, like the README's commands, when the run is
# narrowed to some tests.
if (($#)); then
  step "arguments given: skipping the fuzz targets (scripts/fuzz.sh)"
else
  step "every fuzz target for 20 s (scripts/fuzz.sh 20)"
  scripts/fuzz.sh 20
fi

step "all tests passed"
