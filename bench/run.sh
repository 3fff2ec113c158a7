#!/usr/bin/env bash
# bench/run.sh - side-by-side benchmark of arca against restic and borg.
#
# Usage:  bench/run.sh [--quick] [--help]
#
# Environment (all optional):
#   DATA=/work/benchdata      data built by ../shared/bench/mkdata.sh (built here if missing)
#   OUT=bench/out             results, logs, repositories (must be on disk, not tmpfs);
#                             --quick defaults to bench/out/quick
#   RUNS=3                    runs per figure and tool (--quick: 1)
#   ARCA=target/release/arca  arca binary; the default one is built if missing (BUILD=0 to skip)
#   FIGURES=first,second,restore,big,random
#                             figures to measure; "repo" and "mem" are accepted too
#                             (repo size comes with second/restore, peak memory with first/restore)
#   VERIFY=count              restore check: count (file count + bytes), full (content
#                             fingerprint), none
#   STEP_TIMEOUT=3600         seconds before any single command is killed (recorded as FAIL)
#   RESTORE_DIR=/dev/shm/arca-bench-restore
#   QUICK_BYTES=67108864      size of the big/random slices used by --quick
#   KEEP_REPOS=0              1 keeps the last repository of each tool under $OUT/repos
#
# See bench/README.md for what each figure means.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

QUICK=0
for arg in "$@"; do
  case $arg in
    --quick) QUICK=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; usage >&2; exit 2 ;;
  esac
done

# ---------------------------------------------------------------- locations
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$SCRIPT_DIR" && git rev-parse --show-toplevel 2>/dev/null) || TOP=$(cd "$SCRIPT_DIR/.." && pwd)
SHARED=$TOP/../shared
[ -x "$SHARED/bench/mkdata.sh" ] || [ -f "$SHARED/bench/mkdata.sh" ] || SHARED=/work/shared
MKDATA=$SHARED/bench/mkdata.sh

abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }

DATA=$(abspath "${DATA:-/work/benchdata}")
if [ "$QUICK" = 1 ]; then
  OUT=$(abspath "${OUT:-$TOP/bench/out/quick}")
  RUNS=${RUNS:-1}
else
  OUT=$(abspath "${OUT:-$TOP/bench/out}")
  RUNS=${RUNS:-3}
fi
ARCA_DEFAULT=$TOP/target/release/arca
ARCA=$(abspath "${ARCA:-$ARCA_DEFAULT}")
FIGURES=${FIGURES:-first,second,restore,big,random}
VERIFY=${VERIFY:-count}
STEP_TIMEOUT=${STEP_TIMEOUT:-3600}
RESTORE_DIR=${RESTORE_DIR:-/dev/shm/arca-bench-restore}
QUICK_BYTES=${QUICK_BYTES:-67108864}
KEEP_REPOS=${KEEP_REPOS:-0}
BUILD=${BUILD:-1}
PASSWORD=arca-bench-password

case $RUNS in ''|*[!0-9]*|0) echo "RUNS must be a positive integer" >&2; exit 2 ;; esac
case $VERIFY in count|full|none) ;; *) echo "VERIFY must be count, full or none" >&2; exit 2 ;; esac

has_fig() { case ",$FIGURES," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
for f in ${FIGURES//,/ }; do
  case $f in first|second|restore|repo|mem|big|random) ;;
    *) echo "unknown figure '$f' (known: first,second,restore,repo,mem,big,random)" >&2; exit 2 ;; esac
