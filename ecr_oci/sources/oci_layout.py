"""``oci:PATH[:TAG]`` and ``oci-archive:PATH[:TAG]`` image sources."""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ecr_oci import mediatypes as mt
from ecr_oci.bundle.config import Platform
from ecr_oci.digest import hex_of, sha256_bytes
from ecr_oci.errors import SourceError
from ecr_oci.oci import Blob, Reader, file_reader
from ecr_oci.sources import ImageSource, manifest_blob, parse_json, select_from_index, split_path_tag

# (read whole small blob, reader for a large blob) by digest
Fetch = Callable[[str], bytes]
Open = Callable[[str, int], Reader]


def _resolve(
    index: dict[str, Any], tag: str | None, platform: Platform, where: str, fetch: Fetch
) -> dict[str, Any]:
    """Find the image manifest descriptor for ``tag``/``platform`` in a layout's index.json."""
    entries = index.get("manifests", [])
    if tag:
        entries = [e for e in entries if e.get("annotations", {}).get(mt.OCI_REF_NAME) == tag]
        if not entries:
            raise SourceError(f"{where}: no image tagged {tag!r} in the layout")
    if len(entries) > 1:
        images = [e for e in entries if platform.matches(_entry_platform(e, fetch, where))]
        if len(images) != 1:
            tags = sorted(str(e.get("annotations", {}).get(mt.OCI_REF_NAME)) for e in entries
                          if e.get("annotations", {}).get(mt.OCI_REF_NAME))
            named = f" (tags: {', '.join(tags)})" if tags else ""
            raise SourceError(f"{where}: {len(entries)} images in the layout{named}, {len(images)} of them"
                              f" {platform}; name one with :TAG")
        entries = images
    if not entries:
        raise SourceError(f"{where}: the layout holds no image")
    entry = entries[0]
    if entry.get("mediaType") in mt.INDEX_TYPES:
        nested = parse_json(fetch(entry["digest"]), where)
        return select_from_index(nested, platform, where)
    return dict(entry)


def _entry_platform(entry: dict[str, Any], fetch: Fetch, where: str) -> dict[str, Any]:
    """An index entry's platform: its ``platform`` field, else (image manifests only) the
    os/architecture/variant of its image config, as §8.3 of the spec says.
    An entry that is itself an index counts as every platform it holds."""
    if entry.get("platform"):
        return dict(entry["platform"])
    if entry.get("mediaType") in mt.INDEX_TYPES:
        return {}  # resolved to the platform later, when it is the only candidate
    try:
        manifest = parse_json(fetch(entry["digest"]), where)
        config = parse_json(fetch(manifest["config"]["digest"]), where)
    except (SourceError, KeyError, TypeError):
        return {}
    return {k: config[k] for k in ("os", "architecture", "variant") if isinstance(config.get(k), str)}


def _build(where: str, index: dict[str, Any], tag: str | None, platform: Platform, fetch: Fetch, open_: Open,
           size_of: Callable[[str], int]) -> ImageSource:
    entry = _resolve(index, tag, platform, where, fetch)
    data = fetch(entry["digest"])
    manifest = parse_json(data, where)
    blobs = []
    for desc in [manifest.get("config", {}), *manifest.get("layers", [])]:
        digest = desc.get("digest", "")
        try:
            actual = size_of(digest)
        except (KeyError, OSError):
            raise SourceError(f"{where}: blob {digest} is missing from the layout") from None
        if actual != desc.get("size"):
            raise SourceError(f"{where}: blob {digest} has {actual} bytes, manifest says {desc.get('size')}")
        blobs.append(Blob(media_type=desc["mediaType"], digest=digest, size=actual, read=open_(digest, actual)))
    config = parse_json(fetch(manifest["config"]["digest"]), where)
    media_type = manifest.get("mediaType") or entry.get("mediaType", mt.OCI_MANIFEST)
    return ImageSource(manifest=manifest_blob(data, media_type, tuple(blobs)), config=config)


def _checked(data: bytes, digest: str, where: str) -> bytes:
    if sha256_bytes(data) != digest:
        raise SourceError(f"{where}: blob {digest} is corrupt (digest mismatch)")
    return data


def open_layout(rest: str, platform: Platform, root: Path) -> ImageSource:
    """Open an OCI image layout directory.

    Raises:
        SourceError: not a layout, tag not found, blobs missing or corrupt.
    """
    path_text, tag = split_path_tag(rest)
    path = (root / path_text).resolve()
    where = f"oci:{path_text}" + (f":{tag}" if tag else "")
    if not (path / "index.json").is_file() or not (path / "oci-layout").is_file():
        raise SourceError(f"{where}: not an OCI image layout (no index.json/oci-layout at {path})")

    def blob_path(digest: str) -> Path:
        algorithm, _, hex_ = digest.partition(":")
        return path / "blobs" / algorithm / hex_

    def fetch(digest: str) -> bytes:
        try:
            return _checked(blob_path(digest).read_bytes(), digest, where)
        except OSError:
            raise SourceError(f"{where}: blob {digest} is missing from the layout") from None

    index = parse_json((path / "index.json").read_bytes(), where)
    return _build(
        where, index, tag, platform, fetch,
        lambda digest, size: file_reader(blob_path(digest), 0, size),
        lambda digest: blob_path(digest).stat().st_size,
    )


def open_archive(rest: str, platform: Platform, root: Path) -> ImageSource:
    """Open an OCI layout packed in an (uncompressed) tar file: ``oci-archive:``."""
    path_text, tag = split_path_tag(rest)
    path = (root / path_text).resolve()
    where = f"oci-archive:{path_text}"
    return open_layout_tar(path, where, tag, platform)


def open_layout_tar(path: Path, where: str, tag: str | None, platform: Platform) -> ImageSource:
    """An OCI layout inside a tar file; blobs are read in place at their tar offsets."""
    try:
        tar = tarfile.open(path, "r:")
    except (OSError, tarfile.TarError) as exc:
        raise SourceError(f"{where}: cannot read tar file {path} ({exc})") from None
    with tar:
        members = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}

        def member(digest: str) -> tarfile.TarInfo:
            return members[f"blobs/sha256/{hex_of(digest)}"]

        def fetch(digest: str) -> bytes:
            try:
                info = member(digest)
            except KeyError:
                raise SourceError(f"{where}: blob {digest} is missing from the archive") from None
            handle = tar.extractfile(info)
            assert handle is not None
            return _checked(handle.read(), digest, where)

        if "index.json" not in members:
            raise SourceError(f"{where}: not an OCI layout archive (no index.json)")
        handle = tar.extractfile(members["index.json"])
        assert handle is not None
        index = parse_json(handle.read(), where)
        return _build(
            where, index, tag, platform, fetch,
            lambda digest, size: file_reader(path, member(digest).offset_data, size),
            lambda digest: member(digest).size,
        )
