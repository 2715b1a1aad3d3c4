"""Push a bundle to a registry: blobs first (skip, mount, or upload in parallel),
then manifests by digest, and the index under its version tag last, so nothing is
tagged before everything it references is stored."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ecr_oci.bundle.model import Bundle
from ecr_oci.bundle.names import version_tag
from ecr_oci.oci import Blob
from ecr_oci.registry.client import RegistryClient
from ecr_oci.registry.reference import Reference
from ecr_oci.transfer.progress import TransferProgress


@dataclass
class PushReport:
    """What a push did, for the CLI summary and for tests."""

    reference: Reference
    uploaded: list[str] = field(default_factory=list)
    mounted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0


def push_blob(client: RegistryClient, repository: str, blob: Blob, report: PushReport,
              progress: TransferProgress) -> None:
    """Make ``blob`` present in ``repository`` with the least traffic possible."""
    if client.blob_size(repository, blob.digest) is not None:
        report.skipped.append(blob.digest)
        return
    same_registry = blob.origin and blob.origin[0] == client.registry and blob.origin[1] != repository
    if same_registry and blob.origin and client.mount_blob(repository, blob.digest, blob.origin[1]):
        report.mounted.append(blob.digest)
        return
    label = blob.annotations.get("org.opencontainers.image.title") or blob.digest[7:19]
    client.upload_blob(repository, blob.digest, blob.size, blob.read, progress.track(f"push {label}", blob.size))
    report.uploaded.append(blob.digest)
    report.bytes_uploaded += blob.size


def push_bundle(
    bundle: Bundle,
    client: RegistryClient,
    target: Reference,
    *,
    progress: TransferProgress | None = None,
    parallel: int = 4,
) -> PushReport:
    """Push every part of ``bundle`` and tag its index.

    Args:
        target: repository and tag (the bundle version when no tag is given).
        parallel: blobs transferred at once.

    Raises:
        RegistryError: the registry refused something; no tag then points at a
            partial bundle (blobs already sent stay, unreferenced, for a retry to reuse).
    """
    tag = target.tag or version_tag(bundle.version)
    report = PushReport(reference=target.with_tag(tag).with_digest(bundle.digest))
    progress = progress or TransferProgress(enabled=False)
    with progress, ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = [pool.submit(push_blob, client, target.repository, b, report, progress) for b in bundle.blobs()]
        for future in futures:
            future.result()
    for manifest in bundle.manifests:
        client.put_manifest(target.repository, manifest.digest, manifest.data, manifest.media_type)
    client.put_manifest(target.repository, tag, bundle.index.data, bundle.index.media_type)
    return report
