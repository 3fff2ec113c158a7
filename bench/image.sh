#!/usr/bin/env bash
# bench/image.sh - recovery services: disk-image backup and restore throughput against
# `qemu-img convert` of the same image, NBD sequential read throughput, and time to first byte of
# a file in a freshly mounted repository (cold blob cache; page cache dropped when allowed).
#
# Usage: bench/image.sh [SIZE_MIB]   (default 512; the image is 40% random, 20% text, 40% zeros)
#   ARCA=target/release/arca  arca binary (built with `cargo build --release -p arca-cli` if missing)
#   OUT=bench/out/image       scratch directory (removed and recreated)
# Needs qemu-img (qemu-utils), fusermount3 (fuse3) and python3. Writes $OUT/results.md.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
SIZE_MIB=${1:-512}
OUT=${OUT:-$TOP/bench/out/image}
ARCA=${ARCA:-$TOP/target/release/arca}
[ -x "$ARCA" ] || (cd "$TOP" && cargo build --release -p arca-cli)
export ARCA_PASSWORD=bench ARCA_KDF_MEMORY_KIB=64 ARCA_KDF_ITERATIONS=1
unset ARCA_REPOSITORY ARCA_PASSWORD_FILE

rm -rf "$OUT"
mkdir -p "$OUT"
IMG=$OUT/disk.raw
REPO=$OUT/repo
MNT=$OUT/mnt
RESULTS=$OUT/results.md
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  mountpoint -q "$MNT" 2>/dev/null && fusermount3 -u "$MNT" || true
}
trap cleanup EXIT

now() { date +%s.%N; }
# secs START END
secs() { python3 -c "print(f'{$2 - $1:.3f}')"; }
# mbps BYTES SECONDS
mbps() { python3 -c "print(f'{$1 / 1e6 / $2:.0f}')"; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null && echo yes || echo no; }
# time_cmd VAR CMD... : runs CMD, stores its wall time in seconds in VAR.
time_cmd() {
  local var=$1; shift
  local t0; t0=$(now)
  "$@" > /dev/null
  printf -v "$var" '%s' "$(secs "$t0" "$(now)")"
}

BYTES=$((SIZE_MIB * 1024 * 1024))
echo "making a $SIZE_MIB MiB image (40% random, 20% text, 40% zeros)" >&2
python3 - "$IMG" "$BYTES" <<'EOF'
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
qemu-img convert -f raw -O qcow2 "$IMG" "$OUT/disk.qcow2"

"$ARCA" -r "$REPO" init -q

caches=$(drop_caches)
time_cmd T_BACKUP "$ARCA" -r "$REPO" backup --image "$IMG" -q
drop_caches > /dev/null
time_cmd T_BACKUP2 "$ARCA" -r "$REPO" backup --image "$IMG" -q
drop_caches > /dev/null
time_cmd T_BACKUP_QCOW2 "$ARCA" -r "$REPO" backup --image "$OUT/disk.qcow2" -q
drop_caches > /dev/null
time_cmd T_CONVERT_QCOW2C qemu-img convert -f raw -O qcow2 -c "$IMG" "$OUT/convert-c.qcow2"
drop_caches > /dev/null
time_cmd T_CONVERT_RAW qemu-img convert -f raw -O raw "$IMG" "$OUT/convert.raw"
REPO_MB=$(du -sm "$REPO" | cut -f1)
QCOW2C_MB=$(du -sm "$OUT/convert-c.qcow2" | cut -f1)

