#!/usr/bin/env bash
# `openkv serve` against `denokv` (the reference KV Connect server), with the real Deno CLI as
# the client, on this machine, in one run.
#
# The workloads (tests/deno/bench_server.ts has the details): sequential and 64-way concurrent
# sets and gets, check+set from 8 tasks, 64 tasks summing one hot key (the final counter is
# checked), a 10k-entry list, watch fan-out to 100 watchers; then the read workloads from
# several Deno processes at once (3 × 64 concurrent gets, 8 sequential readers, 3 listers), as
# one Deno process keeps only one core busy and costs more per read than either server. In
# every round each workload runs on a fresh server with a fresh SQLite file in a temporary
# directory, on both servers back to back (who goes first alternates), one server at a time;
# the server is stopped after each
# workload. At the end the median round of each workload is printed as Markdown tables (ops/s
# and p99 latency per server, the ratio openkv/denokv and the target; then p50, CPU use and the
# rate of every round), and all figures are written as JSON.
#
# The Deno client costs more CPU per request than either server, so it caps what it can show.
# Unless --no-raw is given (or h2load is missing), each round also measures the servers
# alone, as one more workload ("raw"): h2load (nghttp2-client) sends the protocol's own
# protobuf requests over one h2c connection, as the Deno client does (sets and hot-key sums
# with 64 streams in flight, then point reads one at a time and 64 in flight).
#
# Usage: scripts/bench-server.sh [--rounds R] [--n N] [--reads N] [--lists N]
#                                [--watch-sets N] [--raw-n N] [--no-raw] [--max-wait S]
#                                [--json FILE] [--dir DIR] [--keep]
#   --rounds R      rounds (default 3); the median round is reported
#   --n N           operations of each write workload (default 5000)
#   --reads N       operations of each read workload (default 20000)
#   --lists N       timed full lists of 10,000 entries (default 10)
#   --watch-sets N  sets observed by the 100 watchers (default 200)
#   --max-wait S    before each round, wait up to S seconds (default 300; 0: don't)
#                   for the rest of the machine to quiet down (under 20% of one core busy
#                   over one second): this VM is shared. Each row reports the CPU others used.
#   --raw-n N       requests of each h2load workload (default 20000; reads 64 in flight: 5 N)
#   --no-raw        skip the h2load measurements
#   --raw-only      only the h2load measurements (no Deno client workloads)
#   --versus ARGS   compare openkv with the same openkv started with the extra serve ARGS
#                   (labelled "openkv ARGS") instead of with denokv: what a flag costs, e.g.
#                   --versus --no-metrics
#   --json FILE     where to write the summary (default: $TMPDIR/openkv-bench-server.json)
#   --dir DIR       where to create the temporary directory (databases, logs, raw results)
#   --keep          keep that directory
#
# Environment:
#   OPENKV_BIN    the openkv binary (default: built here with `cargo build --release -p
#                 openkv-cli`, into $CARGO_TARGET_DIR or target/)
#   DENOKV_BIN    the denokv binary (default: denokv on PATH, else ~/.cargo/bin/denokv;
#                 install it with `cargo install denokv --locked`)
#   DENO_BIN      the Deno CLI (default: tests/deno/node_modules/.bin/deno, installed with
#                 `npm ci --prefix tests/deno` if missing)
#   DENOKV_ARGS   extra arguments for `denokv serve` (e.g. "--num-workers 2"); default none,
#                 i.e. denokv's defaults, as `denokv serve` runs out of the box
#   OPENKV_ARGS   extra arguments for `openkv serve`
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

die() {
  echo "bench-server: $*" >&2
  exit 1
}
step() { printf '\n==> %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required but not on PATH ($2)"; }

rounds=3 n=5000 reads=20000 lists=10 watch_sets=200 raw_n=20000 raw=1 max_wait=300 keep=0 dir=${TMPDIR:-/tmp}
raw_only=0 versus=''
json=${TMPDIR:-/tmp}/openkv-bench-server.json
posint() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive integer, got '$2'"; }
while (($#)); do
  case "$1" in
    --rounds | --n | --reads | --lists | --watch-sets | --raw-n | --max-wait | --json | --dir | --versus)
      (($# >= 2)) || die "$1 needs a value"
      case "$1" in
        --rounds) posint "$1" "$2" && rounds=$2 ;;
        --n) posint "$1" "$2" && n=$2 ;;
        --reads) posint "$1" "$2" && reads=$2 ;;
        --lists) posint "$1" "$2" && lists=$2 ;;
        --watch-sets) posint "$1" "$2" && watch_sets=$2 ;;
        --raw-n) posint "$1" "$2" && raw_n=$2 ;;
        --max-wait) [[ "$2" =~ ^[0-9]+$ ]] || die "--max-wait needs seconds"; max_wait=$2 ;;
        --json) json=$2 ;;
        --dir) dir=$2 ;;
        --versus) versus=$2 ;;
      esac
      shift 2
      ;;
    --keep) keep=1 && shift ;;
    --no-raw) raw=0 && shift ;;
    --raw-only) raw_only=1 && shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' && exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
