"""``docker-archive:PATH[:REF]``: the tar written by ``docker save``.

Docker 25+ writes an OCI layout inside the tar, read as such. Older engines write
``manifest.json`` with a config file and uncompressed layer tars; those become an OCI
manifest here (layers keep their bytes, so their digests equal the image's diff IDs).
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

from ecr_oci import mediatypes as mt
from ecr_oci.bundle.config import Platform
from ecr_oci.digest import CHUNK, sha256_bytes
from ecr_oci.errors import SourceError
from ecr_oci.oci import Blob, bytes_reader, canonical_json, descriptor, file_reader
from ecr_oci.sources import ImageSource, manifest_blob, parse_json, split_path_tag
from ecr_oci.sources.oci_layout import open_layout_tar


def open_archive(rest: str, platform: Platform, root: Path) -> ImageSource:
    """Open a ``docker save`` tar.

    Raises:
        SourceError: unreadable tar, no such image in it, missing members.
    """
    path_text, ref = split_path_tag(rest)
    if ref and not path_text.endswith(".tar") and (root / rest).exists():
        path_text, ref = rest, None
    path = (root / path_text).resolve()
    where = f"docker-archive:{path_text}"
    try:
        tar = tarfile.open(path, "r:")
    except (OSError, tarfile.TarError) as exc:
        raise SourceError(f"{where}: cannot read tar file {path} ({exc})") from None
    with tar:
        names = {m.name.lstrip("./") for m in tar.getmembers()}
        if {"oci-layout", "index.json"} <= names:
            return open_layout_tar(path, where, ref, platform)
        members = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}
        if "manifest.json" not in members:
            raise SourceError(f"{where}: not a docker save archive (no manifest.json)")

        def read(name: str) -> bytes:
            info = members.get(name)
            handle = tar.extractfile(info) if info else None
            if handle is None:
                raise SourceError(f"{where}: member {name} is missing")
            return handle.read()

        entries = parse_json(b'{"m":' + read("manifest.json") + b"}", where)["m"]
        if ref:
            entries = [e for e in entries if any(t == ref or t.endswith("/" + ref) for t in e.get("RepoTags") or [])]
        if len(entries) != 1:
            raise SourceError(f"{where}: expected one image in the archive, found {len(entries)} (name one with :REF)")
        entry = entries[0]
        config_bytes = read(entry["Config"])
        config = parse_json(config_bytes, where)
        layers: list[Blob] = []
        for name in entry["Layers"]:
            info = members.get(name)
            if info is None:
                raise SourceError(f"{where}: layer {name} is missing")
            layers.append(_layer_blob(tar, info, path))
    config_blob = Blob(mt.OCI_CONFIG, sha256_bytes(config_bytes), len(config_bytes), bytes_reader(config_bytes))
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(config_blob.media_type, config_blob.digest, config_blob.size),
        "layers": [descriptor(b.media_type, b.digest, b.size) for b in layers],
    }
    data = canonical_json(manifest)
    return ImageSource(manifest=manifest_blob(data, mt.OCI_MANIFEST, (config_blob, *layers)), config=config)


def _layer_blob(tar: tarfile.TarFile, info: tarfile.TarInfo, path: Path) -> Blob:
    handle = tar.extractfile(info)
    assert handle is not None
    h = hashlib.sha256()
    head = handle.read(2)
    h.update(head)
    while chunk := handle.read(CHUNK):
        h.update(chunk)
    media_type = mt.OCI_LAYER_TAR_GZIP if head == b"\x1f\x8b" else mt.OCI_LAYER_TAR
    digest = "sha256:" + h.hexdigest()
    return Blob(media_type, digest, info.size, file_reader(path, info.offset_data, info.size))
