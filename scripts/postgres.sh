#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests (the PostgreSQL backend's suite).
#
#   scripts/postgres.sh start DIR   initdb a cluster in DIR (which must exist and be empty),
#                                   start it on 127.0.0.1, create role and database `openkv`,
#                                   wait until it accepts connections, and print its URL on
#                                   stdout: postgres://openkv@127.0.0.1:PORT/openkv
#   scripts/postgres.sh standby DIR STANDBY_DIR
#                                   make STANDBY_DIR (existing, empty) a streaming hot standby
#                                   of the cluster `start` made in DIR: pg_basebackup -R from it,
#                                   started on another port of 127.0.0.1 with hot_standby = on
#                                   (read-only queries), and print its URL on stdout like
#                                   `start`. The standby replays the primary's writes a few
#                                   milliseconds later; `openkv_schema`s come with them.
#   scripts/postgres.sh halt DIR    crash that cluster or standby (`pg_ctl stop -m immediate`),
#                                   keeping DIR: what a test does to see a server die
#   scripts/postgres.sh resume DIR  start a halted one again (same port, same data; it
#                                   recovers, a standby streams on) and wait until it answers
#   scripts/postgres.sh stop DIR    stop that cluster or standby (fast shutdown) and remove DIR
#                                   (stop a standby before its primary, or either first: both
#                                   work).
#
# The server binaries (initdb, pg_ctl, postgres) are taken from the PATH, else from the newest
# /usr/lib/postgresql/*/bin; when neither has them, Debian's `postgresql` package is installed
# (root only). initdb refuses to run as root, so as root every server command runs as the
# unprivileged `postgres` user (created as a system user if the package did not); DIR is
# handed to that user. Authentication is `trust`, on 127.0.0.1 and the Unix socket in DIR only,
# for replication connections too (wal_level stays `replica`, the default, for standbys).
# fsync and synchronous_commit stay on: the tests rely on real durability.
#
# Environment:
#   OPENKV_POSTGRES_PORT   the port `start` uses (default: the first free one from 54329 up;
#                          a standby takes the first free one above its primary's).
#   OPENKV_POSTGRES_USER   the system user that runs the server when started as root
#                          (default: postgres).
set -euo pipefail

# runuser and useradd live in sbin, which a non-login root shell may not have in its PATH.
export PATH="$PATH:/usr/sbin:/sbin"

say() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}

usage() { die "usage: $0 start DIR | standby DIR STANDBY_DIR | halt DIR | resume DIR | stop DIR"; }

