"""What Harbor does with an artifact it is given, re-stated in Python from Harbor's source.

Harbor cannot run on these machines (no PostgreSQL/Redis/Harbor images), so its rules
were read in goharbor/harbor (release v2.15.2 and main) and are written down here, one
function per rule, each naming the Harbor file it comes from. The tests in this
directory apply them to the bytes ``ecr`` really pushes, so a change to the bundle
format that would change what Harbor shows fails there, not in front of a customer.

Nothing here is Harbor's code: it is a re-statement, kept as small as the rules.
Version numbers are Harbor release numbers as ``(major, minor)``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

# --- media types Harbor registers processors for ----------------------------------------
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_IMAGE_CONFIG = "application/vnd.docker.container.image.v1+json"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
CNAB_INDEX_TYPE = "application/vnd.cnab.manifest.v1"
MODELPACK_MANIFEST = "application/vnd.cncf.model.manifest.v1+json"

IMAGE, CHART, CNAB, CNAI, UNKNOWN = "IMAGE", "CHART", "CNAB", "CNAI", "UNKNOWN"

# The release that selects the processor by the manifest's artifactType
# (``processor.Get(art.ResolveArtifactType())``, with the CNAI/ModelPack processor that
# registers under an artifactType). Before it the key is the media type alone.
ARTIFACT_TYPE_SELECTION = (2, 13)
CNAI_PROCESSOR = (2, 13)
# Cosign signatures stored as OCI 1.1 referrers count as signature accessories from here.
COSIGN_REFERRER_ACCESSORY = (2, 11)


@dataclass
class HarborArtifact:
    """The fields of Harbor's artifact model (src/pkg/artifact/model.go) that decide the display."""

    manifest_media_type: str
    media_type: str
    artifact_type: str
    annotations: dict[str, str] = field(default_factory=dict)
    children: list[dict[str, Any]] = field(default_factory=list)


def abstract(body: dict[str, Any], manifest_media_type: str) -> HarborArtifact:
    """How Harbor fills ``MediaType`` and ``ArtifactType`` from a pushed manifest.

    - image manifests: src/controller/artifact/manifest/v2.go (2.15: abstractor.go
      ``abstractManifestV2Metadata``): MediaType = config media type; ArtifactType =
      the manifest's ``artifactType``, else the config media type.
    - indexes: src/controller/artifact/manifest/index.go (``abstractIndexMetadata``):
      MediaType = the index media type, overridden by an annotation
      ``org.opencontainers.artifactType`` (put there for CNAB); ArtifactType = the
      index's ``artifactType`` or empty.
    """
    annotations = dict(body.get("annotations") or {})
    if manifest_media_type in (OCI_INDEX, DOCKER_LIST):
        media_type = annotations.get("org.opencontainers.artifactType") or manifest_media_type
        return HarborArtifact(manifest_media_type, media_type, body.get("artifactType") or "", annotations,
                              list(body.get("manifests") or []))
    config_type = body["config"]["mediaType"]
    return HarborArtifact(manifest_media_type, config_type, body.get("artifactType") or config_type, annotations)


def processor_key(art: HarborArtifact, version: tuple[int, int]) -> str:
    """The key Harbor looks its processor up by.

    From 2.13 ``processor.Get(art.ResolveArtifactType())`` in
    src/controller/artifact/abstractor.go and ``ensureArtifact`` in
    src/controller/artifact/controller.go: the artifactType when set, else the media
    type. Before 2.13 ``processor.Get(artifact.MediaType)``.

    ``ResolveArtifactType``'s own body was not in the searchable copy of Harbor's
    source; this is the reading consistent with what was: manifest/v2.go and
    manifest/index.go filling ArtifactType, and the CNAI and model processors
    registering under an artifactType rather than a media type.
    """
    if version >= ARTIFACT_TYPE_SELECTION and art.artifact_type:
        return art.artifact_type
    return art.media_type


def registered_processors(version: tuple[int, int]) -> dict[str, str]:
    """Keys with a processor of their own, and the type each shows.

    src/controller/artifact/processor/image/{index,manifest_v2}.go (IMAGE),
    chart/chart.go (CHART), cnab/cnab.go (CNAB), cnai/cnai.go (CNAI, 2.13+, registered
    under the ModelPack artifactType).
    """
    out = {OCI_INDEX: IMAGE, DOCKER_LIST: IMAGE, OCI_IMAGE_CONFIG: IMAGE, DOCKER_IMAGE_CONFIG: IMAGE,
           HELM_CONFIG: CHART, CNAB_INDEX_TYPE: CNAB}
    if version >= CNAI_PROCESSOR:
        out[MODELPACK_MANIFEST] = CNAI
    return out


# src/controller/artifact/processor/default.go: ``artifactTypeRegExp``, applied to the
# artifact's MediaType (for an image manifest: its config media type).
DEFAULT_TYPE_RE = re.compile(r"^application/vnd\.[^.]*\.(.*)\.config\.[^.]*\+json$")


def default_type(media_type: str) -> str:
    """processor/default.go ``GetArtifactType``: the regex's group, upper-cased, else UNKNOWN."""
    match = DEFAULT_TYPE_RE.match(media_type)
    return match.group(1).upper() if match else UNKNOWN


def artifact_type_shown(art: HarborArtifact, version: tuple[int, int]) -> str:
    """The ``type`` Harbor stores and shows for the artifact (controller.go ``ensureArtifact``)."""
    shown = registered_processors(version).get(processor_key(art, version))
    return shown if shown is not None else default_type(art.media_type)


