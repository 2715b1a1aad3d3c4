"""The catalog as a viewer sees it: the service functions behind ``/api/v1`` and the web pages.

Every function takes the caller and answers only what that caller may pull: a
repository outside the caller's view is absent (None, or left out of a listing),
exactly like one that does not exist. Nodes see only their approved content closure:
versions, tags, referrers and stage events of approved digests. One bad record (say
an annotation that is not valid Unicode, stored before the gate refused such text)
is skipped and logged, never allowed to break a listing for everyone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from ecr_oci import mediatypes as mt
from ecr_oci.bundle.annotations import metadata_from
from ecr_oci.gateway import referrers
from ecr_oci.gateway.core import Gateway
from ecr_oci.gateway.policy import PULL, Caller
from ecr_oci.gateway.stages import current_stages
from ecr_oci.gateway.state import Referrer, StageEvent
from ecr_oci.jsontext import is_unicode_clean

log = logging.getLogger("ecr.gateway")


def may_pull(gateway: Gateway, caller: Caller, repository: str) -> bool:
    """Whether ``caller`` may see ``repository`` at all."""
    return PULL in gateway.allowed(caller, repository)


def may_see(gateway: Gateway, caller: Caller, repository: str, digest: str) -> bool:
    """Whether ``caller`` may see one manifest of a repository it may pull (nodes: approved only)."""
    return gateway.node_content.permits(caller, repository, digest)


def referrer_descriptors(gateway: Gateway, caller: Caller, repository: str, subject: str) -> list[Referrer]:
    """The referrers of ``subject`` the caller may see (nodes: approved ones, of approved subjects)."""
    if not may_see(gateway, caller, repository, subject):
        return []
    out = []
    for referrer in gateway.store.referrers(repository, subject):
        if not may_see(gateway, caller, repository, referrer.digest):
            continue
        if not is_unicode_clean(referrer.descriptor()):
            log.warning("skipping referrer %s of %s in %s: not valid Unicode", referrer.digest, subject, repository)
            continue
        out.append(referrer)
    return out


async def visible_tags(gateway: Gateway, caller: Caller, repository: str, tags: list[str]) -> list[str]:
    """``tags`` less those naming content the caller may not see (only nodes lose any)."""
    if caller.kind != "node":
        return tags
    out = []
    for tag in tags:
        manifest = await gateway.manifest(repository, tag)
        if manifest is not None and may_see(gateway, caller, repository, manifest.digest):
            out.append(tag)
    return out


def _version(gateway: Gateway, repository: str, tag: str, digest: str, doc: dict[str, Any]) -> dict[str, Any]:
    events = gateway.store.stage_events(repository, digest)
    dois = [
        r.annotations[mt.ECR_DOI] for r in gateway.store.referrers(repository, digest)
        if r.artifact_type == mt.DOI_ARTIFACT_TYPE and r.annotations and mt.ECR_DOI in r.annotations
    ]
    return {
        "tag": tag,
        "digest": digest,
        "doi": dois[-1] if dois else None,
        "metadata": metadata_from(doc.get("annotations") or {}),
        "platforms": [
            "/".join(str(p[k]) for k in ("os", "architecture", "variant") if p.get(k))
            for m in doc.get("manifests") or [] if (p := m.get("platform")) and p.get("os") != "unknown"
        ],
        "stages": current_stages(events),
    }


async def bundle_versions(gateway: Gateway, caller: Caller, repository: str) -> list[dict[str, Any]]:
    """The bundle versions (tags naming a bundle index) of a repository the caller may see."""
    if not may_pull(gateway, caller, repository):
        return []
    out = []
    for tag in await gateway.upstream.tags(repository):
        if referrers.FALLBACK_TAG.match(tag) or tag.endswith((".sig", ".att", ".sbom")):
            continue
        manifest = await gateway.manifest(repository, tag)
        if manifest is None or not may_see(gateway, caller, repository, manifest.digest):
            continue
        try:
            doc = json.loads(manifest.data)
            if not isinstance(doc, dict) or doc.get("artifactType") != mt.BUNDLE_ARTIFACT_TYPE:
                continue
            version = _version(gateway, repository, tag, manifest.digest, doc)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            log.warning("skipping %s:%s in listings: %s", repository, tag, exc)
            continue
        if not is_unicode_clean(version):
            log.warning("skipping %s:%s in listings: metadata is not valid Unicode", repository, tag)
            continue
        out.append(version)
    return out


def matches(version: dict[str, Any], query: Mapping[str, str]) -> bool:
    """Whether a version satisfies the search parameters (``q``, ``keyword``, ``platform``, ...)."""
    meta = version["metadata"]
    text = " ".join(str(meta.get(k, "")) for k in ("name", "description", "science")).lower()
    keywords = [str(k).lower() for k in meta.get("keywords") or []]
    if (term := query.get("q")) and term.lower() not in text and term.lower() not in keywords:
        return False
    if (kw := query.get("keyword")) and kw.lower() not in keywords:
        return False
    if (platform := query.get("platform")) and platform not in version["platforms"]:
        return False
    if (runtime := query.get("runtime")) and runtime not in (meta.get("runtime") or {}):
        return False
    if (hardware := query.get("hardware")) and hardware not in (meta.get("hardware") or {}):
        return False
    return not ((stage := query.get("stage")) and stage not in version["stages"].values())


async def search(gateway: Gateway, caller: Caller, query: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every repository the caller may see with its versions matching ``query``."""
    results = []
    for repository in await gateway.upstream.catalog():
        if not may_pull(gateway, caller, repository):
            continue
        if (name := query.get("name")) and name not in repository:
            continue
        versions = [v for v in await bundle_versions(gateway, caller, repository) if matches(v, query)]
        if versions:
            results.append({"repository": repository, "versions": versions})
    return results


async def bundle(gateway: Gateway, caller: Caller, repository: str) -> dict[str, Any] | None:
    """A repository's versions with their referrers; None when absent or not visible to the caller."""
    versions = await bundle_versions(gateway, caller, repository)
    if not versions:
        return None
    for version in versions:
        version["referrers"] = [
            r.descriptor() for r in referrer_descriptors(gateway, caller, repository, version["digest"])
        ]
    return {"repository": repository, "versions": versions}


def stage_events(gateway: Gateway, caller: Caller, repository: str, digest: str | None) -> list[StageEvent] | None:
    """The stage history the caller may see; None when the repository is not visible."""
    if not may_pull(gateway, caller, repository):
        return None
    events = gateway.store.stage_events(repository, digest)
    return [e for e in events if may_see(gateway, caller, repository, e.digest)]
