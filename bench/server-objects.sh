#!/usr/bin/env bash
# bench/server-objects.sh - does `arca server` stay flat in memory as a repository's object count
# grows? (issue 3: server memory at 10k and 1M objects.)
#
# Starts one server on the embedded defaults (SQLite metadata in DATA_DIR/arca.db, objects on local
# disk), sets up a tenant, repository and device with `arca admin`, then uploads small random
# objects (kind `data`, named by the BLAKE3 hex of the body) over keep-alive HTTP connections from
# THREADS threads (bench/server-objects.py). At 0 objects and at each checkpoint the uploads pause
# and it records the server's VmRSS and VmHWM (/proc/PID/status), the upload rate since the last
# checkpoint, the latency of one listing page of 1000 after a random stored name, of HEAD on a
# random stored object, of walking the whole listing (pages of 10000), and the size of arca.db
# (and its WAL); during each upload phase one more connection times a HEAD every 0.2 s and a
# listing page every 2 s (latency under load). If the next checkpoint cannot be reached within
# BUDGET seconds of uploading, it stops at the count reached then and says so.
#
# Environment: N="10000 100000 1000000" (checkpoints), THREADS=8, SIZE=512 (bytes per object),
# BUDGET=1500 (seconds of uploading in all), RATE_LIMIT=0 (the server's per-token requests per
# second; 0 = unlimited, so the limiter's default of 1000/s does not cap the measured rate),
# ARCA=target/release/arca (built if missing), OUT=bench/out/objects, PYTHON (with the `blake3`
# package; by default a venv in bench/out/venv, made with pip if missing).
# Writes $OUT/report.json, $OUT/rss.csv (RSS every 2 s while uploading) and $OUT/summary.md.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-10000 100000 1000000}
THREADS=${THREADS:-8}
SIZE=${SIZE:-512}
BUDGET=${BUDGET:-1500}
RATE_LIMIT=${RATE_LIMIT:-0}
ARCA=${ARCA:-$TOP/target/release/arca}
OUT=${OUT:-$TOP/bench/out/objects}
[ -x "$ARCA" ] || (cd "$TOP" && cargo build --release -p arca-cli)
if [ -z "${PYTHON:-}" ]; then
  PYTHON=$TOP/bench/out/venv/bin/python
  if ! "$PYTHON" -c 'import blake3' 2>/dev/null; then
    python3 -m venv "$TOP/bench/out/venv"
    "$TOP/bench/out/venv/bin/pip" install -q blake3
  fi
fi
. "$TOP/bench/lib-server.sh"
rm -rf "$OUT"; mkdir -p "$OUT"
trap 'stop_server' EXIT

# Scrub and garbage collection off: this measures the request path alone (and with no snapshots
# a collection pass would condemn every uploaded object once it ran).
start_server server --data-dir "$OUT/data" --scrub-every 0 --gc-every 0 --rate-limit "$RATE_LIMIT"
setup_device bench bench loadgen
echo "server $SERVER_URL (pid $SERVER_PID); checkpoints: $N; $THREADS threads; $SIZE-byte objects; budget ${BUDGET}s"
"$PYTHON" "$TOP/bench/server-objects.py" --url "$SERVER_URL" --repo bench --token "$DEVICE_TOKEN" \
  --pid "$SERVER_PID" --db "$OUT/data/arca.db" --checkpoints "$N" --threads "$THREADS" --size "$SIZE" \
  --budget "$BUDGET" --rss-csv "$OUT/rss.csv" --json "$OUT/report.json" | tee "$OUT/progress.log"
disk=$(du -sm "$OUT/data/repos" | cut -f1)
stop_server

python3 - "$OUT/report.json" "$disk" > "$OUT/summary.md" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['threads']} upload threads, {r['size']}-byte objects; uploads paused while probing. "
      f"Object files on disk at the end: {sys.argv[2]} MiB.\n")
print("| objects | VmRSS (MiB) | VmHWM (MiB) | upload rate since previous (obj/s) | server CPU per upload (ms) "
      "| list 1000 after a name, median / p95 (ms) | HEAD, median / p95 (ms) | full listing walk (s) "
      "| arca.db + WAL (MiB) | while uploading: HEAD / list page, median (p95) (ms) |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for c in r["checkpoints"]:
    rate = "-" if c["rate_per_s"] is None else f"{c['rate_per_s']:.0f}"
    cpu = "-" if c.get("server_cpu_ms_per_object") is None else f"{c['server_cpu_ms_per_object']:.2f}"
    head = f"{c['head_ms_median']} / {c['head_ms_p95']}" + (" (404)" if c["head_status"] == 404 else "")
    walk = f"{c['walk_s']}" if "walk_s" in c else "-"
    n = f"{c['objects']:,}" + (" (budget reached)" if c.get("stopped_by_budget") else "")
    loaded = "-"
    if "loaded_head_ms_median" in c:
        loaded = f"{c['loaded_head_ms_median']} ({c['loaded_head_ms_p95']})"
        if "loaded_list_page_ms_median" in c:
            loaded += f" / {c['loaded_list_page_ms_median']} ({c['loaded_list_page_ms_p95']})"
    print(f"| {n} | {c['rss_mib']} | {c['hwm_mib']} | {rate} | {cpu} | {c['list_page_ms_median']} / "
          f"{c['list_page_ms_p95']} | {head} | {walk} | {c['db_mib']} + {c['wal_mib']} | {loaded} |")
errs = {k: v for c in r["checkpoints"] for k, v in c.get("errors", {}).items()}
if errs:
    print(f"\nUpload errors: {errs}")
PY
cat "$OUT/summary.md"
