#!/usr/bin/env bash
# bench/server-ingest.sh - one client's backup through `arca server` on loopback against the same
# client writing a local repository (issue 3: ingest over loopback should reach 80% of local).
#
# Environment: DATA=/work/benchdata (built by ../shared/bench/mkdata.sh), RUNS=3,
# ARCA=target/release/arca (built if missing), OUT=bench/out/server, PORT=18420.
# Prints each run and the medians; both backups are first backups of $DATA/linux into empty
# repositories, with the source read once beforehand.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-/work/benchdata}
RUNS=${RUNS:-3}
ARCA=${ARCA:-$TOP/target/release/arca}
OUT=${OUT:-$TOP/bench/out/server}
PORT=${PORT:-18420}
SRC=$DATA/linux
[ -x "$ARCA" ] || (cd "$TOP" && cargo build --release -p arca-cli)
[ -d "$SRC" ] || DATA=$DATA "$TOP/../shared/bench/mkdata.sh" prepare
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
rm -rf "$OUT"; mkdir -p "$OUT"
export ARCA_PASSWORD=bench
find "$SRC" -type f -print0 | xargs -0 cat > /dev/null
secs() { /usr/bin/time -f '%e' "$@" 2>&1 >/dev/null | tail -1; }
local_t=(); server_t=()
for run in $(seq "$RUNS"); do
  rm -rf "$OUT/local"; ARCA_REPOSITORY=$OUT/local "$ARCA" init >/dev/null 2>&1
  t=$(secs env ARCA_REPOSITORY="$OUT/local" "$ARCA" backup -q --no-progress "$SRC"); local_t+=("$t")
  rm -rf "$OUT/data"; mkdir -p "$OUT/data"
  tok=$("$ARCA" server --new-token)
  printf '[[token]]\nhash = "%s"\nrole = "admin"\n' "$(echo "$tok" | awk '/^hash:/{print $2}')" > "$OUT/tokens.toml"
  "$ARCA" server --listen "127.0.0.1:$PORT" --data-dir "$OUT/data" --tokens "$OUT/tokens.toml" > "$OUT/server.log" 2>&1 &
  sp=$!
  for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  export ARCA_TOKEN=$(echo "$tok" | awk '/^token:/{print $2}')
  ARCA_REPOSITORY=http://127.0.0.1:$PORT/v1/repos/bench "$ARCA" init >/dev/null
  t=$(secs env ARCA_REPOSITORY="http://127.0.0.1:$PORT/v1/repos/bench" "$ARCA" backup -q --no-progress "$SRC"); server_t+=("$t")
  kill "$sp"; wait "$sp" 2>/dev/null || true
  echo "run $run: local ${local_t[-1]} s, through the server ${server_t[-1]} s"
done
python3 - "${local_t[*]}" "${server_t[*]}" <<'PY'
import statistics, sys
l = statistics.median(map(float, sys.argv[1].split())); s = statistics.median(map(float, sys.argv[2].split()))
print(f"median: local {l:.2f} s, server {s:.2f} s; ingest through the server = {l / s:.0%} of local")
PY
