#!/usr/bin/env bash
# bench/image-chunks.sh - the block size of image backups (issue 14, item 9): what a second backup
# of a disk stores after 1% of it was rewritten in scattered 4 KiB writes (a database, a busy VM),
# for several block sizes, next to restic and borg backing up the same image file in the same run.
#
# For each tool and block size: a fresh repository, a first backup of the image, 1% of the disk
# rewritten at random 4 KiB-aligned offsets (the same offsets and bytes for every tool: a fixed
# seed), a second backup. Reported: the first backup's repository size, what the second added (the
# repository's growth, metadata included), both backup times, and arca's restore time of the
# second snapshot (smaller blocks mean more blobs to look up).
#
# Usage: bench/image-chunks.sh [SIZE_MIB]  (default 1024; the image is 40% random, 20% text, 40% zeros)
#   SIZES="4M 1M 256K 64K 16K default"  arca block sizes to measure (default: no --chunk-size)
#   ARCA=target/release/arca   OUT=bench/out/image-chunks   PEERS=1 (0: arca only)
# Writes $OUT/results.md.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
SIZE_MIB=${1:-1024}
SIZES=${SIZES:-4M 1M 256K 64K 16K default}
OUT=${OUT:-$TOP/bench/out/image-chunks}
ARCA=${ARCA:-$TOP/target/release/arca}
PEERS=${PEERS:-1}
[ -x "$ARCA" ] || (cd "$TOP" && cargo build --release -p arca-cli)
if [ "$PEERS" = 1 ]; then
  need=()
  command -v restic > /dev/null || need+=(restic)
  command -v borg > /dev/null || need+=(borgbackup)
  ((${#need[@]} == 0)) || apt-get install -y -qq "${need[@]}" > /dev/null
fi
export ARCA_PASSWORD=bench ARCA_KDF_MEMORY_KIB=64 ARCA_KDF_ITERATIONS=1 RESTIC_PASSWORD=bench
export BORG_PASSPHRASE=bench BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
unset ARCA_REPOSITORY ARCA_PASSWORD_FILE

rm -rf "$OUT"
mkdir -p "$OUT"
ORIG=$OUT/original.raw
IMG=$OUT/disk.raw
RESULTS=$OUT/results.md
BYTES=$((SIZE_MIB * 1024 * 1024))

now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }
# time_cmd VAR CMD... : runs CMD quietly, stores its wall time in VAR.
time_cmd() {
  local var=$1; shift
  local t0; t0=$(now)
  "$@" > "$OUT/last.out" 2>> "$OUT/errors.log"
  printf -v "$var" '%s' "$(secs "$t0" "$(now)")"
}
size_of() { du -sb "$1" | cut -f1; }
mib() { python3 -c "print(f'{$1 / 1048576:.1f}')"; }
pct() { python3 -c "print(f'{100 * $1 / $2:.0f}%')"; }

echo "making a $SIZE_MIB MiB image (40% random, 20% text, 40% zeros)" >&2
python3 - "$ORIG" "$BYTES" <<'EOF'
import os, sys
path, size = sys.argv[1], int(sys.argv[2])
mib = 1 << 20
text = b"".join(b"line %08d of a log file that compresses well, more or less\n" % i for i in range(20000))
with open(path, "wb") as f:
    f.truncate(size)
    for m in range(size // mib):
        kind = m % 5  # 0,1: random; 2: text; 3,4: zeros (left as holes)
        if kind in (0, 1):
            f.seek(m * mib); f.write(os.urandom(mib))
        elif kind == 2:
            f.seek(m * mib); f.write((text * (mib // len(text) + 1))[:mib])
EOF

# The mutation: 1% of the disk in 4 KiB writes at random aligned offsets, fixed seed.
mutate() {
  python3 - "$1" "$BYTES" <<'EOF'
import random, sys
path, size = sys.argv[1], int(sys.argv[2])
rng = random.Random(14)
blocks = size // 4096
with open(path, "r+b") as f:
    for b in rng.sample(range(blocks), blocks // 100):
        f.seek(b * 4096); f.write(rng.randbytes(4096))
EOF
}
fresh_image() { rm -f "$IMG"; cp --sparse=always "$ORIG" "$IMG"; sync; }

ROWS=()
# row NAME FIRST_BYTES ADDED_BYTES T1 T2 RESTORE
row() { ROWS+=("| $1 | $(mib "$2") | $(mib "$3") | $(pct "$3" "$2") | $4 | $5 | $6 |"); }

for size in $SIZES; do
  repo=$OUT/repo-arca-$size
  fresh_image
  "$ARCA" -r "$repo" init -q
  flag=(--chunk-size "$size" -q); [ "$size" = default ] && flag=(--json)
  time_cmd T1 "$ARCA" -r "$repo" backup --image "$IMG" "${flag[@]}"
  first=$(size_of "$repo")
  mutate "$IMG"
  time_cmd T2 "$ARCA" -r "$repo" backup --image "$IMG" "${flag[@]}"
  [ "$size" != default ] || used=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["chunk_size"] // 1024)' < "$OUT/last.out")
  added=$(($(size_of "$repo") - first))
  rm -f /dev/shm/arca-bench-chunks.raw
  time_cmd TR "$ARCA" -r "$repo" restore latest --image /dev/shm/arca-bench-chunks.raw -q
  cmp /dev/shm/arca-bench-chunks.raw "$IMG" || { echo "arca $size: the restore differs" >&2; exit 1; }
  rm -f /dev/shm/arca-bench-chunks.raw
  if [ "$size" = default ]; then
    label="arca, default (no --chunk-size: ${used}K blocks chosen)"
  else
    label="arca, $size blocks"
  fi
  row "$label" "$first" "$added" "$T1" "$T2" "$TR"
  rm -rf "$repo"
done

if [ "$PEERS" = 1 ]; then
  repo=$OUT/repo-restic
  fresh_image
  restic -r "$repo" init -q > /dev/null
  time_cmd T1 restic -r "$repo" backup -q "$IMG"
  first=$(size_of "$repo")
  mutate "$IMG"
  time_cmd T2 restic -r "$repo" backup -q "$IMG"
  added=$(($(size_of "$repo") - first))
  row "restic $(restic version | cut -d' ' -f2) (content-defined chunks, ~1 MiB)" "$first" "$added" "$T1" "$T2" "-"
  rm -rf "$repo" "$HOME/.cache/restic"

  repo=$OUT/repo-borg
  fresh_image
  borg init -e repokey-blake2 "$repo" > /dev/null
  time_cmd T1 borg create --compression zstd,3 "$repo::one" "$IMG"
  first=$(size_of "$repo")
  mutate "$IMG"
  time_cmd T2 borg create --compression zstd,3 "$repo::two" "$IMG"
  added=$(($(size_of "$repo") - first))
  row "borg $(borg --version | cut -d' ' -f2) (content-defined chunks, ~2 MiB)" "$first" "$added" "$T1" "$T2" "-"
  rm -rf "$repo"
fi
rm -f "$IMG" "$ORIG"

{
  echo "### Image block size: 1% scattered 4 KiB writes, $(date -u '+%Y-%m-%d %H:%M') UTC"
  echo
  echo "- Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- Tools: $("$ARCA" --version)$([ "$PEERS" = 1 ] && echo ", $(restic version | cut -d' ' -f1-2), $(borg --version)")"
  echo "- Image: $SIZE_MIB MiB raw (40% random, 20% text, 40% zeros); then $((BYTES / 4096 / 100)) random 4 KiB blocks"
  echo "  rewritten with random bytes ($(mib $((BYTES / 4096 / 100 * 4096))) MiB, 1%); one run."
  echo
  echo "| Tool | first backup stored (MiB) | second added (MiB) | second / first | first backup (s) | second backup (s) | restore (s) |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${ROWS[@]}"
} > "$RESULTS"
cat "$RESULTS"
