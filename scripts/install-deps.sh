#!/usr/bin/env bash
# Installs the Debian packages kontti's tests, benchmarks and demo use, without
# starting any of their services (a policy-rc.d that exits 101 keeps dpkg from
# starting them; tests start what they need on loopback with their own state).
set -euo pipefail

PACKAGES=(
  busybox-static   # the test rootfs
  podman runc crun # peers that drive or stand beside kontti-runc
  buildah skopeo umoci docker-registry # image and build peers
  etcd-server      # the HA datastore backend
  protobuf-compiler # etcd-client's build needs protoc
  nftables iproute2 tmux hyperfine time strace
  uidmap           # newuidmap/newgidmap for user-namespace tests
  python3          # kontti-net crafts a raw Ethernet frame in the loopback-guard test; scripts use it
  curl tar util-linux # the demo waits on the registry with curl; tests use unshare and nsenter
  catatonit        # the static init kontti run --init bind-mounts as PID 1
  docker.io        # dockerd and its client: the engine benchmark starts its own dockerd beside kontti
  gcc libc6-dev    # the seccomp test builds a static helper that makes raw syscalls
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod +x "$policy"
  created_policy=1
fi
trap '[ $created_policy -eq 1 ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: installed ${missing[*]}"
