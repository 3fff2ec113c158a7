#!/usr/bin/env bash
# Starts the services the scale-out tests need, on loopback only, and prints the environment for
# them. Idempotent: services already running are reused and the same exports are printed again.
#
#   eval "$(scripts/test-services.sh)"          # start (or reuse) and export
#   scripts/test-services.sh stop                # stop the Garage node and the PostgreSQL cluster
#
# - Garage 2.5 (S3-compatible object store), a throwaway single node: S3 API 127.0.0.1:3900,
#   RPC 3901, admin 3903; sqlite metadata, replication factor 1, no fsync. Bucket `arca-test`,
#   one key with read/write/owner on it. Binary: $GARAGE_BIN, else `garage` on PATH, else
#   ~/.local/garage/bin/garage (install: cargo install garage --version 2.5.0 --locked --root ~/.local/garage).
# - PostgreSQL 15 (Debian's package, cluster 15/main) on 127.0.0.1:5432 with a role `arca`
#   (password `arca`, CREATEDB).
#
# Only `export` lines go to stdout; diagnostics go to stderr. State and logs live in
# $ARCA_TEST_SERVICES_DIR (default /tmp/arca-test-services): garage/garage.toml, garage/server.log,
# garage/garage.pid, and env (the key) so a re-run prints the same exports.
# For trying the script beside running services: ARCA_TEST_S3_PORT (3900), ARCA_TEST_PG_CLUSTER
# (main), ARCA_TEST_PG_PORT (5432).
set -euo pipefail

STATE="${ARCA_TEST_SERVICES_DIR:-/tmp/arca-test-services}"
GDIR="$STATE/garage"
CONF="$GDIR/garage.toml"
LOG="$GDIR/server.log"
PIDFILE="$GDIR/garage.pid"
ENVFILE="$STATE/env"
S3_PORT="${ARCA_TEST_S3_PORT:-3900}"  # RPC and admin ports follow: +1 and +3
RPC_PORT=$((S3_PORT + 1)) ADMIN_PORT=$((S3_PORT + 3))
BUCKET=arca-test
KEY_NAME=arca-test-key
REGION=garage
ENDPOINT="http://127.0.0.1:${S3_PORT}"
PG_VERSION=15 PG_CLUSTER="${ARCA_TEST_PG_CLUSTER:-main}" PG_PORT="${ARCA_TEST_PG_PORT:-5432}"

say() { echo "test-services: $*" >&2; }
die() { say "error: $*"; exit 1; }

GARAGE_BIN="${GARAGE_BIN:-$(command -v garage 2>/dev/null || echo "$HOME/.local/garage/bin/garage")}"
g() { "$GARAGE_BIN" -c "$CONF" "$@"; }

garage_pid() {
  local pid
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$CONF"; then
    echo "$pid"
  fi
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -n -u postgres -- "$@"; fi
}

if [ "${1:-}" = stop ]; then
  pid="$(garage_pid)"
  if [ -n "$pid" ]; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    say "stopped garage (pid $pid)"
  else
    say "garage was not running"
  fi
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" stop 2>/dev/null && say "stopped postgresql $PG_VERSION/$PG_CLUSTER" \
      || say "postgresql $PG_VERSION/$PG_CLUSTER was not running"
  fi
  exit 0
fi
[ -z "${1:-}" ] || die "unknown argument $1 (use no argument to start, or 'stop')"

# ---------------------------------------------------------------- Garage
[ -x "$GARAGE_BIN" ] || die "garage binary not found at $GARAGE_BIN; install it with:
  cargo install garage --version 2.5.0 --locked --root \"\$HOME/.local/garage\""
command -v curl >/dev/null 2>&1 || die "curl is needed (apt-get install curl)"
write_config() {
  mkdir -p "$GDIR/meta" "$GDIR/data"
  chmod 700 "$STATE" "$GDIR"
  # A fresh node. rpc_secret: 32 bytes hex; the admin token is any string.
  local rpc_secret admin_token
  rpc_secret="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  admin_token="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  (umask 077; cat >"$CONF" <<EOF
metadata_dir = "$GDIR/meta"
data_dir = "$GDIR/data"
db_engine = "sqlite"
replication_factor = 1
metadata_fsync = false
data_fsync = false

rpc_bind_addr = "127.0.0.1:${RPC_PORT}"
rpc_public_addr = "127.0.0.1:${RPC_PORT}"
rpc_secret = "${rpc_secret}"

[s3_api]
s3_region = "${REGION}"
api_bind_addr = "127.0.0.1:${S3_PORT}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:${ADMIN_PORT}"
admin_token = "${admin_token}"
EOF
  )
  rm -f "$ENVFILE"
}

# Starts the node and waits until it answers on RPC; on failure shows its log and returns 1.
start_garage() {
  say "starting garage $("$GARAGE_BIN" --version 2>/dev/null | head -1) (log: $LOG)"
  # setsid: the node outlives this script and the shell that evals it; no stdio tied to $(...).
  RUST_LOG="${RUST_LOG:-garage=info}" setsid "$GARAGE_BIN" -c "$CONF" server >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 150); do
    g status >/dev/null 2>&1 && return 0
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      say "garage exited; the end of its log:"; tail -n 30 "$LOG" >&2; return 1
    fi
    sleep 0.1
  done
  say "garage did not answer on RPC within 15 s; the end of its log:"; tail -n 30 "$LOG" >&2
  kill "$(cat "$PIDFILE")" 2>/dev/null || true
  return 1
}

[ -f "$CONF" ] || write_config
pid="$(garage_pid)"
if [ -n "$pid" ]; then
  say "garage already running (pid $pid, $GDIR)"
