#!/usr/bin/env bash
# Build benchmark (docs/benchmarks.md, "Build"): a cold build and a cached
# rebuild of a 10-step Dockerfile on a busybox base (Debian's busybox-static),
#   kontti build              (release build, own --root)
#   buildah bud --layers      (own --root/--runroot, overlay driver, own
#                              containers.conf, registries.conf, storage.conf)
# in one hyperfine run each, and prints the ratios against the issue's goals
# (cold build at most half of buildah's time, cached rebuild at most a tenth).
#
# Cold: each timed run starts from a state root that holds only the base
# image (the reset is hyperfine's --prepare, not timed). Cached: the same
# build again on a warm root (one untimed warm-up build, then the runs).
# One file changed: a file the second COPY reads gets new content before
# each run (no goal in the issue; shown for the shape of the cache).
# Both builders get the base from one docker-archive written by `kontti save`;
# nothing touches a network registry.
#
# Needs root, buildah, hyperfine, python3. Environment: KONTTI (the kontti
# binary; default: a release build into CARGO_TARGET_DIR=/work/target-bench,
# away from the debug builds of the work tree), RUNS (default 10),
# WORK (scratch directory; default under /var/tmp), KEEP_WORK=1 (keep it).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-10}
if [ -z "${KONTTI:-}" ]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
    cargo build --release -p kontti -p kontti-runc >&2
    KONTTI=$CARGO_TARGET_DIR/release/kontti
fi
KONTTI=$(realpath "$KONTTI")
# kontti build runs RUN steps through kontti-runc; put the matching one first.
export PATH="$(dirname "$KONTTI"):$PATH"
WORK=${WORK:-$(mktemp -d /var/tmp/kontti-build-bench.XXXXXX)}
mkdir -p "$WORK"
K_ROOT=$WORK/kontti
B_DIR=$WORK/buildah

log() { echo "bench: $*" >&2; }

B() {
    CONTAINERS_CONF=$B_DIR/containers.conf \
        CONTAINERS_REGISTRIES_CONF=$B_DIR/registries.conf \
        CONTAINERS_STORAGE_CONF=$B_DIR/storage.conf \
        TMPDIR=$B_DIR/tmp \
        buildah --root "$B_DIR/root" --runroot "$B_DIR/run" --storage-driver overlay "$@"
}

# Removes buildah's state, unmounting what its overlay driver mounted first.
buildah_reset() {
    if [ -d "$B_DIR/root" ]; then
        B rm --all >/dev/null 2>&1 || true
        B rmi --all --force >/dev/null 2>&1 || true
        B unmount --all >/dev/null 2>&1 || true
        awk -v r="$B_DIR/" 'index($5, r) == 1 {print $5}' /proc/self/mountinfo | sort -r |
            while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
        rm -rf "$B_DIR/root" "$B_DIR/run"
    fi
    rm -rf "$B_DIR/tmp"
    mkdir -p "$B_DIR/tmp"
}

cleanup() {
    set +e
    buildah_reset
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# --- the base image and the context ---------------------------------------------
R=$WORK/rootfs
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,home,var,run}
chmod 1777 "$R/tmp"
cp /bin/busybox "$R/bin/busybox"
for applet in $(/bin/busybox --list-full); do
    [ -e "$R/$applet" ] || [ -L "$R/$applet" ] || ln -s /bin/busybox "$R/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\nuser:x:1000:\n' >"$R/etc/group"
tar --numeric-owner --owner=0 --group=0 -C "$R" -cf "$WORK/base-rootfs.tar" .

CTX=$WORK/context
mkdir -p "$CTX/src"
python3 - "$CTX/src" <<'PY'
import os, random, sys
rnd = random.Random(5)
for i in range(200):          # 200 files of 1-8 KiB
    with open(os.path.join(sys.argv[1], f"f{i:03}.txt"), "wb") as f:
        f.write(bytes(rnd.choice(b"abcdefgh \n") for _ in range(rnd.randint(1024, 8192))))