((n >= 64 && reads >= 64)) || die "--n and --reads must be at least 64"
((raw_only == 0 || raw == 1)) || die "--raw-only and --no-raw exclude each other"
# The other server: denokv, or openkv with the --versus arguments.
peer=denokv
[[ -z "$versus" ]] || peer="openkv $versus"
[[ -d "$dir" ]] || die "--dir $dir is not a directory"

# --- tools ------------------------------------------------------------------
for tool in mktemp nproc timeout sed grep awk sort od; do need "$tool" "coreutils/sed/grep/awk"; done
if ((raw_only)) && ! command -v h2load >/dev/null 2>&1; then
  die "--raw-only needs h2load (apt-get install nghttp2-client)"
fi
if ((raw)) && ! command -v h2load >/dev/null 2>&1; then
  echo "bench-server: h2load not found (apt-get install nghttp2-client): skipping the" \
    "raw-HTTP measurements" >&2
  raw=0
fi

deno=${DENO_BIN:-$root/tests/deno/node_modules/.bin/deno}
if [[ ! -x "$deno" && -z "${DENO_BIN:-}" ]]; then
  need npm "to install the pinned Deno CLI (tests/deno/package.json); or set DENO_BIN"
  step "installing the pinned Deno CLI (npm ci --prefix tests/deno)"
  npm ci --prefix tests/deno --no-audit --no-fund --loglevel=error
fi
[[ -x "$deno" ]] || die "the Deno CLI $deno is not executable (set DENO_BIN)"

denokv=${DENOKV_BIN:-$(command -v denokv || echo "$HOME/.cargo/bin/denokv")}
[[ -n "$versus" || -x "$denokv" ]] ||
  die "denokv not found ($denokv): install it with 'cargo install denokv --locked' or set DENOKV_BIN"

if [[ -n "${OPENKV_BIN:-}" ]]; then
  openkv=$OPENKV_BIN
else
  need cargo "to build openkv; or set OPENKV_BIN"
  step "cargo build --release -p openkv-cli"
  cargo build --release -p openkv-cli
  openkv=${CARGO_TARGET_DIR:-$root/target}/release/openkv
fi
[[ -x "$openkv" ]] || die "the openkv binary $openkv is not executable"

# --- processes and cleanup ----------------------------------------------------
work=$(mktemp -d "$dir/openkv-bench-server.XXXXXX")
server_pid='' client_pid=''
bench_name=bench-server
# shellcheck source=scripts/bench-lib.sh
source "$root/scripts/bench-lib.sh"
bench_traps

token=bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')

# start_server NAME DB PORT LOG: starts it in the background (server_pid) and waits until it
# accepts connections.
start_server() {
  local name=$1 db=$2 port=$3 log=$4 extra=()
  case "$name" in
    openkv)
      read -ra extra <<<"${OPENKV_ARGS:-}"
      "$openkv" serve --db "$db" --addr "127.0.0.1:$port" --access-token "$token" \
        "${extra[@]}" >"$log.out" 2>"$log.err" &
      ;;
    "openkv "*)
      read -ra extra <<<"$versus"
      "$openkv" serve --db "$db" --addr "127.0.0.1:$port" --access-token "$token" \
        "${extra[@]}" >"$log.out" 2>"$log.err" &
      ;;
    denokv)
      read -ra extra <<<"${DENOKV_ARGS:-}"
      "$denokv" --sqlite-path "$db" serve --access-token "$token" --addr "127.0.0.1:$port" \
        "${extra[@]}" >"$log.out" 2>"$log.err" &
      ;;
  esac
  server_pid=$!
  for _ in $(seq 300); do
    if ! alive "$server_pid"; then
      cat "$log.out" "$log.err" >&2
      die "$name exited during start-up (above: its output)"
    fi
    if port_open "$port" &&
      { [[ "$name" != openkv* ]] || grep -q "^openkv: serving" "$log.out"; }; then
      return
    fi
    sleep 0.1
  done
  die "$name did not accept connections on 127.0.0.1:$port within 30 s"
}

stop_server() {
  local name=$1 status=0
  alive "$server_pid" || die "$name died during the run (logs: $work)"
  kill -TERM "$server_pid"
  for _ in $(seq 100); do alive "$server_pid" || break; sleep 0.1; done
  if alive "$server_pid"; then
    echo "bench-server: $name ignored SIGTERM for 10 s; killing it" >&2
    kill -KILL "$server_pid"
  fi
  wait "$server_pid" || status=$?
  server_pid=''
  # denokv dies of the SIGTERM (143); openkv exits 0 after a graceful shutdown.
  ((status == 0 || status == 143)) || echo "bench-server: $name exited with status $status" >&2
}

