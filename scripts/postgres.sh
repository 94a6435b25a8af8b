#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests (the PostgreSQL backend's suite).
#
#   scripts/postgres.sh start DIR   initdb a cluster in DIR (which must exist and be empty),
#                                   start it on 127.0.0.1, create role and database `openkv`,
#                                   wait until it accepts connections, and print its URL on
#                                   stdout: postgres://openkv@127.0.0.1:PORT/openkv
#   scripts/postgres.sh stop DIR    stop that cluster (fast shutdown) and remove DIR.
#
# The server binaries (initdb, pg_ctl, postgres) are taken from the PATH, else from the newest
# /usr/lib/postgresql/*/bin; when neither has them, Debian's `postgresql` package is installed
# (root only). initdb refuses to run as root, so as root every server command runs as the
# unprivileged `postgres` user (created as a system user if the package did not); DIR is
# handed to that user. Authentication is `trust`, on 127.0.0.1 and the Unix socket in DIR only.
# fsync and synchronous_commit stay on: the tests rely on real durability.
#
# Environment:
#   OPENKV_POSTGRES_PORT   the port to use (default: the first free one from 54329 up).
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

usage() { die "usage: $0 start DIR | stop DIR"; }

[[ $# -eq 2 ]] || usage
command="$1"
dir="$2"
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

# Runs a command as the server's user (as root), or as ourselves (otherwise), in DIR: the
# caller's working directory may not be readable by that user.
as_owner() {
  if [[ "$(id -u)" -eq 0 ]]; then
    (cd "$dir" && runuser -u "$owner" -- "$@")
  else
    (cd "$dir" && "$@")
  fi
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
    chown "$owner:" "$dir"
    chmod 700 "$dir"
    as_owner test -w "$dir" || die "$owner cannot write to $dir (is a parent directory closed to it?)"
  fi

  # Written first, so that `stop` may clean up after a start that failed half-way.
  {
    echo "bindir=$bindir"
    echo "owner=$owner"
  } >"$marker"

  local data="$dir/data" sockets="$dir/sockets" log="$dir/postgres.log"
  as_owner mkdir -m 700 "$data" "$sockets"
  # Unix socket paths are limited to 107 bytes.
  ((${#sockets} + 20 < 107)) || die "$dir is too long a path for a Unix socket directory"

  local version
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
local all all              trust
host  all all 127.0.0.1/32 trust
EOF

  # A port: the one asked for, else the first free one from 54329 up (a port that refuses a
  # connection is free, barring a race; a start that loses the race tries the next port).
  local port="${OPENKV_POSTGRES_PORT:-54329}" tries=1 started=
  [[ -n "${OPENKV_POSTGRES_PORT:-}" ]] || tries=30
  while ((tries-- > 0)); do
    if [[ -z "${OPENKV_POSTGRES_PORT:-}" ]] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      port=$((port + 1))
      continue
    fi
    as_owner tee "$data/postgresql.auto.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sockets'
max_connections = 300
fsync = on
synchronous_commit = on
full_page_writes = on
log_min_messages = warning
EOF
    if as_owner "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null; then
      started=1
      break
    fi
    if grep -q "could not bind\|Address already in use" "$log" 2>/dev/null && [[ -z "${OPENKV_POSTGRES_PORT:-}" ]]; then
      say "port $port was taken meanwhile: trying the next one"
      port=$((port + 1))
      continue
    fi
    cat "$log" >&2 || true
    die "the server did not start (log: $log)"
  done
  [[ -n "$started" ]] || die "no free port found from 54329 up"
  echo "port=$port" >>"$marker"

  # pg_ctl -w waited for the server to accept connections; check it over TCP too.
  local deadline=$((SECONDS + 60))
  until "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U openkv -d postgres; do
    ((SECONDS < deadline)) || die "the server does not accept connections on 127.0.0.1:$port"
    sleep 0.2
  done
  "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U openkv -d postgres \
    -c "CREATE DATABASE openkv" >&2

  local url="postgres://openkv@127.0.0.1:$port/openkv"
  echo "$url" >"$dir/url"
  say "started on $url (log: $log)"
  echo "$url"
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

case "$command" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
