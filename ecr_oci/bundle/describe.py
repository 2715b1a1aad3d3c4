"""Words for what ``ecr inspect`` shows: referrers labelled by what they are, image sizes
as the sum of their parts, and what a gateway knows (visibility, stages)."""

from __future__ import annotations

import json
from typing import Any

from ecr_oci import mediatypes as mt
from ecr_oci.errors import EcrError
from ecr_oci.registry.client import RegistryClient

SIGNATURE_TYPES = frozenset({mt.COSIGN_ARTIFACT_TYPE, mt.COSIGN_SIMPLESIGNING, mt.SIGSTORE_BUNDLE})
APPROVED_FOR = mt.ECR_PREFIX + "approved-for"  # the gateway's countersignature claim (gateway.system)
PROFILE_NODE = mt.ECR_PREFIX + "profile.node"
PROFILE_STAGE = mt.ECR_PREFIX + "profile.stage"
PROFILE_WINDOW_END = mt.ECR_PREFIX + "profile.window.end"


def image_size(client: RegistryClient, repository: str, entry: dict[str, Any]) -> int:
    """Bytes of an image: its manifest, config and layers (what a pull of it moves)."""
    try:
        body = client.get_manifest(repository, entry["digest"]).json()
    except EcrError:
        return int(entry.get("size", 0))
    parts = [body.get("config") or {}, *(body.get("layers") or [])]
    return int(entry.get("size", 0)) + sum(int(p.get("size", 0)) for p in parts)


def _signature_claims(client: RegistryClient, repository: str, digest: str) -> list[dict[str, Any]]:
    """The ``optional`` claims of each simple-signing payload in a signature manifest."""
    claims = []
    try:
        manifest = client.get_manifest(repository, digest).json()
        for layer in manifest.get("layers") or []:
            if layer.get("mediaType") == mt.COSIGN_SIMPLESIGNING and int(layer.get("size", 0)) < 64 << 10:
                payload = json.loads(client.get_blob(repository, layer["digest"]))
                claims.append(payload.get("optional") or {})
    except (EcrError, ValueError, AttributeError):
        pass
    return claims


def label_referrer(client: RegistryClient, repository: str, referrer: dict[str, Any]) -> str:
    """What a referrer is, in words: a signature (the gateway's approval or another
    key's), a node's performance profile, provenance, a DOI record."""
    kind = referrer.get("artifactType") or ""
    notes = referrer.get("annotations") or {}
    if kind in SIGNATURE_TYPES:
        claims = _signature_claims(client, repository, referrer["digest"])
        approved = sorted({str(c[APPROVED_FOR]) for c in claims if APPROVED_FOR in c})
        if approved:
            return f"approval countersignature by the gateway (for {', '.join(approved)})"
        return "signature (cosign; check the key with `ecr verify --key`)"
    if kind == mt.PROFILE_ARTIFACT_TYPE:
        where = notes.get(PROFILE_NODE, "?")
        stage = notes.get(PROFILE_STAGE)
        end = notes.get(PROFILE_WINDOW_END)
        return f"performance profile from node {where}" + (f" ({stage})" if stage else "") + (
            f", window ending {end}" if end else "")
    if kind in (mt.DSSE_ENVELOPE, mt.IN_TOTO) or "in-toto.io/predicate-type" in notes:
        predicate = notes.get("in-toto.io/predicate-type", "")
        return "provenance (SLSA)" if "slsa" in predicate else f"attestation {predicate}".strip()
    if kind == mt.DOI_ARTIFACT_TYPE:
        return f"DOI record {notes.get(mt.ECR_DOI, '')}".strip()
    if kind == mt.STAGE_ARTIFACT_TYPE:
        return "stage record"
    return kind or "unknown artifact"


def gateway_facts(client: RegistryClient, repository: str, digest: str) -> dict[str, Any] | None:
    """Visibility, what the caller may do, and this bundle's stages, when the registry
    is an ECR gateway (None for a plain registry)."""
    from ecr_oci.gateway.client import GatewayAdmin

    admin = GatewayAdmin(client.base_url, client.auth.credentials, verify_tls=bool(client.session.verify))
    try:
        facts = admin.repository(repository)
        events = [e for e in admin.stages(repository)["events"] if e.get("digest") == digest]
    except (EcrError, KeyError, TypeError):
        return None
    # Only for a gateway: a plain registry's inspect starts without the state store's modules.
    from ecr_oci.gateway.domain.stages import current_stages
    from ecr_oci.gateway.stores.state import StageEvent

    parsed = [StageEvent(repository=repository, digest=digest, stage=e["stage"], deployment=e.get("deployment", ""),
                         actor=e.get("actor", ""), at=e.get("at", 0.0), evidence=e.get("evidence") or {})
              for e in events]
    return {"visibility": facts.get("visibility"), "may": facts.get("may", []), "stages": current_stages(parsed)}
