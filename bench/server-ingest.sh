#!/usr/bin/env bash
# bench/server-ingest.sh - one client's backup through `arca server` on loopback against the same
# client writing a local repository (issue 3: ingest over loopback should reach 80% of local).
#
# Both backups are first backups of $DATA/linux into empty repositories, with the source read once
# beforehand; the modes take turns within each run. Modes:
#   embedded (always): `arca server --data-dir DIR` (SQLite metadata, objects on local disk);
#   scale-out (SCALEOUT=1): `arca server --database postgres://… --store s3://…`, a fresh
#     PostgreSQL database and a fresh S3 prefix per run (PostgreSQL and Garage on loopback).
# Each server run is set up as an operator would: provider admin from ARCA_ADMIN_PASSWORD,
# `arca admin login`, tenant, repository, device; the client uses the device's token.
#
# Environment: DATA=/work/benchdata (built by ../shared/bench/mkdata.sh), RUNS=3,
# SCALEOUT_RUNS=$RUNS, ARCA=target/release/arca (built if missing), OUT=bench/out/server.
# Scale-out: PG_URL=postgres://arca:arca@127.0.0.1:5432 (a role that may CREATE DATABASE; by default
# ARCA_TEST_POSTGRES without its database name),
# ARCA_TEST_S3='s3://BUCKET?endpoint=URL&region=R' with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
# (what scripts/test-services.sh exports); KEEP=1 keeps each run's database and S3 prefix (by
# default the database is dropped and, if the AWS CLI is installed, the prefix emptied).
# Prints each run and the medians, and writes $OUT/summary.md.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-/work/benchdata}
RUNS=${RUNS:-3}
SCALEOUT=${SCALEOUT:-0}
SCALEOUT_RUNS=${SCALEOUT_RUNS:-$RUNS}
ARCA=${ARCA:-$TOP/target/release/arca}
OUT=${OUT:-$TOP/bench/out/server}
# The server URL without a database name (from scripts/test-services.sh's ARCA_TEST_POSTGRES).
PG_URL=${PG_URL:-${ARCA_TEST_POSTGRES:+${ARCA_TEST_POSTGRES%/*}}}
PG_URL=${PG_URL:-postgres://arca:arca@127.0.0.1:5432}
SRC=$DATA/linux
[ -x "$ARCA" ] || (cd "$TOP" && cargo build --release -p arca-cli)
[ -d "$SRC" ] || DATA=$DATA "$TOP/../shared/bench/mkdata.sh" prepare
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
if [ "$SCALEOUT" = 1 ]; then
  : "${ARCA_TEST_S3:?SCALEOUT=1 needs ARCA_TEST_S3 (eval \"\$(scripts/test-services.sh)\")}"
  : "${AWS_ACCESS_KEY_ID:?SCALEOUT=1 needs AWS_ACCESS_KEY_ID}" "${AWS_SECRET_ACCESS_KEY:?SCALEOUT=1 needs AWS_SECRET_ACCESS_KEY}"
  command -v psql >/dev/null || { echo "SCALEOUT=1 needs psql" >&2; exit 1; }
fi
. "$TOP/bench/lib-server.sh"
rm -rf "$OUT"; mkdir -p "$OUT"
trap 'stop_server' EXIT
export ARCA_PASSWORD=bench
find "$SRC" -type f -print0 | xargs -0 cat > /dev/null
echo "$(date -u '+%F %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $("$ARCA" --version)"
secs() { /usr/bin/time -f '%e' "$@" 2>&1 >/dev/null | tail -1; }
# The server process's CPU seconds (user + system) so far.
cpu_secs() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }
# CPU ticks of every garage and postgres process (pid ticks), and the seconds spent between two
# such snapshots (processes that started in between count from zero).
side_ticks() { awk '$2 == "(garage)" || $2 == "(postgres)" {print $1, $14 + $15}' /proc/[0-9]*/stat 2>/dev/null || true; }
side_secs() { awk 'NR == FNR {b[$1] = $2; next} {s += $2 - b[$1]} END {printf "%.2f", s / 100}' "$1" "$2"; }

# serve_backup MODE SERVER-ARGS... : starts a server, sets up a device, times the client's init +
# first backup through it (only the backup is timed) and records the server's peak RSS and CPU.
serve_backup() {
  local mode=$1; shift
  start_server "server-$mode" "$@"
  setup_device bench bench laptop
  ARCA_REPOSITORY=$SERVER_URL/bench ARCA_TOKEN=$DEVICE_TOKEN "$ARCA" init > /dev/null
  local cpu0; cpu0=$(cpu_secs "$SERVER_PID")
  side_ticks > "$OUT/side.before"
  T=$(secs env ARCA_REPOSITORY="$SERVER_URL/bench" ARCA_TOKEN="$DEVICE_TOKEN" "$ARCA" backup -q --no-progress "$SRC")
  side_ticks > "$OUT/side.after"
  HWM=$(proc_kib "$SERVER_PID" VmHWM)
  CPU=$(python3 -c "print(f'{$(cpu_secs "$SERVER_PID") - $cpu0:.2f}')")
  SIDE=$(side_secs "$OUT/side.before" "$OUT/side.after")
  THROTTLED=$(grep -c ' 429 \|status=429' "$OUT/server-$mode.log" || true)
  stop_server
}

local_t=(); emb_t=(); emb_hwm=(); emb_cpu=(); so_t=(); so_hwm=(); so_cpu=(); so_local=(); so_side=()
for run in $(seq "$RUNS"); do
  rm -rf "$OUT/local"; ARCA_REPOSITORY=$OUT/local "$ARCA" init >/dev/null 2>&1
  t=$(secs env ARCA_REPOSITORY="$OUT/local" "$ARCA" backup -q --no-progress "$SRC"); local_t+=("$t")
  rm -rf "$OUT/local"

  rm -rf "$OUT/data"
  serve_backup embedded --data-dir "$OUT/data"
  emb_t+=("$T"); emb_hwm+=("$HWM"); emb_cpu+=("$CPU")
  line="run $run: local ${local_t[-1]} s, embedded server ${T} s (server peak RSS $((HWM / 1024)) MiB, CPU ${CPU} s, 429s: $THROTTLED)"
  rm -rf "$OUT/data"

  if [ "$SCALEOUT" = 1 ] && [ "$run" -le "$SCALEOUT_RUNS" ]; then
    db=arca_bench_$(date +%s)_${run}_$RANDOM
    psql -q "$PG_URL/postgres" -c "CREATE DATABASE $db" > /dev/null
    prefix=bench-$(date +%s)-$run-$RANDOM
    # s3://BUCKET?QUERY -> s3://BUCKET/PREFIX?QUERY (a fresh prefix per run)
    base=${ARCA_TEST_S3%%\?*}; query=${ARCA_TEST_S3#"$base"}
    store=${base%/}/$prefix$query
    serve_backup scaleout --database "$PG_URL/$db" --store "$store"
    so_t+=("$T"); so_hwm+=("$HWM"); so_cpu+=("$CPU"); so_local+=("${local_t[-1]}")
    so_side+=("$SIDE")
    line+=", scale-out server ${T} s (peak RSS $((HWM / 1024)) MiB, CPU ${CPU} s, PostgreSQL + Garage CPU ${SIDE} s, 429s: $THROTTLED; db $db, store $store)"
    if [ "${KEEP:-0}" != 1 ]; then
      psql -q "$PG_URL/postgres" -c "DROP DATABASE $db" > /dev/null
      # The run's objects, with the AWS CLI when there is one (best effort).
      endpoint=$(printf '%s' "$query" | sed -n 's/.*[?&]endpoint=\([^&]*\).*/\1/p')
      region=$(printf '%s' "$query" | sed -n 's/.*[?&]region=\([^&]*\).*/\1/p')
      if command -v aws > /dev/null && [ -n "$endpoint" ]; then
        AWS_DEFAULT_REGION=${region:-us-east-1} timeout 300 aws --endpoint-url "$endpoint" s3 rm --recursive \
          --quiet "${base%/}/$prefix/" > /dev/null 2>&1 || echo "(could not remove ${base%/}/$prefix/)"
      fi
    fi
  fi
  echo "$line; load $(cut -d' ' -f1-3 /proc/loadavg)"
done

python3 - "$OUT/summary.md" "${local_t[*]}" "${emb_t[*]}" "${emb_hwm[*]}" "${emb_cpu[*]}" \
  "${so_local[*]}" "${so_t[*]}" "${so_hwm[*]}" "${so_cpu[*]}" "${so_side[*]}" <<'PY'
import statistics, sys
out, *cols = sys.argv[1:]
nums = [[float(x) for x in c.split()] for c in cols]
local, emb, emb_hwm, emb_cpu, so_local, so, so_hwm, so_cpu, so_side = nums
med = statistics.median
lines = ["| mode | runs | local backup (s) | through the server (s) | server / local throughput | server peak RSS (MiB) "
         "| server CPU (s) | PostgreSQL + Garage CPU (s) |",
         "|---|---:|---:|---:|---:|---:|---:|---:|"]
def row(name, l, s, hwm, cpu, side=None):
    lines.append(f"| {name} | {len(s)} | {med(l):.2f} | {med(s):.2f} | {med(l) / med(s):.0%} | {med(hwm) / 1024:.0f} "
                 f"| {med(cpu):.2f} | {'-' if side is None else f'{med(side):.2f}'} |")
    print(f"median ({name}, {len(s)} runs): local {med(l):.2f} s, server {med(s):.2f} s; "
          f"ingest through the server = {med(l) / med(s):.0%} of local")
row("embedded (SQLite + local disk)", local, emb, emb_hwm, emb_cpu)
if so:
    row("scale-out (PostgreSQL + S3/Garage)", so_local, so, so_hwm, so_cpu, so_side)
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
