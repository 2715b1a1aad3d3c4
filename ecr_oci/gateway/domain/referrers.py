"""OCI 1.1 referrers on top of a registry without them.

The gateway answers ``GET /v2/<name>/referrers/<digest>`` from an index in the state
store, and keeps the distribution-spec "referrers tag schema" (an image index tagged
``sha256-<hex>`` listing the referrers) up to date in the registry itself. That tag is
the durable copy: :func:`reindex` rebuilds the store's index from the registry alone.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from ecr_oci import mediatypes as mt
from ecr_oci.digest import hex_of
from ecr_oci.gateway.stores.state import Referrer, StateStore
from ecr_oci.gateway.upstream import Upstream
from ecr_oci.oci import canonical_json
from ecr_oci.registry.client import MANIFEST_ACCEPT

FALLBACK_TAG = re.compile(r"^sha256-[a-f0-9]{64}$")
_locks: dict[tuple[str, str], asyncio.Lock] = {}


def referrer_of(repository: str, digest: str, media_type: str, size: int, doc: dict[str, Any]) -> Referrer | None:
    """The index entry for a manifest, or None when it has no subject."""
    subject = doc.get("subject")
    if not isinstance(subject, dict) or not isinstance(subject.get("digest"), str):
        return None
    artifact_type = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
    annotations = doc.get("annotations") or None
    return Referrer(repository, subject["digest"], digest, media_type, size, artifact_type, annotations)


def index_document(referrers: list[Referrer], artifact_type: str | None = None) -> dict[str, Any]:
    """The image index the referrers API answers with."""
    manifests = [r.descriptor() for r in referrers if artifact_type is None or r.artifact_type == artifact_type]
    return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}


async def add_to_fallback(upstream: Upstream, referrer: Referrer) -> None:
    """Add ``referrer`` to the ``sha256-<hex>`` index tag of its subject in the registry.

    Serialised per subject within this process; concurrent gateways could lose an
    update, which ``reindex`` of a later push repairs (documented limitation).
    """
    key = (referrer.repository, referrer.subject)
    lock = _locks.setdefault(key, asyncio.Lock())
    async with lock:
        tag = f"sha256-{hex_of(referrer.subject)}"
        resp = await upstream.get_manifest(referrer.repository, tag, mt.OCI_INDEX)
        manifests: list[dict[str, Any]] = []
        if resp.status_code == 200:
            manifests = list(resp.json().get("manifests") or [])
        if any(m.get("digest") == referrer.digest for m in manifests):
            return
        manifests.append(referrer.descriptor())
        body = canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests})
        put = await upstream.http.put(
            f"/v2/{referrer.repository}/manifests/{tag}",
            content=body,
            headers=upstream.repo_headers(referrer.repository, {"Content-Type": mt.OCI_INDEX}),
        )
        put.raise_for_status()
    if len(_locks) > 10000:
        _locks.clear()


async def _manifest(upstream: Upstream, repository: str, reference: str) -> tuple[dict[str, Any], str, str, int] | None:
    resp = await upstream.get_manifest(repository, reference, MANIFEST_ACCEPT)
    if resp.status_code != 200:
        return None
    try:
        doc = json.loads(resp.content)
    except ValueError:
        return None
    media_type = doc.get("mediaType") or resp.headers.get("content-type", "").split(";")[0]
    digest = resp.headers.get("docker-content-digest", "")
    return doc, media_type, digest, len(resp.content)


async def reindex(upstream: Upstream, store: StateStore) -> int:
    """Rebuild the referrers index from the registry; returns the number of entries.

    Walks catalog → tags → manifests: every tagged manifest with a ``subject``, and
    every manifest listed in a ``sha256-<hex>`` fallback index (referrers are
    usually pushed by digest only, so the fallback tag is how they are found).
    """
    found: dict[tuple[str, str, str], Referrer] = {}
    for repository in await upstream.catalog():
        for tag in await upstream.tags(repository):
            got = await _manifest(upstream, repository, tag)
            if got is None:
                continue
            doc, media_type, digest, size = got
            if (ref := referrer_of(repository, digest, media_type, size, doc)) is not None:
                found[(repository, ref.subject, digest)] = ref
            if FALLBACK_TAG.match(tag):
                for entry in doc.get("manifests") or []:
                    target = await _manifest(upstream, repository, str(entry.get("digest")))
                    if target is None:
                        continue  # deleted since: the index entry is stale
                    tdoc, tmedia, tdigest, tsize = target
                    if (ref := referrer_of(repository, tdigest, tmedia, tsize, tdoc)) is not None:
                        found[(repository, ref.subject, tdigest)] = ref
    store.clear_referrers()
    for ref in found.values():
        store.add_referrer(ref)
    return len(found)
