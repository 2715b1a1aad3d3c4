#!/usr/bin/env bash
# The main job, end to end on this machine: `ecr serve` (the gateway, with CNCF
# Distribution behind it), then the example bundle validated, pushed, signed, inspected,
# approved for a deployment and pulled by that deployment's node, as an edge node would.
# Run with `make demo` (it builds the example images first).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/ecr-demo.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export ECR_ADMIN_PASSWORD=demo-admin-password ECR_SERVER=127.0.0.1:$port DOCKER_CONFIG=$work/docker
export COSIGN_PASSWORD=demo-key-password
ecr serve --data-dir "$work/data" --listen "127.0.0.1:$port" > "$work/serve.log" 2>&1 &
serve_pid=$!
trap 'kill $serve_pid 2>/dev/null; wait $serve_pid 2>/dev/null || true; rm -rf "$work"' EXIT
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
node_secret=$(ECR_USERNAME=admin ECR_PASSWORD=$ECR_ADMIN_PASSWORD ecr admin node add W0A1 --deployment neon)
ECR_USERNAME=admin ECR_PASSWORD=$ECR_ADMIN_PASSWORD ecr stage set "$ref" approved --deployment neon
curl -sf "http://127.0.0.1:$port/api/v1/signing-key" > "$work/ecr.pub"
# the node: plain skopeo with its credential, then ecr pull requiring the ECR's approval signature
skopeo inspect --tls-verify=false --creds "W0A1:$node_secret" "docker://$ref" | head -12
ECR_USERNAME=W0A1 ECR_PASSWORD=$node_secret ecr pull "$ref" --platform linux/arm64 \
  --require-signature "$work/ecr.pub" -o "$work/pulled"
find "$work/pulled" -maxdepth 2 | sort
# alice sees her repository; anonymous callers see nothing of a protected bundle
ecr ls "127.0.0.1:$port"
DOCKER_CONFIG=$work/anonymous ecr ls "127.0.0.1:$port"
set +x
echo "demo finished"
