#!/usr/bin/env bash
# Queues through the JavaScript package (clients/js, @openkv/client) against `openkv serve`, in
# Node and in Deno, next to the Deno CLI's own LOCAL queue (`Deno.openKv(<sqlite file>)`), on
# this machine, in one run.
#
# The workload (clients/js/bench/queue_bench.js has the details) is the same for the three
# clients, one process on a fresh SQLite file each:
#   1. enqueue throughput: N kv.enqueue calls, 64 in flight, no listener running (msg/s);
#   2. delivery throughput: then kv.listenQueue with a trivial handler, timed from the call
#      until all those messages were handled (msg/s);
#   3. enqueue-to-handler latency: the listener stays (warm); M messages enqueued one at a
#      time, one every 10 ms, each carrying its send time; the handler records now − sent
#      (p50 and p99, ms).
# In every round each client runs back to back with the others (who goes first rotates); the
# package's runs each get a fresh `openkv serve` on a fresh file, stopped afterwards. At the
# end the median over the rounds of each metric is printed as a Markdown table (rows: metric;
# columns: package in Node, package in Deno, Deno local, and the ratio package-in-Deno / Deno
# local), with whether the targets are met (delivery ≥ Deno local's; p99 ≤ 50 ms), then every
# round with the CPU used by the client, the server and the rest of the machine.
#
# Usage: scripts/bench-js-queue.sh [--rounds R] [--n N] [--latency-n M] [--interval MS]
#                                  [--concurrency C] [--quick] [--max-wait S]
#                                  [--json FILE] [--dir DIR] [--keep]
#   --rounds R       rounds (default 3); each metric's median is reported
#   --n N            messages enqueued then delivered per run (default 3000)
#   --concurrency C  enqueues in flight (default 64)
#   --latency-n M    messages of the latency workload (default 200)
#   --interval MS    pause between two of them (default 10)
#   --quick          a smoke run for CI: 1 round, N 300, M 50, no waiting for a quiet machine
#                    (well under a minute); later options still apply
#   --max-wait S     before each round, wait up to S seconds (default 120; 0: don't) for the
#                    rest of the machine to quiet down (under 20% of one core busy over one
#                    second): this VM is shared. Every round reports the CPU others used.
#   --json FILE      where to write all figures (default: $TMPDIR/openkv-bench-js-queue.json)
#   --dir DIR        where to create the temporary directory (databases, logs, results)
#   --keep           keep that directory
#
# Environment:
#   OPENKV_BIN  the openkv binary (default: built here with `cargo build --release -p
#               openkv-cli`, into $CARGO_TARGET_DIR or target/)
#   DENO_BIN    the Deno CLI (default: tests/deno/node_modules/.bin/deno, installed with
#               `npm ci --prefix tests/deno` if missing); runs with --unstable-kv -A
#   NODE_BIN    Node ≥ 20 (default: node on PATH)
#   OPENKV_ARGS extra arguments for `openkv serve`
set -euo pipefail

command_line="scripts/bench-js-queue.sh${*:+ $*}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

die() {
  echo "bench-js-queue: $*" >&2
  exit 1
}
step() { printf '\n==> %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required but not on PATH ($2)"; }

rounds=3 n=3000 concurrency=64 latency_n=200 interval=10 max_wait=120 keep=0 dir=${TMPDIR:-/tmp}
json=${TMPDIR:-/tmp}/openkv-bench-js-queue.json
posint() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive integer, got '$2'"; }
while (($#)); do
  case "$1" in
    --rounds | --n | --concurrency | --latency-n | --interval | --max-wait | --json | --dir)
      (($# >= 2)) || die "$1 needs a value"
      case "$1" in
        --rounds) posint "$1" "$2" && rounds=$2 ;;
        --n) posint "$1" "$2" && n=$2 ;;
        --concurrency) posint "$1" "$2" && concurrency=$2 ;;
        --latency-n) posint "$1" "$2" && latency_n=$2 ;;
        --interval) [[ "$2" =~ ^[0-9]+$ ]] || die "--interval needs milliseconds"; interval=$2 ;;
        --max-wait) [[ "$2" =~ ^[0-9]+$ ]] || die "--max-wait needs seconds"; max_wait=$2 ;;
        --json) json=$2 ;;
        --dir) dir=$2 ;;
      esac
      shift 2
      ;;
    --quick) rounds=1 n=300 latency_n=50 max_wait=0 && shift ;;
    --keep) keep=1 && shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' && exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ -d "$dir" ]] || die "--dir $dir is not a directory"

# --- tools ------------------------------------------------------------------
for tool in mktemp nproc timeout sed grep awk od; do need "$tool" "coreutils/sed/grep/awk"; done

node=${NODE_BIN:-$(command -v node || true)}
[[ -n "$node" && -x "$node" ]] || die "Node not found (install Node ≥ 20 or set NODE_BIN)"
node_major=$("$node" -p 'process.versions.node.split(".")[0]')
((node_major >= 20)) || die "the package needs Node ≥ 20; $node is $("$node" --version)"

deno=${DENO_BIN:-$root/tests/deno/node_modules/.bin/deno}
if [[ ! -x "$deno" && -z "${DENO_BIN:-}" ]]; then
  need npm "to install the pinned Deno CLI (tests/deno/package.json); or set DENO_BIN"
  step "installing the pinned Deno CLI (npm ci --prefix tests/deno)"
  npm ci --prefix tests/deno --no-audit --no-fund --loglevel=error
