#!/bin/sh
# Create the keys every gateway shares (client and upstream token keys, countersigning
# key) by starting one gateway once with the data directory ./keys-init, then keep ./keys.
set -eu
cd "$(dirname "$0")"
[ -e keys ] && { echo "keys/ exists: keep it (all gateways and registries trust it)"; exit 0; }
image="${ECR_GATEWAY_IMAGE:-ecr.example.org/ecr/gateway:0.1.0}"
mkdir -p keys-init
# the gateway writes its keys at start-up; it is stopped after 20 s
timeout 20 docker run --rm -v "$PWD/keys-init:/var/lib/ecr" -e ECR_ADMIN_PASSWORD=unused "$image" \
    serve --data-dir /var/lib/ecr --listen 127.0.0.1:5000 --registry-url http://127.0.0.1:9 || true
mv keys-init/keys keys && rm -rf keys-init
ls keys
