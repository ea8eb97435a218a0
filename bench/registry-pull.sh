#!/usr/bin/env bash
# Pull benchmark (docs/benchmarks.md, "Registry pull"): pulls and unpacks a
# generated 5-layer image (~210 MB uncompressed: many small files in one
# layer, a few large ones in another) from Debian's docker-registry on
# loopback with
#   kontti pull                     (download, verify, unpack into snapshots)
#   podman pull                     (own --root, --tls-verify=false)
#   skopeo copy + umoci unpack      (download to an OCI layout, then unpack)
# in one run, each from an empty state root, RUNS times (median wall time,
# peak RSS from /usr/bin/time; `sync` before each). Then the second figure: a second image that
# shares 4 of the 5 layers, pulled after the first.
# Prints a markdown table. Needs root, docker-registry, podman, skopeo, umoci,
# python3. Environment: KONTTI (binary; default: cargo build --release),
# KONTTI_BASELINE (a second kontti binary, e.g. an older build, measured in
# the same runs as another row), RUNS (default 3), WORK (scratch directory;
# default under /var/tmp), KEEP_WORK=1 (keep it), ONLY_IMAGES=1 (build the
# images and stop), REUSE_IMAGES=1 (with WORK and KEEP_WORK: use the images
# an earlier run left in WORK).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
if [ -z "${KONTTI:-}" ]; then
    cargo build --release -p kontti >&2
    KONTTI=target/release/kontti
fi
KONTTI=$(realpath "$KONTTI")
BASELINE=
[ -z "${KONTTI_BASELINE:-}" ] || BASELINE=$(realpath "$KONTTI_BASELINE")
WORK=${WORK:-$(mktemp -d /var/tmp/kontti-bench.XXXXXX)}
mkdir -p "$WORK"
REG_PID=
cleanup() {
    if [ -n "$REG_PID" ]; then
        kill "$REG_PID" 2>/dev/null || true
        wait "$REG_PID" 2>/dev/null || true
    fi
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "bench: $*" >&2; }

# --- the images -------------------------------------------------------------
gen_layer() { # DIR KIND SEED
    python3 - "$@" <<'PY'
import os, random, sys
d, kind, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rnd = random.Random(seed)
os.makedirs(d, exist_ok=True)
if kind == "small":      # 20000 files of ~2 KiB in 200 directories
    words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(3, 9))) for _ in range(2000)]
    for i in range(20000):
        sub = os.path.join(d, "small", f"d{i % 200:03}")
        os.makedirs(sub, exist_ok=True)
        text = b" ".join(rnd.choice(words) for _ in range(300))[:2048]
        with open(os.path.join(sub, f"f{i:05}.txt"), "wb") as f:
            f.write(text)
elif kind == "large":    # 3 files of 40 MiB, incompressible
    os.makedirs(os.path.join(d, "large"), exist_ok=True)
    for i in range(3):
        with open(os.path.join(d, "large", f"blob{i}.bin"), "wb") as f:
            f.write(rnd.randbytes(40 << 20))
elif kind == "medium":   # 200 files of 100 KiB, half compressible
    os.makedirs(os.path.join(d, "medium"), exist_ok=True)
    for i in range(200):
        with open(os.path.join(d, "medium", f"m{i:03}.dat"), "wb") as f:
            f.write(rnd.randbytes(50 << 10) + bytes(50 << 10))
elif kind == "app":      # 30 files of 1 MiB (differs per seed)
    os.makedirs(os.path.join(d, "app"), exist_ok=True)
    for i in range(30):
        with open(os.path.join(d, "app", f"a{i:02}.bin"), "wb") as f:
            f.write(rnd.randbytes(1 << 19) + bytes(1 << 19))
PY
}

build_images() {
    local L=$WORK/layout B=$WORK/bundle
    umoci init --layout "$L"
    umoci new --image "$L:img"
    umoci unpack --image "$L:img" "$B" >/dev/null
    mkdir -p "$B/rootfs/bin"
    cp /bin/busybox "$B/rootfs/bin/busybox"
    ln -s busybox "$B/rootfs/bin/sh"
    umoci repack --refresh-bundle --image "$L:img" "$B"
    for kind in small large medium; do
        gen_layer "$B/rootfs" "$kind" 1
        umoci repack --refresh-bundle --image "$L:img" "$B"
    done
    umoci config --image "$L:img" --config.cmd /bin/sh
    umoci tag --image "$L:img" base
    gen_layer "$B/rootfs" app 1
    umoci repack --refresh-bundle --image "$L:img" "$B"
    rm -rf "$B"
    umoci unpack --image "$L:base" "$B" >/dev/null
    umoci tag --image "$L:base" img2
    gen_layer "$B/rootfs" app 2
    umoci repack --refresh-bundle --image "$L:img2" "$B"
    rm -rf "$B"
}

