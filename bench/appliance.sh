#!/usr/bin/env bash
# bench/appliance.sh - the office appliance's two data paths against their floors (issue 5):
#
# 1. Replication throughput over loopback: an appliance whose local repository holds one snapshot
#    of SIZE_MIB MiB of random (incompressible) bytes replicates it to a fresh repository on
#    `arca server` (embedded: SQLite + local disk), no upload limit. Timed from the appliance's
#    start to its status saying everything is on the provider. Floor: the same repository objects
#    uploaded one by one with `curl` PUTs over the same hosting API into another fresh repository of
#    the same server (raw HTTP upload of the same bytes), and `cp -r` of the repository directory
#    with `sync` (the disk).
# 2. WebDAV write and read of one SIZE_MIB MiB file, `curl -T` then `curl -o /dev/null`, against the
#    appliance's share and against `rclone serve webdav` on the same folder (both with Basic auth).
#
# Environment: SIZE_MIB=128, RUNS=3, ARCA=target/release/arca (built if missing),
# OUT=bench/out/appliance. Needs curl, python3, rclone (Debian package). Prints every run and the
# medians, and writes $OUT/summary.md.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
SIZE_MIB=${SIZE_MIB:-128}
RUNS=${RUNS:-3}
ARCA=${ARCA:-$TOP/target/release/arca}
OUT=${OUT:-$TOP/bench/out/appliance}
[ -x "$ARCA" ] || (cd "$TOP" && cargo build --release -p arca-cli)
command -v rclone >/dev/null || { echo "rclone is needed (apt-get install rclone)" >&2; exit 1; }
rm -rf "$OUT"
mkdir -p "$OUT"
source "$TOP/bench/lib-server.sh"

