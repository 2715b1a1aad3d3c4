"""Pull one platform of a bundle: its image as an OCI layout, and its model files.

Output directory::

    OUT/image/              OCI image layout of the chosen platform (podman/skopeo load it)
    OUT/<title>             model files, source archive and data, at their titles (not the icon)
    OUT/ecr-bundle.json     the bundle reference, digest and metadata

Every blob is verified against its digest; files appear only once complete.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ecr_oci import mediatypes as mt
from ecr_oci.bundle.config import Platform
from ecr_oci.bundle.remote import RemoteBundle, fetch_bundle
from ecr_oci.digest import hex_of, sha256_file
from ecr_oci.errors import UsageError, ValidationError
from ecr_oci.registry.client import RegistryClient
from ecr_oci.registry.reference import Reference
from ecr_oci.transfer.progress import TransferProgress
from ecr_oci.transfer.push import run_cancellable
from ecr_oci.transfer.state import BlobLocations, FileDigests, FileIdentity


@dataclass
class PullReport:
    bundle: RemoteBundle
    platform: str | None
    files: list[Path] = field(default_factory=list)
    bytes_downloaded: int = 0


def safe_title(title: str) -> PurePosixPath:
    """A layer title as a relative path that cannot escape the output directory.

    Raises:
        ValidationError: absolute paths or ``..`` components.
    """
    path = PurePosixPath(title)
    if not title or path.is_absolute() or ".." in path.parts:
        raise ValidationError(f"refusing unsafe file name {title!r} in the bundle")
    return path


def _write_layout(out: Path, manifest_desc: dict[str, Any], tag: str) -> None:
    (out / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    entry = {k: v for k, v in manifest_desc.items() if k in ("mediaType", "digest", "size", "platform")}
    entry["annotations"] = {mt.OCI_REF_NAME: tag}
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry]}
    (out / "index.json").write_text(json.dumps(index, indent=2))


def pull_bundle(
    client: RegistryClient,
    ref: Reference,
    out: Path,
    *,
    platform: Platform | None,
    model_only: bool = False,
    progress: TransferProgress | None = None,
    parallel: int = 4,
    force: bool = False,
) -> PullReport:
    """Download a bundle's image for ``platform`` and its model/data files into ``out``.

    Args:
        platform: which image to fetch; None with ``model_only``.
        model_only: skip the image.
        force: pull into a directory that holds other files (a previous bundle's
            files, listed in its ecr-bundle.json, are removed first).

    Raises:
        NotFoundError: no such bundle, or no image for ``platform``.
        DigestMismatchError: some content did not verify (nothing is left for it).
        UsageError: ``out`` holds other files and ``force`` is not set.
    """
    bundle = fetch_bundle(client, ref)
    prepare_output(out, bundle.digest, force=force)
    repo = ref.repository
    report = PullReport(bundle=bundle, platform=str(platform) if platform else None)
    jobs: list[tuple[str, int, Path, str]] = []  # digest, size, destination, label
    if not model_only:
        assert platform is not None
        entry = bundle.image_for(platform)
        manifest = client.get_manifest(repo, entry["digest"])
        layout = out / "image"
        blobs_dir = layout / "blobs" / "sha256"
        blobs_dir.mkdir(parents=True, exist_ok=True)
        (blobs_dir / hex_of(manifest.digest)).write_bytes(manifest.data)
        body = manifest.json()
        for desc in [body["config"], *body.get("layers", [])]:
            digest = desc["digest"]
            jobs.append((digest, desc["size"], blobs_dir / hex_of(digest), f"layer {digest[7:19]}"))
    model_entry = bundle.model_entry()
    if model_entry:
        model = client.get_manifest(repo, model_entry["digest"]).json()
        for layer in model.get("layers", []):
            annotations = layer.get("annotations") or {}
            title = annotations.get(mt.OCI_TITLE)
            # The icon is for registry UIs, not a file the application uses.
            if not title or annotations.get(mt.ECR_LAYER_ROLE) == "icon":
                continue
            jobs.append((layer["digest"], layer["size"], out / safe_title(title), title))
    out.mkdir(parents=True, exist_ok=True)
    progress = progress or TransferProgress(enabled=False)

    # The files' digests are known once verified: a later push of this directory (an
    # ecr.yaml added, a new version) then finds the model in the registry instead of
    # sending it again (confirmed by hashing once: the entry is younger than RACY_NS).
    remembered = FileDigests()

    def fetch(job: tuple[str, int, Path, str]) -> None:
        digest, size, dest, label = job
        if not (dest.exists() and dest.stat().st_size == size and _verified(dest, digest)):
            client.download_blob(repo, digest, dest, size, progress.track(f"pull {label}", size))
        if dest.parent != out / "image" / "blobs" / "sha256":
            remembered.record(FileIdentity.of(dest), digest, time.time_ns())

    with progress:
        pool = ThreadPoolExecutor(max_workers=parallel)
        try:
            run_cancellable(client, [pool.submit(fetch, job) for job in jobs], pool)
        finally:
            remembered.save()
    report.bytes_downloaded = progress.bytes
    BlobLocations().record(client.registry, repo, [digest for digest, _, _, _ in jobs])
    report.files = [dest for _, _, dest, _ in jobs]
    if not model_only:
        _write_layout(out / "image", entry, bundle.metadata.get("version") or "latest")
    record = {
        "reference": bundle.reference.pinned(),
        "digest": bundle.digest,
        "platform": report.platform,
        "metadata": bundle.metadata,
        "files": sorted(path.relative_to(out).as_posix() for path in report.files if out in path.parents),
    }
    (out / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True))
    (out / IN_PROGRESS).unlink(missing_ok=True)
    return report


RECORD = "ecr-bundle.json"  # written last: the bundle a directory holds, and its files
IN_PROGRESS = ".ecr-pull"  # the digest of a pull under way (an interrupted one resumes)


def _digest_in(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get("digest") if isinstance(data, dict) else None


def prepare_output(out: Path, digest: str, *, force: bool) -> None:
    """Make sure pulling ``digest`` into ``out`` cannot mix two bundles' files.

    An empty or new directory is fine, and so is one holding this same bundle (a
    repeated or interrupted pull). Anything else needs ``force``; then the files of a
    previous bundle (listed in its ecr-bundle.json) are removed first.

    Raises:
        UsageError: ``out`` is a file, or holds other files and ``force`` is not set.
    """
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file, not a directory")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    held = _digest_in(out / RECORD) or _digest_in(out / IN_PROGRESS)
    if entries and held != digest:
        if not force:
            what = f"another bundle ({held})" if held else f"{len(entries)} entries, e.g. {entries[0]!r}"
            raise UsageError(f"{out} is not empty (it holds {what}): pull into a new or empty directory,"
                             " or pass --force")
        _remove_previous(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / IN_PROGRESS).write_text(json.dumps({"digest": digest}))


def _remove_previous(out: Path) -> None:
    """Remove the files an earlier pull recorded (never anything else the user keeps there)."""
    import shutil

    try:
        record = json.loads((out / RECORD).read_text())
    except (OSError, ValueError):
        return
    for name in record.get("files") or []:
        path = out / safe_title(str(name))
        if path.is_file():
            path.unlink()
    shutil.rmtree(out / "image", ignore_errors=True)
    (out / RECORD).unlink(missing_ok=True)


def _verified(path: Path, digest: str) -> bool:
    return sha256_file(path)[0] == digest