# --- the registry -----------------------------------------------------------
start_registry() {
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat > "$WORK/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $WORK/registry-data
http:
  addr: 127.0.0.1:$PORT
YML
    /usr/bin/docker-registry serve "$WORK/registry.yml" >/dev/null 2>&1 &
    REG_PID=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null && return
        sleep 0.1
    done
    echo "docker-registry did not start" >&2
    exit 1
}

# --- measuring --------------------------------------------------------------
# timed NAME CMD...: runs CMD under /usr/bin/time; appends "wall rss_kb" to $WORK/NAME.
timed() {
    local name=$1
    shift
    # Start from a clean page cache state: a client that syncs (kontti does,
    # with syncfs) must not pay for the dirty data of earlier steps.
    sync
    /usr/bin/time -f "%e %M" -o "$WORK/time.out" "$@" >"$WORK/cmd.out" 2>&1 || {
        cat "$WORK/cmd.out" >&2
        exit 1
    }
    cat "$WORK/time.out" >>"$WORK/$name"
}

median_wall() { sort -n "$WORK/$1" | awk '{w[NR]=$1} END {print w[int((NR+1)/2)]}'; }
max_rss_mb() { awk '{if ($2>m) m=$2} END {printf "%.1f", m/1024}' "$WORK/$1"; }

pull_kontti() { timed kontti "$KONTTI" --root "$WORK/k$1" pull -q "$REF"; }
pull_baseline() { timed baseline "$BASELINE" --root "$WORK/b$1" pull -q "$REF"; }
pull_podman() {
    timed podman podman --root "$WORK/p$1/root" --runroot "$WORK/p$1/run" --storage-driver overlay \
        pull -q --tls-verify=false "$REF"
}
pull_skopeo_umoci() {
    timed skopeo skopeo copy -q --src-tls-verify=false "docker://$REF" "oci:$WORK/s$1:t"
    timed umoci umoci unpack --image "$WORK/s$1:t" "$WORK/s$1-bundle"
    # One figure for the pair: sum of walls, max of RSS.
    paste -d' ' <(tail -1 "$WORK/skopeo") <(tail -1 "$WORK/umoci") |
        awk '{printf "%.2f %d\n", $1+$3, ($2>$4?$2:$4)}' >>"$WORK/skopeo+umoci"
}

if [ -n "${REUSE_IMAGES:-}" ] && [ -f "$WORK/layout/index.json" ]; then
    log "reusing the images in $WORK"
    rm -rf "$WORK"/k[0-9]* "$WORK"/b[0-9]* "$WORK"/p[0-9]* "$WORK"/s[0-9]* "$WORK/registry-data"
    rm -f "$WORK/kontti" "$WORK/baseline" "$WORK/podman" "$WORK/skopeo" "$WORK/umoci" "$WORK/skopeo+umoci"
else
    log "generating images in $WORK"
    build_images
fi
[ -z "${ONLY_IMAGES:-}" ] || exit 0
start_registry
REF=127.0.0.1:$PORT/bench/img:v1
REF2=127.0.0.1:$PORT/bench/img2:v1
skopeo copy -q --dest-tls-verify=false "oci:$WORK/layout:img" "docker://$REF"
skopeo copy -q --dest-tls-verify=false "oci:$WORK/layout:img2" "docker://$REF2"
SIZE_MB=$(python3 - "$WORK/layout" <<'PY'
import json, sys, os
L = sys.argv[1]
idx = json.load(open(os.path.join(L, "index.json")))
m = [x for x in idx["manifests"] if x.get("annotations", {}).get("org.opencontainers.image.ref.name") == "img"][-1]
man = json.load(open(os.path.join(L, "blobs", *m["digest"].split(":"))))
comp = sum(l["size"] for l in man["layers"])
print(f"{len(man['layers'])} layers, {comp / 1e6:.1f} MB compressed")
PY
)
UNCOMP=$(umoci unpack --image "$WORK/layout:img" "$WORK/size-bundle" >/dev/null && du -s --apparent-size -B1 "$WORK/size-bundle/rootfs" | cut -f1)
rm -rf "$WORK/size-bundle"