USER_PASSWORD=bench-share-password
export ARCA_KDF_MEMORY_KIB=1024 ARCA_KDF_ITERATIONS=1 ARCA_PASSWORD=bench-repo-password
unset ARCA_REPOSITORY ARCA_TOKEN ARCA_PASSWORD_FILE ARCA_LOG RUST_LOG || true
mib() { python3 -c "import sys; print(f'{$SIZE_MIB / float(sys.argv[1]):.1f}')" "$1"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$(now)"; }

APP_PID=
cleanup() {
  [ -n "$APP_PID" ] && kill "$APP_PID" 2>/dev/null || true
  [ -n "${RCLONE_PID:-}" ] && kill "$RCLONE_PID" 2>/dev/null || true
  stop_server
}
trap cleanup EXIT

# start_appliance CONFIG : starts `arca appliance`; sets APP_PID and APP_URL.
start_appliance() {
  "$ARCA" appliance --config "$1" > "$OUT/appliance.out" 2> "$OUT/appliance.log" &
  APP_PID=$!
  APP_URL=
  for _ in $(seq 300); do
    APP_URL=$(sed -n 's/^arca appliance listening on \(http[^ ]*\).*/\1/p' "$OUT/appliance.out" | head -1)
    [ -n "$APP_URL" ] && return 0
    kill -0 "$APP_PID" 2>/dev/null || { cat "$OUT/appliance.log" >&2; return 1; }
    sleep 0.05
  done
  echo "the appliance did not start" >&2
  return 1
}
stop_appliance() { kill "$APP_PID" 2>/dev/null || true; wait "$APP_PID" 2>/dev/null || true; APP_PID=; }

# The data: one random file in the share folder, snapshotted once into the local repository.
SHARE=$OUT/share
mkdir -p "$SHARE"
head -c $((SIZE_MIB << 20)) /dev/urandom > "$SHARE/big.bin"
"$ARCA" init -r "$OUT/repo" > /dev/null
"$ARCA" backup -r "$OUT/repo" --quiet --tag share:docs --host arca-appliance "$SHARE"
HASH=$(ARCA_NEW_PASSWORD=$USER_PASSWORD "$ARCA" appliance hash-password)
REPO_BYTES=$(du -sb "$OUT/repo" | cut -f1)

write_config() { # write_config FILE PROVIDER_URL TOKEN
  cat > "$1" <<EOF
listen = "127.0.0.1:0"
data_dir = "$OUT/state"
max_upload = "64 GiB"
[repository]
path = "$OUT/repo"
password_env = "ARCA_PASSWORD"
[users.bench]
password_hash = "$HASH"
[shares.docs]
path = "$SHARE"
EOF
  if [ -n "$2" ]; then printf '[provider]\nurl = "%s"\ntoken = "%s"\n' "$2" "$3" >> "$1"; fi
}

repl=() ; ups=() ; curlup=() ; cpdisk=()
for run in $(seq "$RUNS"); do
  rm -rf "$OUT/server-data" "$OUT/state" "$OUT/copy"
  start_server server --data-dir "$OUT/server-data"
  setup_device "t$run" office appliance
  TOKEN_A=$DEVICE_TOKEN
  setup_device "u$run" raw uploader
  TOKEN_B=$DEVICE_TOKEN

  # Replication.
  write_config "$OUT/appliance.toml" "$SERVER_URL/v1/repos/office" "$TOKEN_A"
  t0=$(now)
  start_appliance "$OUT/appliance.toml"
  ups+=("$(since "$t0")")
  # Polled with grep, not a Python start per poll: the poller must not compete for the 2 cores.
  until st=$(curl -fsS "$APP_URL/status.json") && [[ $st == *'"last_success":"'* && $st == *'"pending_snapshots":0,'* \
      && $st != *'"uploaded_objects":0,'* ]]; do
    sleep 0.02
  done
  repl+=("$(since "$t0")")
  stop_appliance

  # The same objects with curl, one PUT each, into a fresh repository (config and keys first).
  t0=$(now)
  base="$SERVER_URL/v1/repos/raw"
  curl -fsS -X POST -H "Authorization: Bearer $TOKEN_B" "$base" > /dev/null || true
  for kind in keys data meta index snapshots config; do
    if [ "$kind" = config ]; then files="$OUT/repo/config"; else files=$(find "$OUT/repo/$kind" -type f); fi
    for f in $files; do
      curl -fsS -X PUT -H "Authorization: Bearer $TOKEN_B" --data-binary "@$f" "$base/$kind/$(basename "$f")" > /dev/null
    done
  done
  curlup+=("$(since "$t0")")
  stop_server

  # The disk: copy the repository directory and sync.
  sync
  t0=$(now)
  cp -r "$OUT/repo" "$OUT/copy" && sync
  cpdisk+=("$(since "$t0")")
  echo "run $run: replication ${repl[-1]} s (appliance up after ${ups[-1]} s), curl PUTs ${curlup[-1]} s, cp+sync ${cpdisk[-1]} s ($REPO_BYTES bytes)"
done

# WebDAV: the appliance's share against rclone serve webdav on the same folder.
write_config "$OUT/appliance.toml" "" ""
start_appliance "$OUT/appliance.toml"
RPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rclone serve webdav "$SHARE" --addr "127.0.0.1:$RPORT" --user bench --pass "$USER_PASSWORD" > "$OUT/rclone.log" 2>&1 &
RCLONE_PID=$!
for _ in $(seq 100); do curl -fs -o /dev/null -u "bench:$USER_PASSWORD" "http://127.0.0.1:$RPORT/" && break; sleep 0.1; done
head -c $((SIZE_MIB << 20)) /dev/urandom > "$OUT/upload.bin"
a_put=() ; a_get=() ; r_put=() ; r_get=()
dav_time() { # dav_time put|get URL
  if [ "$1" = put ]; then
    curl -fsS -o /dev/null -w '%{time_total}' -u "bench:$USER_PASSWORD" -T "$OUT/upload.bin" "$2"
  else
    curl -fsS -o /dev/null -w '%{time_total}' -u "bench:$USER_PASSWORD" "$2"
  fi
}
for run in $(seq "$RUNS"); do
  a_put+=("$(dav_time put "$APP_URL/dav/docs/up-a.bin")")
  r_put+=("$(dav_time put "http://127.0.0.1:$RPORT/up-r.bin")")
  a_get+=("$(dav_time get "$APP_URL/dav/docs/big.bin")")
  r_get+=("$(dav_time get "http://127.0.0.1:$RPORT/big.bin")")
  echo "run $run: WebDAV PUT appliance ${a_put[-1]} s, rclone ${r_put[-1]} s; GET appliance ${a_get[-1]} s, rclone ${r_get[-1]} s"
done

python3 - "$OUT/summary.md" "$SIZE_MIB" "$REPO_BYTES" "${repl[*]}" "${curlup[*]}" "${cpdisk[*]}" \
  "${a_put[*]}" "${r_put[*]}" "${a_get[*]}" "${r_get[*]}" "${ups[*]}" "$("$ARCA" version | head -1)" "$(rclone version | head -1)" <<'PY'
import statistics, sys, datetime, os, platform
out, size, repo_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
series = [list(map(float, a.split())) for a in sys.argv[4:12]]
arca_v, rclone_v = sys.argv[12], sys.argv[13]
med = [statistics.median(s) for s in series]
repl, curlup, cpdisk, a_put, r_put, a_get, r_get, up = med
mb = repo_bytes / 2**20
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines = [
    f"### appliance benchmark {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC",
    "",
    f"- Machine: {cpu}, {os.cpu_count()} cores, Linux {platform.release()}; {arca_v}; {rclone_v}",
    f"- {size} MiB of random bytes; repository {mb:.1f} MiB; median of {len(series[0])} runs; loopback",
    "",
    "| Path | seconds | MiB/s | vs floor |",
    "|---|---:|---:|---:|",
    f"| Replication appliance → arca server (process start to done) | {repl:.2f} | {mb / repl:.0f} | {curlup / repl:.2f}× curl |",
    f"| … of which start-up until the status page answers | {up:.2f} | | |",
    f"| Same objects, one `curl` PUT each (floor over HTTP) | {curlup:.2f} | {mb / curlup:.0f} | |",
    f"| `cp -r` of the repository + `sync` (disk) | {cpdisk:.2f} | {mb / cpdisk:.0f} | |",
    f"| WebDAV PUT, appliance | {a_put:.2f} | {size / a_put:.0f} | {r_put / a_put:.2f}× rclone |",
    f"| WebDAV PUT, `rclone serve webdav` | {r_put:.2f} | {size / r_put:.0f} | |",
    f"| WebDAV GET, appliance | {a_get:.2f} | {size / a_get:.0f} | {r_get / a_get:.2f}× rclone |",
    f"| WebDAV GET, `rclone serve webdav` | {r_get:.2f} | {size / r_get:.0f} | |",
]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