fi
[[ -x "$deno" ]] || die "the Deno CLI $deno is not executable (set DENO_BIN)"

if [[ -n "${OPENKV_BIN:-}" ]]; then
  openkv=$OPENKV_BIN
else
  need cargo "to build openkv; or set OPENKV_BIN"
  step "cargo build --release -p openkv-cli"
  cargo build --release -p openkv-cli
  openkv=${CARGO_TARGET_DIR:-$root/target}/release/openkv
fi
[[ -x "$openkv" ]] || die "the openkv binary $openkv is not executable"

script=$root/clients/js/bench/queue_bench.js

# --- processes and cleanup ----------------------------------------------------
work=$(mktemp -d "$dir/openkv-bench-js-queue.XXXXXX")
server_pid='' client_pid=''
bench_name=bench-js-queue
# shellcheck source=scripts/bench-lib.sh
source "$root/scripts/bench-lib.sh"
bench_traps

token=bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')

# start_server DB PORT LOG: starts `openkv serve` in the background (server_pid) and waits
# until it serves.
start_server() {
  local db=$1 port=$2 log=$3 extra=()
  read -ra extra <<<"${OPENKV_ARGS:-}"
  "$openkv" serve --db "$db" --addr "127.0.0.1:$port" --access-token "$token" \
    "${extra[@]}" >"$log.out" 2>"$log.err" &
  server_pid=$!
  for _ in $(seq 300); do
    if ! alive "$server_pid"; then
      cat "$log.out" "$log.err" >&2
      die "openkv exited during start-up (above: its output)"
    fi
    if port_open "$port" && grep -q "^openkv: serving" "$log.out"; then
      return
    fi
    sleep 0.1
  done
  die "openkv did not accept connections on 127.0.0.1:$port within 30 s"
}

stop_server() {
  local status=0
  alive "$server_pid" || die "openkv died during the run (logs: $work)"
  kill -TERM "$server_pid"
  for _ in $(seq 100); do alive "$server_pid" || break; sleep 0.1; done
  if alive "$server_pid"; then
    echo "bench-js-queue: openkv ignored SIGTERM for 10 s; killing it" >&2
    kill -KILL "$server_pid"
  fi
  wait "$server_pid" || status=$?
  server_pid=''
  ((status == 0)) || echo "bench-js-queue: openkv exited with status $status" >&2
}


# --- rounds --------------------------------------------------------------------
export DENO_KV_ACCESS_TOKEN=$token NO_COLOR=1 DENO_NO_UPDATE_CHECK=1
bench_args=(--n "$n" --concurrency "$concurrency" --latency-n "$latency_n" --interval "$interval")

# session CLIENT ROUND: one run of the workload; CLIENT is node or deno (the package against a
# fresh `openkv serve`) or local (Deno's own queue on a fresh file).
session() {
  local client=$1 round=$2 db port out status=0 target
  local -a cmd
  db=$work/$client-$round.sqlite3 out=$work/$client-$round.json
  if [[ "$client" == local ]]; then
    target=local:$db
  else
    port=$(free_port)
    start_server "$db" "$port" "$work/openkv-$client-$round"
    target=http://127.0.0.1:$port
  fi
  case "$client" in
    node) cmd=("$node" "$script") ;;
    *) cmd=("$deno" run --unstable-kv -A "$script") ;;
  esac
  timeout 600 "${cmd[@]}" run "$target" "$out" --label "$client" --round "$round" \
    "${bench_args[@]}" ${server_pid:+--server-pid "$server_pid"} &
  client_pid=$!
  wait "$client_pid" || status=$?
  client_pid=''
  ((status == 0)) || die "the $client client failed (status $status; logs: $work)"
  [[ "$client" == local ]] || stop_server
  ((keep)) || rm -f "$db" "$db-wal" "$db-shm"
  results+=("$out")
}

clients=(node deno local)
results=()
started=$SECONDS
load=$(cut -d' ' -f1 /proc/loadavg)
for ((round = 1; round <= rounds; round++)); do
  step "round $round/$rounds"
  wait_quiet
  for i in "${!clients[@]}"; do
    # Who goes first rotates from round to round.
    client=${clients[(i + round - 1) % ${#clients[@]}]}
    echo "bench-js-queue: round $round/$rounds: $client" >&2
    session "$client" "$round"
  done
done

# --- report --------------------------------------------------------------------
step "report"
cpu=$(grep -m1 '^model name' /proc/cpuinfo | sed 's/^[^:]*: //' || echo unknown)
if [[ -n "${OPENKV_BIN:-}" ]]; then
  openkv_version="$("$openkv" --version) ($openkv)"
else
  openkv_version="$("$openkv" --version), git $(git describe --always --dirty 2>/dev/null || echo '?')"
fi
header="**@openkv/client queues vs Deno's local queue** — $(date -u +%Y-%m-%d), nproc $(nproc), \
$cpu, load average $load at start; median of $rounds round(s) of $((SECONDS - started)) s in \
all; N = $n messages ($concurrency enqueues in flight), latency: $latency_n messages every \
$interval ms; node $("$node" --version | tr -d v), $("$deno" --version | head -n1); \
server: $openkv_version${OPENKV_ARGS:+ $OPENKV_ARGS}, SQLite file in $dir"
echo
echo "$header"
echo
echo "Command: \`$command_line\`"
echo
BENCH_HEADER=$header BENCH_COMMAND=$command_line "$node" "$script" report "$json" "${results[@]}"
echo
echo "JSON: $json"
