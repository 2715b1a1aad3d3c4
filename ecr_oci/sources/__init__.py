"""Where a bundle's runnable images come from, in containers-image transport syntax.

``oci:PATH[:TAG]`` (an OCI image layout, e.g. from ``docker buildx --output type=oci``
or umoci), ``oci-archive:PATH[:TAG]`` (the same as a tar), ``docker-archive:PATH``
(``docker save``) and ``docker://HOST/REPO:TAG`` (an image already in a registry).
Each opens to an :class:`ImageSource`: the manifest bytes, untouched, and its blobs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecr_oci import mediatypes as mt
from ecr_oci.bundle.config import Platform
from ecr_oci.digest import sha256_bytes
from ecr_oci.errors import SourceError
from ecr_oci.oci import Blob, ManifestBlob


@dataclass(frozen=True)
class ImageSource:
    """One platform's image: the manifest exactly as it will be pushed, and its config."""

    manifest: ManifestBlob
    config: dict[str, Any]

    def check_platform(self, platform: Platform, where: str) -> None:
        """Refuse an image whose config names another platform than ecr.yaml says.

        Raises:
            SourceError: os/architecture (or a stated variant) disagree.
        """
        found = {k: self.config.get(k) for k in ("os", "architecture", "variant") if self.config.get(k)}
        if not platform.matches(found):
            shown = "/".join(str(v) for v in found.values()) or "no platform"
            raise SourceError(f"{where}: image is {shown}, but ecr.yaml says {platform}")


def select_from_index(index: dict[str, Any], platform: Platform, where: str) -> dict[str, Any]:
    """The descriptor of ``platform``'s manifest in an image index.

    Raises:
        SourceError: no entry for that platform.
    """
    for entry in index.get("manifests", []):
        if entry.get("mediaType") in mt.IMAGE_MANIFEST_TYPES and platform.matches(entry.get("platform", {})):
            return dict(entry)
    raise SourceError(f"{where}: the image index has no {platform} image")


def image_source(spec: str, platform: Platform, root: Path) -> ImageSource:
    """Open an image source named in ecr.yaml.

    Args:
        spec: the ``from`` value, e.g. ``oci:build/oci:amd64``.
        platform: the platform ecr.yaml declares for it (selects from multi-arch sources).
        root: the bundle directory (relative paths resolve against it).

    Raises:
        SourceError: the source does not exist or cannot be read.
    """
    from ecr_oci.sources import docker_archive, oci_layout, registry

    transport, _, rest = spec.partition(":")
    if transport == "oci":
        source = oci_layout.open_layout(rest, platform, root)
    elif transport == "oci-archive":
        source = oci_layout.open_archive(rest, platform, root)
    elif transport == "docker-archive":
        source = docker_archive.open_archive(rest, platform, root)
    elif transport == "docker" and rest.startswith("//"):
        source = registry.open_remote(rest[2:], platform)
    else:
        raise SourceError(f"{spec}: unknown image transport (use oci:, oci-archive:, docker-archive:, docker://)")
    source.check_platform(platform, spec)
    return source


def manifest_blob(data: bytes, media_type: str, blobs: tuple[Blob, ...]) -> ManifestBlob:
    return ManifestBlob(media_type=media_type, data=data, digest=sha256_bytes(data), blobs=blobs)


def parse_json(data: bytes, where: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise SourceError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise SourceError(f"{where}: expected a JSON object")
    return value


def split_path_tag(rest: str) -> tuple[str, str | None]:
    """``PATH[:TAG]`` as containers-image parses it (the last colon, unless part of the path)."""
    if ":" in rest:
        path, tag = rest.rsplit(":", 1)
        if "/" not in tag:
            return path, tag or None
    return rest, None