PY
echo "config v1" >"$CTX/app.conf"
cat >"$CTX/Dockerfile" <<'EOF'
FROM busybox
ENV APP_HOME=/app
WORKDIR /app
COPY app.conf ./
RUN mkdir -p data logs && echo ready > data/state
COPY src/ ./src/
RUN cat src/*.txt | wc -c > data/size && chmod 0600 data/size
ARG VERSION=1.0
RUN echo "$VERSION" > version && chown -R 2000:2000 data logs
USER 2000
CMD ["sh", "-c", "cat /app/version"]
EOF
STEPS=$(grep -vc -e '^FROM' -e '^$' "$CTX/Dockerfile")

kontti_reset() {
    rm -rf "$K_ROOT"
    "$KONTTI" --root "$K_ROOT" import --cmd sh "$WORK/base-rootfs.tar" busybox >/dev/null
}
kontti_reset
"$KONTTI" --root "$K_ROOT" save -o "$WORK/base.tar" busybox

mkdir -p "$B_DIR"
printf '[engine]\nevents_logger = "none"\n' >"$B_DIR/containers.conf"
printf 'unqualified-search-registries = []\nshort-name-mode = "permissive"\n' >"$B_DIR/registries.conf"
printf '[storage]\ndriver = "overlay"\nrunroot = "%s"\ngraphroot = "%s"\n' "$B_DIR/run" "$B_DIR/root" >"$B_DIR/storage.conf"
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$B_DIR/policy.json"
buildah_base() {
    buildah_reset
    B pull -q --signature-policy "$B_DIR/policy.json" "docker-archive:$WORK/base.tar" >/dev/null
}
kontti_cold() { kontti_reset && sync; }
buildah_cold() { buildah_base && sync; }
export -f B buildah_reset buildah_base kontti_reset kontti_cold buildah_cold
export KONTTI K_ROOT B_DIR WORK

# Plain commands (no shell in between: hyperfine -N), so that the few
# milliseconds of a cached kontti build are not blurred by a shell's start.
K_BUILD="$KONTTI --root $K_ROOT build -q -t bench/app:1 $CTX"
B_BUILD="env CONTAINERS_CONF=$B_DIR/containers.conf CONTAINERS_REGISTRIES_CONF=$B_DIR/registries.conf"
B_BUILD+=" CONTAINERS_STORAGE_CONF=$B_DIR/storage.conf TMPDIR=$B_DIR/tmp"
B_BUILD+=" buildah --root $B_DIR/root --runroot $B_DIR/run --storage-driver overlay"
B_BUILD+=" bud --layers --format docker --pull=never --network=none -q"
B_BUILD+=" --signature-policy $B_DIR/policy.json -t bench/app:1 $CTX"

# Each builder must work before anything is timed.
$K_BUILD >/dev/null
buildah_base
$B_BUILD >/dev/null

log "cold builds ($RUNS runs each)"
hyperfine -N --runs "$RUNS" --export-json "$WORK/cold.json" \
    --prepare 'bash -c kontti_cold' -n "kontti build (cold)" "$K_BUILD" \
    --prepare 'bash -c buildah_cold' -n "buildah bud (cold)" "$B_BUILD" >&2
log "cached rebuilds ($RUNS runs each)"
kontti_reset
buildah_base
hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$WORK/cached.json" \
    -n "kontti build (cached)" "$K_BUILD" \
    -n "buildah bud (cached)" "$B_BUILD" >&2

# One file of the second COPY changed before each run: that COPY and the
# steps after it run again (two of the three RUNs), the steps before it hit.
change_one() { head -c 3000 /dev/urandom | base64 >"$CTX/src/f000.txt"; }
export -f change_one
export CTX
log "rebuilds after one changed file ($RUNS runs each)"
hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$WORK/changed.json" \
    --prepare 'bash -c change_one' -n "kontti build (one file changed)" "$K_BUILD" \
    --prepare 'bash -c change_one' -n "buildah bud (one file changed)" "$B_BUILD" >&2

python3 - "$WORK/cold.json" "$WORK/cached.json" "$WORK/changed.json" "$STEPS" "$RUNS" <<'PY'
import json, sys
cold, cached, changed = (json.load(open(p))["results"] for p in sys.argv[1:4])
steps, runs = sys.argv[4], sys.argv[5]
def row(r):
    return r["median"] * 1000, r["mean"] * 1000, r["stddev"] * 1000, r["min"] * 1000, r["max"] * 1000
print(f"{steps}-step Dockerfile on a busybox base, {runs} runs each; times in ms.")
print()
print("| build | median | mean ± σ | min | max |")
print("|---|---|---|---|---|")
for r in cold + cached + changed:
    med, mean, sd, lo, hi = row(r)
    print(f"| {r['command']} | {med:.1f} | {mean:.1f} ± {sd:.1f} | {lo:.1f} | {hi:.1f} |")
print()
for name, rs, goal in (("cold", cold, 0.5), ("cached", cached, 0.1), ("one file changed", changed, None)):
    k, b = rs[0]["median"], rs[1]["median"]
    ratio = k / b
    line = f"{name}: kontti/buildah = {ratio:.3f} (median {k*1000:.1f} ms vs {b*1000:.1f} ms)"
    if goal is not None:
        line += f"; goal <= {goal}: {'meets' if ratio <= goal else 'misses'}"
    print(line)
PY