else
  for port in "$S3_PORT" "$RPC_PORT" "$ADMIN_PORT"; do
    if command -v ss >/dev/null 2>&1 && ss -Hltn "sport = :$port" | grep -q .; then
      die "port $port on this machine is taken by another process (not the garage of $GDIR):
$(ss -Hltnp "sport = :$port" 2>/dev/null)
stop it, or stop that garage, and run this again"
    fi
  done
  if ! start_garage; then
    # The node is throwaway: if it will not come up on its old state, start over.
    broken="$GDIR.broken.$(date +%s)"
    say "moving the old node's state to $broken and starting a fresh node"
    mv "$GDIR" "$broken"
    write_config
    start_garage || die "garage does not start (log: $LOG)"
  fi
fi

# Layout: one node, one zone (the capacity is a weight, not a quota). Only when not yet assigned.
if g status 2>/dev/null | grep -q "NO ROLE ASSIGNED"; then
  node_id="$(g node id -q 2>/dev/null | cut -d@ -f1)"
  version="$(g layout show 2>/dev/null | sed -n 's/.*[Cc]urrent cluster layout version: *\([0-9]*\).*/\1/p' | head -1)"
  g layout assign -z dc1 -c 1G "$node_id" >&2
  g layout apply --version "$(( ${version:-0} + 1 ))" >&2
fi

# Key: reuse the one recorded in $ENVFILE while garage still knows it, else make one.
KEY_ID="" SECRET=""
if [ -f "$ENVFILE" ]; then
  # shellcheck disable=SC1090
  . "$ENVFILE"
fi
if [ -z "$KEY_ID" ] || ! g key info "$KEY_ID" >/dev/null 2>&1; then
  out="$(g key create "$KEY_NAME")"
  KEY_ID="$(awk '/Key ID:/ {print $3}' <<<"$out")"
  SECRET="$(awk '/Secret key:/ {print $3}' <<<"$out")"
  [ -n "$KEY_ID" ] && [ -n "$SECRET" ] || die "could not read the new key from 'garage key create':
$out"
  (umask 077; printf 'KEY_ID=%s\nSECRET=%s\n' "$KEY_ID" "$SECRET" >"$ENVFILE")
  say "created key $KEY_ID"
fi
g bucket info "$BUCKET" >/dev/null 2>&1 || { g bucket create "$BUCKET" >&2; }
g bucket allow --read --write --owner "$BUCKET" --key "$KEY_ID" >/dev/null

# Ready when a signed listing of the bucket succeeds (the first seconds after a layout change
# can answer 503).
for i in $(seq 1 100); do
  code="$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:${REGION}:s3" --user "$KEY_ID:$SECRET" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$ENDPOINT/$BUCKET?list-type=2&max-keys=1" || true)"
  [ "$code" = 200 ] && break
  [ "$i" = 100 ] && die "garage's S3 API at $ENDPOINT does not list bucket $BUCKET (last HTTP status $code); log: $LOG"
  sleep 0.2
done
say "garage ready: $ENDPOINT bucket $BUCKET"

# ---------------------------------------------------------------- PostgreSQL
command -v pg_ctlcluster >/dev/null 2>&1 && [ -x "/usr/lib/postgresql/$PG_VERSION/bin/postgres" ] \
  || die "PostgreSQL $PG_VERSION is not installed (apt-get install postgresql-$PG_VERSION)"
if ! pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1==v && $2==c {f=1} END {exit !f}'; then
  say "creating cluster $PG_VERSION/$PG_CLUSTER"
  pg_createcluster "$PG_VERSION" "$PG_CLUSTER" --port "$PG_PORT" >&2
fi
port="$(pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1==v && $2==c {print $3}')"
[ "$port" = "$PG_PORT" ] || die "cluster $PG_VERSION/$PG_CLUSTER is configured for port $port, not $PG_PORT"
if pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1==v && $2==c && $4 ~ /online/ {f=1} END {exit !f}'; then
  say "postgresql $PG_VERSION/$PG_CLUSTER already running"
else
  say "starting postgresql $PG_VERSION/$PG_CLUSTER (log: /var/log/postgresql/postgresql-$PG_VERSION-$PG_CLUSTER.log)"
  pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start >&2 </dev/null
fi
for i in $(seq 1 100); do
  pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break
  [ "$i" = 100 ] && die "postgresql does not accept connections on 127.0.0.1:$PG_PORT"
  sleep 0.2
done
as_postgres psql -q -X -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres >&2 <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'arca') THEN
    CREATE ROLE arca LOGIN CREATEDB PASSWORD 'arca';
  ELSE
    ALTER ROLE arca LOGIN CREATEDB PASSWORD 'arca';
  END IF;
END
$$;
SQL
PG_URL="postgres://arca:arca@127.0.0.1:${PG_PORT}/postgres"
PGCONNECT_TIMEOUT=5 psql -X -q -At "$PG_URL" -c 'select 1' >/dev/null \
  || die "cannot log in as arca at 127.0.0.1:$PG_PORT (see pg_hba.conf of $PG_VERSION/$PG_CLUSTER)"
say "postgresql ready: 127.0.0.1:$PG_PORT role arca"

printf "export ARCA_TEST_S3='s3://%s?endpoint=%s&region=%s'\n" "$BUCKET" "$ENDPOINT" "$REGION"
printf "export AWS_ACCESS_KEY_ID='%s'\n" "$KEY_ID"
printf "export AWS_SECRET_ACCESS_KEY='%s'\n" "$SECRET"
printf "export ARCA_TEST_POSTGRES='%s'\n" "$PG_URL"
