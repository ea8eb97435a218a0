#!/usr/bin/env bash
# Benchmark: `run` of /bin/true in a busybox bundle (create, start, wait,
# delete), kontti-runc vs runc vs crun, in one hyperfine run, all three on the
# same config.json with the same seccomp profile. Between runs the script
# checks that no state dir, cgroup, mount or runtime process is left behind;
# a leftover aborts the benchmark. Also the peak RSS of each (median of 15).
#
# Usage: sudo bench/runtime.sh [RUNS]     (prints a markdown table)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-200}

scripts/install-deps.sh
[ -n "${KONTTI_RUNC:-}" ] || cargo build --release --locked -p kontti-runc >&2
KONTTI=${KONTTI_RUNC:-$PWD/target/release/kontti-runc}
RUNC=$(command -v runc)
CRUN=$(command -v crun)

work=$(mktemp -d /tmp/kontti-bench-runtime.XXXXXX)
mounted_hugetlb=0
cleanup() {
  rm -rf "$work"
  for d in /sys/fs/cgroup/*/kontti-bench; do rmdir "$d" 2>/dev/null || true; done
  if [ $mounted_hugetlb -eq 1 ]; then umount /sys/fs/cgroup/hugetlb && rmdir /sys/fs/cgroup/hugetlb; fi
}
trap cleanup EXIT
# crun refuses a hybrid host whose cgroup2 root offers controllers. On this
# kind of host hugetlb is not mounted on v1 and so shows up in cgroup2; bind it
# to a v1 hierarchy for the benchmark's duration (as most hybrid hosts have it)
# so that crun can run at all. kontti-runc and runc work either way.
if grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null && [ ! -e /sys/fs/cgroup/hugetlb ]; then
  mkdir /sys/fs/cgroup/hugetlb
  mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
  mounted_hugetlb=1
fi
bundle=$work/bundle
mkdir -p "$bundle/rootfs"/{bin,proc,sys,dev,tmp,etc}
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for a in sh true; do ln -s busybox "$bundle/rootfs/bin/$a"; done

# One config for all three: runc's default spec, no terminal, /bin/true, the
# repository's default seccomp profile, cgroups under a bench-only parent.
(cd "$bundle" && "$RUNC" spec)
python3 - "$bundle/config.json" crates/runtime/profiles/default-seccomp.json <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["process"]["terminal"] = False
cfg["process"]["args"] = ["/bin/true"]
cfg["linux"]["seccomp"] = json.load(open(sys.argv[2]))
cfg["linux"]["cgroupsPath"] = "/kontti-bench/ctr"
json.dump(cfg, open(sys.argv[1], "w"), indent=1)
PY

check_clean() {
  local leftovers
  leftovers=$(find "$work"/state-* -mindepth 1 -maxdepth 1 2>/dev/null | head -3)
  leftovers+=$(find /sys/fs/cgroup/*/kontti-bench -mindepth 1 -type d 2>/dev/null | head -3)
  leftovers+=$(grep -F "$bundle" /proc/self/mountinfo | head -3 || true)
  leftovers+=$(pgrep -f "^[^ ]*(kontti-runc|crun|runc) --root $work" | head -3 || true)
  if [ -n "$leftovers" ]; then
    echo "bench: a run left state behind: $leftovers" >&2
    exit 1
  fi
}
export -f check_clean
export work bundle

cmd() { # runtime-binary name
  echo "$1 --root $work/state-$2 run --bundle $bundle bench-$2"
}

hyperfine -N --warmup 10 --runs "$RUNS" --export-json "$work/h.json" \
  --prepare "bash -c check_clean" \
  -n kontti-runc "$(cmd "$KONTTI" kontti)" \
  -n crun "$(cmd "$CRUN" crun)" \
  -n runc "$(cmd "$RUNC" runc)" >&2
bash -c check_clean

rss() { # binary name: median peak RSS in kB over 15 runs
  for _ in $(seq 15); do
    /usr/bin/time -f %M "$1" --root "$work/state-$2" run --bundle "$bundle" "rss-$2" 2>&1 >/dev/null | tail -1
  done | sort -n | sed -n 8p
}
k_rss=$(rss "$KONTTI" kontti); c_rss=$(rss "$CRUN" crun); r_rss=$(rss "$RUNC" runc)
bash -c check_clean

python3 - "$work/h.json" "$k_rss" "$c_rss" "$r_rss" <<'PY'
import json, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
rss = dict(zip(["kontti-runc", "crun", "runc"], map(int, sys.argv[2:5])))
crun = res["crun"]["median"]
print("| runtime | median | mean ± σ | min | vs crun | peak RSS |")
print("|---|---|---|---|---|---|")
for name in ["kontti-runc", "crun", "runc"]:
    r = res[name]
    print(f"| {name} | {r['median']*1000:.2f} ms | {r['mean']*1000:.2f} ± {r['stddev']*1000:.2f} ms "
          f"| {r['min']*1000:.2f} ms | {r['median']/crun:.2f}x | {rss[name]/1024:.1f} MB |")
PY
