"""Released versions are immutable as a whole.

A release tag (semver, see :func:`~ecr_oci.gateway.domain.policy.is_release_tag`) names an
index or manifest; everything it needs to be pulled (child manifests, configs,
layers) must stay as long as the tag does. Only an administrator deletes a release,
and the first writer of a release tag wins (``StateStore.claim_tag``).
Referrers (signatures, profiles, DOI records) are not part of the release: they are
attached and withdrawn over the release's life.
"""

from __future__ import annotations

import json

from ecr_oci.gateway.core import Gateway
from ecr_oci.gateway.domain.policy import is_release_tag


async def manifest_closure(gateway: Gateway, repository: str, digest: str) -> set[str]:
    """Every digest a pull of ``digest`` needs: itself, child manifests, configs and layers."""
    out: set[str] = set()
    pending = [digest]
    while pending:
        current = pending.pop()
        if current in out:
            continue
        out.add(current)
        manifest = await gateway.manifest(repository, current)
        if manifest is None:
            continue
        try:
            doc = json.loads(manifest.data)
        except ValueError:
            continue
        pending += [m["digest"] for m in doc.get("manifests") or [] if isinstance(m, dict) and "digest" in m]
        if isinstance(config := doc.get("config"), dict) and "digest" in config:
            out.add(config["digest"])
        out.update(layer["digest"] for layer in doc.get("layers") or []
                   if isinstance(layer, dict) and "digest" in layer)
    return out


async def release_holding(gateway: Gateway, repository: str, digest: str) -> str | None:
    """The release tag whose content includes ``digest``, or None."""
    for tag in sorted(await gateway.upstream.tags(repository)):
        if not is_release_tag(tag):
            continue
        manifest = await gateway.manifest(repository, tag)
        if manifest is not None and digest in await manifest_closure(gateway, repository, manifest.digest):
            return tag
    return None
