"""A bundle as found in a registry: its index, parsed, with the parts named."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ecr_oci import mediatypes as mt
from ecr_oci.bundle.annotations import metadata_from
from ecr_oci.bundle.config import Platform
from ecr_oci.errors import EcrError, NotFoundError, ValidationError
from ecr_oci.registry.client import Manifest, RegistryClient
from ecr_oci.registry.reference import Reference


@dataclass(frozen=True)
class RemoteBundle:
    """The index of a bundle in a registry.

    Attributes:
        reference: the reference pinned to the index digest.
        index: the parsed index document.
        raw: the index bytes as stored.
    """

    reference: Reference
    index: dict[str, Any]
    raw: Manifest

    @property
    def digest(self) -> str:
        return self.raw.digest

    @property
    def is_bundle(self) -> bool:
        return self.index.get("artifactType") == mt.BUNDLE_ARTIFACT_TYPE

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.index.get("annotations") or {})

    @property
    def metadata(self) -> dict[str, Any]:
        return metadata_from(self.annotations)

    def images(self) -> list[dict[str, Any]]:
        """Descriptors of the runnable images (entries with a real platform)."""
        return [
            m for m in self.index.get("manifests", [])
            if m.get("platform", {}).get("os") not in (None, "unknown")
        ]

    def model_entry(self) -> dict[str, Any] | None:
        for m in self.index.get("manifests", []):
            if m.get("artifactType") == mt.MODEL_ARTIFACT_TYPE:
                return dict(m)
        return None

    def image_for(self, platform: Platform) -> dict[str, Any]:
        """The image descriptor for ``platform``.

        Raises:
            NotFoundError: the bundle has no image for it (message lists what it has).
        """
        for entry in self.images():
            if platform.matches(entry.get("platform", {})):
                return entry
        have = ", ".join(platform_text(e["platform"]) for e in self.images()) or "none"
        raise NotFoundError(f"{self.reference} has no {platform} image (it has: {have})")


def platform_text(platform: dict[str, Any]) -> str:
    return "/".join(str(platform[k]) for k in ("os", "architecture", "variant") if platform.get(k))


def is_artifact_tag(tag: str) -> bool:
    """``sha256-<hex>[.sig|.att|...]``: signature, attestation and referrer-fallback tags."""
    return tag.startswith("sha256-")


def nearest_tags_hint(client: RegistryClient, repository: str, tag: str, count: int = 5) -> str:
    """"; nearest tags: ..." for a missing tag, when the caller may list the repository's tags."""
    import difflib

    try:
        tags = [t for t in client.tags(repository) if not is_artifact_tag(t)]
    except EcrError:
        return ""  # the caller may not see the tags: say nothing more
    if not tags:
        return "; the repository has no version tags"
    nearest = difflib.get_close_matches(tag, tags, n=count, cutoff=0.0)
    return f"; nearest tags: {', '.join(nearest)}"


def fetch_bundle(client: RegistryClient, ref: Reference) -> RemoteBundle:
    """Fetch and parse a bundle index.

    Raises:
        NotFoundError: no such tag/digest.
        ValidationError: the reference names something that is not an image index.
    """
    try:
        raw = client.get_manifest(ref.repository, ref.reference)
    except NotFoundError as exc:
        if ref.digest or not ref.tag:
            raise
        raise NotFoundError(f"{exc}{nearest_tags_hint(client, ref.repository, ref.tag)}",
                            status=exc.status, code=exc.code) from None
    if raw.media_type not in mt.INDEX_TYPES:
        raise ValidationError(f"{ref} is a single image ({raw.media_type}), not an ECR bundle index")
    return RemoteBundle(reference=ref.with_digest(raw.digest), index=raw.json(), raw=raw)
