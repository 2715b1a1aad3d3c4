"""cosign's "simple signing" wire format (key-based signatures, cosign v2 default).

* payload: ``{"critical": {"identity": {"docker-reference": REPO},
  "image": {"docker-manifest-digest": DIGEST}, "type": "cosign container image
  signature"}, "optional": {...} | null}``, the bytes that are signed;
* one layer per signature, media type ``application/vnd.dev.cosign.simplesigning.v1+json``,
  the blob being the payload, the base64 DER signature in the layer annotation
  ``dev.cosignproject.cosign/signature``;
* an image manifest with the config go-containerregistry writes for it (zero
  timestamps, one ``diff_id`` and one history entry per layer), tagged
  ``sha256-<hex of the signed digest>.sig``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from ecr_oci import mediatypes as mt
from ecr_oci.digest import hex_of, sha256_bytes
from ecr_oci.oci import canonical_json, descriptor

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGNATURE_TYPE = "cosign container image signature"
TAG_ANNOTATION = mt.ECR_PREFIX + "tag"  # optional claim: the tag that named the digest when signed


def signature_tag(digest: str) -> str:
    """The tag cosign stores signatures of ``digest`` under: ``sha256-<hex>.sig``."""
    return f"{digest.split(':', 1)[0]}-{hex_of(digest)}.sig"


def make_payload(docker_reference: str, digest: str, optional: dict[str, str] | None = None) -> bytes:
    """The payload cosign signs, byte for byte as cosign marshals it (Go struct order).

    Args:
        docker_reference: ``registry/repository``, without tag or digest.
        digest: the manifest digest signed.
        optional: free annotations (cosign ``-a key=value``); None gives ``null``.
    """
    document = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": SIGNATURE_TYPE,
        },
        "optional": dict(sorted(optional.items())) if optional else None,
    }
    return json.dumps(document, separators=(",", ":")).encode()


@dataclass(frozen=True)
class SignatureLayer:
    """One signature: the payload and the raw (DER) signature bytes, and where it was found."""

    payload: bytes
    signature: bytes
    source: str = ""
    annotations: tuple[tuple[str, str], ...] = ()

    @property
    def payload_digest(self) -> str:
        return sha256_bytes(self.payload)

    @property
    def signature_b64(self) -> str:
        return base64.b64encode(self.signature).decode()

    def descriptor(self) -> dict[str, Any]:
        annotations = dict(self.annotations)
        annotations[SIGNATURE_ANNOTATION] = self.signature_b64
        return descriptor(mt.COSIGN_SIMPLESIGNING, self.payload_digest, len(self.payload), annotations=annotations)


def decode_signature(value: str | None) -> bytes:
    """The DER bytes of a base64 signature annotation (empty when absent or not base64)."""
    if not value:
        return b""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""


def signature_config(layer_digests: list[str]) -> bytes:
    """The image config cosign (go-containerregistry) writes for a signature manifest."""
    history = ",".join('{"created":"0001-01-01T00:00:00Z"}' for _ in layer_digests)
    diff_ids = ",".join(json.dumps(d) for d in layer_digests)
    return (
        '{"architecture":"","created":"0001-01-01T00:00:00Z",'
        f'"history":[{history}],"os":"",'
        f'"rootfs":{{"type":"layers","diff_ids":[{diff_ids}]}},"config":{{}}}}'
    ).encode()


def build_signature_manifest(layers: list[dict[str, Any]]) -> tuple[bytes, bytes]:
    """The ``.sig`` manifest for signature layer descriptors, and its config blob.

    Args:
        layers: layer descriptors (existing ones kept as found, new ones appended).
    """
    config = signature_config([layer["digest"] for layer in layers])
    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(mt.OCI_CONFIG, sha256_bytes(config), len(config)),
        "layers": layers,
    }
    return canonical_json(body), config


def parse_claims(payload: bytes) -> dict[str, Any] | None:
    """The payload as JSON, or None when it is not a JSON object."""
    try:
        document = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None


def claimed_digest(claims: dict[str, Any]) -> str | None:
    value = ((claims.get("critical") or {}).get("image") or {}).get("docker-manifest-digest")
    return value if isinstance(value, str) else None


def claimed_reference(claims: dict[str, Any]) -> str | None:
    value = ((claims.get("critical") or {}).get("identity") or {}).get("docker-reference")
    return value if isinstance(value, str) else None


def claimed_type(claims: dict[str, Any]) -> str | None:
    value = (claims.get("critical") or {}).get("type")
    return value if isinstance(value, str) else None


def optional_claims(claims: dict[str, Any]) -> dict[str, Any]:
    value = claims.get("optional")
    return value if isinstance(value, dict) else {}
