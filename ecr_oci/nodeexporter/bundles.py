"""Which bundle a container runs: its image digest looked up in the scheduler feed.

The feed lists, per approved bundle, the digest of every platform image, so an image
pulled by digest (as ``ecr deploy`` specs do) or by the bundle index itself maps to the
bundle's index digest. A container the feed does not explain falls back to the
``ECR_BUNDLE_DIGEST`` it declares (a Virtual Waggle without a feed); the image mapping
wins when both exist, so a plugin cannot file its numbers under another bundle the
feed knows.
"""

from __future__ import annotations

import logging
import time

import requests

from ecr_oci.nodeexporter.engines import Container

log = logging.getLogger("ecr.node-exporter")


class BundleMap:
    """Image digest -> bundle digest, from a feed polled with ``If-None-Match``.

    Args:
        feed_url: ``https://ECR/api/v1/deployments/D/feed``; None: declared digests only.
        auth: the node's (name, credential).
        refresh: seconds between feed polls.
    """

    def __init__(self, feed_url: str | None = None, auth: tuple[str, str] | None = None,
                 refresh: float = 60.0) -> None:
        self.feed_url = feed_url
        self._session = requests.Session()
        if auth:
            self._session.auth = auth
        self._refresh = refresh
        self._etag = ""
        self._polled = 0.0
        self.images: dict[str, str] = {}

    def poll(self) -> None:
        """Refresh the map from the feed when due; keeps the old map when the feed is unreachable."""
        if not self.feed_url or time.monotonic() - self._polled < self._refresh:
            return
        self._polled = time.monotonic()
        try:
            resp = self._session.get(self.feed_url, headers={"If-None-Match": self._etag} if self._etag else {},
                                     timeout=30)
        except requests.RequestException as exc:
            log.warning("feed %s: %s", self.feed_url, exc.__class__.__name__)
            return
        if resp.status_code == 304:
            return
        if resp.status_code != 200:
            log.warning("feed %s: HTTP %s", self.feed_url, resp.status_code)
            return
        images: dict[str, str] = {}
        for bundle in resp.json().get("bundles") or []:
            images[bundle["digest"]] = bundle["digest"]
            for platform in bundle.get("platforms") or []:
                images[platform["digest"]] = bundle["digest"]
        self.images = images
        self._etag = resp.headers.get("ETag", "")

    def bundle_for(self, container: Container) -> str | None:
        for digest in container.image_digests:
            if digest in self.images:
                return self.images[digest]
        return container.declared_bundle