def default_processor_extra_attrs(art: HarborArtifact, version: tuple[int, int],
                                  config: bytes, config_annotations: dict[str, str]) -> dict[str, Any] | None:
    """What the default processor keeps of the config (processor/default.go ``AbstractMetadata``).

    Only image manifests with a type other than UNKNOWN: the config JSON becomes
    ``extra_attrs``, minus the keys the config descriptor's
    ``io.goharbor.artifact.v1alpha1.skip-list`` names (annotation/v1alpha1.go).
    None when the default processor does not handle the artifact.
    """
    if processor_key(art, version) in registered_processors(version):
        return None
    if art.manifest_media_type not in (OCI_MANIFEST, DOCKER_MANIFEST) or default_type(art.media_type) == UNKNOWN:
        return None
    attrs: dict[str, Any] = json.loads(config)
    for key in (config_annotations.get("io.goharbor.artifact.v1alpha1.skip-list") or "").split(","):
        attrs.pop(key, None)
    return attrs


def has_pull_command(shown_type: str) -> bool:
    """src/portal/src/app/base/project/repository/artifact/artifact.ts ``hasPullCommand``."""
    return shown_type in (IMAGE, CNAB, CHART)


# --- icons: src/controller/artifact/annotation/v1alpha1.go ``parseV1alpha1Icon`` ----------
ICON_ANNOTATION = "io.goharbor.artifact.v1alpha1.icon"
ICON_READ_LIMIT = 1 << 20


def icon_layer(art: HarborArtifact, body: dict[str, Any]) -> dict[str, Any] | None:
    """The first layer carrying the icon annotation (any value), on image manifests only."""
    if art.manifest_media_type not in (OCI_MANIFEST, DOCKER_MANIFEST):
        return None
    for layer in body.get("layers") or []:
        if ICON_ANNOTATION in (layer.get("annotations") or {}):
            return dict(layer)
    return None


def detect_content_type(data: bytes) -> str:
    """The image rows of Go's ``http.DetectContentType`` (the WHATWG sniffing table)."""
    for signature, media_type in ((b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"),
                                  (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg")):
        if data.startswith(signature):
            return media_type
    return "application/octet-stream"


def icon_accepted(blob: bytes) -> bool:
    """Harbor reads at most 1 MiB of the layer and keeps it if it sniffs as GIF, PNG or JPEG."""
    return detect_content_type(blob[:ICON_READ_LIMIT]) in ("image/gif", "image/png", "image/jpeg")


# --- accessories -------------------------------------------------------------------------
SUBJECT_ACCESSORY = "subject.accessory"
COSIGN_SIGNATURE = "signature.cosign"
NOTATION_SIGNATURE = "signature.notation"
HARBOR_SBOM = "sbom.harbor"
NYDUS = "accelerator.nydus"


def referrer_accessory_type(body: dict[str, Any]) -> str | None:
    """src/server/middleware/subject/subject.go: a manifest with ``subject`` becomes an accessory.

    Its type is taken from ``artifactType`` (else the config media type): cosign's
    referrer type is a cosign signature, notation's a notation signature, Harbor's
    SBOM type an SBOM, an image config with a nydus bootstrap layer an accelerator;
    anything else is ``subject.accessory``. None without ``subject``.
    """
    if not body.get("subject"):
        return None
    from_type = body.get("artifactType") or body["config"]["mediaType"]
    if from_type in (OCI_IMAGE_CONFIG, DOCKER_IMAGE_CONFIG):
        last = (body.get("layers") or [{}])[-1]
        nydus = "containerd.io/snapshot/nydus-bootstrap" in (last.get("annotations") or {})
        return NYDUS if nydus else SUBJECT_ACCESSORY
    return {
        "application/vnd.cncf.notary.signature": NOTATION_SIGNATURE,
        "application/vnd.dev.cosign.artifact.sig.v1+json": COSIGN_SIGNATURE,
        "application/vnd.goharbor.harbor.sbom.v1": HARBOR_SBOM,
    }.get(from_type, SUBJECT_ACCESSORY)


# src/server/middleware/cosign/cosign.go ``cosignRe`` (the tag part; its ``.`` is unescaped there too)
COSIGN_TAG_RE = re.compile(r"^sha256-(?P<digest>[a-f0-9]{64}).sig$")


def tag_accessory_type(tag: str, body: dict[str, Any]) -> str | None:
    """src/server/middleware/cosign/cosign.go: a manifest pushed under ``sha256-<hex>.sig``
    with a cosign simple-signing layer is a cosign signature of ``sha256:<hex>``.

    No other tag is recognised: ``sha256-<hex>.att`` (cosign attestations) and the
    ``sha256-<hex>`` referrers fallback index stay artifacts of their own.
    """
    if not COSIGN_TAG_RE.match(tag):
        return None
    layers = body.get("layers") or []
    if any(layer.get("mediaType") == "application/vnd.dev.cosign.simplesigning.v1+json" for layer in layers):
        return COSIGN_SIGNATURE
    return None


def counts_as_signature(accessory_type: str | None, version: tuple[int, int], *, from_tag: bool) -> bool:
    """What Harbor's cosign content trust accepts as "signed": a cosign accessory of the manifest
    (tag form since 2.5, referrer form since 2.11). It does not verify the signature."""
    if accessory_type != COSIGN_SIGNATURE:
        return False
    return from_tag or version >= COSIGN_REFERRER_ACCESSORY


def is_attestation_child(entry: dict[str, Any]) -> bool:
    """src/controller/artifact/manifest/attestation.go (Harbor main): an index entry is
    re-filed as an in-toto attestation accessory only when annotated
    ``vnd.docker.reference.type: attestation-manifest`` (BuildKit's layout)."""
    return (entry.get("mediaType") in (OCI_MANIFEST, DOCKER_MANIFEST)
            and (entry.get("annotations") or {}).get("vnd.docker.reference.type") == "attestation-manifest")