done
NEED_TREE=0; NEED_B2=0; NEED_RESTORE=0
{ has_fig first || has_fig second || has_fig restore || has_fig repo || has_fig mem; } && NEED_TREE=1
{ has_fig second || has_fig restore || has_fig repo; } && NEED_B2=1
{ has_fig restore || has_fig mem; } && NEED_RESTORE=1 && NEED_B2=1

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# ---------------------------------------------------------------- tools
need_pkgs=()
command -v restic >/dev/null || need_pkgs+=(restic)
command -v borg >/dev/null || need_pkgs+=(borgbackup)
[ -x /usr/bin/time ] || need_pkgs+=(time)
command -v rsync >/dev/null || need_pkgs+=(rsync)
command -v zstd >/dev/null || need_pkgs+=(zstd)
command -v python3 >/dev/null || need_pkgs+=(python3)
command -v timeout >/dev/null || need_pkgs+=(coreutils)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing: ${need_pkgs[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${need_pkgs[@]}"
fi

if [ ! -x "$ARCA" ] && [ "$ARCA" = "$ARCA_DEFAULT" ] && [ "$BUILD" != 0 ]; then
  log "building arca: cargo build --release -p arca-cli"
  (cd "$TOP" && cargo build --release -p arca-cli) || log "WARNING: arca build failed; arca cells will be FAIL"
fi
[ -x "$ARCA" ] || log "WARNING: arca binary $ARCA not found; arca cells will be FAIL"

# ---------------------------------------------------------------- data
if [ ! -d "$DATA/linux" ] || [ ! -d "$DATA/linux-v2" ] || [ ! -f "$DATA/big.tar" ] || [ ! -f "$DATA/random.bin" ]; then
  log "building benchmark data in $DATA ($MKDATA prepare)"
  DATA=$DATA bash "$MKDATA" prepare
fi

mkdir -p "$OUT/logs" "$OUT/repos" "$OUT/state" "$OUT/work"
rm -f "$OUT"/logs/*.log
[ "$(stat -f -c %T "$OUT")" = tmpfs ] && log "WARNING: OUT=$OUT is on tmpfs; repositories should be on disk"

if [ "$QUICK" = 1 ]; then
  SUBSET=drivers/net
  SRC_V1=$DATA/linux/$SUBSET
  SRC_V2=$DATA/linux-v2/$SUBSET
  QD=$OUT/quick-data
  mkdir -p "$QD"
  for f in big.tar random.bin; do
    if [ "$(stat -c %s "$QD/$f" 2>/dev/null || echo 0)" != "$QUICK_BYTES" ]; then
      head -c "$QUICK_BYTES" "$DATA/$f" > "$QD/$f"
    fi
  done
  BIG=$QD/big.tar
  RND=$QD/random.bin
  TREE_LABEL="Linux drivers/net (quick)"
else
  SRC_V1=$DATA/linux
  SRC_V2=$DATA/linux-v2
  BIG=$DATA/big.tar
  RND=$DATA/random.bin
  TREE_LABEL="Linux tree"
fi
WORK=$OUT/work
SRC=$WORK/src        # working copy: v1 for the first backup, rsynced to v2 for the second

TRASH=$OUT/trash
rm -rf "$TRASH"
cleanup() { rm -rf "$RESTORE_DIR" "$TRASH"; }
trap cleanup EXIT

RAW=$OUT/raw.csv
echo "group,run,tool,step,status,wall_s,maxrss_kib,bytes" > "$RAW"

# ---------------------------------------------------------------- helpers
# warm SRC...: read every regular file once (not `tar -cf /dev/null`: GNU tar skips
# reading file contents when the archive is /dev/null)
warm() {
  local p
  for p in "$@"; do
    if [ -d "$p" ]; then find "$p" -type f -print0 | xargs -0 -r cat > /dev/null
    else cat "$p" > /dev/null; fi
  done
}

# measure LOG CWD CMD... -> M_RC, M_WALL (s), M_RSS (KiB)
measure() {
  local logf=$1 cwd=$2 tf last
  shift 2
  tf=$(mktemp)
  sync
  set +e
  ( cd "$cwd" && exec /usr/bin/time -f '%e %M' -o "$tf" timeout -k 10 "$STEP_TIMEOUT" "$@" ) \
    < /dev/null >> "$logf" 2>&1
  M_RC=$?
  set -e
  last=$(tail -n 1 "$tf" 2>/dev/null || true)
  rm -f "$tf"
  M_WALL=NA; M_RSS=NA
  if [[ $last =~ ^([0-9.]+)\ ([0-9]+)$ ]]; then M_WALL=${BASH_REMATCH[1]}; M_RSS=${BASH_REMATCH[2]}; fi
  if [ "$M_WALL" = NA ] && [ "$M_RC" = 0 ]; then M_RC=1; fi
  echo "== exit $M_RC, wall ${M_WALL}s, maxrss ${M_RSS}KiB" >> "$logf"
}

# quiet LOG CMD...: untimed command, output to LOG
quiet() {
  local logf=$1; shift
  echo "== $*" >> "$logf"
  timeout -k 10 "$STEP_TIMEOUT" "$@" < /dev/null >> "$logf" 2>&1
}

record() { # group run tool step status wall rss bytes
  echo "$1,$2,$3,$4,$5,$6,$7,$8" >> "$RAW"
  local extra=""
  [ -n "$8" ] && extra=", $8 bytes"
  log "$1 run $2: $3 $4: $5 (${6}s, ${7} KiB$extra)"
}

# use_tool TOOL: point every tool's environment at this tool's repository and state
use_tool() {
  TOOL=$1
  REPO=$OUT/repos/$TOOL
  STATE=$OUT/state/$TOOL
  export ARCA_REPOSITORY=$REPO ARCA_PASSWORD=$PASSWORD
  export RESTIC_REPOSITORY=$REPO RESTIC_PASSWORD=$PASSWORD
  export BORG_PASSPHRASE=$PASSWORD BORG_DISPLAY_PASSPHRASE=no
  export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
  # caches (restic, borg, and arca if it follows XDG) live with the repository
  export XDG_CACHE_HOME=$STATE/cache XDG_CONFIG_HOME=$STATE/config
}
reset_repo() { rm -rf "$REPO" "$STATE"; mkdir -p "$STATE"; }
# Repositories are moved aside and deleted only when the script ends: on this disk's ext4,
# freeing many inodes makes every file created in the following minutes slow (see
# ../shared/bench/README.md), which would bias the next tool's timed backup.
drop_repo() {
  local d
  [ "$KEEP_REPOS" = 1 ] && return 0
  d=$TRASH/$(date +%s%N)-$TOOL
  mkdir -p "$d"
  [ ! -e "$REPO" ] || mv "$REPO" "$d/repo"
  [ ! -e "$STATE" ] || mv "$STATE" "$d/state"
}

tool_init() { # LOG
  case $TOOL in
    arca) quiet "$1" "$ARCA" init ;;
    restic) quiet "$1" restic init ;;
    borg) quiet "$1" borg init -e repokey-blake2 "$REPO" ;;
  esac || return 1
  # a repository must exist afterwards (catches a binary that exits 0 without doing anything)
  [ -d "$REPO" ] && [ -n "$(ls -A "$REPO")" ] || { echo "== no repository at $REPO after init" >> "$1"; return 1; }
}

tool_backup() { # LOG NAME PATH  (timed)
  case $TOOL in
    arca) measure "$1" "$WORK" "$ARCA" backup "$3" ;;
    restic) measure "$1" "$WORK" restic backup "$3" ;;
    borg) measure "$1" "$WORK" borg create --compression zstd,3 "$REPO::$2" "$3" ;;
  esac
}

tool_restore() { # LOG NAME TARGET  (timed)
  case $TOOL in
    arca) measure "$1" "$3" "$ARCA" restore latest --target "$3" ;;
    restic) measure "$1" "$3" restic restore latest --target "$3" ;;
    borg) measure "$1" "$3" borg extract "$REPO::$2" ;;
  esac
}

count_json_list() {
  python3 -c '
import json, sys
d = json.load(sys.stdin)
if isinstance(d, dict):
    d = next(v for v in d.values() if isinstance(v, list))
print(len(d))'
}

snap_count() { # LOG -> prints number of snapshots
  case $TOOL in
    arca) timeout 600 "$ARCA" snapshots --json < /dev/null 2>> "$1" | count_json_list ;;
    restic) timeout 600 restic snapshots --json < /dev/null 2>> "$1" | count_json_list ;;
    borg) timeout 600 borg list --short "$REPO" < /dev/null 2>> "$1" | wc -l ;;
  esac
}

# status_of LOG EXPECTED_SNAPSHOTS: ok | FAIL (non-zero exit) | BAD (snapshot missing)
backup_status() {
  local n
  [ "$M_RC" = 0 ] || { echo FAIL; return; }
  n=$(snap_count "$1" 2>> "$1") || n="?"
  echo "== snapshots: $n (expected $2)" >> "$1"
  [ "$n" = "$2" ] && echo ok || echo BAD
}

tree_stats() { # DIR -> "files bytes"
  find "$1" -type f -printf '%s\n' | awk '{n++; b+=$1} END {printf "%d %d\n", n, b}'
}

verify_restore() { # LOG TARGET -> 0 if the restored tree matches $SRC
  local root=$2/${SRC#/} want got
  [ -d "$root" ] || root=$2
  [ "$VERIFY" = none ] && return 0
  want=$(tree_stats "$SRC"); got=$(tree_stats "$root")
  echo "== verify $root: files/bytes $got (source $want)" >> "$1"
  [ "$want" = "$got" ] || return 1
  if [ "$VERIFY" = full ]; then
    want=$(bash "$MKDATA" fingerprint "$SRC"); got=$(bash "$MKDATA" fingerprint "$root")
    echo "== verify fingerprint $got (source $want)" >> "$1"
    [ "$want" = "$got" ] || return 1
  fi
}

rotate() { # RUN TOOL... -> tools rotated by RUN-1, so every tool takes every slot
  local r=$1; shift
  local a=("$@") n=$# i
  for ((i = 0; i < n; i++)); do printf '%s\n' "${a[$(((i + r - 1) % n))]}"; done
}

# ---------------------------------------------------------------- figures 1-5: Linux tree
tree_sequence() { # RUN TOOL
  local r=$1 lg st st1 st2 sz
  use_tool "$2"
  lg=$OUT/logs/tree-r$r-$TOOL
  reset_repo
  rsync -a --delete "$SRC_V1/" "$SRC/"
  if ! tool_init "$lg-init.log"; then
    record tree "$r" "$TOOL" backup1 FAIL NA NA ""
    [ "$NEED_B2" = 1 ] && record tree "$r" "$TOOL" backup2 FAIL NA NA "" && record tree "$r" "$TOOL" repo FAIL NA NA ""
    [ "$NEED_RESTORE" = 1 ] && record tree "$r" "$TOOL" restore FAIL NA NA ""
    drop_repo; return 0
  fi
  warm "$SRC"
  tool_backup "$lg-backup1.log" first "$SRC"
  st1=$(backup_status "$lg-backup1.log" 1)
  record tree "$r" "$TOOL" backup1 "$st1" "$M_WALL" "$M_RSS" ""
  st2=FAIL
  if [ "$NEED_B2" = 1 ]; then
    if [ "$st1" = ok ]; then
      rsync -a --delete "$SRC_V2/" "$SRC/"
      warm "$SRC"
      tool_backup "$lg-backup2.log" second "$SRC"
      st2=$(backup_status "$lg-backup2.log" 2)
      record tree "$r" "$TOOL" backup2 "$st2" "$M_WALL" "$M_RSS" ""
      if [ "$st2" = ok ]; then
        sz=$(du -sb "$REPO" | cut -f1)
        record tree "$r" "$TOOL" repo ok NA NA "$sz"
      else
        record tree "$r" "$TOOL" repo FAIL NA NA ""
      fi
    else
      record tree "$r" "$TOOL" backup2 FAIL NA NA ""
      record tree "$r" "$TOOL" repo FAIL NA NA ""
    fi
  fi
  if [ "$NEED_RESTORE" = 1 ]; then
    if [ "$st2" = ok ]; then
      rm -rf "$RESTORE_DIR"; mkdir -p "$RESTORE_DIR"
      tool_restore "$lg-restore.log" second "$RESTORE_DIR"
      if [ "$M_RC" != 0 ]; then st=FAIL
      elif verify_restore "$lg-restore.log" "$RESTORE_DIR"; then st=ok
      else st=BAD; fi
      record tree "$r" "$TOOL" restore "$st" "$M_WALL" "$M_RSS" ""
      rm -rf "$RESTORE_DIR"
    else
      record tree "$r" "$TOOL" restore FAIL NA NA ""
    fi
  fi
  drop_repo
}

# ---------------------------------------------------------------- figures 6-7: one big file
file_sequence() { # GROUP RUN TOOL FILE
  local g=$1 r=$2 f=$4 lg sz st
  sz=$(stat -c %s "$f")
  lg=$OUT/logs/$g-r$r-$3
  case $3 in
    zstd) warm "$f"; measure "$lg.log" "$WORK" bash -c 'exec zstd -3 -T2 -q -c -- "$1" > /dev/null' _ "$f"
          st=ok; [ "$M_RC" = 0 ] || st=FAIL
          record "$g" "$r" zstd "$g" "$st" "$M_WALL" "$M_RSS" "$sz"; return 0 ;;
    cat)  warm "$f"; measure "$lg.log" "$WORK" bash -c 'exec cat -- "$1" > /dev/null' _ "$f"
          st=ok; [ "$M_RC" = 0 ] || st=FAIL
          record "$g" "$r" cat "$g" "$st" "$M_WALL" "$M_RSS" "$sz"; return 0 ;;
    copy) # the physical floor of any backup of this file: write it once to the repository disk
          warm "$f"; rm -f "$OUT/copy.bin"
          measure "$lg.log" "$WORK" bash -c 'cp -- "$1" "$2" && sync -f "$2"' _ "$f" "$OUT/copy.bin"
          st=ok; [ "$M_RC" = 0 ] || st=FAIL; rm -f "$OUT/copy.bin"
          record "$g" "$r" copy "$g" "$st" "$M_WALL" "$M_RSS" "$sz"; return 0 ;;
  esac
  use_tool "$3"
  reset_repo
  if ! tool_init "$lg-init.log"; then
    record "$g" "$r" "$TOOL" "$g" FAIL NA NA "$sz"; drop_repo; return 0
  fi
  warm "$f"
  tool_backup "$lg-backup.log" "$g" "$f"
  st=$(backup_status "$lg-backup.log" 1)
  record "$g" "$r" "$TOOL" "$g" "$st" "$M_WALL" "$M_RSS" "$sz"
  drop_repo
}

# ---------------------------------------------------------------- run
log "arca bench: DATA=$DATA OUT=$OUT RUNS=$RUNS FIGURES=$FIGURES quick=$QUICK"
log "arca=$ARCA; $(restic version | head -1); $(borg --version); $(zstd --version | head -1)"
START_DATE=$(date -u +'%Y-%m-%d %H:%M UTC')

if [ "$NEED_TREE" = 1 ]; then
  if [ -d "$SRC" ]; then rsync -a --delete "$SRC_V1/" "$SRC/"; else cp -a "$SRC_V1" "$SRC"; fi
  for ((r = 1; r <= RUNS; r++)); do
    for t in $(rotate "$r" arca restic borg); do tree_sequence "$r" "$t"; done
  done
fi
if has_fig big; then
  for ((r = 1; r <= RUNS; r++)); do
    for t in $(rotate "$r" arca restic borg zstd); do file_sequence big "$r" "$t" "$BIG"; done
  done
fi
if has_fig random; then
  for ((r = 1; r <= RUNS; r++)); do
    for t in $(rotate "$r" arca restic borg cat copy); do file_sequence random "$r" "$t" "$RND"; done
  done
fi

# ---------------------------------------------------------------- summary
ARCA_REV=$(cd "$TOP" && git rev-parse --short HEAD 2>/dev/null || echo "uncommitted")
[ -z "$(cd "$TOP" && git status --porcelain 2>/dev/null | grep -v '^?? bench/' | head -1)" ] || ARCA_REV="$ARCA_REV, dirty tree"
export RAW OUT RUNS FIGURES QUICK START_DATE TREE_LABEL ARCA_REV
export M_HOST=$(hostname) M_CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
export M_NPROC=$(nproc) M_MEM="$(free -g | awk '/^Mem:/ {print $2 " GiB"}')" M_KERNEL=$(uname -r)
export V_RESTIC="$(restic version | head -1 | cut -d' ' -f1-2)" V_BORG="$(borg --version)"
export V_ZSTD="zstd $(zstd --version | grep -o 'v[0-9][0-9.]*' | head -1)"
export V_ARCA="$(timeout 10 "$ARCA" --version < /dev/null 2>/dev/null | head -1 || true)"
export BIG_NAME=$(basename "$BIG") RND_NAME=$(basename "$RND") BIG_SIZE=$(stat -c %s "$BIG") RND_SIZE=$(stat -c %s "$RND")

python3 - <<'PY'
import csv, os, statistics

rows = list(csv.DictReader(open(os.environ["RAW"])))
E = os.environ

def values(group, tool, step, metric):
    """(list of values from ok runs, number of runs, list of non-ok statuses)"""
    vals, n, bad = [], 0, []
    for r in rows:
        if r["group"] != group or r["tool"] != tool or r["step"] != step:
            continue
        n += 1
        if r["status"] != "ok":
            bad.append(r["status"])
            continue
        v = metric(r)
        if v is not None:
            vals.append(v)
    return vals, n, bad

def wall(r):
    return float(r["wall_s"]) if r["wall_s"] not in ("", "NA") else None
def rss_mib(r):
    return int(r["maxrss_kib"]) / 1024 if r["maxrss_kib"] not in ("", "NA") else None
def size_mb(r):
    return int(r["bytes"]) / 1e6 if r["bytes"] else None
def thr(r):
    w = wall(r)
    return int(r["bytes"]) / max(w, 0.01) / 1e6 if w is not None else None

tree = E["TREE_LABEL"]
FIGS = [
    ("tree", "backup1", wall,    f"First backup, {tree} (s)", "lower"),
    ("tree", "backup2", wall,    f"Second backup, mutated tree (s)", "lower"),
    ("tree", "restore", wall,    f"Restore latest to tmpfs (s)", "lower"),
    ("tree", "repo",    size_mb, f"Repository size after 2 backups (MB)", "lower"),
    ("tree", "backup1", rss_mib, f"Peak RSS, first backup (MiB)", "lower"),
    ("tree", "restore", rss_mib, f"Peak RSS, restore (MiB)", "lower"),
    ("big",    "big",    thr,    f"{E['BIG_NAME']} backup ({int(E['BIG_SIZE'])/1e6:.0f} MB) throughput (MB/s)", "higher"),
    ("random", "random", thr,    f"{E['RND_NAME']} backup ({int(E['RND_SIZE'])/1e6:.0f} MB) throughput (MB/s)", "higher"),
]
REFS = [
    ("big", "zstd", thr, f"`zstd -3 -T2 -c {E['BIG_NAME']} > /dev/null` (MB/s)"),
    ("random", "cat", thr, f"`cat {E['RND_NAME']} > /dev/null`, page cache (MB/s)"),
    ("random", "copy", thr, f"`cp {E['RND_NAME']}` to the repository disk + `sync` (MB/s)"),
]

def fmt(x):
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"

def cell(group, tool, step, metric):
    vals, n, bad = values(group, tool, step, metric)
    if n == 0:
        return None, "-"
    if not vals:
        return None, "FAIL" if "FAIL" in bad else "BAD"
    m = statistics.median(vals)
    s = fmt(m)
    if bad:
        s += f" ({len(vals)}/{n} ok)"
    return m, s

def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b not in (None, 0) else "-"

lines = []
lines.append("| Figure | better | arca | restic | borg | arca/restic | arca/borg |")
lines.append("|---|---|---:|---:|---:|---:|---:|")
for group, step, metric, label, better in FIGS:
    cells = {t: cell(group, t, step, metric) for t in ("arca", "restic", "borg")}
    if all(c[1] == "-" for c in cells.values()):
        continue
    a, r, b = cells["arca"], cells["restic"], cells["borg"]
    lines.append(f"| {label} | {better} | {a[1]} | {r[1]} | {b[1]} | {ratio(a[0], r[0])} | {ratio(a[0], b[0])} |")

ref_lines = []
for group, tool, metric, label in REFS:
    ref = cell(group, tool, group, metric)
    if ref[1] == "-":
        continue
    a = cell(group, "arca", group, thr)
    ref_lines.append(f"| {label} | {ref[1]} | {a[1]} | {ratio(a[0], ref[0])} |")
if ref_lines:
    ref_lines = ["| Reference | reference | arca | arca/reference |", "|---|---:|---:|---:|"] + ref_lines

problems = [r for r in rows if r["status"] != "ok"]

md = []
md.append(f"# arca benchmark {'(quick smoke test) ' if E['QUICK'] == '1' else ''}{E['START_DATE']}")
md.append("")
md.append(f"- Machine: {E['M_HOST']}, {E['M_CPU']}, {E['M_NPROC']} cores, {E['M_MEM']}, Linux {E['M_KERNEL']}")
md.append(f"- Tools: arca {E['V_ARCA'] + ' ' if E['V_ARCA'] else ''}(git {E['ARCA_REV']}), {E['V_RESTIC']}, {E['V_BORG']}, {E['V_ZSTD']}; encryption on for all "
          "(restic default, borg repokey-blake2 + zstd,3)")
md.append(f"- Median of {E['RUNS']} run(s) per cell, tools taking turns; figures: {E['FIGURES']}. "
          "Ratios are arca divided by the peer: below 1 is better for times/sizes/memory, above 1 for throughput. "
          "Differences under about 5% are noise.")
md.append("")
md += lines
if ref_lines:
    md.append("")
    md += ref_lines
if problems:
    md.append("")
    md.append("Failed runs (FAIL: non-zero exit or timeout; BAD: snapshot missing or restored tree differs); "
              "logs under `" + os.path.join(E["OUT"], "logs") + "`:")
    md.append("")
    for r in problems:
        md.append(f"- {r['group']} run {r['run']} {r['tool']} {r['step']}: {r['status']}")
text = "\n".join(md) + "\n"
open(os.path.join(E["OUT"], "results.md"), "w").write(text)
print()
print(text)
PY
log "wrote $OUT/results.md and $RAW"
