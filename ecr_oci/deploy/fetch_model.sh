#!/bin/sh
# ecr-fetch-model: place a bundle's model files, fetched and verified by digest, in a
# directory the plugin container then mounts read-only. Runs in busybox (sh, wget,
# sha256sum): a node needs nothing of the ECR beyond this image.
#
# Environment (written by `ecr deploy`):
#   ECR_REGISTRY        HOST[:PORT] of the ECR
#   ECR_REGISTRY_SCHEME https (default) or http
#   ECR_REPOSITORY      repository holding the bundle
#   ECR_MODEL_MANIFEST  sha256:... digest of the bundle's model manifest
#   ECR_MODEL_FILES     one "sha256:HEX RELATIVE/PATH" line per model file
#   ECR_MODEL_TARGET    directory to fill (an emptyDir volume)
#   ECR_USERNAME, ECR_PASSWORD  the node's credential (from a Secret), optional
set -eu
fail() { echo "ecr-fetch-model: $*" >&2; exit 1; }
for v in ECR_REGISTRY ECR_REPOSITORY ECR_MODEL_MANIFEST ECR_MODEL_FILES ECR_MODEL_TARGET; do
  eval "[ -n \"\${$v:-}\" ]" || fail "$v is not set"
done
base="${ECR_REGISTRY_SCHEME:-https}://$ECR_REGISTRY/v2/$ECR_REPOSITORY"
auth=""
if [ -n "${ECR_USERNAME:-}" ]; then
  auth="Authorization: Basic $(printf '%s:%s' "$ECR_USERNAME" "${ECR_PASSWORD:-}" | base64 | tr -d '\n')"
fi
fetch() { # URL OUT ACCEPT
  if [ -n "$auth" ]; then
    wget -q -O "$2" --header "$auth" --header "Accept: $3" "$1" || fail "cannot fetch $1"
  else
    wget -q -O "$2" --header "Accept: $3" "$1" || fail "cannot fetch $1"
  fi
}
verify() { # FILE DIGEST
  [ "sha256:$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ] || fail "$1 does not match $2"
}
work="$ECR_MODEL_TARGET/.fetch"
rm -rf "$work" && mkdir -p "$work"
fetch "$base/manifests/$ECR_MODEL_MANIFEST" "$work/manifest.json" "application/vnd.oci.image.manifest.v1+json"
verify "$work/manifest.json" "$ECR_MODEL_MANIFEST"
echo "$ECR_MODEL_FILES" | while read -r digest path; do
  [ -n "$digest" ] || continue
  case "$digest" in sha256:*) ;; *) fail "bad digest $digest" ;; esac
  case "$path" in /*|*..*|"") fail "bad path $path" ;; esac
  grep -q "\"$digest\"" "$work/manifest.json" || fail "$digest is not a layer of $ECR_MODEL_MANIFEST"
  mkdir -p "$work/files/$(dirname "$path")"
  fetch "$base/blobs/$digest" "$work/files/$path" "application/octet-stream"
  verify "$work/files/$path" "$digest"
  echo "ecr-fetch-model: $path ok ($digest)"
done
chmod -R a=rX "$work/files"
mv "$work/files"/* "$ECR_MODEL_TARGET"/
rm -rf "$work"
echo "ecr-fetch-model: model $ECR_MODEL_MANIFEST in $ECR_MODEL_TARGET"
