"""Attach artifacts to a manifest as OCI 1.1 referrers.

The artifact manifest carries ``subject``. A registry that implements the referrers
API answers the push with ``OCI-Subject``; for one that does not (Distribution 2.8)
the client maintains the referrers tag schema: an image index tagged
``sha256-<hex of subject digest>`` listing the referrers (distribution-spec v1.1,
"Referrers Tag Schema"). Reading goes through :meth:`RegistryClient.referrers`, which
uses the API and falls back to that tag.

Registry UIs show little of a referrer but its annotations (Harbor lists a referrer as
an accessory with its annotations only), so every referrer the ECR writes carries a
human-readable ``org.opencontainers.image.title``, ``description`` and ``created``
(:func:`display_annotations`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ecr_oci import mediatypes as mt
from ecr_oci.digest import hex_of, sha256_bytes
from ecr_oci.errors import NotFoundError
from ecr_oci.oci import canonical_json, descriptor
from ecr_oci.registry.client import RegistryClient


@dataclass(frozen=True)
class Attached:
    """Where an artifact went.

    Attributes:
        digest: the artifact manifest's digest.
        referrers_api: True when the registry answered the push with ``OCI-Subject``
            (it implements the referrers API: the gateway, Harbor, zot); False when the
            client had to maintain the ``sha256-<hex>`` fallback index (Distribution 2.8).
    """

    digest: str
    referrers_api: bool


def display_annotations(title: str, description: str, created: str) -> dict[str, str]:
    """The OCI annotations a registry UI shows for a referrer (title, description, created).

    Args:
        created: RFC 3339 date-time; callers pass a time taken from the content (a
            profile's window end, a DOI's registration) where there is one, so that
            attaching the same content twice gives the same manifest digest.
    """
    return {mt.OCI_TITLE: title, mt.OCI_DESCRIPTION: description, mt.OCI_CREATED: created}


@dataclass(frozen=True)
class Layer:
    """A small blob to attach (profile summary, record JSON, signature payload)."""

    media_type: str
    data: bytes
    annotations: dict[str, str] | None = None


def artifact_manifest(
    subject: dict[str, Any],
    artifact_type: str,
    layers: list[Layer],
    annotations: dict[str, str] | None = None,
) -> bytes:
    """An OCI image manifest for an artifact: empty config, ``artifactType``, ``subject``.

    Args:
        subject: the descriptor (mediaType, digest, size) of the manifest referred to.
    """
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": descriptor(mt.OCI_EMPTY, sha256_bytes(mt.OCI_EMPTY_BLOB), len(mt.OCI_EMPTY_BLOB)),
        "layers": [
            descriptor(layer.media_type, sha256_bytes(layer.data), len(layer.data), annotations=layer.annotations)
            for layer in layers
        ],
        "subject": {k: subject[k] for k in ("mediaType", "digest", "size")},
    }
    if annotations:
        body["annotations"] = dict(sorted(annotations.items()))
    return canonical_json(body)


def attach(
    client: RegistryClient,
    repository: str,
    subject: dict[str, Any],
    artifact_type: str,
    layers: list[Layer],
    annotations: dict[str, str] | None = None,
) -> str:
    """Push an artifact that refers to ``subject``; returns the artifact's digest.

    Idempotent: the same inputs give the same manifest digest, and the fallback
    index never lists a digest twice.

    Raises:
        RegistryError: a push was refused.
    """
    return attach_artifact(client, repository, subject, artifact_type, layers, annotations).digest


def attach_artifact(
    client: RegistryClient,
    repository: str,
    subject: dict[str, Any],
    artifact_type: str,
    layers: list[Layer],
    annotations: dict[str, str] | None = None,
) -> Attached:
    """Like :func:`attach`, also telling whether the registry has the referrers API.

    Raises:
        RegistryError: a push was refused.
    """
    client.upload_bytes(repository, mt.OCI_EMPTY_BLOB)
    for layer in layers:
        client.upload_bytes(repository, layer.data)
    data = artifact_manifest(subject, artifact_type, layers, annotations)
    digest, headers = client.put_manifest_checked(repository, sha256_bytes(data), data, mt.OCI_MANIFEST)
    referrers_api = any(k.lower() == "oci-subject" for k in headers)
    if not referrers_api:
        entry = descriptor(mt.OCI_MANIFEST, digest, len(data), artifact_type=artifact_type, annotations=annotations)
        update_fallback_index(client, repository, subject["digest"], add=entry)
    return Attached(digest=digest, referrers_api=referrers_api)


def fallback_tag(subject_digest: str) -> str:
    return f"sha256-{hex_of(subject_digest)}"


def update_fallback_index(
    client: RegistryClient,
    repository: str,
    subject_digest: str,
    *,
    add: dict[str, Any] | None = None,
    remove: str | None = None,
) -> None:
    """Add or remove one descriptor in the ``sha256-<hex>`` referrers index."""
    tag = fallback_tag(subject_digest)
    try:
        manifests: list[dict[str, Any]] = list(client.get_manifest(repository, tag).json().get("manifests") or [])
    except NotFoundError:
        manifests = []
    before = list(manifests)
    if remove:
        manifests = [m for m in manifests if m.get("digest") != remove]
    if add and all(m.get("digest") != add["digest"] for m in manifests):
        manifests.append(add)
    if manifests == before:
        return
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
    client.put_manifest(repository, tag, canonical_json(index), mt.OCI_INDEX)
