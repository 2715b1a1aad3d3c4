"""Small helpers for OCI documents: descriptors, canonical encoding, blobs to move."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecr_oci.digest import CHUNK

Json = dict[str, Any]
Reader = Callable[[int], Iterator[bytes]]


def canonical_json(document: Any) -> bytes:
    """Compact, key-ordered UTF-8 JSON: the same document always gives the same digest."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def descriptor(
    media_type: str,
    digest: str,
    size: int,
    *,
    annotations: dict[str, str] | None = None,
    platform: dict[str, str] | None = None,
    artifact_type: str | None = None,
) -> Json:
    """An OCI content descriptor with only the fields that are set."""
    out: Json = {"mediaType": media_type, "digest": digest, "size": size}
    if artifact_type:
        out["artifactType"] = artifact_type
    if platform:
        out["platform"] = platform
    if annotations:
        out["annotations"] = dict(sorted(annotations.items()))
    return out


@dataclass(frozen=True)
class FileRange:
    """A reader over ``size`` bytes of ``path`` from ``offset`` (a whole file, or a tar
    member); the registry client sends such a range straight from the file when it can
    (``ecr_oci.registry.filesend``)."""

    path: Path
    offset: int = 0
    size: int | None = None
    chunk: int = CHUNK

    def __call__(self, start: int) -> Iterator[bytes]:
        remaining = None if self.size is None else self.size - start
        with self.path.open("rb", buffering=0) as fh:
            fh.seek(self.offset + start)
            while remaining is None or remaining > 0:
                data = fh.read(self.chunk if remaining is None else min(self.chunk, remaining))
                if not data:
                    return
                if remaining is not None:
                    remaining -= len(data)
                yield data


def file_reader(path: Path, offset: int = 0, size: int | None = None, *, chunk: int = CHUNK) -> Reader:
    """A reader over ``size`` bytes of ``path`` starting at ``offset`` (a tar member, say)."""
    return FileRange(path, offset, size, chunk)


def bytes_reader(data: bytes) -> Reader:
    def read(start: int) -> Iterator[bytes]:
        yield data[start:]

    return read


@dataclass(frozen=True)
class Blob:
    """A blob to transfer: what it is and how to read its bytes.

    Attributes:
        read: streams the bytes from an offset (called again to resume an upload).
        origin: ``(registry, repository)`` when the bytes live in a registry, so a push
            to that registry can mount instead of copy.
        annotations: descriptor annotations (e.g. the file name of a model layer).
    """

    media_type: str
    digest: str
    size: int
    read: Reader = field(compare=False, repr=False)
    origin: tuple[str, str] | None = None
    annotations: dict[str, str] = field(default_factory=dict, compare=False)

    def descriptor(self) -> Json:
        return descriptor(self.media_type, self.digest, self.size, annotations=self.annotations or None)


@dataclass(frozen=True)
class ManifestBlob:
    """A manifest to push by digest, with the blobs it references."""

    media_type: str
    data: bytes
    digest: str
    blobs: tuple[Blob, ...]
