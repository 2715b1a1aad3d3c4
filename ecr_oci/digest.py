"""Content digests (``sha256:<hex>``) and verifying readers."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ecr_oci.errors import DigestMismatchError

CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    """The OCI digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> tuple[str, int]:
    """Digest and size of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def hex_of(digest: str) -> str:
    """The hex part of ``sha256:<hex>``."""
    return digest.split(":", 1)[1]


class VerifyingWriter:
    """Hashes bytes as they are written to ``sink`` and checks digest and size at the end.

    Args:
        sink: the binary file the bytes go to.
        digest: the expected ``sha256:<hex>``.
        size: the expected size, or None when unknown.
    """

    def __init__(self, sink: BinaryIO, digest: str, size: int | None) -> None:
        algorithm, _ = digest.split(":", 1)
        if algorithm != "sha256":
            raise DigestMismatchError(f"unsupported digest algorithm {algorithm!r}")
        self._sink = sink
        self._hash = hashlib.sha256()
        self._expected = digest
        self._size = size
        self.written = 0

    def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self._sink.write(chunk)
        self.written += len(chunk)

    def already_written(self, chunk: bytes) -> None:
        """Count bytes the sink holds from before (a resumed download) without writing them."""
        self._hash.update(chunk)
        self.written += len(chunk)

    def verify(self) -> None:
        """Raises DigestMismatchError unless the bytes written match digest and size."""
        actual = "sha256:" + self._hash.hexdigest()
        if self._size is not None and self.written != self._size:
            raise DigestMismatchError(
                f"{self._expected}: expected {self._size} bytes, received {self.written}"
            )
        if actual != self._expected:
            raise DigestMismatchError(f"content does not match {self._expected} (got {actual})")


def iter_file(path: Path, start: int = 0, chunk: int = CHUNK) -> Iterator[bytes]:
    """Yield the bytes of ``path`` from offset ``start``."""
    with path.open("rb") as fh:
        fh.seek(start)
        while data := fh.read(chunk):
            yield data
