#!/usr/bin/env bash
# The offline demo, on one machine with no internet:
#   1. make a base image from Debian's busybox-static (kontti import),
#   2. build a web server image from a Dockerfile (kontti build), then rebuild
#      it from the layer cache,
#   3. push it to kontti's built-in registry on loopback and pull it into a
#      fresh state root (verified, unpacked once into shared layer snapshots),
#   4. run it as a container with a published port, read its logs, exec into
#      it, stop and remove it; a foreground run propagates the exit status,
#   5. start the Kubernetes-compatible API server and deploy it with kubectl.
# Needs root (namespaces, mounts, cgroups, a bridge). Leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${KONTTI_BIN:-}" ]; then
  BIN=$KONTTI_BIN # already-built binaries (kontti, kontti-runc, kontti-supervisor, kontti-dns)
else
  scripts/install-deps.sh
  cargo build --release --locked --bins
  BIN=$PWD/target/release
fi
K="$BIN/kontti"

work=$(mktemp -d /tmp/kontti-demo.XXXXXX)
pids=()
cleanup() {
  set +e
  "$K" --root "$work/node" rm -f web >/dev/null 2>&1
  "$K" --root "$work/node" network rm bridge >/dev/null 2>&1
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "timed out: $*" >&2; return 1; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. a base image from Debian's busybox-static"
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

step "2. build a web server image from a Dockerfile, then rebuild it from the cache"
mkdir -p "$work/app"
echo "hello from a kontti container" > "$work/app/index.html"
cat > "$work/app/Dockerfile" <<'DOCKERFILE'
FROM demo/busybox:1.0
RUN mkdir -p /www && echo "this file was written by a RUN step" > /www/built.txt
COPY index.html /www/index.html
EXPOSE 8080
STOPSIGNAL SIGTERM
CMD ["httpd", "-f", "-v", "-p", "8080", "-h", "/www"]
DOCKERFILE
"$K" --root "$work/build" build --progress plain -t demo/web:1.0 "$work/app"
start=$(date +%s%N)
"$K" --root "$work/build" build --progress quiet -t demo/web:1.0 "$work/app"
echo "cached rebuild: $(( ($(date +%s%N) - start) / 1000000 )) ms"
"$K" --root "$work/build" images

step "3. push to kontti's registry on loopback, pull into a fresh node"
rport=$(free_port)
"$K" registry serve --addr "127.0.0.1:$rport" --storage "$work/registry" 2>"$work/registry.log" &
pids+=($!)
wait_for curl -sf "http://127.0.0.1:$rport/v2/"
image="127.0.0.1:$rport/demo/web:1.0"
"$K" --root "$work/build" tag demo/web:1.0 "$image"
"$K" --root "$work/build" push "$image"
"$K" --root "$work/node" pull "$image"
"$K" --root "$work/node" images

step "4. run it: a published port, logs, exec, stop, rm"
wport=$(free_port)
"$K" --root "$work/node" run -d --name web -p "127.0.0.1:$wport:8080" "$image"
"$K" --root "$work/node" ps
wait_for curl -sf "http://127.0.0.1:$wport/index.html"
echo "GET http://127.0.0.1:$wport/index.html -> $(curl -sf "http://127.0.0.1:$wport/index.html")"
"$K" --root "$work/node" exec web cat /www/built.txt
"$K" --root "$work/node" logs web
"$K" --root "$work/node" stop web
"$K" --root "$work/node" rm web
set +e
"$K" --root "$work/node" run --rm --network none "$image" sh -c 'echo "hello from $(hostname)"; exit 3'
echo "exit status propagated: $?"
set -e
"$K" --root "$work/node" network rm bridge

step "5. the Kubernetes-compatible API server, driven by the real kubectl"
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
        image: $image
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
