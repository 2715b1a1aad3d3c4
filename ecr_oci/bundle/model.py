"""The bundle: one OCI image index per bundle version.

    index (artifactType application/vnd.waggle.ecr.bundle.v1+json, metadata annotations)
    ├── image manifest, platform linux/amd64      (untouched; any OCI runtime runs it)
    ├── image manifest, platform linux/arm64
    └── model manifest, platform unknown/unknown  (model files, source archive, data, icon)

``unknown/unknown`` is what BuildKit gives attestation manifests, so docker, podman
and skopeo never pick the model manifest as a runnable image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ecr_oci import mediatypes as mt
from ecr_oci.bundle.annotations import annotations_for
from ecr_oci.bundle.archive import write_archive
from ecr_oci.bundle.config import BundleConfig, expand_files
from ecr_oci.bundle.icon import check_icon
from ecr_oci.bundle.names import data_archive_title, source_archive_title
from ecr_oci.digest import sha256_bytes, sha256_file
from ecr_oci.errors import ValidationError
from ecr_oci.oci import Blob, ManifestBlob, bytes_reader, canonical_json, descriptor, file_reader
from ecr_oci.sources import image_source

UNKNOWN_PLATFORM = {"architecture": "unknown", "os": "unknown"}

# How the build learns a file's (digest, size): the stat cache by default; a push passes
# one that waits for the upload hashing the file (ecr_oci.transfer.push.UploadsAhead).
DigestOf = Callable[[Path], tuple[str, int]]


@dataclass(frozen=True)
class Bundle:
    """A bundle ready to push: every manifest and blob, with digests computed.

    Attributes:
        images: one image manifest per platform, in ecr.yaml order.
        model: the model/data manifest, or None for a code-only bundle.
        index: the bundle index itself; its digest is the bundle's identifier.
    """

    name: str
    version: str
    images: tuple[ManifestBlob, ...]
    model: ManifestBlob | None
    index: ManifestBlob

    @property
    def digest(self) -> str:
        return self.index.digest

    @property
    def manifests(self) -> tuple[ManifestBlob, ...]:
        return self.images + ((self.model,) if self.model else ())

    def blobs(self) -> list[Blob]:
        """Every blob of every manifest, each digest once."""
        seen: dict[str, Blob] = {}
        for manifest in self.manifests:
            for blob in manifest.blobs:
                seen.setdefault(blob.digest, blob)
        return list(seen.values())


def _file_blob(path: Path, media_type: str, title: str, role: str, digest_of: DigestOf = sha256_file) -> Blob:
    digest, size = digest_of(path)
    return Blob(
        media_type=media_type,
        digest=digest,
        size=size,
        read=file_reader(path, 0, size),
        annotations={mt.OCI_TITLE: title, mt.ECR_LAYER_ROLE: role},
    )


def _model_layers(config: BundleConfig, scratch: Path, digest_of: DigestOf) -> list[Blob]:
    root = config.root
    layers = [
        _file_blob(path, mt.MODEL_LAYER, path.relative_to(root).as_posix(), "model", digest_of)
        for path in expand_files(config, "model")
    ]
    if source := config.data.get("source_archive"):
        title = source_archive_title(config.name, config.version)
        archive = scratch / title
        write_archive(root / source, archive, prefix="source")
        layers.append(_file_blob(archive, mt.SOURCE_LAYER, title, "source"))
    for path in config.paths("training_data"):
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            archive = scratch / f"data-{sha256_bytes(rel.encode())[7:19]}.tar.gz"
            write_archive(path, archive, prefix=path.name)
            layers.append(_file_blob(archive, mt.DATA_LAYER_TAR_GZIP, data_archive_title(rel), "data"))
        else:
            layers.append(_file_blob(path, mt.DATA_LAYER, rel, "data", digest_of))
    if icon := config.data.get("icon"):
        media_type = check_icon(root / icon, icon)
        blob = _file_blob(root / icon, media_type, PurePosixPath(icon).as_posix(), "icon", digest_of)
        # Harbor shows the first layer carrying this key as the artifact's icon; the
        # value is not read (an empty string, as in Harbor's own examples).
        blob.annotations[mt.HARBOR_ICON] = ""
        layers.append(blob)
    titles = [layer.annotations[mt.OCI_TITLE] for layer in layers]
    duplicates = {t for t in titles if titles.count(t) > 1}
    if duplicates:
        raise ValidationError(f"files listed twice: {', '.join(sorted(duplicates))}")
    return layers


def model_config_document(config: BundleConfig) -> dict[str, Any]:
    """The model manifest's config: the bundle metadata, so registry UIs (Harbor) show it.

    Local image paths are replaced by the platform list: they mean nothing elsewhere.
    """
    document = {k: v for k, v in config.data.items() if k != "images"}
    document["platforms"] = [str(entry.platform) for entry in config.images]
    document["specVersion"] = mt.SPEC_VERSION
    return document


def build_bundle(config: BundleConfig, scratch: Path, digest_of: DigestOf | None = None,
                 on_image: Callable[[ManifestBlob], None] | None = None) -> Bundle:
    """Assemble a bundle from validated metadata, reading every source once.

    The build itself sends nothing: a bundle that builds is complete, so no tag is
    written for inputs that would fail half-way.

    Args:
        config: the loaded ecr.yaml.
        scratch: a directory for generated archives (kept until the push ends).
        digest_of: gives each input file's (digest, size); by default the stat cache
            (``FileDigests``), which reads only files it has not seen unchanged.
        on_image: called with each image manifest as soon as it is read (a push starts
            sending its blobs while the model files are still being hashed).

    Raises:
        SourceError: an image source cannot be read or has the wrong platform.
        ValidationError: inconsistent inputs.
    """
    images = []
    entries = []
    for entry in config.images:
        source = image_source(entry.source, entry.platform, config.root)
        images.append(source.manifest)
        if on_image:
            on_image(source.manifest)
        entries.append(
            descriptor(
                source.manifest.media_type,
                source.manifest.digest,
                len(source.manifest.data),
                platform=entry.platform.to_oci(),
            )
        )
    if digest_of is None:
        from ecr_oci.transfer.state import FileDigests

        remembered = FileDigests()
        layers = _model_layers(config, scratch, remembered.digest_of)
        remembered.save()
    else:
        layers = _model_layers(config, scratch, digest_of)
    model = None
    if layers:
        config_bytes = canonical_json(model_config_document(config))
        config_blob = Blob(mt.MODEL_CONFIG, sha256_bytes(config_bytes), len(config_bytes), bytes_reader(config_bytes))
        body = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": mt.MODEL_ARTIFACT_TYPE,
            "config": descriptor(config_blob.media_type, config_blob.digest, config_blob.size),
            "layers": [layer.descriptor() for layer in layers],
            "annotations": {mt.OCI_TITLE: config.name, mt.OCI_VERSION: config.version},
        }
        data = canonical_json(body)
        model = ManifestBlob(mt.OCI_MANIFEST, data, sha256_bytes(data), (config_blob, *layers))
        entries.append(
            descriptor(
                mt.OCI_MANIFEST,
                model.digest,
                len(data),
                platform=UNKNOWN_PLATFORM,
                artifact_type=mt.MODEL_ARTIFACT_TYPE,
                annotations={mt.ECR_ROLE: "model"},
            )
        )
    index_body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "artifactType": mt.BUNDLE_ARTIFACT_TYPE,
        "manifests": entries,
        "annotations": annotations_for(config.data),
    }
    data = canonical_json(index_body)
    index = ManifestBlob(mt.OCI_INDEX, data, sha256_bytes(data), ())
    return Bundle(config.name, config.version, tuple(images), model, index)