(($# >= 2)) || usage
command="$1"
if [[ "$command" == standby ]]; then
  [[ $# -eq 3 ]] || usage
  primary_dir="$2"
  [[ -d "$primary_dir" ]] || die "$primary_dir is not a directory"
  primary_dir="$(cd "$primary_dir" && pwd -P)"
  dir="$3"
else
  [[ $# -eq 2 ]] || usage
  dir="$2"
fi
[[ -d "$dir" ]] || die "$dir is not a directory"
dir="$(cd "$dir" && pwd -P)"
marker="$dir/openkv-postgres-cluster"

# The directory holding initdb, pg_ctl and postgres, or nothing.
find_bindir() {
  local initdb candidate
  if initdb="$(command -v initdb)" && command -v pg_ctl >/dev/null && command -v postgres >/dev/null; then
    dirname "$(readlink -f "$initdb")"
    return
  fi
  # Debian keeps the server binaries out of the PATH, one directory per major version.
  for candidate in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
    if [[ -x "$candidate/initdb" && -x "$candidate/pg_ctl" && -x "$candidate/postgres" ]]; then
      echo "$candidate"
      return
    fi
  done
}

# Runs a command as the server's user (as root), or as ourselves (otherwise), in DIR (or
# `in_dir`, when set): the caller's working directory may not be readable by that user.
as_owner() {
  if [[ "$(id -u)" -eq 0 ]]; then
    (cd "${in_dir:-$dir}" && runuser -u "$owner" -- "$@")
  else
    (cd "${in_dir:-$dir}" && "$@")
  fi
}

# Hands DIR to the server's user (as root), writes the marker, and makes DIR/data and
# DIR/sockets. Needs `bindir` and `owner`.
make_dirs() {
  if [[ "$(id -u)" -eq 0 ]]; then
    chown "$owner:" "$dir"
    chmod 700 "$dir"
    as_owner test -w "$dir" || die "$owner cannot write to $dir (is a parent directory closed to it?)"
  fi

  # Written first, so that `stop` may clean up after a start that failed half-way.
  {
    echo "bindir=$bindir"
    echo "owner=$owner"
  } >"$marker"

  as_owner mkdir -m 700 "$dir/data" "$dir/sockets"
  # Unix socket paths are limited to 107 bytes.
  ((${#dir} + 28 < 107)) || die "$dir is too long a path for a Unix socket directory"
}

# Starts the server of DIR/data with postgresql.auto.conf = SETTINGS plus its port: FIRST,
# else (unless FIXED is non-empty) the first free port from FIRST up (a port that refuses a
# connection is free, barring a race; a start that loses the race tries the next port). Waits
# until it accepts connections over TCP; sets `port` and records it in the marker.
#   launch FIRST FIXED SETTINGS
launch() {
  local fixed="$2" settings="$3" data="$dir/data" log="$dir/postgres.log" tries=1 started=
  port="$1"
  [[ -n "$fixed" ]] || tries=30
  while ((tries-- > 0)); do
    if [[ -z "$fixed" ]] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      port=$((port + 1))
      continue
    fi
    printf '%s\nport = %s\n' "$settings" "$port" | as_owner tee "$data/postgresql.auto.conf" >/dev/null
    if as_owner "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null; then
      started=1
      break
    fi
    if grep -q "could not bind\|Address already in use" "$log" 2>/dev/null && [[ -z "$fixed" ]]; then
      say "port $port was taken meanwhile: trying the next one"
      port=$((port + 1))
      continue
    fi
    cat "$log" >&2 || true
    die "the server did not start (log: $log)"
  done
  [[ -n "$started" ]] || die "no free port found from $1 up"
  echo "port=$port" >>"$marker"

  # pg_ctl -w waited for the server to accept connections; check it over TCP too.
  local deadline=$((SECONDS + 60))
  until "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U openkv -d postgres; do
    ((SECONDS < deadline)) || die "the server does not accept connections on 127.0.0.1:$port"
    sleep 0.2
  done
}

# Prints the URL of the server on `port` (and keeps it in DIR/url).
announce() {
  local url="postgres://openkv@127.0.0.1:$port/openkv"
  echo "$url" >"$dir/url"
  say "started on $url (log: $dir/postgres.log)"
  echo "$url"
}

start() {
  [[ -z "$(ls -A "$dir")" ]] || die "$dir is not empty"

  bindir="$(find_bindir)"
  if [[ -z "$bindir" ]]; then
    [[ "$(id -u)" -eq 0 ]] || die "PostgreSQL is not installed (no initdb/pg_ctl in PATH or /usr/lib/postgresql/*/bin), and only root can install it"
    say "PostgreSQL is not installed: installing Debian's postgresql package"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >&2
    bindir="$(find_bindir)"
    [[ -n "$bindir" ]] || die "installed postgresql, but still no initdb/pg_ctl/postgres"
  fi

  owner="$(id -un)"
  if [[ "$(id -u)" -eq 0 ]]; then
    owner="${OPENKV_POSTGRES_USER:-postgres}"
    if ! id -u "$owner" >/dev/null 2>&1; then
      say "creating the system user $owner (initdb refuses to run as root)"
      useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$owner"
    fi
  fi
  make_dirs

  local version data="$dir/data"
  version="$("$bindir/postgres" --version)"
  say "initdb ($version, $bindir) as $owner in $data"
  # --no-sync only skips initdb's final flush of the fresh files (the cluster is thrown away
  # anyway); the server itself runs with fsync on.
  if ! as_owner "$bindir/initdb" -D "$data" --username=openkv --auth=trust \
    --encoding=UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    die "initdb failed"
  fi
  as_owner tee "$data/pg_hba.conf" >/dev/null <<'EOF'
# openkv's throwaway test cluster: trust, local connections only.
local all         all              trust
host  all         all 127.0.0.1/32 trust
local replication all              trust
host  replication all 127.0.0.1/32 trust
EOF

  launch "${OPENKV_POSTGRES_PORT:-54329}" "${OPENKV_POSTGRES_PORT:+fixed}" "\
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/sockets'
max_connections = 300
fsync = on
synchronous_commit = on
full_page_writes = on
log_min_messages = warning"
  "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U openkv -d postgres \
    -c "CREATE DATABASE openkv" >&2

  announce
}

standby() {
  [[ -z "$(ls -A "$dir")" ]] || die "$dir is not empty"
  local primary_marker="$primary_dir/openkv-postgres-cluster" primary_port
  [[ -f "$primary_marker" ]] || die "$primary_dir holds no cluster started by $0 (no $primary_marker)"
  bindir="$(sed -n 's/^bindir=//p' "$primary_marker")"
  owner="$(sed -n 's/^owner=//p' "$primary_marker")"
  primary_port="$(sed -n 's/^port=//p' "$primary_marker")"
  [[ -n "$primary_port" && -f "$primary_dir/data/postmaster.pid" ]] ||
    die "the cluster in $primary_dir is not running"
  [[ ! -f "$primary_dir/data/standby.signal" ]] || die "$primary_dir holds a standby, not a primary"

  # A primary started by an older version of this script lets no replication connection in.
  if ! grep -q '^host  *replication' "$primary_dir/data/pg_hba.conf"; then
    say "allowing replication connections to the primary (pg_hba.conf, reload)"
    in_dir="$primary_dir" as_owner tee -a "$primary_dir/data/pg_hba.conf" >/dev/null <<'EOF'
local replication all              trust
host  replication all 127.0.0.1/32 trust
EOF
    in_dir="$primary_dir" as_owner "$bindir/pg_ctl" -D "$primary_dir/data" reload >/dev/null
  fi

  make_dirs
  echo "standby_of=$primary_dir" >>"$marker"

  # -R: standby.signal and primary_conninfo (in postgresql.auto.conf, with the primary's
  # settings); --checkpoint=fast: start now, not at the primary's next checkpoint; --no-sync:
  # as initdb's (the standby itself runs with fsync on).
  say "pg_basebackup from 127.0.0.1:$primary_port as $owner into $dir/data"
  if ! as_owner "$bindir/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U openkv \
    -D "$dir/data" -R -X stream --checkpoint=fast --no-sync >"$dir/basebackup.log" 2>&1; then
    cat "$dir/basebackup.log" >&2
    die "pg_basebackup failed"
  fi
  # The primary's settings and primary_conninfo, then ours: in this file the last one wins.
  local settings
  settings="$(as_owner cat "$dir/data/postgresql.auto.conf" | grep -v '^port = ')"
  launch "$((primary_port + 1))" "" "$settings
unix_socket_directories = '$dir/sockets'
hot_standby = on"
  local recovering
  recovering="$("$bindir/psql" -X -At -h 127.0.0.1 -p "$port" -U openkv -d postgres \
    -c "select pg_is_in_recovery()")"
  [[ "$recovering" == t ]] || die "the server in $dir is not a standby (pg_is_in_recovery() is $recovering)"

  announce
}

stop() {
  # Only ever delete a directory this script made.
  [[ -f "$marker" ]] || die "$dir holds no cluster started by $0 (no $marker): not touching it"
  local bindir owner
  bindir="$(sed -n 's/^bindir=//p' "$marker")"
  owner="$(sed -n 's/^owner=//p' "$marker")"
  if [[ -f "$dir/data/postmaster.pid" ]]; then
    if ! as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null; then
      say "fast shutdown failed: immediate shutdown"
      as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null || true
    fi
  fi
  rm -rf -- "$dir"
  say "stopped and removed $dir"
}

# The binaries, owner and port recorded by `start`/`standby` (the last port= line).
read_marker() {
  [[ -f "$marker" ]] || die "$dir holds no cluster started by $0 (no $marker): not touching it"
  bindir="$(sed -n 's/^bindir=//p' "$marker")"
  owner="$(sed -n 's/^owner=//p' "$marker")"
  port="$(sed -n 's/^port=//p' "$marker" | tail -n 1)"
}

halt() {
  read_marker
  [[ -f "$dir/data/postmaster.pid" ]] || die "the server in $dir is not running"
  as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null
  say "halted (immediate shutdown) the server on 127.0.0.1:$port; $dir kept"
}

resume() {
  read_marker
  [[ ! -f "$dir/data/postmaster.pid" ]] || die "the server in $dir is running"
  as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null ||
    die "the server did not start again (log: $dir/postgres.log)"
  local deadline=$((SECONDS + 60))
  until "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U openkv -d postgres; do
    ((SECONDS < deadline)) || die "the server does not accept connections on 127.0.0.1:$port"
    sleep 0.2
  done
  say "resumed on 127.0.0.1:$port"
}

case "$command" in
  start) start ;;
  standby) standby ;;
  halt) halt ;;
  resume) resume ;;
  stop) stop ;;
  *) usage ;;
esac
