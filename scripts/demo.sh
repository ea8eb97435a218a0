#!/usr/bin/env bash
# The offline demo, on one machine with no internet:
#   1. make an image from Debian's busybox-static (kontti import),
#   2. push it to kontti's built-in registry on loopback and pull it into a
#      fresh state root (verified, unpacked once into shared layer snapshots),
#   3. run it as an OCI container with kontti-runc on an overlay rootfs,
#   4. start the Kubernetes-compatible API server and deploy it with kubectl.
# Needs root (namespaces, mounts, cgroups). Leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --release --locked --bins
BIN=$PWD/target/release
K="$BIN/kontti"

work=$(mktemp -d /tmp/kontti-demo.XXXXXX)
pids=()
cleanup() {
  set +e
  "$BIN/kontti-runc" --root "$work/runc" delete --force demo >/dev/null 2>&1
  [ -n "${mnt:-}" ] && "$K" --root "$work/node" image unmount demo-rootfs >/dev/null 2>&1
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "timed out: $*" >&2; return 1; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. an image from Debian's busybox-static"
mkdir -p "$work/rootfs/bin" "$work/rootfs"/{proc,sys,dev,tmp,etc,root}
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in $(/bin/busybox --list-full); do
  mkdir -p "$work/rootfs/$(dirname "$applet")"
  [ -e "$work/rootfs/$applet" ] || ln -s /bin/busybox "$work/rootfs/$applet"
done
echo "root:x:0:0:root:/root:/bin/sh" > "$work/rootfs/etc/passwd"
echo "root:x:0:" > "$work/rootfs/etc/group"
tar -C "$work/rootfs" -czf "$work/busybox.tar.gz" .
"$K" --root "$work/build" import --cmd /bin/sh "$work/busybox.tar.gz" demo/busybox:1.0
"$K" --root "$work/build" images

step "2. push to kontti's registry on loopback, pull into a fresh node"
rport=$(free_port)
"$K" registry serve --addr "127.0.0.1:$rport" --storage "$work/registry" 2>"$work/registry.log" &
pids+=($!)
wait_for curl -sf "http://127.0.0.1:$rport/v2/"
"$K" --root "$work/build" tag demo/busybox:1.0 "127.0.0.1:$rport/demo/busybox:1.0"
"$K" --root "$work/build" push "127.0.0.1:$rport/demo/busybox:1.0"
"$K" --root "$work/node" pull "127.0.0.1:$rport/demo/busybox:1.0"
"$K" --root "$work/node" images

step "3. run it with kontti-runc on an overlay root filesystem"
mnt=$("$K" --root "$work/node" image mount --name demo-rootfs "127.0.0.1:$rport/demo/busybox:1.0")
echo "rootfs: $mnt"
mkdir -p "$work/bundle"
(cd "$work/bundle" && "$BIN/kontti-runc" spec)
python3 - "$work/bundle/config.json" "$mnt" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["root"] = {"path": sys.argv[2], "readonly": False}
cfg["process"]["terminal"] = False
cfg["hostname"] = "demo"
cfg["process"]["args"] = ["sh", "-c",
    "echo hello from $(hostname): uid $(id -u), pid $$ in its own namespace;"
    " echo capabilities: $(grep CapEff /proc/self/status); exit 3"]
json.dump(cfg, open(sys.argv[1], "w"), indent=1)
PY
set +e
"$BIN/kontti-runc" --root "$work/runc" run --bundle "$work/bundle" demo
echo "exit status propagated: $?"
set -e
"$K" --root "$work/node" image unmount demo-rootfs; mnt=

step "4. the Kubernetes-compatible API server, driven by the real kubectl"
kubectl=""
for v in 33 32 31 30 29 28 27; do
  c=/usr/lib/google-cloud-sdk/bin/kubectl.1.$v
  [ -x "$c" ] && { kubectl=$c; break; }
done
if [ -z "$kubectl" ]; then echo "no kubectl.1.NN found; skipping the API part"; exit 0; fi
aport=$(free_port)
"$K" server --data-dir "$work/server" --listen "127.0.0.1:$aport" >"$work/server.log" 2>&1 &
pids+=($!)
wait_for test -s "$work/server/admin.kubeconfig"
kc() { "$kubectl" --kubeconfig "$work/server/admin.kubeconfig" --cache-dir "$work/kcache" "$@"; }
wait_for kc get --raw /version
cat > "$work/app.yaml" <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: demo, labels: {app: web}}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: 127.0.0.1:$rport/demo/busybox:1.0
        command: ["httpd", "-f", "-p", "8080"]
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
YAML
kc apply -f "$work/app.yaml"
kc -n demo get deployments,services -o wide
kc -n demo scale deployment web --replicas=5
kc -n demo get deployment web -o jsonpath='{.spec.replicas}{"\n"}'
kc delete namespace demo
echo
echo "Scheduling these pods onto nodes (the node agent) is the next step; see docs/ARCHITECTURE.md."
