#!/usr/bin/env bash
# Runs every shell command README.md shows, as a new user would type it, so that the rule
# "every command the README shows runs as written" is checked instead of hoped for.
#
# The commands are read from README.md itself: every line of a ```sh/bash/shell/console block
# (continuation lines joined, comments dropped), and every inline `code` span that starts
# like a command (a program such as cargo, openkv, npm, deno, ./scripts/…, or VAR=… before
# one). Each one must be handled below, by its exact text, in one of these ways:
#   full     run as written (in a scratch directory; placeholders such as `…`, `file` or
#            kv.example.com replaced by a real value, said next to the command);
#   probe    a server: started as written, asked over HTTP for the KV Connect metadata with
#            its access token (200, and 401 with a wrong one), stopped with SIGTERM (exit 0);
#   short    a benchmark, run through the same command with the program's own flags for a
#            short run (fewer rounds and operations; the reason is next to it);
#   exclude  not run here, with the reason (e.g. needs a toolchain CI does not have);
#   mention  not a command to run: a program or subcommand named in prose.
# A command the README shows and this script does not handle fails the check ("unknown"),
# and so does a command handled here that the README no longer shows (a stale entry): the
# list cannot drift from the README in either direction.
#
# Usage: scripts/readme-commands.sh          run everything (called by scripts/test.sh)
#        scripts/readme-commands.sh --list   only extract and classify (no build, no run)
#
# Environment (scripts/test.sh sets all four up before calling this):
#   DENO_BIN                  the pinned Deno CLI (the benchmark and a Deno client probe)
#   OPENKV_DENOKV             the denokv binary (scripts/bench-server.sh's other server)
#   OPENKV_TEST_POSTGRES_URL  a PostgreSQL database (the PostgreSQL commands)
#   OPENKV_S3S_FS             s3s-fs, S3-compatible storage (the continuous-backup commands)
# The commands use port 4512 as the README shows them, so it must be free.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
readme=README.md
# The access token the README's server commands use.
token=change-me-to-a-long-secret

die() {
  echo "readme-commands: $*" >&2
  exit 1
}
step() { printf '\n==> %s\n' "$*" >&2; }

list_only=0
case "${1:-}" in
  --list) list_only=1 ;;
  '') ;;
  *) die "usage: scripts/readme-commands.sh [--list]" ;;
esac

