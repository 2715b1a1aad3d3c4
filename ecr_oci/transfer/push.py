"""Push a bundle to a registry: blobs first (skip, mount, resume or upload in parallel),
then manifests by digest, and the index under its version tag last, so nothing is
tagged before everything it references is stored."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ecr_oci.bundle.model import Bundle
from ecr_oci.bundle.names import version_tag
from ecr_oci.errors import RegistryError
from ecr_oci.oci import Blob
from ecr_oci.registry.client import RegistryClient
from ecr_oci.registry.reference import Reference
from ecr_oci.transfer.progress import TransferProgress
from ecr_oci.transfer.state import BlobLocations, UploadSessions

__all__ = ["PushReport", "push_blob", "push_bundle", "run_cancellable", "version_tag"]


@dataclass
class PushReport:
    """What a push did, for the CLI summary and for tests.

    Attributes:
        uploaded: blobs sent (in full, or the rest of a resumed upload).
        resumed: those of ``uploaded`` whose upload continued an earlier session.
        mounted: blobs linked from another repository of the registry, not sent.
        skipped: blobs the repository already held.
        bytes_uploaded: bytes actually sent.
        sources: for a mounted blob, the repository it was mounted from.
    """

    reference: Reference
    uploaded: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    mounted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0
    sources: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, kind: str, digest: str) -> None:
        with self._lock:
            getattr(self, kind).append(digest)


def _mount_sources(client: RegistryClient, repository: str, blob: Blob,
                   locations: BlobLocations | None) -> list[str]:
    """Repositories of this registry that may hold ``blob``: its docker:// source, then where it was seen."""
    sources = []
    if blob.origin and blob.origin[0] == client.registry and blob.origin[1] != repository:
        sources.append(blob.origin[1])
    if locations is not None:
        sources += [r for r in locations.candidates(client.registry, blob.digest, repository) if r not in sources]
    return sources[:3]


def push_blob(client: RegistryClient, repository: str, blob: Blob, report: PushReport,
              progress: TransferProgress, *, sessions: UploadSessions | None = None,
              locations: BlobLocations | None = None) -> None:
    """Make ``blob`` present in ``repository`` with the least traffic possible."""
    if client.blob_size(repository, blob.digest) is not None:
        report.add("skipped", blob.digest)
        return
    for source in _mount_sources(client, repository, blob, locations):
        try:
            mounted = client.mount_blob(repository, blob.digest, source)
        except RegistryError:
            mounted = False  # not readable by this user, or gone: upload instead
        if mounted:
            report.add("mounted", blob.digest)
            report.sources[blob.digest] = source
            return
    label = blob.annotations.get("org.opencontainers.image.title") or blob.digest[7:19]
    resumed_from = client.upload_blob(repository, blob.digest, blob.size, blob.read,
                                      progress.track(f"push {label}", blob.size), sessions=sessions)
    report.add("uploaded", blob.digest)
    if resumed_from:
        report.add("resumed", blob.digest)


def run_cancellable(client: RegistryClient, futures: list[Future[None]], pool: ThreadPoolExecutor) -> None:
    """Wait for transfers; on Ctrl-C (or any failure) stop the others within one chunk.

    The client's ``cancelled`` event makes every running upload end its request
    cleanly (the registry keeps what it got) and every download stop; queued ones
    never start. Then the first error is raised (KeyboardInterrupt for Ctrl-C).
    """
    try:
        for future in futures:
            future.result()
    except BaseException:
        client.cancelled.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)


def push_bundle(
    bundle: Bundle,
    client: RegistryClient,
    target: Reference,
    *,
    progress: TransferProgress | None = None,
    parallel: int = 4,
    remember: bool = True,
) -> PushReport:
    """Push every part of ``bundle`` and tag its index.

    Args:
        target: repository and tag (the bundle version when no tag is given).
        parallel: blobs transferred at once.
        remember: keep upload sessions and blob locations in the cache directory
            (interrupted pushes resume; other repositories' blobs are mounted).

    Raises:
        RegistryError: the registry refused something; no tag then points at a
            partial bundle (blobs already sent stay, unreferenced, for a retry to reuse).
        KeyboardInterrupt: Ctrl-C; transfers stopped, sessions kept, nothing tagged.
    """
    tag = target.tag or version_tag(bundle.version)
    report = PushReport(reference=target.with_tag(tag).with_digest(bundle.digest))
    progress = progress or TransferProgress(enabled=False)
    sessions = UploadSessions() if remember else None
    locations = BlobLocations() if remember else None
    blobs = bundle.blobs()
    with progress:
        pool = ThreadPoolExecutor(max_workers=parallel)
        futures = [pool.submit(push_blob, client, target.repository, b, report, progress,
                               sessions=sessions, locations=locations) for b in blobs]
        run_cancellable(client, futures, pool)
    report.bytes_uploaded = progress.bytes
    for manifest in bundle.manifests:
        client.put_manifest(target.repository, manifest.digest, manifest.data, manifest.media_type)
    client.put_manifest(target.repository, tag, bundle.index.data, bundle.index.media_type)
    if locations is not None:
        locations.record(client.registry, target.repository, [b.digest for b in blobs])
    return report
