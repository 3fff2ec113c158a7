#!/usr/bin/env bash
# bench/restic.sh - unmodified restic (Debian's) hosted by `arca server` (a repository of format
# restic, device token in basic auth) against the same restic hosted by `rclone serve restic`, on
# the same disk, in the same run (issue 16: aim >= 1.0x rclone's speed).
#
# Figures, each a median of RUNS runs, the two servers taking turns within a run:
#   first backup  - `restic backup $DATA/linux` into an empty repository (fresh cache);
#   restore       - `restic restore latest` of that snapshot to RESTORE_DIR (tmpfs), checked by
#                   fingerprint on the first run;
#   8 clients     - 8 restic processes at once, each backing up CLIENT_SRC into its own repository
#                   (8 devices of one tenant on arca), wall time until the last finishes.
# Also the arca server's peak RSS and CPU seconds for the first backup.
#
# Environment: DATA=/work/benchdata (../shared/bench/mkdata.sh prepare), RUNS=3,
# ARCA=target/release/arca (built if missing), OUT=bench/out/restic, RESTORE_DIR=/dev/shm/arca-bench-
# restic, CLIENT_SRC=$DATA/linux/drivers/net, CLIENTS=8. Writes $OUT/summary.md.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-/work/benchdata}
RUNS=${RUNS:-3}
ARCA=${ARCA:-$TOP/target/release/arca}
OUT=${OUT:-$TOP/bench/out/restic}
RESTORE_DIR=${RESTORE_DIR:-/dev/shm/arca-bench-restic}
SRC=$DATA/linux
CLIENT_SRC=${CLIENT_SRC:-$SRC/drivers/net}
CLIENTS=${CLIENTS:-8}
[ -x "$ARCA" ] || (cd "$TOP" && cargo build --release -p arca-cli)
[ -d "$SRC" ] || DATA=$DATA "$TOP/../shared/bench/mkdata.sh" prepare
need=()
command -v restic >/dev/null || need+=(restic)
command -v rclone >/dev/null || need+=(rclone)
[ -x /usr/bin/time ] || need+=(time)
((${#need[@]} == 0)) || apt-get install -y -qq "${need[@]}" >/dev/null
. "$TOP/bench/lib-server.sh"
rm -rf "$OUT" "$RESTORE_DIR"; mkdir -p "$OUT"
RCLONE_PID=
cleanup() { stop_server; [ -z "$RCLONE_PID" ] || kill "$RCLONE_PID" 2>/dev/null || true; rm -rf "$RESTORE_DIR"; }
trap cleanup EXIT
export RESTIC_PASSWORD=bench
find "$SRC" -type f -print0 | xargs -0 cat > /dev/null
echo "$(date -u '+%F %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $("$ARCA" --version)," \
  "$(restic version | cut -d' ' -f1-2), $(rclone version | head -1)"
secs() { /usr/bin/time -f '%e' "$@" 2>&1 >/dev/null | tail -1; }
cpu_secs() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }
fingerprint() { "$TOP/../shared/bench/mkdata.sh" fingerprint "$1"; }
SRC_FP=$(fingerprint "$SRC")
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# restic_figures NAME URL-OF-REPO : init, timed first backup and restore; sets BACKUP, RESTORE.
restic_figures() {
  local name=$1 url=$2 cache=$OUT/cache-$1
  rm -rf "$cache" "$RESTORE_DIR"
  restic -r "$url" --cache-dir "$cache" init > /dev/null
  BACKUP=$(secs restic -r "$url" --cache-dir "$cache" backup -q "$SRC")
  RESTORE=$(secs restic -r "$url" --cache-dir "$cache" restore latest --target "$RESTORE_DIR")
  if [ "$run" = 1 ]; then
    local fp; fp=$(fingerprint "$RESTORE_DIR$SRC")
    [ "$fp" = "$SRC_FP" ] || { echo "$name: the restore differs from the source" >&2; exit 1; }
  fi
  rm -rf "$cache" "$RESTORE_DIR"
}

# many_clients URL-PREFIX... : one URL per client; CLIENTS restic backups at once, wall seconds in MANY.
many_clients() {
  local start end i=0 pids=()
  for url in "$@"; do
    restic -r "$url" --cache-dir "$OUT/mcache-$i" init > /dev/null
    i=$((i + 1))
  done
  start=$(date +%s.%N); i=0
  for url in "$@"; do
    restic -r "$url" --cache-dir "$OUT/mcache-$i" backup -q "$CLIENT_SRC" > "$OUT/client-$i.log" 2>&1 &
    pids+=($!); i=$((i + 1))
  done
  for p in "${pids[@]}"; do wait "$p" || { echo "a restic client failed (see $OUT/client-*.log)" >&2; exit 1; }; done
  end=$(date +%s.%N)
  MANY=$(python3 -c "print(f'{$end - $start:.2f}')")
  rm -rf "$OUT"/mcache-*
}

arca_b=(); arca_r=(); arca_m=(); arca_hwm=(); arca_cpu=(); rc_b=(); rc_r=(); rc_m=()
for run in $(seq "$RUNS"); do
  # arca: a tenant, a restic repository per client, device tokens in basic auth.
  rm -rf "$OUT/arca-data"
  start_server arca --data-dir "$OUT/arca-data"
  admin=$(ARCA_SERVER=$SERVER_URL ARCA_ADMIN_PASSWORD=$ADMIN_PASSWORD "$ARCA" admin login --user admin --quiet)
  adm() { ARCA_SERVER=$SERVER_URL ARCA_TOKEN=$admin "$ARCA" "$@"; }
  adm admin tenant create bench > /dev/null
  host=${SERVER_URL#http://}
  repo_url() { # repo_url REPO DEVICE: creates both, prints the restic URL
    adm admin repo create --tenant bench --format restic "$1" > /dev/null
    local tok; tok=$(adm --json admin device add --tenant bench "$2" --repo "$1" \
      | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
    echo "rest:http://$2:$tok@$host/restic/$1/"
  }
  url=$(repo_url linux laptop)
  cpu0=$(cpu_secs "$SERVER_PID")
  restic_figures arca "$url"
  arca_b+=("$BACKUP"); arca_r+=("$RESTORE")
  arca_hwm+=("$(proc_kib "$SERVER_PID" VmHWM)"); arca_cpu+=("$(python3 -c "print(f'{$(cpu_secs "$SERVER_PID") - $cpu0:.2f}')")")
  urls=(); for i in $(seq "$CLIENTS"); do urls+=("$(repo_url "client$i" "pc$i")"); done
  many_clients "${urls[@]}"; arca_m+=("$MANY")
  stop_server; rm -rf "$OUT/arca-data"

  # rclone serve restic: one directory per repository under one server, no authentication.
  rm -rf "$OUT/rclone-data"; mkdir -p "$OUT/rclone-data"
  port=$(free_port)
  rclone serve restic --addr "127.0.0.1:$port" "$OUT/rclone-data" > "$OUT/rclone.log" 2>&1 &
  RCLONE_PID=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
  restic_figures rclone "rest:http://127.0.0.1:$port/linux/"
  rc_b+=("$BACKUP"); rc_r+=("$RESTORE")
  urls=(); for i in $(seq "$CLIENTS"); do urls+=("rest:http://127.0.0.1:$port/client$i/"); done
  many_clients "${urls[@]}"; rc_m+=("$MANY")
  kill "$RCLONE_PID"; wait "$RCLONE_PID" 2>/dev/null || true; RCLONE_PID=
  rm -rf "$OUT/rclone-data"
  echo "run $run: first backup arca ${arca_b[-1]} s / rclone ${rc_b[-1]} s; restore arca ${arca_r[-1]} s / rclone" \
    "${rc_r[-1]} s; $CLIENTS clients arca ${arca_m[-1]} s / rclone ${rc_m[-1]} s; arca server peak RSS" \
    "$((${arca_hwm[-1]} / 1024)) MiB, CPU ${arca_cpu[-1]} s; load $(cut -d' ' -f1-3 /proc/loadavg)"
done

python3 - "$OUT/summary.md" "$CLIENTS" "$(du -sh "$CLIENT_SRC" | cut -f1)" "${arca_b[*]}" "${rc_b[*]}" \
  "${arca_r[*]}" "${rc_r[*]}" "${arca_m[*]}" "${rc_m[*]}" "${arca_hwm[*]}" "${arca_cpu[*]}" <<'PY'
import statistics, sys
out, clients, client_size, *cols = sys.argv[1:]
ab, rb, ar, rr, am, rm, hwm, cpu = [[float(x) for x in c.split()] for c in cols]
med = statistics.median
lines = ["| figure (restic 0.14 client) | runs | arca server (s) | rclone serve restic (s) | arca speed / rclone's |",
         "|---|---:|---:|---:|---:|"]
for name, a, r in [("first backup, Linux 6.1 tree", ab, rb), ("restore latest", ar, rr),
                   (f"{clients} clients at once, {client_size} each", am, rm)]:
    lines.append(f"| {name} | {len(a)} | {med(a):.2f} | {med(r):.2f} | {med(r) / med(a):.2f}x |")
lines.append(f"\narca server during the first backup: peak RSS {med(hwm) / 1024:.0f} MiB, CPU {med(cpu):.2f} s (medians).")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
