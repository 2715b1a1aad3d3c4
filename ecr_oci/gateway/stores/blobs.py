"""Serving blob reads straight from the embedded registry's filesystem storage.

A Python proxy copying every byte from one socket to another costs several times
the CPU of the registry's own sendfile path. When the gateway runs the embedded
registry it owns its storage directory, so blob GET/HEAD (after authorization) are
answered from the file itself, with Range support. The file is used only if the
blob is *linked into the repository* (Distribution's ``_layers`` link), which is
exactly the registry's own rule; anything else falls back to the proxy. The
layout read here is Distribution's storage layout, identical in 2.8 and 3.
"""

from __future__ import annotations

import re
from pathlib import Path

from starlette.responses import FileResponse, RangeNotSatisfiable
from starlette.types import Receive, Scope, Send

from ecr_oci.gateway.surfaces import ranges

_DIGEST = re.compile(r"^sha256:([a-f0-9]{64})$")


class BlobFileResponse(FileResponse):
    """A blob file, read in large chunks while few are sent at once and in smaller ones in a crowd.

    1 MiB chunks make one download ~3x faster than 256 KiB ones here (fewer trips through
    the event loop), but each concurrent download holds a chunk and its socket buffer:
    200 nodes pulling at once took the gateway to ~470 MiB RSS with 1 MiB, ~240 with 256 KiB.
    """

    chunk_size = 1 << 20
    crowd = 32  # concurrent downloads beyond which chunks shrink
    _active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        BlobFileResponse._active += 1  # the event loop is single-threaded: no lock needed
        self.chunk_size = (1 << 20) if BlobFileResponse._active <= self.crowd else (256 << 10)
        try:
            await super().__call__(scope, receive, send)
        finally:
            BlobFileResponse._active -= 1

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        """Starlette answers 400 to a malformed range; RFC 9110 wants it ignored (see ranges.py).

        An empty list makes FileResponse send the whole file with 200.
        """
        try:
            return ranges.resolve(http_range, file_size)
        except ranges.Unsatisfiable as exc:
            raise RangeNotSatisfiable(exc.size) from None


class LocalBlobs:
    """Blob files of a Distribution filesystem storage.

    Args:
        root: the storage ``rootdirectory``.
    """

    def __init__(self, root: Path) -> None:
        self._v2 = root / "docker" / "registry" / "v2"

    def path(self, repository: str, digest: str) -> Path | None:
        """The data file of ``digest`` if ``repository`` holds it, else None."""
        match = _DIGEST.match(digest)
        if match is None:
            return None
        hexdigest = match[1]
        link = self._v2 / "repositories" / repository / "_layers" / "sha256" / hexdigest / "link"
        data = self._v2 / "blobs" / "sha256" / hexdigest[:2] / hexdigest / "data"
        try:
            if link.read_text().strip() != digest:
                return None
        except OSError:
            return None
        return data if data.is_file() else None

    def response(self, repository: str, digest: str) -> FileResponse | None:
        """A (ranged) file response for the blob, or None to let the proxy answer."""
        path = self.path(repository, digest)
        if path is None:
            return None
        headers = {
            "Docker-Content-Digest": digest,
            "Cache-Control": "max-age=31536000",
            "Docker-Distribution-API-Version": "registry/2.0",
        }
        response = BlobFileResponse(path, headers=headers, media_type="application/octet-stream")
        return response
