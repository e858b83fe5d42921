# Functions to start and stop a throwaway PostgreSQL cluster for tests and demos. Source this file.
#
#   throwaway_pg_start   creates a cluster in a new temporary folder, starts it on a free loopback port with
#                        password (scram) authentication, and exports THROWAWAY_PG_URL, THROWAWAY_PG_DIR.
#   throwaway_pg_stop    stops it and removes the folder.
#
# PostgreSQL refuses to run as root, so when run as root the server runs as the `postgres` user.

throwaway_pg_bindir() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
  done
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
  return 1
}

throwaway_pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

throwaway_pg_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' 2>/dev/null \
    || echo $((20000 + RANDOM % 20000))
}

throwaway_pg_start() {
  local bindir port password
  bindir=$(throwaway_pg_bindir) || { echo "throwaway-postgres: no initdb found; install PostgreSQL (apt-get install -y postgresql)" >&2; return 1; }
  THROWAWAY_PG_DIR=$(mktemp -d /tmp/migrator-pg.XXXXXX)
  chmod 755 "$THROWAWAY_PG_DIR"
  password=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
  printf '%s\n' "$password" > "$THROWAWAY_PG_DIR/pwfile"
  if [ "$(id -u)" = 0 ]; then chown -R postgres "$THROWAWAY_PG_DIR"; fi
  throwaway_pg_as_owner "$bindir/initdb" -D "$THROWAWAY_PG_DIR/data" -U postgres --pwfile="$THROWAWAY_PG_DIR/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$THROWAWAY_PG_DIR/initdb.log" 2>&1 \
    || { cat "$THROWAWAY_PG_DIR/initdb.log" >&2; return 1; }
  rm -f "$THROWAWAY_PG_DIR/pwfile"
  port=$(throwaway_pg_free_port)
  # fsync off: a throwaway cluster trades durability for speed. Many connections: tests run in parallel.
  throwaway_pg_as_owner "$bindir/pg_ctl" -D "$THROWAWAY_PG_DIR/data" -l "$THROWAWAY_PG_DIR/server.log" -w -t 60 \
    -o "-p $port -k $THROWAWAY_PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null || { cat "$THROWAWAY_PG_DIR/server.log" >&2; return 1; }
  THROWAWAY_PG_BINDIR=$bindir
  THROWAWAY_PG_PORT=$port
  THROWAWAY_PG_URL="postgresql://postgres:${password}@127.0.0.1:${port}/postgres"
  export THROWAWAY_PG_DIR THROWAWAY_PG_URL THROWAWAY_PG_PORT THROWAWAY_PG_BINDIR
}

throwaway_pg_stop() {
  [ -n "${THROWAWAY_PG_DIR:-}" ] && [ -d "$THROWAWAY_PG_DIR" ] || return 0
  throwaway_pg_as_owner "$THROWAWAY_PG_BINDIR/pg_ctl" -D "$THROWAWAY_PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$THROWAWAY_PG_DIR"
  THROWAWAY_PG_DIR=
}
