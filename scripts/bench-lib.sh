# shellcheck shell=bash
# What the benchmark scripts (scripts/bench-*) share. Source it from the repository's root:
#
#   . scripts/bench-lib.sh
#   bench_init NAME          the name in messages; unsets the MIGRATOR_* variables (the scripts' flags say everything)
#   bench_build              BENCH_BIN: the release build (scripts/build-release, .build-release), or BENCH_BINARY
#   bench_server             BENCH_ADMIN_URL (exported; the Python side reads it from the environment, never from
#                            its command line): DATABASE_URL, or a throwaway server (scripts/throwaway-postgres.sh)
#                            started here; BENCH_SERVER_KIND, BENCH_PREFIX (every database the run makes starts with
#                            it), BENCH_WORK (a temporary folder); all removed at exit (the trap below)
#   bench_db_create NAME [TEMPLATE]   CREATE DATABASE NAME [TEMPLATE TEMPLATE]; NAME must start with BENCH_PREFIX
#   bench_db_url NAME        the admin URL with another database (for a command's DATABASE_URL, never printed)
#   bench_header TITLE       the machine (nproc, load average), server (host:port), commit, binary lines
#   bench_python SCRIPT ARGS...       python3 scripts/SCRIPT with --binary, --psql, --prefix, --work and ARGS
#
# Nothing printed carries a password or a full connection string.

bench_init() {
  BENCH_NAME=$1
  BENCH_START=$(date +%s.%N)
  BENCH_ADMIN_URL=
  BENCH_WORK=
  BENCH_STARTED_THROWAWAY=0
  BENCH_PREFIX="migrator_${BENCH_NAME//-/_}_$$_$(date +%s)_"
  unset MIGRATOR_ROLES MIGRATOR_FORCE_ROLES MIGRATOR_SKIP_ROLES MIGRATOR_MIGRATIONS MIGRATOR_LOG_LEVEL \
    MIGRATOR_LOG_FORMAT MIGRATOR_SCHEMA MIGRATOR_LOCK_TIMEOUT MIGRATOR_STATEMENT_TIMEOUT MIGRATOR_DDL_LOCK_TIMEOUT \
    MIGRATOR_ALLOW_OUT_OF_ORDER MIGRATOR_PROJECT_TABLE MIGRATOR_PROJECT_ID_COLUMN MIGRATOR_PROJECT_NAME_COLUMN \
    MIGRATOR_CONTENT_TYPE MIGRATOR_GROUP_NAME MIGRATOR_DIRECT_URL MIGRATOR_POLL_INTERVAL MIGRATOR_RECONCILE_INTERVAL \
    MIGRATOR_HTTP_ADDRESS MIGRATOR_NO_MIGRATE MIGRATOR_SYNC_BATCH_SIZE MIGRATOR_SYNC_TIME_BUDGET MIGRATOR_LINT
  command -v python3 >/dev/null || bench_fail "python3 is needed"
  BENCH_PSQL=$(command -v psql) || bench_fail "psql is needed (apt-get install -y postgresql-client)"
  export BENCH_PSQL
  trap bench_cleanup EXIT
}

bench_fail() {
  echo "${BENCH_NAME:-bench}: $*" >&2
  exit 2
}

bench_positive() {  # NAME VALUE: exits unless VALUE is a positive whole number
  case $2 in '' | *[!0-9]* | 0) bench_fail "$1 must be a positive whole number; got '$2'" ;; esac
}