RAW_SNAP=$("$ARCA" -r "$REPO" snapshots --json | python3 -c "
import json, sys
print([s['id'] for s in json.load(sys.stdin) if s['paths'][0].endswith('disk.raw')][-1])")
drop_caches > /dev/null
time_cmd T_RESTORE "$ARCA" -r "$REPO" restore "$RAW_SNAP" --image "$OUT/restored.raw" -q
qemu-img compare -q "$IMG" "$OUT/restored.raw"
rm -f "$OUT/restored.raw"
drop_caches > /dev/null
time_cmd T_RESTORE_V "$ARCA" -r "$REPO" restore "$RAW_SNAP" --image "$OUT/restored.raw" --verify -q
rm -f "$OUT/restored.raw" "$OUT/convert.raw"

# NBD: a fresh server (cold blob cache) read end to end by qemu-img into tmpfs.
drop_caches > /dev/null
"$ARCA" -r "$REPO" --json nbd "$RAW_SNAP" --listen 127.0.0.1:0 > "$OUT/nbd.json" 2> "$OUT/nbd.log" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$OUT/nbd.json" ] && break; sleep 0.1; done
NBD_ADDR=$(python3 -c "import json; print(json.load(open('$OUT/nbd.json'))['address'])")
time_cmd T_NBD qemu-img convert -f raw -O raw "nbd://$NBD_ADDR" /dev/shm/arca-bench-nbd.raw
qemu-img compare -q "$IMG" /dev/shm/arca-bench-nbd.raw
rm -f /dev/shm/arca-bench-nbd.raw
kill "${PIDS[-1]}"

# Mount: back up one 256 MiB random file, mount fresh, time the first byte and a full read.
mkdir -p "$OUT/files" "$MNT"
head -c $((256 * 1024 * 1024)) /dev/urandom > "$OUT/files/big.bin"
"$ARCA" -r "$REPO" backup "$OUT/files" -q
drop_caches > /dev/null
"$ARCA" -r "$REPO" --json mount "$MNT" > "$OUT/mount.json" 2> "$OUT/mount.log" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$OUT/mount.json" ] && break; sleep 0.1; done
FILE="$MNT/snapshots/latest$OUT/files/big.bin"
stat "$FILE" > /dev/null  # the path lookup is not part of the first byte
time_cmd T_TTFB head -c 1 "$FILE"
drop_caches > /dev/null
time_cmd T_MOUNT_READ cat "$MNT/snapshots/latest$OUT/files/big.bin"
cmp "$FILE" "$OUT/files/big.bin"
kill -TERM "${PIDS[-1]}"
wait "${PIDS[-1]}" || true

{
  echo "### arca image benchmark $(date -u '+%Y-%m-%d %H:%M') UTC"
  echo
  echo "- Machine: $(hostname), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, Linux $(uname -r)"
  echo "- Tools: $("$ARCA" --version), $(qemu-img --version | head -1); page cache dropped before each timing: $caches"
  echo "- Image: $SIZE_MIB MiB raw (40% random, 20% text, 40% zeros), and the same as an uncompressed qcow2; one run each."
  echo
  echo "| Figure | seconds | MB/s of image |"
  echo "|---|---:|---:|"
  echo "| arca backup --image (raw, first, default blocks) | $T_BACKUP | $(mbps $BYTES "$T_BACKUP") |"
  echo "| arca backup --image (raw, unchanged, second) | $T_BACKUP2 | $(mbps $BYTES "$T_BACKUP2") |"
  echo "| arca backup --image (qcow2 of the same disk; deduplicates against the raw one) | $T_BACKUP_QCOW2 | $(mbps $BYTES "$T_BACKUP_QCOW2") |"
  echo "| qemu-img convert -O qcow2 -c (compressed copy: the nearest peer of a backup) | $T_CONVERT_QCOW2C | $(mbps $BYTES "$T_CONVERT_QCOW2C") |"
  echo "| qemu-img convert -O raw (sparse copy: the nearest peer of a restore) | $T_CONVERT_RAW | $(mbps $BYTES "$T_CONVERT_RAW") |"
  echo "| arca restore --image (sparse raw file) | $T_RESTORE | $(mbps $BYTES "$T_RESTORE") |"
  echo "| arca restore --image --verify | $T_RESTORE_V | $(mbps $BYTES "$T_RESTORE_V") |"
  echo "| NBD: qemu-img convert nbd:// to tmpfs, fresh server | $T_NBD | $(mbps $BYTES "$T_NBD") |"
  echo
  echo "| Mount figure | value |"
  echo "|---|---:|"
  echo "| time to first byte of a 256 MiB file, fresh mount (s) | $T_TTFB |"
  echo "| sequential read of it through the mount (MB/s) | $(mbps $((256 * 1024 * 1024)) "$T_MOUNT_READ") |"
  echo
  echo "Repository after the three image backups: ${REPO_MB} MB; qemu-img's compressed qcow2: ${QCOW2C_MB} MB."
} > "$RESULTS"
cat "$RESULTS"