# --- the servers alone: h2load ---------------------------------------------------
# KV Connect request bodies (protobuf, hand-encoded; see datapath.proto):
#   read:  SnapshotRead { ranges: [{ start: ["raw", 0], end: start ‖ 0x00, limit: 1 }] }
#          (the key the set writes; raw_set_c64 runs first)
#   set:   AtomicWrite { mutations: [{ key: ["raw", 0], value: bytes "x", M_SET }] }
#   sum:   AtomicWrite { mutations: [{ key: ["raw_hot"], value: LE64 1, M_SUM }] }
key_raw0='\x02raw\x00\x21\x80\x00\x00\x00\x00\x00\x00\x00'
key_hot='\x02raw_hot\x00'
write_bodies() {
  printf '%b' "\x0a\x23\x0a\x0e${key_raw0}\x12\x0f${key_raw0}\x00\x18\x01" >"$work/read.bin"
  printf '%b' "\x12\x19\x0a\x0e${key_raw0}\x12\x05\x0a\x01x\x10\x03\x18\x01" >"$work/set.bin"
  printf '%b' "\x12\x1b\x0a\x09${key_hot}\x12\x0c\x0a\x08\x01\x00\x00\x00\x00\x00\x00\x00" \
    "\x10\x02\x18\x03" >"$work/sum.bin"
}

ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# raw_workload NAME BODY ENDPOINT REQUESTS STREAMS: one h2load run (after a warm-up of a
# tenth of it); prints its figures as a JSON member. CPU: the server's, and everything else on
# the machine ("others", h2load included); h2load's own is not separated.
raw_workload() {
  local name=$1 body=$2 endpoint=$3 requests=$4 streams=$5 log=$work/h2load.log out
  local -a args=(-c 1 -m "$streams" -d "$work/$body" -H "authorization: Bearer $token"
    -H "x-denokv-database-id: $database_id" -H "x-denokv-version: 3"
    -H "content-type: application/x-protobuf" "http://127.0.0.1:$port/v2/$endpoint")
  out=$(h2load -n $((requests / 10)) "${args[@]}" 2>&1) || die "h2load failed: $out"
  local s0 m0 s1 m1 ok total secs p50 p99 max
  rm -f "$log" # h2load appends
  s0=$(ticks "$server_pid") m0=$(machine_ticks)
  out=$(h2load -n "$requests" --log-file="$log" "${args[@]}" 2>&1) ||
    die "h2load failed against the server ($name): $out"
  s1=$(ticks "$server_pid") m1=$(machine_ticks)
  # The log: start (µs since the epoch), status (-1: failed stream), µs to the end of response.
  # (Times stay floating point in awk: mawk's %d stops at 2^31.)
  read -r ok total secs < <(awk -F'\t' '
    { if ($2 >= 200 && $2 < 300) ok++
      if (NR == 1 || $1 < t0) t0 = $1
      if (NR == 1 || $1 + $3 > t1) t1 = $1 + $3 }
    END { printf "%d %d %.6f\n", ok, NR, (t1 - t0) / 1e6 }' "$log")
  ((ok == requests && total == requests)) ||
    die "h2load $name: $ok of $requests requests answered 2xx ($total logged): $out"
  read -r p50 p99 max < <(cut -f3 "$log" | sort -n | awk '{ l[NR] = $1 }
    END { printf "%.3f %.3f %.3f\n", l[int(NR * 0.5 + 0.999999)] / 1000,
      l[int(NR * 0.99 + 0.999999)] / 1000, l[NR] / 1000 }')
  awk -v name="$name" -v n="$requests" -v secs="$secs" -v ds=$((s1 - s0)) -v dm=$((m1 - m0)) \
    -v p50="$p50" -v p99="$p99" -v max="$max" 'BEGIN {
      others = (dm - ds) / secs; if (others < 0) others = 0
      printf "\"%s\": {\"unit\": \"req/s\", \"ops\": %d, \"secs\": %.3f, \"rate\": %.1f, ", name, n, secs, n / secs
      printf "\"p50_ms\": %s, \"p99_ms\": %s, \"max_ms\": %s, ", p50, p99, max
      printf "\"server_cpu_pct\": %.1f, \"client_cpu_pct\": null, \"others_cpu_pct\": %.1f}", ds / secs, others
    }'
}

# raw_load LABEL ROUND PORT OUT: every h2load workload against the running server (a fresh
# one: the sets come first and write the key the reads read).
raw_load() {
  local label=$1 round=$2 port=$3 out=$4 database_id
  database_id=$("$deno" run -A "$script" database-id "http://127.0.0.1:$port")
  {
    printf '{"label": "%s", "round": %d, "raw": true, "workloads": {' "$label" "$round"
    raw_workload raw_set_c64 set.bin atomic_write "$raw_n" 64
    printf ', '
    raw_workload raw_sum_c64 sum.bin atomic_write "$raw_n" 64
    printf ', '
    raw_workload raw_get_seq read.bin snapshot_read "$raw_n" 1
    printf ', '
    raw_workload raw_get_c64 read.bin snapshot_read $((raw_n * 5)) 64
    printf '}}\n'
  } >"$out"
  # Every acknowledged sum (warm-ups included) must be in the counter.
  "$deno" run --unstable-kv -A "$script" counter "http://127.0.0.1:$port" '["raw_hot"]' \
    $((raw_n + raw_n / 10))
}


# --- versions and machine ------------------------------------------------------
deno_version=$("$deno" --version | head -n1)
if [[ -n "${OPENKV_BIN:-}" ]]; then
  openkv_version="$("$openkv" --version) ($openkv)"
else
  openkv_version="$("$openkv" --version), git $(git describe --always --dirty 2>/dev/null || echo '?')"
fi
denokv_version=$(cargo install --list 2>/dev/null | awk '/^denokv /{print $1, $2}' | tr -d ':')
[[ "$denokv" == "$HOME/.cargo/bin/denokv" && -n "$denokv_version" ]] || denokv_version="denokv ($denokv)"
[[ -z "$versus" ]] || denokv_version="the same openkv with: $versus"
cpu=$(grep -m1 '^model name' /proc/cpuinfo | sed 's/^[^:]*: //' || echo unknown)
load=$(cut -d' ' -f1 /proc/loadavg)
today=$(date -u +%Y-%m-%d)

write_bodies
export DENO_KV_ACCESS_TOKEN=$token NO_COLOR=1 DENO_NO_UPDATE_CHECK=1
export BENCH_N=$n BENCH_READS=$reads BENCH_LISTS=$lists BENCH_WATCH_SETS=$watch_sets
script=$root/tests/deno/bench_server.ts

# --- rounds --------------------------------------------------------------------
# session NAME ROUND WORKLOAD: a fresh server on a fresh file, one workload (or the h2load
# set), the server stopped and its file removed.
session() {
  local name=$1 round=$2 workload=$3 db port out status=0
  local file=${name// /_}
  db=$work/$file-$round-$workload.sqlite3 port=$(free_port) out=$work/$file-$round-$workload.json
  start_server "$name" "$db" "$port" "$work/$file-$round-$workload"
  if [[ "$workload" == raw ]]; then
    raw_load "$name" "$round" "$port" "$out"
  else
    timeout 3600 "$deno" run --unstable-kv -A "$script" \
      run "http://127.0.0.1:$port" "$name" "$round" "$server_pid" "$workload" "$out" &
    client_pid=$!
    wait "$client_pid" || status=$?
    client_pid=''
    ((status == 0)) ||
      die "the Deno client failed against $name, $workload (status $status; logs: $work)"
  fi
  stop_server "$name"
  ((keep)) || rm -f "$db" "$db-wal" "$db-shm"
  if [[ "$name" == openkv ]]; then openkv_results+=("$out"); else denokv_results+=("$out"); fi
}

workloads=(seq_set concurrent64_set seq_get concurrent64_get atomic_check_set sum_hot list_10k
  watch_fanout_100 multi3_c64_get multi8_seq_get multi3_list_10k)
((raw)) && workloads+=(raw)
((raw_only == 0)) || workloads=(raw)
openkv_results=() denokv_results=()
for ((round = 1; round <= rounds; round++)); do
  step "round $round/$rounds"
  wait_quiet
  for i in "${!workloads[@]}"; do
    # Each workload on both servers back to back; who goes first alternates.
    order=(openkv "$peer")
    (((round + i) % 2)) && order=("$peer" openkv)
    for name in "${order[@]}"; do
      echo "bench-server: round $round/$rounds: ${workloads[i]} on $name" >&2
      session "$name" "$round" "${workloads[i]}"
    done
  done
done

step "report"
header="**openkv serve vs $peer** — $today, nproc $(nproc), $cpu, load average $load at start; \
median of $rounds rounds; N = $n writes, $reads reads, $lists lists of 10k, $watch_sets watched \
sets; client: $deno_version; servers: $openkv_version; $denokv_version \
(defaults${DENOKV_ARGS:+ + $DENOKV_ARGS})${OPENKV_ARGS:+; openkv args: $OPENKV_ARGS}"
echo
echo "$header"
echo
# openkv's results first: the report's first server is the numerator of the ratio.
BENCH_TARGETS=$([[ -z "$versus" ]] && echo 1 || echo 0) BENCH_HEADER=$header "$deno" run -A "$script" report "$json" \
  "${openkv_results[@]}" "${denokv_results[@]}"
echo
echo "JSON: $json"
