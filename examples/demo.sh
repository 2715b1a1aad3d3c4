#!/usr/bin/env bash
# The main job, end to end on this machine: a local CNCF Distribution, then the
# example bundle pushed, inspected and pulled with `ecr`, and fetched by skopeo as
# an edge node would. Run with `make demo` (it builds the example images first).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/ecr-demo.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<YAML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/storage}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
YAML
/usr/bin/docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
registry_pid=$!
trap 'kill $registry_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done

ref=127.0.0.1:$port/alice/bird-detector:1.2.0
set -x
ecr validate "$here/bird-detector"
ecr push "$here/bird-detector" "$ref"
ecr inspect "$ref"
ecr pull "$ref" --platform linux/arm64 -o "$work/pulled"
find "$work/pulled" -maxdepth 2 | sort
skopeo inspect --tls-verify=false "docker://$ref" | head -20
