#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the test suites: Debian's postgresql, a data directory under
# a temp dir, a free port, run as a non-root user (postgres refuses to run as root).
#   tests/postgres/cluster.sh start DIR   -> prints the cluster's URL (postgres://tora@127.0.0.1:PORT/postgres)
#   tests/postgres/cluster.sh stop DIR
# The cluster trusts local TCP connections from 127.0.0.1 only; the role `tora` is a superuser so
# each test can CREATE DATABASE a fresh one of its own.
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?data directory}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bin" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  else
    echo "cluster.sh: needs Debian's postgresql: sudo apt-get install postgresql" >&2
    exit 1
  fi
fi
# Run the server as the directory's owner: `nobody` when we are root, ourselves otherwise.
as() { if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi; }

case $cmd in
start)
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown nobody:nogroup "$dir"; fi
  chmod 700 "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as "$bin/initdb" -D "$dir/data" -U tora --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1
  fi
  # TORA_PG_TLS=DIR (its server.crt and server.key): TLS on, and every connection but those to
  # the `postgres` database (where tests make theirs) must use it.
  tls=""
  if [ -n "${TORA_PG_TLS:-}" ]; then
    cp "$TORA_PG_TLS/server.crt" "$TORA_PG_TLS/server.key" "$dir/data/"
    chmod 600 "$dir/data/server.key"
    if [ "$(id -u)" = 0 ]; then chown nobody:nogroup "$dir/data/server.crt" "$dir/data/server.key"; fi
    printf '%s\n' 'local all all trust' 'host postgres all 127.0.0.1/32 trust' \
      'hostssl all all 127.0.0.1/32 trust' 'host all all 127.0.0.1/32 reject' >"$dir/data/pg_hba.conf"
    tls="-c ssl=on"
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # Sized for test suites: many small databases, fsync off (a crash of the box loses only tests).
  as "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400 -c shared_buffers=128MB $tls" \
    start >/dev/null
  echo "postgres://tora@127.0.0.1:$port/postgres"
  ;;
stop)
  if [ -f "$dir/data/postmaster.pid" ]; then as "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null || true; fi
  ;;
*)
  echo "usage: $0 start|stop DIR" >&2
  exit 2
  ;;
esac
