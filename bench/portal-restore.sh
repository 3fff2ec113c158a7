#!/usr/bin/env bash
# bench/portal-restore.sh - restore in the browser, measured: the same folder of the same
# snapshot downloaded as a tar stream from the web portal (the server decrypts with the key the
# user's session unlocked), as a zip, and as one large file; against `arca dump` through the same
# server (the client decrypts), `restic dump` and `borg export-tar` from local repositories of the
# same data. Each figure is the median of RUNS runs; ratios are against restic.
#
#   bench/portal-restore.sh [DATA_DIR [SUBDIR]]   (default /work/benchdata/linux Documentation)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-/work/benchdata/linux}
SUB=${2:-Documentation}
RUNS=${RUNS:-3}
ARCA=${ARCA:-$PWD/target/release/arca}
OUT=$(mktemp -d /tmp/arca-portal-bench.XXXXXX)
trap 'stop_server; rm -rf "$OUT"' EXIT
. bench/lib-server.sh

export ARCA_PASSWORD=bench-repository-password RESTIC_PASSWORD=bench-repository-password
export BORG_PASSPHRASE=bench-repository-password BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }
time_runs() { for _ in $(seq "$RUNS"); do secs "$@"; done | median; }

start_server server --data-dir "$OUT/server"
setup_device acme acme-office laptop
export ARCA_REPOSITORY=$SERVER_URL/acme-office ARCA_TOKEN=$DEVICE_TOKEN
"$ARCA" init -q > /dev/null
"$ARCA" backup -q "$DATA" > /dev/null
SNAP=$("$ARCA" --json snapshots | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
BYTES=$(du -sb --apparent-size "$DATA/$SUB" | cut -f1)
BIGFILE=$(find "$DATA/$SUB" -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2-)

# A customer's user, signed in: its session cookie is a user token; unlock with the password.
admin=$(ARCA_SERVER=$SERVER_URL ARCA_ADMIN_PASSWORD=$ADMIN_PASSWORD "$ARCA" admin login --user admin --quiet)
ARCA_SERVER=$SERVER_URL ARCA_TOKEN=$admin ARCA_NEW_PASSWORD=customer-password-1 \
  "$ARCA" admin user create boss --role tenant-user --tenant acme > /dev/null
USER_TOKEN=$(ARCA_SERVER=$SERVER_URL ARCA_ADMIN_PASSWORD=customer-password-1 "$ARCA" admin login --user boss --quiet)
COOKIE="arca_session=$USER_TOKEN"
CSRF=$(curl -fsS -b "$COOKIE" "$SERVER_URL/repos/acme-office/restore" | sed -n 's/.*name="csrf" value="\([0-9a-f]*\)".*/\1/p' | head -1)
curl -fsS -o /dev/null -b "$COOKIE" --data-urlencode "csrf=$CSRF" --data-urlencode "password=$ARCA_PASSWORD" \
  "$SERVER_URL/repos/acme-office/restore/unlock"
BASE="$SERVER_URL/repos/acme-office/restore/$SNAP/download$DATA/$SUB"
curl -fsS -b "$COOKIE" -o "$OUT/check.tar" "$BASE?format=tar"
tar -tf "$OUT/check.tar" > /dev/null   # a real tar, or the unlock failed

portal_tar=$(time_runs curl -fsS -b "$COOKIE" -o /dev/null "$BASE?format=tar")
portal_zip=$(time_runs curl -fsS -b "$COOKIE" -o /dev/null "$BASE?format=zip")
portal_file=$(time_runs curl -fsS -b "$COOKIE" -o /dev/null "$SERVER_URL/repos/acme-office/restore/$SNAP/download$BIGFILE")
arca_dump=$(time_runs "$ARCA" dump "$SNAP" "$DATA/$SUB" --target "$OUT/dump.tar")

restic init -q -r "$OUT/restic" > /dev/null
restic backup -q -r "$OUT/restic" "$DATA" > /dev/null
restic_dump=$(time_runs restic dump -q -r "$OUT/restic" latest "$DATA/$SUB")
borg init -e repokey "$OUT/borg" > /dev/null 2>&1
borg create "$OUT/borg::a" "$DATA" > /dev/null 2>&1
borg_tar=$(time_runs borg export-tar "$OUT/borg::a" - "${DATA#/}/$SUB")

mbps() { echo "$BYTES / $1 / 1000000" | bc -l | xargs printf '%.0f'; }
ratio() { echo "$2 / $1" | bc -l | xargs printf '%.2f'; }
echo "folder $DATA/$SUB: $(echo "$BYTES / 1000000" | bc) MB in $(find "$DATA/$SUB" -type f | wc -l) files; medians of $RUNS"
printf '%-34s %7.2f s %5s MB/s   %s× restic time\n' \
  "portal tar (server decrypts)" "$portal_tar" "$(mbps "$portal_tar")" "$(ratio "$restic_dump" "$portal_tar")" \
  "portal zip" "$portal_zip" "$(mbps "$portal_zip")" "$(ratio "$restic_dump" "$portal_zip")" \
  "arca dump via server (client)" "$arca_dump" "$(mbps "$arca_dump")" "$(ratio "$restic_dump" "$arca_dump")" \
  "restic dump (local repo)" "$restic_dump" "$(mbps "$restic_dump")" "1.00" \
  "borg export-tar (local repo)" "$borg_tar" "$(mbps "$borg_tar")" "$(ratio "$restic_dump" "$borg_tar")"
echo "largest file $(basename "$BIGFILE") ($(stat -c %s "$BIGFILE") bytes) from the portal: $portal_file s"