# This machine's ext4 has no journal, and there inode allocation skips, one
# by one, free inodes freed in the last 5 s, or 35 s while their inode table
# block is dirty (which creating files next to them makes it): creating files
# within 35 s of deleting tens of thousands (a previous run's trees, the
# bundles above) costs seconds of system time (perf: find_inode_bit ->
# recently_deleted). So nothing is deleted between runs (each run has its
# own roots, removed at the end), and the runs start once what was deleted
# above is older than that.
sync
sleep 36
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
for i in $(seq "$RUNS"); do
    log "run $i/$RUNS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    # The clients take turns at going first: a round's first pull is often
    # the slowest, whoever makes it.
    clients=(pull_kontti pull_podman pull_skopeo_umoci)
    [ -z "$BASELINE" ] || clients=(pull_kontti pull_baseline pull_podman pull_skopeo_umoci)
    n=${#clients[@]}
    for j in $(seq 0 $((n - 1))); do
        "${clients[$(((i - 1 + j) % n))]}" "$i"
    done
done

# Second image sharing 4 of 5 layers, into the last run's roots.
last=$RUNS
sync
/usr/bin/time -f "%e %M" -o "$WORK/time.out" "$KONTTI" --root "$WORK/k$last" pull "$REF2" >"$WORK/k2.out" 2>&1
read -r K2_WALL K2_RSS <"$WORK/time.out"
sync
K2_NEW=$(grep -c ': Pull complete' "$WORK/k2.out" || true)
K2_HAD=$(grep -c ': Already exists' "$WORK/k2.out" || true)
/usr/bin/time -f "%e %M" -o "$WORK/time.out" podman --root "$WORK/p$last/root" --runroot "$WORK/p$last/run" \
    --storage-driver overlay pull -q --tls-verify=false "$REF2" >/dev/null 2>&1
read -r P2_WALL P2_RSS <"$WORK/time.out"

K=$(median_wall kontti)
P=$(median_wall podman)
S=$(median_wall skopeo+umoci)
echo "kontti runs: $(cut -d' ' -f1 "$WORK/kontti" | paste -sd' '); podman runs: $(cut -d' ' -f1 "$WORK/podman" | paste -sd' ')"
[ -z "$BASELINE" ] || echo "baseline runs: $(cut -d' ' -f1 "$WORK/baseline" | paste -sd' ')"
echo "load average at the start: $START_LOAD; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "Image: $SIZE_MB, $(awk -v b="$UNCOMP" 'BEGIN {printf "%.1f", b/1e6}') MB uncompressed; registry: docker-registry on loopback; $RUNS runs, median wall time."
echo
echo "| client | wall time (s) | peak RSS (MB) | speed vs podman |"
echo "|---|---|---|---|"
echo "| kontti pull | $K | $(max_rss_mb kontti) | $(awk -v a="$P" -v b="$K" 'BEGIN {printf "%.2fx", a/b}') |"
if [ -n "$BASELINE" ]; then
    B=$(median_wall baseline)
    echo "| kontti pull (baseline binary) | $B | $(max_rss_mb baseline) | $(awk -v a="$P" -v b="$B" 'BEGIN {printf "%.2fx", a/b}') |"
fi
echo "| podman pull | $P | $(max_rss_mb podman) | 1.00x |"
echo "| skopeo copy + umoci unpack | $S | $(max_rss_mb skopeo+umoci) | $(awk -v a="$P" -v b="$S" 'BEGIN {printf "%.2fx", a/b}') |"
echo
echo "Second image sharing 4 of 5 layers, pulled after the first:"
echo
echo "| client | wall time (s) | peak RSS (MB) | layers downloaded |"
echo "|---|---|---|---|"
echo "| kontti pull | $K2_WALL | $(awk -v r="$K2_RSS" 'BEGIN {printf "%.1f", r/1024}') | $K2_NEW (of $((K2_NEW + K2_HAD))) |"
echo "| podman pull | $P2_WALL | $(awk -v r="$P2_RSS" 'BEGIN {printf "%.1f", r/1024}') | - |"
