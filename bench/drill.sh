#!/usr/bin/env bash
# bench/drill.sh - proving that the newest snapshot restores, measured.
#
# - `arca drill latest` (whole snapshot: every file restored into a scratch directory, every
#   blob decrypted and authenticated, every restored file read back and re-hashed) from a local
#   repository, against `restic restore --verify` (restores, then reads every file back and
#   compares) and `borg check --verify-data` (reads and decrypts every chunk, restores nothing)
#   on local repositories of the same data.
# - The server's key-free restore check (`arca admin restore-check`: every pack of the newest
#   snapshot stored and indexed, a sample of up to 256 MiB re-hashed) of the same data hosted on
#   an `arca server`; the peers have no server-side equivalent (restic's and borg's checks need
#   the repository key), so it is shown alone, with its read rate.
#
# Each figure is the median of RUNS runs; ratios are against restic.
#
#   bench/drill.sh [DATA_DIR]   (default /work/benchdata/linux)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-/work/benchdata/linux}
RUNS=${RUNS:-3}
ARCA=${ARCA:-$PWD/target/release/arca}
OUT=$(mktemp -d /tmp/arca-drill-bench.XXXXXX)
trap 'stop_server; rm -rf "$OUT"' EXIT
. bench/lib-server.sh

export ARCA_PASSWORD=bench-repository-password RESTIC_PASSWORD=bench-repository-password
export BORG_PASSPHRASE=bench-repository-password BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }
time_runs() { for _ in $(seq "$RUNS"); do secs "$@"; done | median; }
BYTES=$(du -sb --apparent-size "$DATA" | cut -f1)

# Local repositories of the same data.
"$ARCA" -r "$OUT/arca" init -q > /dev/null
"$ARCA" -r "$OUT/arca" backup -q "$DATA" > /dev/null
restic init -q -r "$OUT/restic" > /dev/null
restic backup -q -r "$OUT/restic" "$DATA" > /dev/null
borg init -e repokey-blake2 "$OUT/borg" > /dev/null 2>&1
borg create --compression zstd,3 "$OUT/borg::a" "$DATA" > /dev/null 2>&1

mkdir -p "$OUT/scratch"
arca_drill=$(time_runs "$ARCA" -r "$OUT/arca" drill latest --scratch "$OUT/scratch")
"$ARCA" -r "$OUT/arca" drill latest --scratch "$OUT/scratch" | sed 's/^/  /'
restic_verify() { rm -rf "$OUT/restic-target"; restic restore -q -r "$OUT/restic" latest --verify --target "$OUT/restic-target"; }
restic_time=$(time_runs restic_verify)
rm -rf "$OUT/restic-target"
borg_time=$(time_runs borg check --verify-data "$OUT/borg")

# The same data on a server: its own restore check.
start_server server --data-dir "$OUT/server"
setup_device acme acme-office laptop
ARCA_REPOSITORY=$SERVER_URL/acme-office ARCA_TOKEN=$DEVICE_TOKEN "$ARCA" init -q > /dev/null
ARCA_REPOSITORY=$SERVER_URL/acme-office ARCA_TOKEN=$DEVICE_TOKEN "$ARCA" backup -q "$DATA" > /dev/null
admin=$(ARCA_SERVER=$SERVER_URL ARCA_ADMIN_PASSWORD=$ADMIN_PASSWORD "$ARCA" admin login --user admin --quiet)
check() { ARCA_SERVER=$SERVER_URL ARCA_TOKEN=$admin "$ARCA" admin restore-check --repo acme-office; }
server_check=$(time_runs check)
summary=$(check | tail -n +2)

mbps() { echo "$BYTES / $1 / 1000000" | bc -l | xargs printf '%.0f'; }
ratio() { echo "$2 / $1" | bc -l | xargs printf '%.2f'; }
echo "data $DATA: $(echo "$BYTES / 1000000" | bc) MB in $(find "$DATA" -type f | wc -l) files; medians of $RUNS"
printf '%-46s %7.2f s %5s MB/s   %s× restic time\n' \
  "arca drill latest (restore + re-hash all)" "$arca_drill" "$(mbps "$arca_drill")" "$(ratio "$restic_time" "$arca_drill")" \
  "restic restore --verify" "$restic_time" "$(mbps "$restic_time")" "1.00" \
  "borg check --verify-data (no restore)" "$borg_time" "$(mbps "$borg_time")" "$(ratio "$restic_time" "$borg_time")" \
  "arca server restore check (no key)" "$server_check" "-" "-"
echo "server restore check said: $summary"
