#!/usr/bin/env bash
# The main job, end to end on this machine: `ecr serve` (the gateway, with CNCF
# Distribution behind it), then the example bundle validated, pushed, signed, inspected,
# approved for a deployment and pulled by that deployment's node, as an edge node would;
# the deployment's scheduler feed, the node's Kubernetes spec and, where podman runs, the
# bundle started from its spec on a Virtual Waggle; then the approval revoked.
# Run with `make demo` (it builds the example images first).
set -euo pipefail  # (so no `| head` below: a reader that stops early would fail the pipe)
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/ecr-demo.XXXXXX")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export ECR_ADMIN_PASSWORD=demo-admin-password ECR_SERVER=127.0.0.1:$port DOCKER_CONFIG=$work/docker
export COSIGN_PASSWORD=demo-key-password
# Only the logins this demo makes count: ecr (like podman) also reads REGISTRY_AUTH_FILE, and the
# node's podman login below goes to its own file, so alice's and the anonymous `ecr ls` stay theirs.
unset REGISTRY_AUTH_FILE
ecr serve --data-dir "$work/data" --listen "127.0.0.1:$port" > "$work/serve.log" 2>&1 &
serve_pid=$!
podman_cmd=(podman --storage-driver vfs --cgroup-manager cgroupfs --events-backend file --runtime runc)
cleanup() {
  if [ -f "$work/pod.yaml" ]; then
    CONTAINERS_CONF=$work/containers.conf "${podman_cmd[@]}" kube down "$work/pod.yaml" >/dev/null 2>&1 || true
    "${podman_cmd[@]}" secret rm ecr-node-credentials >/dev/null 2>&1 || true
    # the vfs storage keeps a full copy per image: do not leave them behind
    python3 -c 'import sys, yaml; s = yaml.safe_load(open(sys.argv[1]))["spec"]
print(*(c["image"] for c in s["containers"] + s.get("initContainers", [])))' "$work/pod.yaml" \
      | xargs -r "${podman_cmd[@]}" rmi >/dev/null 2>&1 || true
  fi
  kill $serve_pid 2>/dev/null; wait $serve_pid 2>/dev/null || true; rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done

ref=127.0.0.1:$port/alice/bird-detector:1.2.0
set -x
echo alice-password | ECR_USERNAME=admin ECR_PASSWORD=$ECR_ADMIN_PASSWORD ecr admin user add alice --password-stdin
echo alice-password | ecr login 127.0.0.1:$port --username alice --password-stdin
ecr validate "$here/bird-detector"
ecr keygen --output-prefix "$work/alice"
ecr push --key "$work/alice.key" "$here/bird-detector" "$ref"
ECR_USERNAME=alice ECR_PASSWORD=alice-password ecr repo set-visibility alice/bird-detector protected
ecr inspect "$ref"
ecr verify "$ref" --key "$work/alice.pub" --provenance
node_secret=$(ECR_USERNAME=admin ECR_PASSWORD=$ECR_ADMIN_PASSWORD ecr admin node add W0A1 --deployment neon \
  --platform linux/arm64 --accelerator nvidia-jetson-xavier-nx --memory 8Gi --sensor camera)
vw_secret=$(ECR_USERNAME=admin ECR_PASSWORD=$ECR_ADMIN_PASSWORD ecr admin node add VW01 --deployment neon \
  --platform linux/amd64 --memory 4Gi --sensor camera)
ECR_USERNAME=admin ECR_PASSWORD=$ECR_ADMIN_PASSWORD ecr stage set "$ref" approved --deployment neon
ecr signing-key -o "$work/ecr.pub"
# the node: plain skopeo with its credential, then ecr pull requiring the ECR's approval signature
skopeo inspect --tls-verify=false --creds "W0A1:$node_secret" "docker://$ref" | sed -n 1,12p
ECR_USERNAME=W0A1 ECR_PASSWORD=$node_secret ecr pull "$ref" --platform linux/arm64 \
  --require-signature "$work/ecr.pub" -o "$work/pulled"
find "$work/pulled" -maxdepth 2 | sort
# the scheduler's view: what neon may run, where, and why not; then the node's spec
curl -sf -u "admin:$ECR_ADMIN_PASSWORD" "http://127.0.0.1:$port/api/v1/deployments/neon/feed" | python3 -c '
import json, sys
feed = json.load(sys.stdin)
for b in feed["bundles"]:
    print(b["repository"], b["version"], b["digest"][:19], "countersigned:", b["signatures"]["countersigned"])
    for n in b["nodes"]:
        print("  ", n["node"], "can run" if n["can_run"] else "cannot run", n["platform"] or "", *n["reasons"])
print("cursor", feed["cursor"])'
ECR_USERNAME=admin ECR_PASSWORD=$ECR_ADMIN_PASSWORD ecr deploy fetcher "127.0.0.1:$port/ecr/model-fetcher:latest" \
  --deployment neon
ECR_USERNAME=W0A1 ECR_PASSWORD=$node_secret ecr deploy k8s "$ref" --node W0A1 | sed -n 1,30p
if command -v podman >/dev/null && command -v runc >/dev/null && command -v catatonit >/dev/null \
   && [ "$(id -u)" = 0 ]; then
  # a Virtual Waggle (VW01, this machine): the same spec under podman kube play
  metrics_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  ECR_USERNAME=VW01 ECR_PASSWORD=$vw_secret ecr deploy podman "$ref" --node VW01 --metrics-port "$metrics_port" \
    -e FRAMES=0 -e FRAME_INTERVAL=0.2 -e METRICS_ADDR=127.0.0.1 -o "$work/pod.yaml"
  printf '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n' > "$work/containers.conf"
  echo "$vw_secret" | "${podman_cmd[@]}" login --authfile "$work/auth.json" --tls-verify=false -u VW01 \
    --password-stdin "127.0.0.1:$port"
  "${podman_cmd[@]}" secret rm ecr-node-credentials >/dev/null 2>&1 || true
  printf '{"username":"%s","password":"%s"}' "$(printf %s VW01 | base64 -w0)" "$(printf %s "$vw_secret" | base64 -w0)" \
    | "${podman_cmd[@]}" secret create ecr-node-credentials - >/dev/null
  CONTAINERS_CONF=$work/containers.conf "${podman_cmd[@]}" kube play --replace --network host --tls-verify=false \
    --authfile "$work/auth.json" "$work/pod.yaml"
  # wait for the first inference (not just the endpoint: the series appears with it), up to 60 s
  for _ in $(seq 120); do
    curl -sf "http://127.0.0.1:$metrics_port/metrics" 2>/dev/null | grep '^ecr_inference_seconds_count' >/dev/null \
      && break
    sleep 0.5
  done
  curl -sf "http://127.0.0.1:$metrics_port/metrics" | grep '^ecr_inference_seconds_count'
  pod=$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["metadata"]["name"])' "$work/pod.yaml")
  for _ in $(seq 60); do "${podman_cmd[@]}" logs "$pod-plugin" 2>&1 | grep '^frame=' >/dev/null && break; sleep 0.5; done
  "${podman_cmd[@]}" logs "$pod-plugin" 2>&1 | sed -n 1,3p
fi
# revoking the approval: out of the feed, and the node's next pull is refused
ECR_USERNAME=admin ECR_PASSWORD=$ECR_ADMIN_PASSWORD ecr stage set "$ref" deprecated --deployment neon
curl -sf -u "W0A1:$node_secret" "http://127.0.0.1:$port/api/v1/deployments/neon/feed" \
  | python3 -c 'import json, sys; print("bundles in the feed:", len(json.load(sys.stdin)["bundles"]))'
if skopeo inspect --tls-verify=false --creds "W0A1:$node_secret" "docker://$ref" >/dev/null 2>&1; then
  echo "error: the node can still pull a revoked bundle"; exit 1
else
  echo "the node's pull is refused"
fi
# alice sees her repository; anonymous callers see nothing of a protected bundle
ecr ls "127.0.0.1:$port"
DOCKER_CONFIG=$work/anonymous ecr ls "127.0.0.1:$port"
set +x
echo "demo finished"
