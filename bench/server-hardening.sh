#!/usr/bin/env bash
# bench/server-hardening.sh - what issue 12 asks of the hardened server, measured on a release
# build on the embedded defaults (SQLite, local disk), loopback only:
#
#  1. memory: the server's RSS while 8 clients each upload a 1 GiB pack at once, against its RSS
#     idle before (aim: under 200 MiB above idle; before the fix bodies were held whole and three
#     1 GiB uploads took the server from 131 MB to 3.2 GB);
#  2. sign-in flood: a device's HEAD latency alone and while 16 connections (wrk) send wrong
#     sign-ins as fast as the server answers, each with another user name (aim: within 5x of alone; before the fix,
#     password hashing ran on the async workers and a 0.5 s backup took 11 s).
#
# The third figure of the issue (one client's first backup through the server against local) is
# bench/server-ingest.sh.
#
# Environment: ARCA=target/release/arca (built if missing), OUT=bench/out/hardening,
# UPLOADS=8, UPLOAD_MIB=1024, FLOOD=16, HEADS=300.
# Prints each figure and writes $OUT/summary.md.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
ARCA=${ARCA:-$TOP/target/release/arca}
OUT=${OUT:-$TOP/bench/out/hardening}
UPLOADS=${UPLOADS:-8}
UPLOAD_MIB=${UPLOAD_MIB:-1024}
FLOOD=${FLOOD:-16}
HEADS=${HEADS:-300}
[ -x "$ARCA" ] || (cd "$TOP" && cargo build --release -p arca-cli)
command -v curl >/dev/null || { echo "needs curl" >&2; exit 1; }
python3 -c 'import blake3' 2>/dev/null || pip install -q blake3
# shellcheck source=bench/lib-server.sh
. "$TOP/bench/lib-server.sh"

rm -rf "$OUT"; mkdir -p "$OUT/data" "$OUT/uploads"
trap 'stop_server; kill $(jobs -p) 2>/dev/null || true' EXIT
# --behind-proxy so the second flood can come "from" many addresses (X-Forwarded-For), as a
# distributed attacker would: then every attempt is hashed, and only the bounded pool protects.
start_server server --data-dir "$OUT/data" --behind-proxy
setup_device acme acme laptop
REPO_URL=$SERVER_URL/v1/repos/acme
curl -fsS -X POST -H "Authorization: Bearer $DEVICE_TOKEN" "$REPO_URL" > /dev/null