# --- the commands the README shows --------------------------------------------
readme_commands() {
  perl -e '
    use strict;
    my ($fence, $shell, $pending, $prose) = (0, 0, "", "");
    my (@cmds, %seen);
    while (my $line = <>) {
      if ($line =~ /^\s*```\s*(\S*)/) {
        ($fence, $shell, $pending) = $fence ? (0, 0, "") : (1, scalar($1 =~ /^(sh|bash|shell|console)$/), "");
        next;
      }
      if (!$fence) { $prose .= $line; next }
      next unless $shell;
      chomp $line;
      next if $line =~ /^\s*(#|$)/;
      $line =~ s/\s+#\s.*$//;       # a trailing comment
      $line =~ s/^\s+|\s+$//g;
      if ($line =~ s/\s*\\$//) { $pending .= "$line "; next }   # continued on the next line
      push @cmds, $pending . $line;
      $pending = "";
    }
    # Inline spans may wrap onto the next line of the paragraph.
    my $program = qr{(?:\.{1,2}/|\.ci/|scripts/)\S*|cargo|openkv|denokv|deno|npm|npx|node|cd|pg_dump|psql|openssl|mkcert|h2load|kill|curl|git|docker|make|sudo|apt-get|rustup|sh|bash};
    while ($prose =~ /`([^`]+)`/g) {
      (my $span = $1) =~ s/\s*\n\s*/ /g;
      push @cmds, $span if $span =~ /^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:$program)(?:\s|$)/;
    }
    print "$_\n" for grep { !$seen{$_}++ } @cmds;
  ' "$readme"
}

declare -A shown=() handled=()
while IFS= read -r c; do shown[$c]=1; done < <(readme_commands)
((${#shown[@]} > 0)) || die "found no command in $readme (is the extraction broken?)"

# --- helpers ---------------------------------------------------------------------
# edit FROM TO: replaces FROM by TO in $cmd (the caller's copy of the README command); fails
# if $cmd has no FROM, so a changed README command cannot silently skip the replacement.
# (Not a function printing the result: a failure inside "$(…)" would not stop the script.)
edit() {
  [[ "$cmd" == *"$1"* ]] || die "expected '$1' in: $cmd"
  cmd=${cmd//"$1"/"$2"}
}

# sh_run CMD: runs CMD with bash in the current directory, as a user would paste it, and
# says how long it took (the check's cost in CI is the sum).
sh_run() {
  echo "\$ $1" >&2
  local rc=0 start=$SECONDS
  timeout 900 bash -c "$1" || rc=$?
  ((rc == 0)) || die "failed (exit $rc): $1"
  echo "    ($((SECONDS - start)) s)" >&2
}

# The background processes started and not yet stopped (only those: a PID that was waited
# for may belong to someone else by now).
declare -A running=()
work=''
cleanup() {
  local pid
  for pid in "${!running[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  [[ -z "$work" ]] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# scratch NAME: a fresh directory to run commands in, under target/ (so `cargo run` there
# still finds the workspace, and the checkout stays clean).
scratch() {
  mkdir "$work/$1"
  cd "$work/$1"
}

port_free() { ! (exec 3<>/dev/tcp/127.0.0.1/4512) 2>/dev/null; }

# metadata URL TOKEN [curl options]: the HTTP status of a KV Connect metadata request.
metadata() {
  local url=$1 token=$2
  shift 2
  curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "$@" -X POST \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    --data '{"supportedVersions":[1,2,3]}' "$url" 2>/dev/null || true
}

# start_server CMD URL TOKEN [curl options]: starts CMD in the background (server_pid) and
# waits until it answers the metadata request with 200: up to a minute, or 15 when it is a
# `cargo run` that may first have to build.
server_pid=''
start_server() {
  local cmd=$1 url=$2 token=$3
  shift 3
  port_free || die "port 4512 is in use: the README's commands need it"
  echo "\$ $cmd &" >&2
  # exec: `cargo run` then execs the server in this same process (cargo does on Unix), so
  # the PID we signal is the server's.
  bash -c "exec $cmd" >"$work/server.log" 2>&1 &
  server_pid=$!
  running[$server_pid]=1
  local wait_s=60
  [[ "$cmd" != cargo* ]] || wait_s=900
  local deadline=$((SECONDS + wait_s))
  until [[ "$(metadata "$url" "$token" "$@")" == 200 ]]; do
    if ! alive "$server_pid"; then
      cat "$work/server.log" >&2
      die "the server exited before answering: $cmd"
    fi
    ((SECONDS < deadline)) || die "no answer from $url within $wait_s s: $cmd"
    sleep 0.5
  done
  local status
  status=$(metadata "$url" "wrong-$token" "$@")
  [[ "$status" == 401 ]] || die "a wrong token got HTTP $status, not 401: $cmd"
  echo "    answers $url (metadata: 200 with the token, 401 without)" >&2
}

# alive PID: the process runs (a child that exited stays a zombie until waited for, and
# `kill -0` still succeeds on a zombie).
alive() {
  local stat
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  stat=${stat##*) }
  [[ "${stat%% *}" != Z ]]
}

# stop PID SIGNAL: sends SIGNAL, gives the process 30 s to end, and sets stopped_rc to its
# exit status ("timeout" if it had to be killed). Not in $(…): only this shell can wait for
# its children.
stopped_rc=''
stop() {
  kill "-$2" "$1"
  local i rc=0
  for ((i = 0; i < 300; i++)); do
    alive "$1" || break
    sleep 0.1
  done
  stopped_rc=0
  if alive "$1"; then
    kill -KILL "$1"
    stopped_rc=timeout
  fi
  wait "$1" || rc=$?
  unset "running[$1]"
  [[ "$stopped_rc" == timeout ]] || stopped_rc=$rc
}

# stop_server: a server stops gracefully on SIGTERM, with exit 0.
stop_server() {
  stop "$server_pid" TERM
  if [[ "$stopped_rc" != 0 ]]; then
    cat "$work/server.log" >&2
    die "the server did not stop cleanly on SIGTERM (exit $stopped_rc)"
  fi
  echo "    stopped by SIGTERM, exit 0" >&2
}

# local_server DB: `openkv serve` on DB, as the README's first command serves its file.
local_server() { start_server "openkv serve --db $1 --access-token $token" http://127.0.0.1:4512 "$token"; }

# probe CMD TOKEN [https CA]: a server command, started, asked, stopped.
probe() {
  if [[ "${3:-}" == https ]]; then
    start_server "$1" https://127.0.0.1:4512 "$2" --cacert "$4"
  else
    start_server "$1" http://127.0.0.1:4512 "$2"
  fi
  stop_server
}

# cover MODE WHY [FUNCTION]: handles the README command given on stdin (exact text). FUNCTION
# runs it (it gets the text as $1); WHY says how or why not.
declare -a table=() stale=()
cover() {
  local mode=$1 why=$2 fn=${3:-} cmd
  cmd=$(cat)
  if [[ -z "${shown[$cmd]:-}" ]]; then
    stale+=("$cmd")
    return 0
  fi
  handled[$cmd]=$mode
  table+=("$(printf '%-8s %s\n         (%s)' "$mode" "$cmd" "$why")")
  ((list_only == 0)) || return 0
  case "$mode" in
    full | probe | short)
      step "README ($mode): $cmd"
      echo "    $why" >&2
      "$fn" "$cmd"
      ;;
    exclude | mention) ;;
    *) die "unknown mode $mode" ;;
  esac
}

# need PROGRAM PACKAGE: PROGRAM on PATH, else Debian's PACKAGE is installed (as root; CI
# starts from an image with cargo and npm, and scripts/postgres.sh does the same).
need() {
  command -v "$1" >/dev/null && return
  if ((EUID != 0)) || ! command -v apt-get >/dev/null; then
    die "$1 is needed (Debian package $2)"
  fi
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" >&2
}

# --- how each command runs ----------------------------------------------------------
if ((list_only == 0)); then
  # First the classification alone (fast): an unknown or stale command fails before anything
  # is built or run.
  "$0" --list >/dev/null
  # The probes ask servers with curl; the TLS command needs a certificate made with openssl.
  need curl curl
  need openssl openssl
  [[ -n "${DENO_BIN:-}" && -n "${OPENKV_DENOKV:-}" && -n "${OPENKV_TEST_POSTGRES_URL:-}" ]] ||
    die "needs DENO_BIN, OPENKV_DENOKV and OPENKV_TEST_POSTGRES_URL: run it from scripts/test.sh"
  target=${CARGO_TARGET_DIR:-$root/target}
  [[ "$target" = /* ]] || target="$root/$target"
  # Inside the checkout (target/ is ignored by git) even when CARGO_TARGET_DIR is elsewhere:
  # `cargo run` in a scratch directory must find the workspace above it.
  mkdir -p "$root/target"
  work=$(mktemp -d "$root/target/readme-commands.XXXXXX")
  # What the commands leave in the temporary directory (the benchmarks' databases and JSON
  # summaries) goes with the scratch directories.
  mkdir "$work/tmp"
  export TMPDIR="$work/tmp"
  # `openkv …` is the binary the README's install command puts on PATH (below); `deno` is the
  # pinned Deno CLI, as a user who installed Deno has it.
  deno_dir=$(dirname "$DENO_BIN")
  export PATH="$work/install/bin:$deno_dir:$PATH"
fi

# In the repository root, first: the install that puts `openkv` on PATH for the rest.
run_in_root() { (cd "$root" && sh_run "$1"); }
install_openkv() {
  # CARGO_INSTALL_ROOT keeps ~/.cargo/bin as it was; CARGO_TARGET_DIR reuses the workspace's
  # release build instead of building everything again in a temporary directory.
  CARGO_INSTALL_ROOT="$work/install" CARGO_TARGET_DIR="$target" run_in_root "$1"
  [[ -x "$work/install/bin/openkv" ]] || die "no openkv binary after: $1"
}
cover full 'installed into a scratch root (CARGO_INSTALL_ROOT), reusing target/' install_openkv <<'CMD'
cargo install --locked --path crates/openkv-cli
CMD

# The first server command, then a Deno program connecting to it as the README's comment
# shows (DENO_KV_ACCESS_TOKEN=… deno run -A --unstable-kv app.ts with Deno.openKv(url)).
serve_from_checkout() {
  scratch serve
  start_server "$1" http://127.0.0.1:4512 "$token"
  cat >app.ts <<'TS'
const kv = await Deno.openKv("http://127.0.0.1:4512");
await kv.set(["readme"], "hello");
const entry = await kv.get(["readme"]);
if (entry.value !== "hello") throw new Error(`read back ${entry.value}`);
console.log("Deno read back", entry.value);
kv.close();
TS
  # The client command and URL from the README's comment, so they cannot drift either.
  local deno_cmd
  deno_cmd=$(grep -o 'DENO_KV_ACCESS_TOKEN=[^ ]* deno run .* app\.ts' "$root/$readme") ||
    die "the README no longer shows the Deno client command (update serve_from_checkout)"
  grep -qF 'Deno.openKv("http://127.0.0.1:4512")' "$root/$readme" ||
    die "the README no longer shows Deno.openKv(\"http://127.0.0.1:4512\") (update serve_from_checkout)"
  sh_run "$deno_cmd"
  stop_server
}
cover probe 'run in a scratch directory inside the checkout; then a Deno program uses it' \
  serve_from_checkout <<'CMD'
cargo run --release -- serve --db ./data.sqlite3 --access-token change-me-to-a-long-secret
CMD

info() {
  local cmd=$1
  edit '--db file' '--db data.sqlite3'
  (cd "$work/serve" && sh_run "$cmd")
}
cover full 'file = the database the Deno program wrote above' info <<'CMD'
openkv info --db file
CMD

denokv_style() {
  scratch denokv-style
  local cmd=$1
  edit … "$token"
  probe "$cmd" "$token"
}
cover probe '… = a token' denokv_style <<'CMD'
openkv --sqlite-path data.sqlite3 serve --access-token …
CMD

# A CA and a server certificate it signed (Deno refuses a CA certificate as the server's own,
# as the README says); the key as unencrypted PKCS#8.
tls_serve() {
  scratch tls
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=readme-ca -keyout ca-key.pem \
    -out ca.pem 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout key.pem -out server.csr \
    2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
    -extfile san.ext -out cert.pem 2>/dev/null
  probe "$1" "$token" https ca.pem
}
cover probe 'cert.pem/key.pem made with openssl from a throwaway CA; asked over HTTPS' \
  tls_serve <<'CMD'
openkv serve --db ./data.sqlite3 --access-token change-me-to-a-long-secret --addr 0.0.0.0:4512 --tls-cert cert.pem --tls-key key.pem
CMD

# The command-line block, in the README's order, on one database.
cli() { sh_run "$1"; }
remote_list() {
  local_server data.sqlite3
  sh_run "$1"
  stop_server
}
watch_probe() {
  echo "\$ $1 &" >&2
  bash -c "exec $1" >watch.out 2>watch.err &
  local pid=$! i
  running[$pid]=1
  # A watch prints the current state at once, then a line per change.
  for ((i = 0; i < 100; i++)); do [[ $(wc -l <watch.out) -ge 1 ]] && break; sleep 0.1; done
  sh_run "openkv --db data.sqlite3 set '[\"config\"]' '\"dark\"'"
  for ((i = 0; i < 100; i++)); do grep -q dark watch.out && break; sleep 0.1; done
  grep -q dark watch.out || { cat watch.out watch.err >&2; die "the watch printed no change"; }
  stop "$pid" INT
  [[ "$stopped_rc" == 0 ]] ||
    { cat watch.err >&2; die "the watch ended by SIGINT with exit $stopped_rc, not 0"; }
  echo "    printed the change; SIGINT ended it with exit 0" >&2
}
if ((list_only == 0)); then
  scratch cli
  # The file the README's --bytes @ada.png reads (any bytes will do).
  printf '\x89PNG\r\n\x1a\n-readme-' >ada.png
fi
while IFS= read -r c; do
  fn=cli why='run as written'
  case "$c" in
    *' list '*) fn=remote_list why='against openkv serve on that file, as the first server command' ;;
    *' watch '*) fn=watch_probe why='started; a set on ["config"] must print a line; SIGINT must end it with exit 0' ;;
  esac
  cover full "$why" "$fn" <<<"$c"
done <<'CMDS'
openkv --db data.sqlite3 set '["users", "ada"]' '{"name": "Ada", "id": {"$bigint": "7"}}'
openkv --db data.sqlite3 set '["visits"]' --u64 0
openkv --db data.sqlite3 set '["avatar", "ada"]' --bytes @ada.png
openkv --db data.sqlite3 set '["session", 1n]' '"token"' --expire-in 30m
openkv --db data.sqlite3 get '["users", "ada"]'
openkv --db data.sqlite3 get --raw '["avatar", "ada"]' > ada.png
openkv --db http://127.0.0.1:4512 --access-token change-me-to-a-long-secret list --prefix '["users"]' --limit 100
openkv --db data.sqlite3 count --prefix '["users"]'
openkv --db data.sqlite3 delete '["users", "ada"]' '["avatar", "ada"]'
openkv --db data.sqlite3 watch '["config"]'
openkv --db data.sqlite3 export -o backup.ndjson
openkv --db other.sqlite3 import -i backup.ndjson
CMDS

# Backups and restores, in the README's order: the local ones on a file, the remote ones
# against `openkv serve` on this machine.
# backup_restore CMD: a backup starts without nightly.sqlite3 (a backup never overwrites a
# file); a command for kv.example.com goes to `openkv serve` on this machine, with its token
# for T.
backup_restore() {
  [[ "$1" != *' backup '* ]] || rm -f nightly.sqlite3
  if [[ "$1" != *kv.example.com* ]]; then
    sh_run "$1"
    return
  fi
  local cmd=$1
  edit https://kv.example.com http://127.0.0.1:4512
  edit '--access-token T ' "--access-token $token "
  local_server server.sqlite3
  sh_run "$cmd"
  stop_server
}
if ((list_only == 0)); then
  scratch backup
  sh_run "openkv --db data.sqlite3 set '[\"k\"]' '\"local\"'"
  sh_run "openkv --db server.sqlite3 set '[\"k\"]' '\"served\"'"
fi
while IFS= read -r c; do
  why='on a file with one entry'
  [[ "$c" != *kv.example.com* ]] ||
    why='against openkv serve on 127.0.0.1:4512 (with its token for T) instead of the example host'
  cover full "$why" backup_restore <<<"$c"
done <<'CMDS'
openkv --db data.sqlite3 backup nightly.sqlite3
openkv --db https://kv.example.com --access-token T backup nightly.sqlite3
openkv --db data.sqlite3 restore nightly.sqlite3
openkv --db https://kv.example.com --access-token T restore nightly.sqlite3
CMDS

# PostgreSQL: the test database instead of the README's example server, in a schema of this
# check's own (not "prod"), so an OPENKV_TEST_POSTGRES_URL the user gave keeps no "prod".
if ((list_only == 0)); then
  pg_url=$OPENKV_TEST_POSTGRES_URL'?'
  [[ "$OPENKV_TEST_POSTGRES_URL" != *'?'* ]] || pg_url=$OPENKV_TEST_POSTGRES_URL'&'
  pg_url+=openkv_schema=readme_commands
fi
pg_serve() {
  scratch postgres
  local cmd=$1
  edit 'postgres://kv:secret@db.internal:5432/app?openkv_schema=prod' "$pg_url"
  probe "$cmd" "$token"
}
cover probe 'on OPENKV_TEST_POSTGRES_URL (schema readme_commands) instead of the example server' \
  pg_serve <<'CMD'
openkv serve --db 'postgres://kv:secret@db.internal:5432/app?openkv_schema=prod' --addr 0.0.0.0:4512 --access-token change-me-to-a-long-secret
CMD
pg_export() {
  sh_run "openkv --db data.sqlite3 set '[\"moved\"]' '\"to postgres\"'"
  sh_run "$1"
}
pg_import() {
  local cmd=$1
  edit 'postgres://…' "$pg_url"
  sh_run "$cmd"
}
cover full 'a file with one entry' pg_export <<'CMD'
openkv --db data.sqlite3 export > all.ndjson
CMD
cover full 'postgres://… = OPENKV_TEST_POSTGRES_URL, schema readme_commands' pg_import <<'CMD'
openkv --db 'postgres://…' import < all.ndjson
CMD

# Replicas: the README's hosts are two machines; here the primary runs on 127.0.0.1:4513 and
# the replica on the README's port 4512 (db1.internal → 127.0.0.1:4513, db2.internal →
# 127.0.0.1:4512).
primary_pid=''
# replica_primary: `openkv serve` on primary.sqlite3 at 127.0.0.1:4513, answering.
replica_primary() {
  local cmd="openkv --db primary.sqlite3 serve --addr 127.0.0.1:4513 --access-token $token"
  echo "\$ $cmd &" >&2
  bash -c "exec $cmd" >"$work/primary.log" 2>&1 &
  primary_pid=$!
  running[$primary_pid]=1
  local deadline=$((SECONDS + 60))
  until [[ "$(metadata http://127.0.0.1:4513 "$token")" == 200 ]]; do
    alive "$primary_pid" || { cat "$work/primary.log" >&2; die "the primary exited: $cmd"; }
    ((SECONDS < deadline)) || die "the primary did not answer: $cmd"
    sleep 0.2
  done
  sh_run "openkv --db http://127.0.0.1:4513 --access-token $token set '[\"users\", \"ada\"]' '\"Ada\"'"
}
stop_primary() {
  stop "$primary_pid" TERM
  [[ "$stopped_rc" == 0 ]] || { cat "$work/primary.log" >&2; die "the primary did not stop cleanly"; }
}
replica_listed() {
  scratch replica-primary
  local cmd=$1
  edit http://db2.internal:4512 http://127.0.0.1:4513
  probe "$cmd" "$token"
}
replica_serve() {
  scratch replica
  replica_primary
  local cmd=$1
  edit http://db1.internal:4512 http://127.0.0.1:4513
  probe "$cmd" "$token"
  stop_primary
}
replica_info() {
  scratch replica-info
  replica_primary
  local cmd=$1
  start_server "openkv --db replica.sqlite3 serve --addr 127.0.0.1:4512 --access-token $token --replica-of http://127.0.0.1:4513" http://127.0.0.1:4512 "$token"
  edit http://db2.internal:4512 http://127.0.0.1:4512
  echo "\$ $cmd" >&2
  local out
  out=$(timeout 120 bash -c "$cmd") || die "failed: $cmd"
  echo "$out" >&2
  [[ "$out" == *'replica lag:'* ]] || die "no replica lag in: $out"
  stop_server
  stop_primary
}
cover probe 'db2.internal → 127.0.0.1:4513 (only listed in the metadata)' replica_listed <<'CMD'
openkv --db app.sqlite3 serve --addr 0.0.0.0:4512 --access-token change-me-to-a-long-secret --replica-endpoint http://db2.internal:4512
CMD
cover probe 'following a primary started on 127.0.0.1:4513 (db1.internal)' replica_serve <<'CMD'
openkv --db replica.sqlite3 serve --addr 0.0.0.0:4512 --access-token change-me-to-a-long-secret --replica-of http://db1.internal:4512
CMD
cover full 'a replica on 127.0.0.1:4512 of a primary on 127.0.0.1:4513; must print its lag' replica_info <<'CMD'
openkv --db http://db2.internal:4512 --access-token change-me-to-a-long-secret info
CMD

# Continuous backup: s3s-fs (scripts/test.sh builds it: OPENKV_S3S_FS) on 127.0.0.1:9000, the
# README's example endpoint, over a scratch directory holding the bucket my-bucket; the
# credentials in the environment, as a user's. The commands run in the README's order on one
# backup: served (with a write), listed, restored, verified, synced by denokv.
s3_pid=''
s3_start() {
  [[ -n "$s3_pid" ]] && return 0
  [[ -x "${OPENKV_S3S_FS:-}" ]] || die "OPENKV_S3S_FS is not an executable (scripts/test.sh builds s3s-fs)"
  ! (exec 3<>/dev/tcp/127.0.0.1/9000) 2>/dev/null || die "port 9000 is in use: the README's backup commands need it"
  mkdir -p "$work/s3/my-bucket"
  export AWS_ACCESS_KEY_ID=readme-commands AWS_SECRET_ACCESS_KEY=readme-commands-secret AWS_REGION=us-east-1
  "$OPENKV_S3S_FS" --host 127.0.0.1 --port 9000 --access-key "$AWS_ACCESS_KEY_ID" \
    --secret-key "$AWS_SECRET_ACCESS_KEY" "$work/s3" >"$work/s3.log" 2>&1 &
  s3_pid=$!
  running[$s3_pid]=1
  local deadline=$((SECONDS + 30))
  until (exec 3<>/dev/tcp/127.0.0.1/9000) 2>/dev/null; do
    ((SECONDS < deadline)) || die "s3s-fs did not start"
    sleep 0.1
  done
}
backup_serve() {
  scratch pitr
  s3_start
  start_server "$1" http://127.0.0.1:4512 "$token"
  sh_run "openkv --db http://127.0.0.1:4512 --access-token $token set '[\"users\", \"ada\"]' '\"Ada\"'"
  sleep 2 # two --backup-interval: the write is in the bucket
  stop_server
}
backup_list() {
  local out
  echo "\$ $1" >&2
  out=$(timeout 120 bash -c "$1") || die "failed: $1"
  echo "$out" >&2
  [[ "$out" == *$'\tcommit'* ]] || die "no commit among the recovery points: $out"
}
backup_restore() {
  local cmd=$1
  edit 2026-12-04T08:30:00Z "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  sh_run "$cmd"
  [[ "$(openkv --db restored.sqlite3 get '["users", "ada"]')" == '"Ada"' ]] || die "the restore lacks the write"
}
backup_verify() { sh_run "$1"; }
backup_denokv() {
  local cmd=$1
  edit 'denokv ' "$OPENKV_DENOKV "
  sh_run "$cmd"
}
backup_deploy() {
  # Deno Deploy's objects only (openkv's records under openkv/ left out): read as Deploy's.
  mkdir -p "$work/s3/my-bucket/deploy-backup"
  local part
  for part in differential snapshots logs; do
    [[ ! -e "$work/s3/my-bucket/app-prod/$part" ]] ||
      cp -r "$work/s3/my-bucket/app-prod/$part" "$work/s3/my-bucket/deploy-backup/"
  done
  sh_run "$1"
  [[ "$(openkv --db from-deploy.sqlite3 get '["users", "ada"]')" == '"Ada"' ]] || die "the restore lacks the write"
  stop "$s3_pid" TERM
  s3_pid=''
}
cover probe 'with s3s-fs on 127.0.0.1:9000 (bucket my-bucket); a write, shipped' backup_serve <<'CMD'
openkv --db app.sqlite3 serve --addr 0.0.0.0:4512 --access-token change-me-to-a-long-secret --backup-to s3://my-bucket/app-prod --s3-endpoint http://127.0.0.1:9000
CMD
cover full 'the backup above; must list a commit' backup_list <<'CMD'
openkv pitr list --from s3://my-bucket/app-prod --s3-endpoint http://127.0.0.1:9000
CMD
cover full 'the time = now (the example time may precede the backup); must hold the write' \
  backup_restore <<'CMD'
openkv --db restored.sqlite3 restore --from s3://my-bucket/app-prod --s3-endpoint http://127.0.0.1:9000 --at 2026-12-04T08:30:00Z
CMD
cover full 'the backup above' backup_verify <<'CMD'
openkv backup verify --from s3://my-bucket/app-prod --s3-endpoint http://127.0.0.1:9000
CMD
cover full 'denokv = OPENKV_DENOKV (denokv 0.14, built by scripts/test.sh)' backup_denokv <<'CMD'
denokv --sqlite-path copy.sqlite3 pitr sync --s3-bucket my-bucket --s3-prefix app-prod/ --s3-endpoint http://127.0.0.1:9000
CMD
cover full "deploy-backup = the backup above without openkv's own records (Deploy's objects only)" \
  backup_deploy <<'CMD'
openkv --db from-deploy.sqlite3 restore --from s3://my-bucket/deploy-backup --s3-endpoint http://127.0.0.1:9000 --at latest
CMD

# Many databases and tokens: one server on --data-dir, started by the first command and left
# running for the next ones in the README's order (create, a token, list, info, revoke that
# token, delete), stopped after the last; what each prints is checked.
many_serve() {
  scratch many
  port_free || die "port 4512 is in use: the README's commands need it"
  echo "\$ $1 &" >&2
  bash -c "exec $1" >"$work/server.log" 2>&1 &
  server_pid=$!
  running[$server_pid]=1
  local deadline=$((SECONDS + 60))
  until [[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:4512/readyz)" == 200 ]]; do
    alive "$server_pid" || { cat "$work/server.log" >&2; die "the server exited: $1"; }
    ((SECONDS < deadline)) || die "no /readyz from the server within 60 s: $1"
    sleep 0.2
  done
  # No database yet: 404 with the token, 401 without.
  [[ "$(metadata http://127.0.0.1:4512/databases/app-prod/connect "$token")" == 404 ]] ||
    die "a database that does not exist was not 404"
  [[ "$(metadata http://127.0.0.1:4512/databases/app-prod/connect "wrong-$token")" == 401 ]] ||
    die "a wrong token was not 401"
  echo "    answers /readyz; /databases/app-prod/connect: 404 (none yet), 401 with a wrong token" >&2
}
many_create() {
  sh_run "$1"
  [[ "$(metadata http://127.0.0.1:4512/databases/app-prod/connect "$token")" == 200 ]] ||
    die "the new database does not answer its metadata exchange"
  [[ -f kv-data/app-prod.sqlite3 ]] || die "no kv-data/app-prod.sqlite3"
}
many_token=''
many_token_create() {
  echo "\$ $1" >&2
  many_token=$(timeout 60 bash -c "$1") || die "failed: $1"
  [[ "$many_token" == okv_* ]] || die "not a token: $many_token"
  # The scoped token writes app-prod.
  sh_run "openkv --db http://127.0.0.1:4512/databases/app-prod/connect --access-token $many_token set '[\"hello\"]' '\"world\"'"
}
many_list() {
  local out
  echo "\$ $1" >&2
  out=$(timeout 60 bash -c "$1") || die "failed: $1"
  echo "$out" >&2
  [[ "$out" == *"$2"* ]] || die "expected '$2' in: $out"
}
many_db_list() { many_list "$1" app-prod; }
many_token_list() { many_list "$1" "${many_token:4:12}"; }
many_info() { many_list "$1" 'live entries:    1'; }
many_revoke() {
  local cmd=$1
  edit 0123456789ab "${many_token:4:12}"
  sh_run "$cmd"
  [[ "$(metadata http://127.0.0.1:4512/databases/app-prod/connect "$many_token")" == 401 ]] ||
    die "the revoked token still works"
}
many_delete() {
  sh_run "$1"
  [[ "$(metadata http://127.0.0.1:4512/databases/app-prod/connect "$token")" == 404 ]] ||
    die "the deleted database still answers"
  [[ ! -e kv-data/app-prod.sqlite3 ]] || die "kv-data/app-prod.sqlite3 is still there"
  stop_server
}
cover probe 'in a scratch directory; /readyz, then 404 for a database not made yet' many_serve <<'CMD'
openkv serve --data-dir ./kv-data --access-token change-me-to-a-long-secret
CMD
cover full 'the server above; the database must answer and its file exist' many_create <<'CMD'
openkv --db http://127.0.0.1:4512 --access-token change-me-to-a-long-secret db create app-prod
CMD
cover full 'must print a token; that token then writes app-prod' many_token_create <<'CMD'
openkv --db http://127.0.0.1:4512 --access-token change-me-to-a-long-secret token create --database app-prod --scope write --expires-in 90d --description "app-prod server"
CMD
cover full 'must list app-prod' many_db_list <<'CMD'
openkv --db http://127.0.0.1:4512 --access-token change-me-to-a-long-secret db list
CMD
cover full "must list the token's id" many_token_list <<'CMD'
openkv --db http://127.0.0.1:4512 --access-token change-me-to-a-long-secret token list
CMD
cover full "must show app-prod's one entry" many_info <<'CMD'
openkv --db http://127.0.0.1:4512 --access-token change-me-to-a-long-secret info
CMD
cover full 'the id of the token made above; it must then be refused' many_revoke <<'CMD'
openkv --db http://127.0.0.1:4512 --access-token change-me-to-a-long-secret token revoke 0123456789ab
CMD
cover full 'must answer 404 and remove the file; then the server stops' many_delete <<'CMD'
openkv --db http://127.0.0.1:4512 --access-token change-me-to-a-long-secret db delete app-prod --yes
CMD

# Benchmarks: a full run takes 10 minutes and more; each is run through the very same
# command (so the package, binary and script selection is what the README shows) with the
# program's own flags for a short run. Nothing asserts on the figures.
bench_install() {
  local npm_part=${1%% && *} bench_part=${1#* && }
  [[ "$npm_part" != "$1" ]] || die "expected 'npm ci … && cargo run …': $1"
  run_in_root "$npm_part"
  # scripts/test.sh reinstalls the Deno CLI when this stamp is missing; npm ci has just
  # installed exactly the locked versions again.
  touch "$root/tests/deno/node_modules/.openkv-installed"
  run_in_root "$bench_part -- --n 64"
}
cover short 'npm ci in full; the benchmark with --n 64 (its smallest N) instead of 2000' \
  bench_install <<'CMD'
npm ci --prefix tests/deno && cargo run --release -p openkv-bench
CMD
bench_rounds() {
  local cmd=$1
  edit '--rounds 5' '--rounds 1'
  run_in_root "$cmd --n 64"
}
cover short '--rounds 1 --n 64 instead of 5 rounds of N = 2000' bench_rounds <<'CMD'
cargo run --release -p openkv-bench -- --rounds 5 --markdown
CMD
bench_log_cost() {
  local cmd=$1
  edit '--rounds 7 --n 4000' '--rounds 1 --n 64'
  run_in_root "$cmd"
}
cover short '--rounds 1 --n 64 instead of 7 rounds of N = 4000' bench_log_cost <<'CMD'
cargo run --release -p openkv-bench -- --only concurrent64_set,concurrent64_set_log --no-deno --rounds 7 --n 4000
CMD
bench_threads() {
  local cmd=$1
  edit '--rounds 5' '--rounds 1'
  run_in_root "$cmd"
}
cover short '--rounds 1 instead of 5' bench_threads <<'CMD'
cargo run --release -p openkv-bench -- --only get_1t,get_2t,list_10k,list_10k_2t --no-deno --rounds 5
CMD
# bench-scale.sh: 10k entries only, 1 s per get run, 200 writes, on OPENKV_TEST_POSTGRES_URL.
bench_scale() {
  local cmd=$1
  edit '--sizes 10k,1m' '--sizes 10k --seconds 1 --writes 200 --max-wait 0'
  OPENKV_BENCH_POSTGRES_URL="$OPENKV_TEST_POSTGRES_URL" run_in_root "$cmd"
}
cover short '--sizes 10k --seconds 1 --writes 200 --max-wait 0, on OPENKV_TEST_POSTGRES_URL' \
  bench_scale <<'CMD'
scripts/bench-scale.sh --sizes 10k,1m
CMD
# bench-server.sh: one round of tiny workloads, no waiting for a quiet machine, denokv from
# scripts/test.sh (where a user has it from `cargo install denokv`).
bench_server_short='--n 64 --reads 64 --lists 1 --watch-sets 10 --raw-n 64 --max-wait 0'
bench_server() {
  local cmd=$1
  edit '--rounds 3' '--rounds 1'
  [[ "$cmd" != *…/release/openkv* ]] || edit '…/release/openkv' "$target/release/openkv"
  [[ "$cmd" != *' --max-wait 60'* ]] || edit ' --max-wait 60' ''
  DENOKV_BIN="$OPENKV_DENOKV" run_in_root "$cmd $bench_server_short"
}
cover short "--rounds 1 $bench_server_short" bench_server <<'CMD'
scripts/bench-server.sh --rounds 3
CMD
bench_metrics() {
  local cmd=$1
  edit '--rounds 7' '--rounds 1'
  run_in_root "$cmd --raw-n 640 --max-wait 0"
}
cover short '--rounds 1 --raw-n 640 --max-wait 0 instead of 7 rounds of 20,000 requests' \
  bench_metrics <<'CMD'
scripts/bench-server.sh --raw-only --versus --no-metrics --rounds 7
CMD
cover short "…/release/openkv = the release build; --rounds 1 $bench_server_short" \
  bench_server <<'CMD'
OPENKV_BIN=…/release/openkv scripts/bench-server.sh --rounds 3 --max-wait 60
CMD
# bench-js-queue.sh: its own smoke form (1 round, N 300, no waiting for a quiet machine).
bench_js_queue() {
  local cmd=$1
  edit '--rounds 3' '--quick'
  run_in_root "$cmd"
}
cover short '--quick (1 round, 300 messages, 50 latency samples) instead of 3 rounds of 3000' \
  bench_js_queue <<'CMD'
scripts/bench-js-queue.sh --rounds 3
CMD
# bench-replica.sh: its own smoke form (2 rounds of 2 s, N 20,000).
bench_replica() { run_in_root "$1 --quick"; }
cover short '--quick (2 rounds of 2 s workloads, 20,000 entries applied) instead of 3 rounds' \
  bench_replica <<'CMD'
scripts/bench-replica.sh
CMD
# bench-backup.sh: its own smoke form (2 rounds, 2 s of lag, N 20,000; s3s-fs from scripts/test.sh).
bench_backup() {
  local cmd=$1
  edit '--rounds 3' '--quick'
  run_in_root "$cmd"
}
cover short '--quick (2 rounds of 2 s, 20,000 entries restored) instead of 3 full rounds' \
  bench_backup <<'CMD'
scripts/bench-backup.sh --rounds 3
CMD
# fuzz.sh: its own form, seconds instead of minutes (the build is the test command's next
# step's too: scripts/fuzz.sh reuses fuzz/target).
fuzz_one() {
  local cmd=$1
  edit 'fuzz.sh 600 ' 'fuzz.sh 5 '
  run_in_root "$cmd"
}
cover short '5 s instead of 600 on the one target' fuzz_one <<'CMD'
scripts/fuzz.sh 600 kv_connect_request
CMD
# jepsen.sh: seconds on one topology instead of minutes on all four (the test command runs
# every topology for 12 s in crates/openkv-cli/tests/jepsen.rs).
jepsen_short() {
  local cmd=$1
  edit '--time 5m' '--time 3s --topology serve-sqlite'
  run_in_root "$cmd"
}
cover short '--time 3s --topology serve-sqlite instead of 5 minutes on all four topologies' \
  jepsen_short <<'CMD'
scripts/jepsen.sh --time 5m --seed 42
CMD
# soak.sh: an hour; here 20 s on one topology, sampling every 2 s.
soak_short() { run_in_root "$1 --time 20s --topology serve-sqlite --sample 2s"; }
cover short '20 s on serve-sqlite, sampled every 2 s, instead of an hour on all four' \
  soak_short <<<'scripts/soak.sh'
bench_postgres() {
  OPENKV_BENCH_POSTGRES_URL="$OPENKV_TEST_POSTGRES_URL" \
    run_in_root "$1 --seconds 1 --warmup 0 --clients 4 --max-wait 0"
}
cover short 'on OPENKV_TEST_POSTGRES_URL; 1 s per workload, 4 clients, no wait for quiet' \
  bench_postgres <<'CMD'
scripts/bench-postgres.sh
CMD

# Not run here.
cover exclude 'the test command itself, which runs this script' <<<'./scripts/test.sh'
cover exclude "CI's entry point: exec ./scripts/test.sh" <<<'.ci/run'
cover exclude 'what ./scripts/test.sh runs (its last step)' <<<'cargo test --workspace --release'
cover exclude 'what ./scripts/test.sh runs (its very last step, after this script)' \
  <<<'scripts/fuzz.sh'
cover exclude '--open starts a browser; scripts/test.sh builds the docs (cargo doc, -D warnings)' \
  <<<'cargo doc -p openkv --open'
cover exclude 'scripts/test.sh builds denokv with this command, pinned (--version) into target/tools' \
  <<<'cargo install denokv --locked'
cover exclude "PostgreSQL's tool, with a placeholder schema" <<<'pg_dump -n <schema>'

# Named in prose, not commands to run.
for c in openkv 'openkv serve' 'openkv info' 'openkv backup' 'openkv --app NAME …' \
  'openkv serve --db postgres://…' denokv mkcert h2load 'openssl req -x509' 'kill -9' \
  'openkv serve --backup-to' 'denokv pitr sync' 'denokv serve --sync-from-s3' 'openkv restore' \
  'openkv token create' 'openkv export' 'openkv serve --data-dir'; do
  cover mention 'named in prose' <<<"$c"
done

# --- everything accounted for ----------------------------------------------------
unknown=()
for c in "${!shown[@]}"; do [[ -n "${handled[$c]:-}" ]] || unknown+=("$c"); done
if ((${#unknown[@]})); then
  printf 'readme-commands: %s shows a command this script does not know:\n' "$readme" >&2
  printf '  %s\n' "${unknown[@]}" >&2
fi
if ((${#stale[@]})); then
  printf 'readme-commands: this script handles a command %s no longer shows:\n' "$readme" >&2
  printf '  %s\n' "${stale[@]}" >&2
fi
((${#unknown[@]} + ${#stale[@]} == 0)) ||
  die "run it, probe it, or list it as excluded with the reason, in scripts/readme-commands.sh"

if ((list_only)); then
  printf '%s\n' "${table[@]}"
else
  step "all ${#shown[@]} commands of $readme handled"
fi
