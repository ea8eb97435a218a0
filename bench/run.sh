#!/usr/bin/env bash
# Engine benchmark (docs/benchmarks.md, "Engine"; issue 4, item 7):
#   1. `run --rm IMAGE true`, with the default bridge network and with
#      `--network none`, for kontti, podman and docker, in ONE hyperfine run;
#      prints the medians and the ratios kontti/podman and kontti/docker
#      (the issue's goal: at most a fifth of podman's time in both modes);
#   2. `ps` with N running `sleep` containers per engine (N=PS_COUNT);
#   3. memory per idle container: the RSS and PSS (/proc/PID/smaps_rollup)
#      of the process that supervises each of those N containers (the parent
#      of the container's init: kontti-supervisor, podman's conmon, docker's
#      containerd-shim-runc-v2), summed and per container.
#
# Offline: one busybox image (Debian's busybox-static, as scripts/demo.sh
# makes it) is imported into kontti, written with `kontti save` as a
# docker-archive and loaded into podman and docker; every run says
# `--pull never`. Each engine has its own state:
#   kontti  --root WORK/kontti; its default network takes a free /24 from
#           networks/config.json, in its own nft table, no upstream DNS;
#   podman  own --root/--runroot, overlay, CONTAINERS_CONF, registries.conf,
#           storage.conf and network config dir; its default network is a
#           bridge of our own name and subnet (netavark, no DNS), like
#           podman's own default network;
#   docker  Debian's docker.io: a dockerd the script starts on its own socket
#           with its own --data-root, --exec-root, config file and cgroup
#           parent, --iptables=false --ip-forward=false --ip-masq=false, on a
#           bridge of our own name and subnet; /usr/bin/docker with
#           DOCKER_HOST and DOCKER_CONFIG pointing at ours.
# At exit (trap) every container is removed, dockerd (and the containerd it
# started) stopped, the bridges, kontti's network and nft table, netavark's
# rules for our bridge and the cgroups made for the run removed, and the
# host compared with a snapshot taken before (links, nft tables, mounts).
#
# Needs root, podman, docker.io, hyperfine, python3 (scripts/install-deps.sh).
# Environment: KONTTI (the kontti binary, with kontti-runc, kontti-supervisor
# and kontti-dns beside it; default: a release build into
# CARGO_TARGET_DIR=/work/target-bench), RUNS (default 20), WARMUP (default 3),
# PS_COUNT (default 100), WORK (scratch dir; default under /var/tmp),
# KEEP_WORK=1 (keep it).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-20}
WARMUP=${WARMUP:-3}
PS_COUNT=${PS_COUNT:-100}
log() { echo "bench: $*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (namespaces, mounts, cgroups, bridges)"
for t in podman /usr/bin/docker /usr/sbin/dockerd hyperfine python3 nft ip; do
    command -v "$t" >/dev/null || die "$t is missing: run scripts/install-deps.sh"
done
if [ -z "${KONTTI:-}" ]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
    cargo build --release -p kontti -p kontti-runc -p kontti-supervisor -p kontti-net --bins >&2
    KONTTI=$CARGO_TARGET_DIR/release/kontti
fi
KONTTI=$(realpath "$KONTTI")
BIN=$(dirname "$KONTTI")
for b in kontti-runc kontti-supervisor kontti-dns; do
    [ -x "$BIN/$b" ] || die "$BIN/$b is missing (it must sit beside $KONTTI)"
done
export PATH="$BIN:$PATH"

WORK=${WORK:-$(mktemp -d /var/tmp/kontti-run-bench.XXXXXX)}
mkdir -p "$WORK"
K_ROOT=$WORK/kontti
P_DIR=$WORK/podman
D_DIR=$WORK/docker
IMAGE=localhost/bench/busybox:1
TAG=$$
P_BRIDGE=kbp$TAG     # podman's bridge (netavark makes it, removes it with its last container)
D_BRIDGE=kbd$TAG     # docker's bridge (made here; dockerd -b)
K_TABLE=kbench$TAG   # kontti's nft table
CG_PARENT=kontti-bench-$TAG
P_NET=kbench

K() { "$KONTTI" --root "$K_ROOT" "$@"; }
P() {
    CONTAINERS_CONF=$P_DIR/containers.conf CONTAINERS_REGISTRIES_CONF=$P_DIR/registries.conf \
        CONTAINERS_STORAGE_CONF=$P_DIR/storage.conf TMPDIR=$P_DIR/tmp \
        podman --root "$P_DIR/root" --runroot "$P_DIR/run" --storage-driver overlay "$@"
}
D() { DOCKER_HOST=unix://$D_DIR/docker.sock DOCKER_CONFIG=$D_DIR/client /usr/bin/docker "$@"; }

# --- the host before: what cleanup must leave as it found it ---------------------
snapshot() {
    ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort >"$1.links"
    nft list tables | sort >"$1.tables"
    awk '{print $5}' /proc/self/mountinfo | sort >"$1.mounts"
    find /sys/fs/cgroup/memory -maxdepth 2 -type d | sort >"$1.cgroups"
    { iptables -t filter -S || true; iptables -t nat -S || true; } 2>/dev/null | sort >"$1.iptables"
}
snapshot "$WORK/before"

# Free /24s in 10.213.0.0/16 that nothing on the host routes or holds.
free_subnets() {
    local n=0 i used
    used=$(ip -4 route show; ip -4 addr show)
    for i in $(seq 1 254); do
        if ! grep -q -e "^10\.213\.$i\." -e "inet 10\.213\.$i\." <<<"$used"; then
            echo "10.213.$i"
            n=$((n + 1))
            [ $n -lt "$1" ] || return 0
        fi
    done
    die "no free /24 left in 10.213.0.0/16"
}
read -r K_NET P_SUBNET D_NET < <(free_subnets 3 | xargs)

dockerd_pid=""
cleanup() {
    set +e
    log "cleaning up"
    # kontti: containers, then its default network (bridge, nft table, DNS).
    if [ -d "$K_ROOT" ]; then
        K ps -aq 2>/dev/null | xargs -r "$KONTTI" --root "$K_ROOT" rm -f >/dev/null 2>&1
        K network rm bridge >/dev/null 2>&1
    fi
    nft list table inet "$K_TABLE" >/dev/null 2>&1 && nft delete table inet "$K_TABLE"
    nft list table ip "$K_TABLE" >/dev/null 2>&1 && nft delete table ip "$K_TABLE"
    # podman: containers (netavark tears its bridge down with the last one),
    # images, then whatever its overlay driver still has mounted.
    if [ -d "$P_DIR/root" ]; then
        P rm --all --force --time 0 >/dev/null 2>&1
        P rmi --all --force >/dev/null 2>&1
        P system reset --force >/dev/null 2>&1
    fi
    podman_leftovers
    netavark_cleanup
    # docker: containers, then the daemon (it stops the containerd it started).
    if [ -n "$dockerd_pid" ]; then
        D rm -f $(D ps -aq 2>/dev/null) >/dev/null 2>&1
        kill -TERM "$dockerd_pid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$dockerd_pid" 2>/dev/null
        wait "$dockerd_pid" 2>/dev/null
    fi
    ip link show "$D_BRIDGE" >/dev/null 2>&1 && ip link del "$D_BRIDGE"
    ip link show "$P_BRIDGE" >/dev/null 2>&1 && ip link del "$P_BRIDGE"
    # A bridge that still holds one of the script's subnets is the script's.
    for l in $(ip -4 -o addr show | awk -v k="$K_NET." -v p="$P_SUBNET." -v d="$D_NET." \
        'index($4, k) == 1 || index($4, p) == 1 || index($4, d) == 1 {print $2}' | sort -u); do
        log "removing $l, left with one of the benchmark's subnets"
        ip link del "$l"
    done
    awk -v r="$WORK/" 'index($5, r) == 1 {print $5}' /proc/self/mountinfo | sort -r |
        while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
    for c in /sys/fs/cgroup/*/"$CG_PARENT"; do
        [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    snapshot "$WORK/after"
    for k in links tables mounts cgroups iptables; do
        extra=$(comm -13 "$WORK/before.$k" "$WORK/after.$k" | grep -v -F "$WORK/" | head -5)
        [ -z "$extra" ] || log "WARNING: new $k since the start (maybe another user's): $(echo $extra)"
    done
    left=$(pgrep -af "$WORK/" | grep -v -e "^$$ " -e pgrep | cut -c1-160 | head -5)
    [ -z "$left" ] || log "WARNING: processes still running from $WORK: $left"
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# If podman lost track of a container (it happens when another podman on the
# host frees the shared locks), its conmon and container outlive `rm --all`:
# end them by pid, then drop crun's state and the container's cgroups.
podman_leftovers() {
    local c id ch
    for c in $(pgrep -f "^/usr/bin/conmon .*$P_DIR/"); do
        id=$(tr '\0' ' ' <"/proc/$c/cmdline" | sed -n 's/.* -c \([0-9a-f]\{64\}\) .*/\1/p')
        for ch in $(pgrep -P "$c"); do kill -KILL "$ch"; done
        kill -KILL "$c"
        [ -n "$id" ] || continue
        sleep 0.2
        crun delete --force "$id" >/dev/null 2>&1
        for ch in /sys/fs/cgroup/*/libpod_parent/libpod-"$id"; do [ -d "$ch" ] && rmdir "$ch"; done
        log "removed a container podman had lost: $id"
    done
}

# netavark's rules: those naming our bridge or subnet are ours. Its top-level
# chains (and iptables' tables) are shared with every podman on the host: they
# go only when they were not there before the run and nothing else uses them
# (no per-network chain of another network, no rule in the forward chain).
netavark_cleanup() {
    local t rule
    for t in filter nat; do
        iptables -t "$t" -S 2>/dev/null | grep '^-A' | grep -F -e "$P_BRIDGE" -e "$P_SUBNET." |
            while read -r rule; do
                # shellcheck disable=SC2086
                eval iptables -t "$t" ${rule/-A/-D} 2>/dev/null
            done
    done
    if ! grep -q '^-N NETAVARK' "$WORK/before.iptables" &&
        ! iptables -t nat -S 2>/dev/null | grep -Eq '^-N NETAVARK-[0-9A-F]{6,}' &&
        ! iptables -t filter -S NETAVARK_FORWARD 2>/dev/null | grep -q '^-A'; then
        for t in filter nat; do
            iptables -t "$t" -S 2>/dev/null | grep '^-A' | grep -E -- '-j NETAVARK[-_][A-Z-]+$' |
                grep -Ev '^-A NETAVARK' | while read -r rule; do
                # shellcheck disable=SC2086
                eval iptables -t "$t" ${rule/-A/-D} 2>/dev/null
            done
            for c in $(iptables -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^NETAVARK/ {print $2}'); do
                iptables -t "$t" -F "$c" && iptables -t "$t" -X "$c"
            done
            if ! grep -qx "table ip $t" "$WORK/before.tables" &&
                ! iptables -t "$t" -S 2>/dev/null | grep -q -e '^-A' -e '^-N'; then
                nft delete table ip "$t" 2>/dev/null
            fi
        done
    fi
}

# --- the image -------------------------------------------------------------------
log "image: $IMAGE from /bin/busybox"
R=$WORK/rootfs
mkdir -p "$R"/{bin,proc,sys,dev,tmp,etc,root}
cp /bin/busybox "$R/bin/busybox"
for applet in $(/bin/busybox --list-full); do
    mkdir -p "$R/$(dirname "$applet")"
    [ -e "$R/$applet" ] || [ -L "$R/$applet" ] || ln -s /bin/busybox "$R/$applet"
done
echo "root:x:0:0:root:/root:/bin/sh" >"$R/etc/passwd"
echo "root:x:0:" >"$R/etc/group"
tar --numeric-owner --owner=0 --group=0 -C "$R" -cf "$WORK/rootfs.tar" .

mkdir -p "$K_ROOT/networks"
printf '{"pool":["%s.0/24"],"upstreams":[],"nftTable":"%s","uplinkForwarding":false}\n' \
    "$K_NET" "$K_TABLE" >"$K_ROOT/networks/config.json"
K import --cmd /bin/sh "$WORK/rootfs.tar" "$IMAGE" >/dev/null
K save -o "$WORK/image.tar" "$IMAGE"

# --- podman ----------------------------------------------------------------------
mkdir -p "$P_DIR"/{tmp,networks}
cat >"$P_DIR/containers.conf" <<EOF
[containers]
log_driver = "k8s-file"
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
tmp_dir = "$P_DIR/libpod"
lock_type = "file"
[network]
network_backend = "netavark"
network_config_dir = "$P_DIR/networks"
default_network = "$P_NET"
EOF
printf 'unqualified-search-registries = []\nshort-name-mode = "permissive"\n' >"$P_DIR/registries.conf"
printf '[storage]\ndriver = "overlay"\nrunroot = "%s"\ngraphroot = "%s"\n' "$P_DIR/run" "$P_DIR/root" \
    >"$P_DIR/storage.conf"
# podman 4.3 cannot name a new network's bridge: write the network's file as
# `podman network create --disable-dns` would, with our bridge's name.
cat >"$P_DIR/networks/$P_NET.json" <<EOF
{"name": "$P_NET", "id": "$(echo "$P_NET-$TAG-$(date +%s%N)" | sha256sum | cut -c1-64)",
 "driver": "bridge", "network_interface": "$P_BRIDGE", "created": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
 "subnets": [{"subnet": "$P_SUBNET.0/24", "gateway": "$P_SUBNET.1"}],
 "ipv6_enabled": false, "internal": false, "dns_enabled": false, "ipam_options": {"driver": "host-local"}}
EOF
P load -q -i "$WORK/image.tar" >/dev/null

# --- docker ----------------------------------------------------------------------
mkdir -p "$D_DIR"/{data,exec,client}
echo '{}' >"$D_DIR/daemon.json"
ip link add "$D_BRIDGE" type bridge
ip addr add "$D_NET.1/24" dev "$D_BRIDGE"
ip link set "$D_BRIDGE" up
/usr/sbin/dockerd --host "unix://$D_DIR/docker.sock" --data-root "$D_DIR/data" \
    --exec-root "$D_DIR/exec" --pidfile "$D_DIR/docker.pid" --config-file "$D_DIR/daemon.json" \
    --bridge "$D_BRIDGE" --iptables=false --ip-forward=false --ip-masq=false \
    --cgroup-parent "/$CG_PARENT" --storage-driver overlay2 --log-level warn \
    >"$D_DIR/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 300); do
    D version >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || die "dockerd exited: $(tail -3 "$D_DIR/dockerd.log")"
    sleep 0.1
done
D version >/dev/null || die "dockerd did not answer on $D_DIR/docker.sock: $(tail -3 "$D_DIR/dockerd.log")"
D load -q -i "$WORK/image.tar" >/dev/null

# --- 1. run --rm IMAGE true --------------------------------------------------------
K_RUN="$KONTTI --root $K_ROOT run --rm --pull never"
P_RUN="env CONTAINERS_CONF=$P_DIR/containers.conf CONTAINERS_REGISTRIES_CONF=$P_DIR/registries.conf"
P_RUN+=" CONTAINERS_STORAGE_CONF=$P_DIR/storage.conf TMPDIR=$P_DIR/tmp"
P_RUN+=" podman --root $P_DIR/root --runroot $P_DIR/run --storage-driver overlay run --rm --pull never"
D_RUN="env DOCKER_HOST=unix://$D_DIR/docker.sock DOCKER_CONFIG=$D_DIR/client /usr/bin/docker run --rm --pull never"

# Each must work (and exit 0) before anything is timed.
for c in "$K_RUN" "$P_RUN" "$D_RUN"; do
    for n in "" "--network none"; do
        # shellcheck disable=SC2086
        $c $n "$IMAGE" true || die "not working: $c $n $IMAGE true"
    done
done

log "run --rm $IMAGE true: $WARMUP warm-up runs, $RUNS runs each"
hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$WORK/run.json" \
    -n "kontti run --rm" "$K_RUN $IMAGE true" \
    -n "kontti run --rm --network none" "$K_RUN --network none $IMAGE true" \
    -n "podman run --rm" "$P_RUN $IMAGE true" \
    -n "podman run --rm --network none" "$P_RUN --network none $IMAGE true" \
    -n "docker run --rm" "$D_RUN $IMAGE true" \
    -n "docker run --rm --network none" "$D_RUN --network none $IMAGE true" >&2

left=$(K ps -aq | wc -l)/$(P ps -aq | wc -l)/$(D ps -aq | wc -l)
[ "$left" = 0/0/0 ] || die "run --rm left containers behind (kontti/podman/docker): $left"

# --- 2 and 3. N idle containers: ps, and the memory of their supervisors -----------
log "starting $PS_COUNT idle sleep containers per engine (--network none)"
for i in $(seq "$PS_COUNT"); do
    K run -d --pull never --network none --name "idle$i" "$IMAGE" sleep 100000 >/dev/null
    P run -d --pull never --network none --name "idle$i" "$IMAGE" sleep 100000 >/dev/null
    D run -d --pull never --network none --name "idle$i" "$IMAGE" sleep 100000 >/dev/null
done
sleep 2

# The pid of each container's init, then of its parent (the supervisor).
init_pids() { # engine
    local i
    for i in $(seq "$PS_COUNT"); do
        case $1 in
        kontti) K inspect "idle$i" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["State"]["Pid"])' ;;
        podman) P inspect --format '{{.State.Pid}}' "idle$i" ;;
        docker) D inspect --format '{{.State.Pid}}' "idle$i" ;;
        esac
    done
}
for e in kontti podman docker; do
    init_pids "$e" >"$WORK/$e.pids"
done
python3 - "$WORK" "$PS_COUNT" <<'PY' >"$WORK/memory.md"
import os, sys
work, n = sys.argv[1], int(sys.argv[2])
def ppid(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])
def rollup(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out
print(f"| engine | supervising process | containers | RSS sum (kB) | PSS sum (kB) | RSS per container (kB) | PSS per container (kB) | anon RSS per container (kB) |")
print("|---|---|---|---|---|---|---|---|")
for engine in ("kontti", "podman", "docker"):
    pids = [int(p) for p in open(f"{work}/{engine}.pids").read().split()]
    if len(pids) != n or min(pids) <= 0:
        sys.exit(f"bench: {engine}: {n} containers asked, init pids {pids}")
    sup = [ppid(p) for p in pids]
    names = sorted({os.path.basename(os.readlink(f"/proc/{s}/exe")) for s in sup})
    if len(set(sup)) != len(sup):
        names.append("(shared)")
    r = [rollup(s) for s in set(sup)]
    rss, pss, anon = (sum(x[k] for x in r) for k in ("Rss", "Pss", "Anonymous"))
    c = len(pids)
    print(f"| {engine} | {', '.join(names)} | {c} | {rss} | {pss} | {rss / c:.0f} | {pss / c:.0f} | {anon / c:.0f} |")
PY

log "ps with $PS_COUNT running containers: $RUNS runs each"
K_PS="$KONTTI --root $K_ROOT ps"
P_PS=${P_RUN% run --rm --pull never}" ps"
D_PS=${D_RUN% run --rm --pull never}" ps"
hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$WORK/ps.json" \
    -n "kontti ps" "$K_PS" -n "podman ps" "$P_PS" -n "docker ps" "$D_PS" >&2
for c in "$K_PS" "$P_PS" "$D_PS"; do
    n=$($c | tail -n +2 | wc -l)
    [ "$n" -eq "$PS_COUNT" ] || die "$c listed $n containers, not $PS_COUNT"
done

# --- the report --------------------------------------------------------------------
echo "Engine benchmark: $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)," \
    "$("$KONTTI" --version) (work tree at $(git rev-parse --short HEAD 2>/dev/null || echo '?')), $(podman --version)," \
    "docker $(D version --format '{{.Server.Version}}'), $RUNS runs each after $WARMUP warm-up runs."
echo
python3 - "$WORK/run.json" "$WORK/ps.json" <<'PY'
import json, sys
run = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
ps = json.load(open(sys.argv[2]))["results"]
def ms(x): return f"{x * 1000:.1f}"
print("| command | median (ms) | mean ± σ (ms) | min (ms) | max (ms) |")
print("|---|---|---|---|---|")
for r in list(run.values()) + ps:
    print(f"| {r['command']} | {ms(r['median'])} | {ms(r['mean'])} ± {ms(r['stddev'])} | {ms(r['min'])} | {ms(r['max'])} |")
print()
for mode, suffix in (("default network", ""), ("--network none", " --network none")):
    k = run["kontti run --rm" + suffix]["median"]
    p = run["podman run --rm" + suffix]["median"]
    d = run["docker run --rm" + suffix]["median"]
    goal = "meets" if k <= p / 5 else "misses"
    print(f"{mode}: kontti/podman = {k / p:.3f}, kontti/docker = {k / d:.3f} "
          f"(medians {ms(k)}, {ms(p)}, {ms(d)} ms); goal kontti/podman <= 0.2: {goal}")
k, p, d = (r["median"] for r in ps)
print(f"ps: kontti/podman = {k / p:.3f}, kontti/docker = {k / d:.3f}")
PY
echo
echo "Memory of the process supervising each idle \`sleep\` container (/proc/PID/smaps_rollup):"
echo
cat "$WORK/memory.md"