# ---- 1. memory during concurrent 1 GiB uploads
echo "making $UPLOADS files of $UPLOAD_MIB MiB" >&2
names=()
for i in $(seq "$UPLOADS"); do
  f=$OUT/uploads/$i
  head -c $((UPLOAD_MIB << 20)) /dev/urandom > "$f"
  names+=("$(python3 -c 'import blake3, sys
h = blake3.blake3(max_threads=blake3.blake3.AUTO)
with open(sys.argv[1], "rb") as f:
    while chunk := f.read(1 << 22):
        h.update(chunk)
print(h.hexdigest())' "$f")")
done
sleep 1
idle_kib=$(proc_kib "$SERVER_PID" VmRSS)
peak_kib=$idle_kib
pids=()
start=$(date +%s.%N)
for i in $(seq "$UPLOADS"); do
  curl -sS -o "$OUT/uploads/$i.answer" -w '%{http_code}\n' -T "$OUT/uploads/$i" \
    -H "Authorization: Bearer $DEVICE_TOKEN" "$REPO_URL/data/${names[$((i - 1))]}" > "$OUT/uploads/$i.status" &
  pids+=($!)
done
while :; do
  running=0
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && running=1; done
  rss=$(proc_kib "$SERVER_PID" VmRSS)
  [ "$rss" -gt "$peak_kib" ] && peak_kib=$rss
  [ "$running" = 0 ] && break
  sleep 0.1
done
wait "${pids[@]}" || true
secs=$(echo "$(date +%s.%N) - $start" | bc)
ok=$(cat "$OUT"/uploads/*.status | grep -c '^201$' || true)
rm -f "$OUT"/uploads/[0-9]*[0-9]
above_mib=$(( (peak_kib - idle_kib) / 1024 ))
echo "uploads: $ok of $UPLOADS stored in ${secs}s; server RSS idle $((idle_kib / 1024)) MiB, peak $((peak_kib / 1024)) MiB, ${above_mib} MiB above idle"

# ---- 2. a device's HEAD latency alone and during a wrong-sign-in flood
head_name=${names[0]}
# HEADs over one kept-alive connection (one curl, the URL repeated), each timed by curl.
heads() {
  local args=()
  for _ in $(seq "$HEADS"); do args+=(-o /dev/null -w '%{time_total}\n' "$REPO_URL/data/$head_name"); done
  curl -s -I -H "Authorization: Bearer $DEVICE_TOKEN" "${args[@]}" \
    | sort -n | awk '{a[NR] = $1} END {printf "%.4f %.4f\n", a[int(NR / 2)], a[int(NR * 0.95)]}'
}
read -r alone_p50 alone_p95 < <(heads)
# The floods: wrk (one thread, FLOOD kept-alive connections) posting wrong sign-ins, each with
# another user name, as fast as the server answers. "one address": all from 127.0.0.1, which the
# per-client throttle soon answers with 429 before hashing; "many addresses": each from another
# X-Forwarded-For, so every attempt costs an Argon2id check on the bounded pool.
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
flood() {
  cat > "$OUT/flood.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local headers = { ["Content-Type"] = "application/json" }
  if $1 then headers["X-Forwarded-For"] = "10." .. (n % 250) .. "." .. (math.floor(n / 250) % 250) .. ".1" end
  return wrk.format(nil, "/v1/auth/login", headers, '{"user":"flood' .. n .. '","password":"wrong password"}')
end
LUA
  wrk -t1 -c"$FLOOD" -d600s -s "$OUT/flood.lua" "$SERVER_URL" > "$OUT/flood.txt" 2>&1 &
  local pid=$!
  sleep 2
  heads
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  awk '/Requests\/sec/ {print $2}' "$OUT/flood.txt" > "$OUT/flood.rps"
}
flood false > "$OUT/flood-one.txt"
read -r flood_p50 flood_p95 < "$OUT/flood-one.txt"
flood_rps=$(cat "$OUT/flood.rps")
flood true > "$OUT/flood-many.txt"
read -r many_p50 many_p95 < "$OUT/flood-many.txt"
many_rps=$(cat "$OUT/flood.rps")
many50=$(echo "scale=2; $many_p50 / $alone_p50" | bc)
many95=$(echo "scale=2; $many_p95 / $alone_p95" | bc)
ratio50=$(echo "scale=2; $flood_p50 / $alone_p50" | bc)
ratio95=$(echo "scale=2; $flood_p95 / $alone_p95" | bc)
echo "HEAD latency alone p50 ${alone_p50}s p95 ${alone_p95}s"
echo "  during a $FLOOD-connection sign-in flood from one address (${flood_rps:-?}/s answered): p50 ${flood_p50}s p95 ${flood_p95}s (x$ratio50 / x$ratio95)"
echo "  during a $FLOOD-connection sign-in flood from many addresses (${many_rps:-?}/s answered): p50 ${many_p50}s p95 ${many_p95}s (x$many50 / x$many95)"

cat > "$OUT/summary.md" <<EOF
# Server hardening figures ($(date -u +%Y-%m-%d), $(nproc) cores, release build, embedded defaults)

| figure | value | aim |
|---|---|---|
| $UPLOADS concurrent uploads of $UPLOAD_MIB MiB | $ok stored in ${secs} s | all stored |
| server RSS idle / peak during them | $((idle_kib / 1024)) MiB / $((peak_kib / 1024)) MiB (**${above_mib} MiB above idle**) | < 200 MiB above idle |
| device HEAD latency alone (p50 / p95) | ${alone_p50} s / ${alone_p95} s | |
| the same during a $FLOOD-connection wrong-sign-in flood from one address (wrk, ${flood_rps:-?}/s answered, throttled) | ${flood_p50} s / ${flood_p95} s (**x$ratio50 / x$ratio95**) | within 5x |
| the same during the flood from many addresses (${many_rps:-?}/s answered, every one hashed) | ${many_p50} s / ${many_p95} s (**x$many50 / x$many95**) | within 5x |
EOF
cat "$OUT/summary.md"
