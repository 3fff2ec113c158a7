# bench/lib-server.sh - shared by the server benchmarks (sourced, not run): start `arca server`,
# wait for it, and set up a tenant, a repository and a device through `arca admin`.
#
# Needs ARCA (the binary) and OUT (a scratch directory). After `start_server ARGS...`:
#   SERVER_PID, SERVER_URL (http://127.0.0.1:PORT) and the log in $OUT/server.log.
# After `setup_device TENANT REPO DEVICE`: DEVICE_TOKEN (the device's token for the repository).

ADMIN_PASSWORD=${ADMIN_PASSWORD:-bench-admin-password}

# start_server LOGNAME ARGS... : starts `arca server ARGS...` on a free port of 127.0.0.1.
start_server() {
  local log=$OUT/$1.log; shift
  : > "$log"
  ARCA_ADMIN_PASSWORD=$ADMIN_PASSWORD "$ARCA" server --listen 127.0.0.1:0 "$@" > "$log" 2>&1 &
  SERVER_PID=$!
  SERVER_URL=
  for _ in $(seq 300); do
    SERVER_URL=$(sed -n 's/^arca server listening on \(http[^ ]*\).*/\1/p' "$log" | head -1)
    [ -n "$SERVER_URL" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "arca server failed to start:" >&2; cat "$log" >&2; return 1; }
    sleep 0.1
  done
  [ -n "$SERVER_URL" ] || { echo "arca server did not say where it listens:" >&2; cat "$log" >&2; return 1; }
  curl -fsS "$SERVER_URL/healthz" > /dev/null
}

stop_server() {
  [ -n "${SERVER_PID:-}" ] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

# setup_device TENANT REPO DEVICE : as the provider admin, creates the tenant, its repository and a
# device bound to it; sets DEVICE_TOKEN.
setup_device() {
  local admin json
  admin=$(ARCA_SERVER=$SERVER_URL ARCA_ADMIN_PASSWORD=$ADMIN_PASSWORD "$ARCA" admin login --user admin --quiet)
  ARCA_SERVER=$SERVER_URL ARCA_TOKEN=$admin "$ARCA" admin tenant create "$1" > /dev/null
  ARCA_SERVER=$SERVER_URL ARCA_TOKEN=$admin "$ARCA" admin repo create --tenant "$1" "$2" > /dev/null
  json=$(ARCA_SERVER=$SERVER_URL ARCA_TOKEN=$admin "$ARCA" --json admin device add --tenant "$1" "$3" --repo "$2")
  DEVICE_TOKEN=$(printf '%s' "$json" | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
}

# proc_kib PID FIELD : a /proc/PID/status field (VmRSS, VmHWM) in KiB.
proc_kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }
