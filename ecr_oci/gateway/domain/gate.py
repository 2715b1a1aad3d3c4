"""The manifest gate: every manifest PUT is checked here before the registry sees it.

Two levels, so stock tools keep working:

* every manifest (plain images, Docker manifest lists, cosign signatures, notation,
  SBOMs, in-toto...) structurally: JSON object, schemaVersion 2, a known media type
  that agrees with ``Content-Type``, well-formed descriptors, size limit;
* ECR's own types strictly: bundle indexes (annotations per ``annotations-spec``,
  referenced manifests present in the repository, sane platforms) and ECR referrers
  (profiles against the profile schema, stage records with a subject).

A failure raises :class:`GateError` carrying the OCI error code and a message that
names the failing field.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ecr_oci import jsontext, spec
from ecr_oci import mediatypes as mt
from ecr_oci.bundle.annotations import validate_annotations
from ecr_oci.errors import ValidationError

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$")
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")
MAX_PROFILE_BYTES = 1 << 20

# (repository, digest) -> True when the repository holds that manifest
ManifestExists = Callable[[str], Awaitable[bool]]
# digest -> blob bytes (None when absent or too large)
BlobReader = Callable[[str, int], Awaitable[bytes | None]]


class GateError(Exception):
    """A manifest refused by the gate.

    Attributes:
        status: HTTP status of the answer.
        code: OCI error code (MANIFEST_INVALID, SIZE_INVALID, MANIFEST_BLOB_UNKNOWN, ...).
    """

    def __init__(self, message: str, *, code: str = "MANIFEST_INVALID", status: int = 400) -> None:
        self.code = code
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class Checked:
    """A manifest that passed, with what the proxy needs afterwards."""

    document: dict[str, Any]
    media_type: str
    artifact_type: str | None
    subject: dict[str, Any] | None

    @property
    def is_bundle(self) -> bool:
        return self.artifact_type == mt.BUNDLE_ARTIFACT_TYPE


def _descriptor(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise GateError(f"{where}: not a descriptor object")
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or not _MEDIA_TYPE.match(media_type):
        raise GateError(f"{where}.mediaType: missing or not a media type")
    digest = value.get("digest")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise GateError(f"{where}.digest: missing or not a sha256/sha512 digest")
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise GateError(f"{where}.size: missing or not a non-negative integer")
    annotations = value.get("annotations")
    if annotations is not None and (
        not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values())
    ):
        raise GateError(f"{where}.annotations: must map strings to strings")
    urls = value.get("urls")
    if urls is not None:
        _urls(urls, f"{where}.urls")
    platform = value.get("platform")
    if platform is not None and (
        not isinstance(platform, dict)
        or not isinstance(platform.get("os"), str)
        or not isinstance(platform.get("architecture"), str)
    ):
        raise GateError(f"{where}.platform: needs string os and architecture")
    return value


def _urls(value: Any, where: str) -> None:
    """Foreign-layer URLs: http(s), absolute, no fragment (what Distribution checks, with a 400 here)."""
    if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
        raise GateError(f"{where}: must be a list of URLs")
    for url in value:
        try:
            parsed = urlsplit(url)
        except ValueError:
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.fragment:
            raise GateError(f"{where}: {url[:200]!r} is not an http(s) URL without a fragment")


def structural(data: bytes, content_type: str, limit: int) -> Checked:
    """Checks every manifest gets.

    Raises:
        GateError: SIZE_INVALID beyond ``limit``, MANIFEST_INVALID otherwise.
    """
    if len(data) > limit:
        raise GateError(f"manifest: larger than {limit} bytes", code="SIZE_INVALID", status=413)
    try:
        doc = jsontext.loads(data)
    except ValueError as exc:
        raise GateError(f"manifest: {exc}") from None
    if not isinstance(doc, dict):
        raise GateError("manifest: not a JSON object")
    if doc.get("schemaVersion") != 2:
        raise GateError("schemaVersion: must be 2")
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise GateError("mediaType: must be a string")
    content_type = content_type.split(";")[0].strip()
    media_type = declared or content_type
    if media_type not in mt.MANIFEST_TYPES:
        raise GateError(f"mediaType: {media_type!r} is not a supported manifest type")
    if declared and content_type and content_type != declared and content_type in mt.MANIFEST_TYPES:
        raise GateError(f"mediaType: {declared!r} does not match Content-Type {content_type!r}")
    if media_type in mt.IMAGE_MANIFEST_TYPES:
        _descriptor(doc.get("config"), "config")
        layers = doc.get("layers", [])
        if not isinstance(layers, list):
            raise GateError("layers: must be a list")
        for i, layer in enumerate(layers):
            _descriptor(layer, f"layers[{i}]")
    else:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise GateError("manifests: must be a list")
        for i, entry in enumerate(entries):
            _descriptor(entry, f"manifests[{i}]")
    subject = doc.get("subject")
    if subject is not None:
        _descriptor(subject, "subject")
    annotations = doc.get("annotations")
    if annotations is not None and (
        not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values())
    ):
        raise GateError("annotations: must map strings to strings")
    artifact_type = doc.get("artifactType")
    if artifact_type is None and media_type in mt.IMAGE_MANIFEST_TYPES:
        config = doc.get("config") or {}
        # Pre-1.1 artifacts name their type by the config media type.
        if config.get("mediaType") not in (mt.OCI_CONFIG, mt.DOCKER_CONFIG, mt.OCI_EMPTY):
            artifact_type = config.get("mediaType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise GateError("artifactType: must be a string")
    return Checked(document=doc, media_type=media_type, artifact_type=artifact_type, subject=subject)


async def check_bundle(checked: Checked, manifest_exists: ManifestExists) -> None:
    """Strict checks of a bundle index.

    Raises:
        GateError: MANIFEST_INVALID (annotations, platforms) or MANIFEST_BLOB_UNKNOWN
            (an entry the repository does not hold).
    """
    doc = checked.document
    if checked.media_type != mt.OCI_INDEX:
        raise GateError(f"mediaType: a bundle must be an OCI image index ({mt.OCI_INDEX})")
    try:
        validate_annotations(dict(doc.get("annotations") or {}))
    except ValidationError as exc:
        raise GateError(str(exc)) from None
    seen: set[tuple[str, str, str]] = set()
    models = 0
    entries = doc["manifests"]
    if not entries:
        raise GateError("manifests: a bundle needs at least one image")
    for i, entry in enumerate(entries):
        where = f"manifests[{i}]"
        if entry["mediaType"] not in mt.MANIFEST_TYPES:
            raise GateError(f"{where}.mediaType: {entry['mediaType']!r} is not a manifest type")
        platform = entry.get("platform")
        if entry.get("artifactType") == mt.MODEL_ARTIFACT_TYPE:
            models += 1
            if platform is not None and (platform.get("os"), platform.get("architecture")) != ("unknown", "unknown"):
                raise GateError(f"{where}.platform: the model entry must be unknown/unknown")
            continue
        if platform is None:
            raise GateError(f"{where}.platform: an image entry needs a platform")
        key = (platform["os"], platform["architecture"], str(platform.get("variant", "")))
        if "unknown" in key[:2]:
            raise GateError(f"{where}.platform: an image entry needs a real os/architecture")
        if key in seen:
            raise GateError(f"{where}.platform: {'/'.join(k for k in key if k)} appears twice")
        seen.add(key)
    if models > 1:
        raise GateError("manifests: more than one model entry")
    if not seen:
        raise GateError("manifests: a bundle needs at least one runnable image")
    for i, entry in enumerate(entries):
        if not await manifest_exists(entry["digest"]):
            raise GateError(
                f"manifests[{i}].digest: {entry['digest']} is not in this repository (push it first)",
                code="MANIFEST_BLOB_UNKNOWN",
            )


async def check_referrer(checked: Checked, read_blob: BlobReader) -> None:
    """Strict checks of ECR's own referrer artifacts (profiles, stage records).

    Raises:
        GateError: MANIFEST_INVALID naming the failing field.
    """
    if checked.artifact_type not in (mt.PROFILE_ARTIFACT_TYPE, mt.STAGE_ARTIFACT_TYPE):
        return
    if checked.subject is None:
        raise GateError(f"subject: a {checked.artifact_type} artifact must refer to a bundle")
    if checked.artifact_type != mt.PROFILE_ARTIFACT_TYPE:
        return
    layers = [layer for layer in checked.document.get("layers", []) if layer["mediaType"] == mt.PROFILE_SUMMARY_LAYER]
    if len(layers) != 1:
        raise GateError(f"layers: a profile needs exactly one {mt.PROFILE_SUMMARY_LAYER} layer")
    layer = layers[0]
    if layer["size"] > MAX_PROFILE_BYTES:
        raise GateError(f"layers: profile summary larger than {MAX_PROFILE_BYTES} bytes")
    data = await read_blob(layer["digest"], layer["size"])
    if data is None:
        raise GateError(f"layers: profile summary {layer['digest']} is not in this repository",
                        code="MANIFEST_BLOB_UNKNOWN")
    try:
        summary = jsontext.loads(data)
        spec.check("profile", summary, what="profile")
    except ValidationError as exc:
        raise GateError(str(exc)) from None
    except ValueError:
        raise GateError("profile: summary layer is not valid JSON") from None
    if summary.get("bundle") != checked.subject["digest"]:
        raise GateError("profile: bundle: does not match the artifact's subject digest")
