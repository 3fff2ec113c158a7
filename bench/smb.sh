#!/usr/bin/env bash
# bench/smb.sh - the appliance's SMB shares (issue 14) against Samba serving the same kind of folder
# without the appliance, in the same run, with the same client (Debian's smbclient) on loopback:
#
#   - throughput: a 1 GiB file written (put) and read back (get), and /usr/share/doc written
#     (mput) and read back (mget), median of RUNS each;
#   - previous versions: the time `smbclient allinfo` takes to list the versions of a file with
#     100 snapshots (the first time after the appliance starts, and the median of the next RUNS),
#     and to read one old version.
#
# "Plain Samba" is smbd with the appliance's own generated smb.conf minus the previous-versions
# module and share (same users through nss_wrapper, same protocol settings), serving another
# folder on the same disk; the two never run at once.
#
# Usage: bench/smb.sh   (ARCA=target/release/arca  OUT=bench/out/smb  RUNS=3  DOC=/usr/share/doc)
# Writes $OUT/results.md. Needs samba, smbclient, libnss-wrapper and fuse3 (installed if missing).
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$TOP/bench/out/smb}
ARCA=${ARCA:-$TOP/target/release/arca}
RUNS=${RUNS:-3}
DOC=${DOC:-/usr/share/doc}
[ -x "$ARCA" ] || (cd "$TOP" && cargo build --release -p arca-cli)
need=()
[ -x /usr/sbin/smbd ] || need+=(samba)
command -v smbclient > /dev/null || need+=(smbclient)
[ -e /usr/lib/x86_64-linux-gnu/libnss_wrapper.so ] || need+=(libnss-wrapper)
command -v fusermount3 > /dev/null || need+=(fuse3)
((${#need[@]} == 0)) || apt-get install -y -qq "${need[@]}" > /dev/null

export ARCA_PASSWORD=bench ARCA_KDF_MEMORY_KIB=64 ARCA_KDF_ITERATIONS=1
unset ARCA_REPOSITORY ARCA_PASSWORD_FILE
USER_PASSWORD="bench share password"
rm -rf "$OUT"
mkdir -p "$OUT"/{share,plain-share,work,get}
RESULTS=$OUT/results.md
APP_PID=
PLAIN_PID=
cleanup() {
  [ -n "$APP_PID" ] && kill "$APP_PID" 2> /dev/null && wait "$APP_PID" 2> /dev/null
  [ -n "$PLAIN_PID" ] && kill -- -"$PLAIN_PID" 2> /dev/null
  true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# smb PORT SHARE COMMANDS : runs smbclient's commands as the bench user, quietly.
smb() { smbclient "//127.0.0.1/$2" -p "$1" -U "alice%$USER_PASSWORD" -c "$3" > "$OUT/smbclient.log" 2>&1 || { cat "$OUT/smbclient.log" >&2; return 1; }; }
wait_port() { for _ in $(seq 200); do (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; return 1; }

echo "making 1 GiB of random data and copying $DOC" >&2
head -c $((1 << 30)) /dev/urandom > "$OUT/work/big.bin"
# Symbolic links (Debian links docs of one package to another's) are copied as what they point to:
# SMB clients copy contents, not links.
cp -rL "$DOC" "$OUT/work/doc" 2> /dev/null || true
find "$OUT/work/doc" -type l -delete
# SMB names are case-insensitive (as Windows'): of files whose names differ only in case, one stays.
find "$OUT/work/doc" -type f | awk '{ l = tolower($0); if (seen[l]++) print }' | while IFS= read -r f; do rm -f "$f"; done
DOC_FILES=$(find "$OUT/work/doc" -type f | wc -l)
DOC_BYTES=$(du -sb "$OUT/work/doc" | cut -f1)

# The appliance, its repository and 100 snapshots (one minute apart, as `--time` records them) of
# a one-file folder, for the listing figure.
"$ARCA" init -r "$OUT/repo" > /dev/null 2>&1
for i in $(seq 100); do
  printf 'version %d\n' "$i" > "$OUT/share/report.txt"
  t=$(date -u -d "@$((1767225600 + i * 60))" +%Y-%m-%dT%H:%M:%SZ)
  "$ARCA" --quiet backup -r "$OUT/repo" --tag share:docs --time "$t" "$OUT/share" > /dev/null ||
    { echo "backup $i failed" >&2; exit 1; }
done
HASHES=$(ARCA_NEW_PASSWORD=$USER_PASSWORD "$ARCA" appliance hash-password --smb)
SMB_PORT=$(free_port)
cat > "$OUT/appliance.toml" << EOF
listen = "127.0.0.1:0"
data_dir = "$OUT/state"
[repository]
path = "$OUT/repo"
password = "bench"
[users.alice]
$HASHES
[shares.docs]
path = "$OUT/share"
[smb]
listen = "127.0.0.1:$SMB_PORT"
EOF
start_appliance() {
  "$ARCA" appliance -c "$OUT/appliance.toml" > "$OUT/appliance.out" 2> "$OUT/appliance.log" &
  APP_PID=$!
  for _ in $(seq 300); do grep -q "listening on" "$OUT/appliance.out" 2> /dev/null && return 0; sleep 0.1; done
  cat "$OUT/appliance.log" >&2
  return 1
}
start_appliance

# timed PORT SHARE COMMANDS : the seconds one smbclient run of COMMANDS takes.
timed() { local t0; t0=$(now); smb "$@"; echo "$(now) - $t0" | bc; }
# median_of PORT SHARE COMMANDS : the median of RUNS such runs.
median_of() { for _ in $(seq "$RUNS"); do timed "$@"; done | median; }

# Previous versions of a file with 100 snapshots.
first_list=$(timed "$SMB_PORT" docs "allinfo report.txt")
versions=$(grep '^@GMT-' "$OUT/smbclient.log" | sort -u | wc -l)
warm_list=$(median_of "$SMB_PORT" docs "allinfo report.txt")
oldest=$(grep '^@GMT-' "$OUT/smbclient.log" | sort | head -1)
read_old=$(timed "$SMB_PORT" docs "get $oldest\\report.txt $OUT/get/old.txt")
grep -q '^version 1$' "$OUT/get/old.txt" || { echo "the oldest version read back wrong" >&2; exit 1; }
# For scale: one smbclient run that lists the folder (connect, sign in, ls, disconnect).
baseline=$(median_of "$SMB_PORT" docs "ls")
kill "$APP_PID"
wait "$APP_PID" 2> /dev/null || true
APP_PID=

# Plain Samba: the appliance's generated configuration without previous versions.
PLAIN=$OUT/plain
PLAIN_PORT=$(free_port)
mkdir -p "$PLAIN"
cp -a "$OUT/state/samba/"{passwd,group,private} "$PLAIN/"
for d in lock state cache run log ncalrpc; do mkdir -p "$PLAIN/$d"; done
sed -e "s#$OUT/state/samba#$PLAIN#g" -e "s#^  smb ports = .*#  smb ports = $PLAIN_PORT#" \
  -e "s#^  path = $OUT/share\$#  path = $OUT/plain-share#" -e '/shadow/d' -e '/vfs objects/d' \
  "$OUT/state/samba/smb.conf" | awk '/^\[docs-versions\]/{skip=1} /^\[docs\]/{skip=0} !skip' > "$PLAIN/smb.conf"
start_plain() {
  LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libnss_wrapper.so NSS_WRAPPER_PASSWD=$PLAIN/passwd NSS_WRAPPER_GROUP=$PLAIN/group \
    setsid /usr/sbin/smbd --foreground --no-process-group --configfile="$PLAIN/smb.conf" < /dev/null > /dev/null 2>&1 &
  PLAIN_PID=$!
  wait_port "$PLAIN_PORT"
}

# one_run NAME PORT DIR : one put and get of the big file and of the doc tree; appends the times
# to $OUT/times.NAME.{put,get,mput,mget}. Dirty pages are written out first (sync), so that one
# server's writes are not flushed on the other's time.
one_run() {
  local port=$2 dir=$3
  rm -rf "${dir:?}"/* "$OUT/get"/*
  sync
  timed "$port" docs "lcd $OUT/work; put big.bin" >> "$OUT/times.$1.put"
  sync
  timed "$port" docs "get big.bin $OUT/get/big.bin" >> "$OUT/times.$1.get"
  cmp -s "$OUT/work/big.bin" "$OUT/get/big.bin" || { echo "$1: the 1 GiB file read back differs" >&2; exit 1; }
  rm -f "$OUT/get/big.bin"
  sync
  timed "$port" docs "lcd $OUT/work; prompt OFF; recurse ON; mput doc" >> "$OUT/times.$1.mput"
  sync
  timed "$port" docs "lcd $OUT/get; prompt OFF; recurse ON; mget doc" >> "$OUT/times.$1.mget"
  [ "$(find "$OUT/get/doc" -type f | wc -l)" = "$DOC_FILES" ] || { echo "$1: mget brought back another number of files" >&2; exit 1; }
}
# Both servers run side by side (their own ports, folders and state); runs alternate between
# them, so neither always goes first.
rm -f "$OUT/share/report.txt"
start_appliance
start_plain
for i in $(seq "$RUNS"); do
  echo "run $i of $RUNS" >&2
  if ((i % 2)); then one_run plain "$PLAIN_PORT" "$OUT/plain-share"; one_run app "$SMB_PORT" "$OUT/share"
  else one_run app "$SMB_PORT" "$OUT/share"; one_run plain "$PLAIN_PORT" "$OUT/plain-share"; fi
done
for who in plain app; do
  for op in put get mput mget; do
    eval "${who}_${op}=$(median < "$OUT/times.$who.$op")"
  done
done

mibs() { echo "scale=1; $2 / 1048576 / $1" | bc; }
ratio() { echo "scale=2; $2 / $1" | bc; } # speed of the appliance over plain Samba = plain time / appliance time
{
  echo "# SMB: the appliance against plain Samba ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, smbd $(/usr/sbin/smbd --version | cut -d' ' -f2), median of $RUNS)"
  echo
  echo "| transfer | plain Samba | appliance | appliance speed / plain |"
  echo "|---|---|---|---|"
  echo "| 1 GiB file, put | ${plain_put} s ($(mibs "$plain_put" $((1 << 30))) MiB/s) | ${app_put} s ($(mibs "$app_put" $((1 << 30))) MiB/s) | $(ratio "$app_put" "$plain_put") |"
  echo "| 1 GiB file, get | ${plain_get} s ($(mibs "$plain_get" $((1 << 30))) MiB/s) | ${app_get} s ($(mibs "$app_get" $((1 << 30))) MiB/s) | $(ratio "$app_get" "$plain_get") |"
  echo "| $DOC ($DOC_FILES files, $((DOC_BYTES / 1048576)) MiB), mput | ${plain_mput} s | ${app_mput} s | $(ratio "$app_mput" "$plain_mput") |"
  echo "| $DOC, mget | ${plain_mget} s | ${app_mget} s | $(ratio "$app_mget" "$plain_mget") |"
  echo
  echo "Previous versions of a file with 100 snapshots ($versions listed by allinfo):"
  echo "first listing after start ${first_list} s, then median ${warm_list} s; reading the oldest version ${read_old} s"
  echo "(each figure is a whole smbclient run: connect, sign in, the command, disconnect; a run that only lists the folder takes ${baseline} s)."
} > "$RESULTS"
cat "$RESULTS"
