"""The catalog index: one state-store row per tag naming a bundle index.

Search and bundle pages read this index instead of walking the registry (catalog,
tags, manifests) on every request. It is kept by the proxy as manifests are
written or deleted (:func:`manifest_written`, :func:`manifest_deleted`) and rebuilt
from the registry alone by :func:`rebuild` (``ecr admin reindex``), so the registry
stays the one source of truth. Rows carry no access facts: every reader filters by
policy (:mod:`ecr_oci.gateway.domain.catalog`).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from ecr_oci import mediatypes as mt
from ecr_oci.bundle.annotations import metadata_from
from ecr_oci.bundle.icon import ICON_MEDIA_TYPES, MAX_ICON_BYTES
from ecr_oci.gateway.core import Gateway
from ecr_oci.gateway.domain import referrers
from ecr_oci.gateway.stores.state import BundleVersion
from ecr_oci.jsontext import is_unicode_clean

log = logging.getLogger("ecr.gateway")


def platform_text(platform: dict[str, Any]) -> str:
    return "/".join(str(platform[k]) for k in ("os", "architecture", "variant") if platform.get(k))


def _load(data: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


async def describe(gateway: Gateway, repository: str, doc: dict[str, Any], index_size: int) -> dict[str, Any]:
    """What the pages show of one bundle index: metadata, platforms with image digests
    and sizes, model files. Children are read from the registry (they exist: the gate
    checked them before the index was accepted)."""
    platforms: list[dict[str, Any]] = []
    model: dict[str, Any] | None = None
    total = index_size
    for entry in doc.get("manifests") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
            continue
        platform: dict[str, Any] = entry["platform"] if isinstance(entry.get("platform"), dict) else {}
        child = await gateway.manifest(repository, entry["digest"])
        child_doc = _load(child.data) if child is not None else None
        parts = [(child_doc or {}).get("config") or {}, *((child_doc or {}).get("layers") or [])]
        size = _int(entry.get("size")) + sum(_int(p.get("size")) for p in parts if isinstance(p, dict))
        total += size
        role = (entry.get("annotations") or {}).get(mt.ECR_ROLE)
        if role == "model" or platform.get("os") in (None, "unknown"):
            files = [
                {"path": str((layer.get("annotations") or {}).get(mt.OCI_TITLE) or layer.get("digest")),
                 "digest": str(layer.get("digest")), "size": _int(layer.get("size")),
                 "role": str((layer.get("annotations") or {}).get(mt.ECR_LAYER_ROLE) or "model"),
                 "media_type": str(layer.get("mediaType") or "")}
                for layer in (child_doc or {}).get("layers") or [] if isinstance(layer, dict)
            ]
            model = {"digest": entry["digest"], "size": size, "files": files,
                     "icon": _icon((child_doc or {}).get("layers") or [])}
        else:
            platforms.append({"platform": platform_text(platform), "digest": entry["digest"], "size": size})
    return {
        "metadata": metadata_from(doc.get("annotations") or {}),
        "platforms": platforms,
        "model": model,
        "size": total,
        "media_type": str(doc.get("mediaType") or mt.OCI_INDEX),
    }


def _icon(layers: list[Any]) -> dict[str, Any] | None:
    """The bundle icon (the first model-manifest layer Harbor would show), when it is a
    small PNG, JPEG or GIF."""
    for layer in layers:
        if not isinstance(layer, dict) or mt.HARBOR_ICON not in (layer.get("annotations") or {}):
            continue
        if layer.get("mediaType") in ICON_MEDIA_TYPES and 0 < _int(layer.get("size")) <= MAX_ICON_BYTES:
            return {"digest": str(layer.get("digest")), "size": _int(layer.get("size")),
                    "media_type": str(layer["mediaType"])}
        return None
    return None


def _facets(document: dict[str, Any]) -> list[str]:
    meta = document["metadata"]
    out = [f"platform:{p['platform']}" for p in document["platforms"]]
    if meta.get("license"):
        out.append(f"license:{str(meta['license']).lower()}")
    hardware = meta.get("hardware")
    if isinstance(hardware, dict):
        out += [f"hardware:{str(k).lower()}" for k, v in hardware.items() if v not in (None, False, "", 0)]
    out += [f"keyword:{str(k).strip().lower()}" for k in meta.get("keywords") or []]
    return out


MAX_TERMS = 8  # words of a text query that count: more narrow no further, and cost a scan each


def query_terms(text: str) -> list[str]:
    """The words of a text query; a version matches when each occurs in its :func:`search_text`.

    The one rule for the web pages and ``/api/v1/bundles`` alike (the store applies it
    to the index as ``LIKE`` filters, :func:`text_matches` to a version in hand).
    """
    return text.lower().split()[:MAX_TERMS]


def text_matches(terms: list[str], text: str) -> bool:
    return all(term in text for term in terms)


def search_text(repository: str, metadata: dict[str, Any]) -> str:
    keywords = metadata.get("keywords") or []
    parts = [repository, metadata.get("name"), metadata.get("description"), metadata.get("authors"),
             metadata.get("science"), *(keywords if isinstance(keywords, list) else [])]
    return " ".join(str(p) for p in parts if p).lower()


def version_row(repository: str, tag: str, digest: str, document: dict[str, Any], pushed: float) -> BundleVersion:
    return BundleVersion(repository, tag, digest, pushed, search_text(repository, document["metadata"]),
                         "|" + "|".join(_facets(document)) + "|", json.dumps(document, sort_keys=True))


async def _index(gateway: Gateway, repository: str, tag: str, digest: str, doc: dict[str, Any], size: int,
                 pushed: float) -> bool:
    if doc.get("artifactType") != mt.BUNDLE_ARTIFACT_TYPE:
        gateway.store.remove_bundle_versions(repository, tag=tag)
        return False
    try:
        document = await describe(gateway, repository, doc, size)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        log.warning("not indexing %s:%s: %s", repository, tag, exc)
        return False
    if not is_unicode_clean(document):
        log.warning("not indexing %s:%s: metadata is not valid Unicode", repository, tag)
        return False
    gateway.store.put_bundle_version(version_row(repository, tag, digest, document, pushed))
    return True


async def manifest_written(gateway: Gateway, repository: str, reference: str, digest: str,
                           doc: dict[str, Any], size: int) -> None:
    """Keep the index in step with a manifest PUT (by tag: index or unindex that tag)."""
    if reference.startswith("sha256:") or referrers.FALLBACK_TAG.match(reference):
        return
    await _index(gateway, repository, reference, digest, doc, size, time.time())


def manifest_deleted(gateway: Gateway, repository: str, reference: str) -> None:
    """Keep the index in step with a manifest DELETE (a digest drops every tag naming it)."""
    if reference.startswith("sha256:"):
        gateway.store.remove_bundle_versions(repository, digest=reference)
    else:
        gateway.store.remove_bundle_versions(repository, tag=reference)


async def rebuild(gateway: Gateway) -> int:
    """Rebuild the index from the registry (catalog → tags → bundle indexes); returns the count.

    Push times are not in the registry: a version keeps its recorded time when it is
    still there, else it is stamped with the rebuild time.
    """
    known: dict[tuple[str, str], float] = {}
    found: list[tuple[str, str, str, dict[str, Any], int]] = []
    for repository in await gateway.upstream.catalog():
        for version in gateway.store.bundle_versions(repository):
            known[(repository, version.tag)] = version.pushed
        for tag in await gateway.upstream.tags(repository):
            if referrers.FALLBACK_TAG.match(tag) or tag.endswith((".sig", ".att", ".sbom")):
                continue
            manifest = await gateway.manifest(repository, tag)
            doc = _load(manifest.data) if manifest is not None else None
            if manifest is not None and doc is not None and doc.get("artifactType") == mt.BUNDLE_ARTIFACT_TYPE:
                found.append((repository, tag, manifest.digest, doc, len(manifest.data)))
    gateway.store.clear_bundle_versions()
    count = 0
    now = time.time()
    for repository, tag, digest, doc, size in found:
        count += await _index(gateway, repository, tag, digest, doc, size, known.get((repository, tag), now))
    return count


async def ensure_built(gateway: Gateway) -> None:
    """Build the index at start when it is empty but the registry is not (a gateway
    upgraded from a version without the index, or a state store that was reset)."""
    if gateway.store.newest_bundle_versions([], [], None):
        return
    try:
        if await gateway.upstream.catalog():
            log.info("catalog index: %d bundle versions indexed", await rebuild(gateway))
    except Exception as exc:  # the gateway must start anyway; `ecr admin reindex` repairs it
        log.warning("catalog index not built at start: %s", exc)
