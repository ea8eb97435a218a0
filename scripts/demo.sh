#!/usr/bin/env bash
# The offline demo: builds kontti, makes a busybox root filesystem from
# Debian's busybox-static, and runs it as an OCI container with kontti-runc.
# Needs root and no network beyond Debian's package mirror for the first install.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --release --locked --bins
BIN=$PWD/target/release

work=$(mktemp -d /tmp/kontti-demo.XXXXXX)
state=$work/state
cleanup() {
  "$BIN/kontti-runc" --root "$state" delete --force demo >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== building a busybox bundle in $work/bundle"
mkdir -p "$work/bundle/rootfs/bin"
cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
for applet in $(/bin/busybox --list-full); do
  mkdir -p "$work/bundle/rootfs/$(dirname "$applet")"
  [ -e "$work/bundle/rootfs/$applet" ] || ln -s /bin/busybox "$work/bundle/rootfs/$applet"
done
mkdir -p "$work/bundle/rootfs"/{proc,sys,dev,tmp,etc}
echo "root:x:0:0:root:/root:/bin/sh" > "$work/bundle/rootfs/etc/passwd"
(cd "$work/bundle" && "$BIN/kontti-runc" spec)
# run a shell script instead of the interactive default
sed -i 's/"terminal": true/"terminal": false/; s/"hostname": "runc"/"hostname": "kontti-demo"/; s/"sh"$/"sh", "-c", "echo hello from $(hostname) as uid $(id -u); echo pid $$ in its own pid namespace; ls \/"/' "$work/bundle/config.json"

echo "== kontti-runc run demo"
"$BIN/kontti-runc" --root "$state" run --bundle "$work/bundle" demo

echo "== the container's exit status is propagated"
sed -i 's/"sh", "-c", ".*"$/"sh", "-c", "exit 3"/' "$work/bundle/config.json"
rc=0
"$BIN/kontti-runc" --root "$state" run --bundle "$work/bundle" demo || rc=$?
echo "kontti-runc run exited with $rc"
[ "$rc" -eq 3 ]
