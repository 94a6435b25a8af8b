# shellcheck shell=bash
# Shared by the benchmark scripts (sourced, not run): process bookkeeping, cleanup on exit and
# free ports. The sourcing script sets `bench_name` (for messages), `work` (its temporary
# directory), `keep` (1: keep it) and records its background processes in `server_pid` and
# `client_pid`; `bench_traps` then makes every exit stop them and remove `work`.

# alive PID: the process runs (a child that exited stays a zombie until waited for, and
# `kill -0` still succeeds on a zombie).
alive() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n "$state" && "$state" != Z ]]
}

bench_cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for pid in ${client_pid:-} ${server_pid:-}; do
    if alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
      alive "$pid" && kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null || true
  done
  if ((${keep:-0})); then
    echo "${bench_name:-bench}: kept ${work:?}" >&2
  else
    rm -rf "${work:?}"
  fi
  exit "$status"
}

bench_traps() {
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A port nothing listens on, below the kernel's ephemeral range: a port in that range may be
# held by one of the benchmark's own client connections, which no probe sees, and the server's
# bind then fails with "Address already in use" (it did, twice in six runs of bench-server.sh).
free_port() {
  local port low=32768
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  ((low > 11000)) || low=32768
  for _ in $(seq 100); do
    port=$((10000 + RANDOM % (low - 10000)))
    port_open "$port" || { echo "$port" && return; }
  done
  echo "$bench_name: no free TCP port found" >&2
  exit 1
}

machine_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }

# wait_quiet: waits (up to $max_wait seconds) until the machine's busy CPU over one second
# is under 20% of one core; nothing of ours runs at this point.
wait_quiet() {
  local waited=0 m0 busy
  while ((waited < ${max_wait:?})); do
    m0=$(machine_ticks)
    sleep 1
    busy=$(($(machine_ticks) - m0))
    ((busy < 20)) && return
    ((waited++ % 30 == 0)) && echo "${bench_name:-bench}: waiting for the machine to quiet down" \
      "(${busy}% of one core busy)" >&2
  done
  ((max_wait == 0)) || echo "${bench_name:-bench}: still busy after ${max_wait} s; measuring anyway" >&2
}