bench_build() {
  if [ -n "${BENCH_BINARY:-}" ]; then
    BENCH_BIN=$BENCH_BINARY
    [ -x "$BENCH_BIN" ] || bench_fail "BENCH_BINARY: no executable at $BENCH_BIN"
    BENCH_BIN_NOTE="$BENCH_BIN (BENCH_BINARY, not built here)"
  else
    BENCH_BIN=$(scripts/build-release .build-release)  # as users get it (release, static Swift runtime)
    BENCH_BIN_NOTE="$BENCH_BIN (scripts/build-release)"
  fi
  case $BENCH_BIN in /*) ;; *) BENCH_BIN=$PWD/$BENCH_BIN ;; esac
  BENCH_COMMIT=$(bench_commit)
}

bench_cleanup() {
  local db
  if [ -n "$BENCH_ADMIN_URL" ]; then
    # Every database this run created carries the prefix; DROP ... WITH (FORCE) ends a stopped command's backends.
    for db in $("$BENCH_PSQL" "$BENCH_ADMIN_URL" -X -Atc "select datname from pg_database where starts_with(datname, '$BENCH_PREFIX')" 2>/dev/null); do
      "$BENCH_PSQL" "$BENCH_ADMIN_URL" -X -q -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 \
        || echo "$BENCH_NAME: could not drop database $db" >&2
    done
  fi
  [ -n "$BENCH_WORK" ] && rm -rf "$BENCH_WORK"
  if [ "$BENCH_STARTED_THROWAWAY" = 1 ]; then throwaway_pg_stop || true; fi
}

bench_server() {
  if [ -n "${DATABASE_URL:-}" ]; then
    BENCH_ADMIN_URL=$DATABASE_URL
    BENCH_SERVER_KIND="server from DATABASE_URL"
  else
    # shellcheck source=scripts/throwaway-postgres.sh
    . scripts/throwaway-postgres.sh
    echo "$BENCH_NAME: no DATABASE_URL given: starting a throwaway PostgreSQL..." >&2
    BENCH_STARTED_THROWAWAY=1
    throwaway_pg_start
    BENCH_ADMIN_URL=$THROWAWAY_PG_URL
    BENCH_SERVER_KIND="throwaway server ($THROWAWAY_PG_BINDIR, fsync off)"
  fi
  unset DATABASE_URL  # each command gets its own database's URL
  export BENCH_ADMIN_URL
  BENCH_WORK=$(mktemp -d "/tmp/migrator-$BENCH_NAME.XXXXXX")
  bench_db_url x >/dev/null  # fails early on a URL that is not postgres://
}

bench_db_url() {
  python3 -c '
import os, sys, urllib.parse
u = urllib.parse.urlsplit(os.environ["BENCH_ADMIN_URL"])
if u.scheme not in ("postgres", "postgresql"):
    sys.exit("DATABASE_URL must be a postgres:// or postgresql:// URL")
print(urllib.parse.urlunsplit(u._replace(path="/" + urllib.parse.quote(sys.argv[1]))))' "$1"
}

bench_host_port() {
  python3 -c '
import os, urllib.parse
u = urllib.parse.urlsplit(os.environ["BENCH_ADMIN_URL"])
host = u.hostname or "(default host)"
print(f"[{host}]:{u.port or 5432}" if ":" in host else f"{host}:{u.port or 5432}")'
}

bench_db_create() {  # NAME [TEMPLATE]
  case $1 in "$BENCH_PREFIX"*) ;; *) bench_fail "bench_db_create: $1 does not start with $BENCH_PREFIX" ;; esac
  local sql="CREATE DATABASE \"$1\""
  [ -n "${2:-}" ] && sql="$sql TEMPLATE \"$2\""
  "$BENCH_PSQL" "$BENCH_ADMIN_URL" -X -q -v ON_ERROR_STOP=1 -c "$sql" >/dev/null
}

bench_commit() {
  local commit
  commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
  if [ "$commit" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    commit="$commit (with uncommitted changes)"
  fi
  echo "$commit"
}

bench_header() {  # (may run in a subshell: sets nothing)
  echo "== $1 =="
  echo "date:        $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine:     $(uname -sr), nproc $(nproc)$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: */, /'), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
  echo "server:      PostgreSQL $("$BENCH_PSQL" "$BENCH_ADMIN_URL" -X -Atc 'show server_version') at $(bench_host_port) over TCP, $BENCH_SERVER_KIND"
  echo "migrator:    commit $BENCH_COMMIT, $BENCH_BIN_NOTE"
  echo "psql:        $("$BENCH_PSQL" --version)"
}

bench_python() {  # SCRIPT ARGS...
  local script=$1
  shift
  python3 -u "scripts/$script" --binary "$BENCH_BIN" --psql "$BENCH_PSQL" --prefix "$BENCH_PREFIX" --work "$BENCH_WORK" \
    --commit "$BENCH_COMMIT" "$@"
}

bench_elapsed() {
  awk -v a="$BENCH_START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }'
}
