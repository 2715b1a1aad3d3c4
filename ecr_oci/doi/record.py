"""The DOI record: a referrer of the bundle index naming the DOI minted for it.

Artifact: empty config, ``artifactType`` application/vnd.waggle.ecr.doi.v1+json,
``subject`` the bundle index, two layers:

1. the record (media type = the artifact type), JSON validated by
   ``doi-record.schema.json``: doi, url, provider, registered, bundle, metadataDigest;
2. the DataCite JSON attributes sent (``application/vnd.datacite.datacite+json``),
   whose digest is the record's ``metadataDigest``.

The referrer manifest carries ``org.waggle.ecr.doi`` so a referrers listing shows the
DOI without fetching anything, and a title, description and ``created`` (the
registration time) for registry UIs. The bundle itself is never rewritten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ecr_oci import mediatypes as mt
from ecr_oci import spec
from ecr_oci.bundle.remote import RemoteBundle
from ecr_oci.digest import sha256_bytes
from ecr_oci.errors import EcrError, ValidationError
from ecr_oci.oci import canonical_json
from ecr_oci.registry.client import RegistryClient
from ecr_oci.registry.referrers import Layer, attach, display_annotations

RECORD_LAYER = mt.DOI_ARTIFACT_TYPE
METADATA_LAYER = "application/vnd.datacite.datacite+json"
MAX_RECORD_BYTES = 64 << 10


@dataclass(frozen=True)
class DoiRecord:
    """One DOI registered for a bundle (the record layer, parsed)."""

    doi: str
    url: str
    provider: str
    registered: str
    bundle: str
    metadata_digest: str
    state: str
    endpoint: str | None = None
    test: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schemaVersion": 1,
            "doi": self.doi,
            "url": self.url,
            "provider": self.provider,
            "registered": self.registered,
            "bundle": self.bundle,
            "metadataDigest": self.metadata_digest,
            "state": self.state,
            "test": self.test,
        }
        if self.endpoint:
            out["endpoint"] = self.endpoint
        return out

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> DoiRecord:
        """Parse a record after validating it.

        Raises:
            ValidationError: it does not satisfy doi-record.schema.json.
        """
        validate_record(document)
        return cls(
            doi=document["doi"], url=document["url"], provider=document["provider"],
            registered=document["registered"], bundle=document["bundle"],
            metadata_digest=document["metadataDigest"], state=document["state"],
            endpoint=document.get("endpoint"), test=bool(document.get("test", False)),
        )


def validate_record(document: Any) -> None:
    """Check a record against ``doi-record.schema.json``.

    Raises:
        ValidationError: naming the failing field.
    """
    spec.check("doi-record", document, what="DOI record")


def metadata_bytes(attributes: dict[str, Any]) -> bytes:
    """The canonical bytes of the DataCite attributes (the second layer)."""
    return canonical_json(attributes)


def attach_record(client: RegistryClient, bundle: RemoteBundle, record: DoiRecord,
                  attributes: dict[str, Any]) -> str:
    """Attach ``record`` and the metadata sent to ``bundle``; returns the referrer digest.

    Raises:
        ValidationError: the record is invalid or does not match the bundle/metadata.
        RegistryError: the registry refused the push.
    """
    data = metadata_bytes(attributes)
    if record.bundle != bundle.digest or record.metadata_digest != sha256_bytes(data):
        raise ValidationError("DOI record does not match the bundle or the metadata it describes")
    document = record.to_dict()
    validate_record(document)
    subject = {"mediaType": bundle.raw.media_type, "digest": bundle.digest, "size": len(bundle.raw.data)}
    return attach(
        client, bundle.reference.repository, subject, mt.DOI_ARTIFACT_TYPE,
        [Layer(RECORD_LAYER, canonical_json(document)), Layer(METADATA_LAYER, data)],
        annotations={
            **display_annotations(
                f"DOI {record.doi}",
                f"DOI {record.doi} registered with {record.provider} for bundle {bundle.digest}; "
                f"resolves to {record.url}.",
                record.registered,
            ),
            mt.ECR_DOI: record.doi,
        },
    )


def read_record(client: RegistryClient, repository: str, referrer_digest: str) -> DoiRecord | None:
    """The record of one DOI referrer; None when it is missing or malformed."""
    try:
        manifest = client.get_manifest(repository, referrer_digest).json()
        layer = next(x for x in manifest.get("layers") or [] if x.get("mediaType") == RECORD_LAYER)
        if not isinstance(layer.get("size"), int) or layer["size"] > MAX_RECORD_BYTES:
            return None
        return DoiRecord.from_dict(json.loads(client.get_blob(repository, layer["digest"])))
    except (EcrError, StopIteration, ValueError, KeyError, TypeError):
        return None


def find_records(client: RegistryClient, repository: str, digest: str,
                 referrers: list[dict[str, Any]] | None = None) -> list[DoiRecord]:
    """Valid DOI records of the bundle ``digest``, newest first.

    Args:
        referrers: descriptors already listed for ``digest`` (any artifact types);
            listed here when None.
    """
    if referrers is None:
        referrers = client.referrers(repository, digest, mt.DOI_ARTIFACT_TYPE)
    found = []
    for desc in referrers:
        if desc.get("artifactType") != mt.DOI_ARTIFACT_TYPE or "digest" not in desc:
            continue
        record = read_record(client, repository, desc["digest"])
        if record is not None and record.bundle == digest:
            found.append(record)
    return sorted(found, key=lambda r: r.registered, reverse=True)
