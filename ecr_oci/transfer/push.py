"""Push a bundle to a registry: blobs first (skip, mount, resume or upload in parallel),
then manifests by digest, and the index under its version tag last, so nothing is
tagged before everything it references is stored.

Large files ecr has not seen unchanged before (a new model) are uploaded while they
are hashed, before the bundle is assembled (:class:`UploadsAhead`): their digest is
only known once their bytes are sent, and reading them once is what makes a push as
fast as the registry takes bytes. Files it has seen unchanged (the stat cache,
:class:`~ecr_oci.transfer.state.FileDigests`) are not read at all unless sent.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ecr_oci.bundle.names import version_tag
from ecr_oci.errors import RegistryError
from ecr_oci.oci import Blob, ManifestBlob, file_reader
from ecr_oci.registry.client import RegistryClient
from ecr_oci.registry.reference import Reference
from ecr_oci.transfer.progress import TransferProgress
from ecr_oci.transfer.state import BlobLocations, FileDigests, FileIdentity, UploadSessions

if TYPE_CHECKING:  # the early start imports this module before anything heavier (cli/early.py)
    from ecr_oci.bundle.model import Bundle

__all__ = ["PushReport", "UploadsAhead", "push_blob", "push_bundle", "run_cancellable", "version_tag"]

# Files at least this large that the stat cache does not know are sent while hashed;
# smaller ones are hashed first (then skipped or mounted when the registry has them).
UPLOAD_WHILE_HASHING = 8 << 20
# Reads of 8 MiB: the GIL is taken a few times per read, hash and send, so a thread
# importing or validating alongside (an early push, cli/early.py) slows them little.
AHEAD_CHUNK = 8 << 20
_T = TypeVar("_T")


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


@dataclass(frozen=True)
class _Sent:
    digest: str
    size: int
    resumed_from: int


class UploadsAhead:
    """Uploads of new large files, started before the bundle is built and hashed as sent.

    :meth:`start` begins uploading every file at least ``UPLOAD_WHILE_HASHING`` bytes
    whose unchanged identity the stat cache does not know; :meth:`digest_of` is the
    build's ``digest_of``: it waits for such a file's upload, and hashes (or remembers)
    the others. A file changed while it was sent is not remembered; the bundle then
    describes exactly the bytes the registry received.

    Args:
        remember: keep the upload sessions (an interrupted push resumes) and the digests.
    """

    def __init__(self, client: RegistryClient, repository: str, progress: TransferProgress, *,
                 parallel: int = 4, remember: bool = True) -> None:
        self.client = client
        self.repository = repository
        self.progress = progress
        self._sessions = UploadSessions() if remember else None
        self._locations = BlobLocations() if remember else None
        self.digests = FileDigests() if remember else None
        self._pool = ThreadPoolExecutor(max_workers=parallel)
        self._running: dict[str, Future[_Sent]] = {}
        # Blobs of manifests built while the files upload (the images): pushed at once in
        # the same pool, so a large image layer does not wait for the model.
        self.report = PushReport(reference=Reference(client.registry, repository))
        self._pushing: dict[str, Future[None]] = {}

    def start(self, paths: list[Path], root: Path) -> None:
        """Start uploading those of ``paths`` (files below the bundle directory ``root``) that qualify."""
        for path in paths:
            identity = FileIdentity.of(path)
            if identity.size < UPLOAD_WHILE_HASHING or identity.path in self._running:
                continue
            if self.digests and self.digests.lookup(identity):
                continue  # known (or probably known, confirmed by hashing): skip or mount instead
            label = f"push {path.relative_to(root).as_posix()}"
            self._running[identity.path] = self._pool.submit(self._send, path, identity, label)

    def _send(self, path: Path, identity: FileIdentity, label: str) -> _Sent:
        seen_at = time.time_ns()
        digest, resumed_from = self.client.upload_hashing(
            self.repository, identity.size, file_reader(path, 0, identity.size, chunk=AHEAD_CHUNK),
            self.progress.track(label, identity.size), sessions=self._sessions, session_key=identity.key())
        if self.digests and FileIdentity.of(path) == identity:
            self.digests.record(identity, digest, seen_at)
        return _Sent(digest, identity.size, resumed_from)

    def digest_of(self, path: Path) -> tuple[str, int]:
        future = self._running.get(str(path.resolve()))
        if future is None:
            if self.digests is None:
                from ecr_oci.digest import sha256_file

                return sha256_file(path)
            return self.digests.digest_of(path)
        run_cancellable(self.client, [future], self._pool, shutdown=False)
        sent = future.result()
        return sent.digest, sent.size

    def push_blobs_of(self, manifest: ManifestBlob) -> None:
        """Start making the blobs of ``manifest`` present (skip, mount or upload), as the build goes on."""
        for blob in manifest.blobs:
            if blob.digest not in self._pushing:
                self._pushing[blob.digest] = self._pool.submit(
                    push_blob, self.client, self.repository, blob, self.report, self.progress,
                    sessions=self._sessions, locations=self._locations)

    def handled(self) -> set[str]:
        """Digests this object takes care of: files sent (every one the build waited for)
        and blobs whose push was started."""
        sent = {f.result().digest for f in self._running.values() if f.done() and not f.exception()}
        return sent | set(self._pushing)

    def finish(self, report: PushReport) -> None:
        """Wait for everything started here and add what happened to ``report``."""
        futures: list[Future[Any]] = [*self._running.values(), *self._pushing.values()]
        run_cancellable(self.client, futures, self._pool, shutdown=False)
        for sent in (f.result() for f in self._running.values()):
            report.add("uploaded", sent.digest)
            if sent.resumed_from:
                report.add("resumed", sent.digest)
        for kind in ("uploaded", "resumed", "mounted", "skipped"):
            for digest in getattr(self.report, kind):
                report.add(kind, digest)
        report.sources.update(self.report.sources)

    def close(self) -> None:
        """Stop what is still running (the build failed or was interrupted); sessions stay."""
        futures: list[Future[Any]] = [*self._running.values(), *self._pushing.values()]
        if any(not f.done() for f in futures):
            self.client.cancelled.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.digests:
            self.digests.save()


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


def run_cancellable(client: RegistryClient, futures: list[Future[_T]], pool: ThreadPoolExecutor, *,
                    shutdown: bool = True) -> None:
    """Wait for transfers; on Ctrl-C (or any failure) stop the others within one chunk.

    The client's ``cancelled`` event makes every running upload end its request
    cleanly (the registry keeps what it got) and every download stop; queued ones
    never start. Then the first error is raised (KeyboardInterrupt for Ctrl-C).

    Args:
        shutdown: shut ``pool`` down once they are done (False: more work may follow).
    """
    try:
        for future in futures:
            future.result()
    except BaseException:
        client.cancelled.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        if shutdown:
            pool.shutdown(wait=True)


def push_bundle(
    bundle: Bundle,
    client: RegistryClient,
    target: Reference,
    *,
    progress: TransferProgress | None = None,
    parallel: int = 4,
    remember: bool = True,
    ahead: UploadsAhead | None = None,
) -> PushReport:
    """Push every part of ``bundle`` and tag its index.

    Args:
        target: repository and tag (the bundle version when no tag is given).
        parallel: blobs transferred at once.
        remember: keep upload sessions and blob locations in the cache directory
            (interrupted pushes resume; other repositories' blobs are mounted).
        ahead: the uploads started before the build (their blobs count as uploaded).

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
    handled = ahead.handled() if ahead else set()
    with progress:
        pool = ThreadPoolExecutor(max_workers=parallel)
        futures = [pool.submit(push_blob, client, target.repository, b, report, progress,
                               sessions=sessions, locations=locations) for b in blobs if b.digest not in handled]
        run_cancellable(client, futures, pool)
        if ahead:
            ahead.finish(report)
    report.bytes_uploaded = progress.bytes
    for manifest in bundle.manifests:
        client.put_manifest(target.repository, manifest.digest, manifest.data, manifest.media_type)
    client.put_manifest(target.repository, tag, bundle.index.data, bundle.index.media_type)
    if locations is not None:
        locations.record(client.registry, target.repository, [b.digest for b in blobs])
    return report
