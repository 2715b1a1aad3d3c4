"""A small in-memory manifest cache, so manifest reads skip the registry round trip.

Manifests are content-addressed, so an entry by digest never goes stale while the
manifest exists; tag → digest mappings live ``tag_ttl`` seconds. Every write reaches
the registry through the gateway (the registry trusts only the gateway's tokens), so
the gateway drops entries as it forwards pushes and deletes: within one gateway the
cache is exact, and ``tag_ttl`` bounds staleness between several gateways. Digest
entries also expire (``digest_ttl``) so garbage collection in the registry is seen.
Authorization is never cached: it is checked on every request before the cache.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class CachedManifest:
    digest: str
    media_type: str
    data: bytes


class ManifestCache:
    """LRU by bytes for manifests, TTL for tags.

    Args:
        tag_ttl: seconds a tag → digest mapping is trusted.
        digest_ttl: seconds a manifest is kept without asking the registry again.
        max_bytes: memory bound for manifest bodies.
    """

    def __init__(self, *, tag_ttl: float = 5.0, digest_ttl: float = 600.0, max_bytes: int = 64 << 20) -> None:
        self._tag_ttl = tag_ttl
        self._digest_ttl = digest_ttl
        self._max_bytes = max_bytes
        self._bytes = 0
        self._manifests: OrderedDict[tuple[str, str], tuple[CachedManifest, float]] = OrderedDict()
        self._tags: dict[tuple[str, str], tuple[str, float]] = {}

    def get(self, repository: str, reference: str) -> CachedManifest | None:
        """The manifest a tag or digest names in ``repository``, if cached and fresh."""
        now = time.monotonic()
        digest = reference
        if ":" not in reference:
            tagged = self._tags.get((repository, reference))
            if tagged is None or tagged[1] < now:
                return None
            digest = tagged[0]
        entry = self._manifests.get((repository, digest))
        if entry is None or entry[1] < now:
            return None
        self._manifests.move_to_end((repository, digest))
        return entry[0]

    def put(self, repository: str, reference: str, manifest: CachedManifest) -> None:
        """Remember a manifest (and the tag naming it, when ``reference`` is a tag)."""
        if len(manifest.data) > self._max_bytes // 16:
            return
        now = time.monotonic()
        key = (repository, manifest.digest)
        if key not in self._manifests:
            self._bytes += len(manifest.data)
        self._manifests[key] = (manifest, now + self._digest_ttl)
        self._manifests.move_to_end(key)
        if ":" not in reference:
            if len(self._tags) > 100_000:
                self._tags.clear()
            self._tags[(repository, reference)] = (manifest.digest, now + self._tag_ttl)
        while self._bytes > self._max_bytes and self._manifests:
            _, (old, _) = self._manifests.popitem(last=False)
            self._bytes -= len(old.data)

    def forget(self, repository: str, reference: str) -> None:
        """Drop a tag mapping, or a manifest and every tag mapped to it."""
        if ":" not in reference:
            self._tags.pop((repository, reference), None)
            return
        entry = self._manifests.pop((repository, reference), None)
        if entry is not None:
            self._bytes -= len(entry[0].data)
        for key in [k for k, (d, _) in self._tags.items() if k[0] == repository and d == reference]:
            del self._tags[key]
