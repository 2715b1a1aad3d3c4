"""A file's bytes as the body of an upload PATCH, without copying them through Python.

requests (urllib3) frames each piece of a chunked body by concatenating it with its
size line, after the piece was read into memory: two copies of every byte in the
process, about 0.45 s of CPU per 512 MiB here, which a 2-core machine running the
registry beside ecr pays in wall time. Over plain http the framing is written apart:
a piece whose digest is known goes from the page cache to the socket with
sendfile(2) (0.03 s of CPU for 512 MiB); a piece being hashed is read once, hashed
(in the upload's hashing thread) and sent from that same buffer, so the bytes hashed
are exactly the bytes sent.

Used for plain-http registries without a proxy (a local registry, one in the cluster);
https and proxies keep requests, which knows both. The opening of an upload session
goes this way too (:func:`send`): this module needs only the standard library, so an
early push (cli/early.py) has its first byte on the wire before requests is imported
(~45 ms of the time a local push takes to start).
"""

from __future__ import annotations

import http.client
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ecr_oci.oci import FileRange

PIECE = 8 << 20  # bytes per sendfile call: the granularity of progress and of Ctrl-C


class Headers(Mapping[str, str]):
    """An answer's headers; names are case-insensitive (uvicorn, in front as the
    gateway, sends them lowercase; Distribution capitalises them)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._values = {name.lower(): value for name, value in pairs}

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes


def can_send_directly(url: str) -> bool:
    """Plain http, no proxy configured for ``url``, and a system with sendfile."""
    if urlsplit(url).scheme != "http" or not hasattr(os, "sendfile"):
        return False
    if not any(name.lower().endswith("_proxy") and value for name, value in os.environ.items()):
        return True  # the usual case, answered without importing requests
    import requests.utils  # the proxy rules (no_proxy, CIDR, bypass) exactly as requests applies them

    return not requests.utils.get_environ_proxies(url)


def send(method: str, url: str, headers: Mapping[str, str], *, timeout: float = 30) -> Answer:
    """A request without a body (an upload session's POST), over plain http.

    Raises:
        OSError, http.client.HTTPException: the connection failed.
    """
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""),
                     headers={**headers, "Content-Length": "0"})
        resp = conn.getresponse()
        return Answer(resp.status, resp.reason, Headers(resp.getheaders()), resp.read())
    finally:
        conn.close()


def patch_from_file(
    url: str,
    headers: Mapping[str, str],
    source: FileRange,
    start: int,
    end: int,
    *,
    cancelled: threading.Event,
    progress: Callable[[int], None] | None,
    hash_update: Callable[[bytes], None] | None,
    timeout: float = 300,
) -> Answer:
    """PATCH bytes ``start``..``end`` of ``source`` to ``url`` as a chunked body.

    On ``cancelled`` the body ends cleanly at a piece boundary, so the registry keeps
    what it got (as the requests path does).

    Raises:
        OSError, http.client.HTTPException: the connection failed (the caller asks the
            registry where the upload stands, as after any broken chunk).
    """
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
    try:
        conn.putrequest("PATCH", parts.path + (f"?{parts.query}" if parts.query else ""),
                        skip_accept_encoding=True)
        for name, value in {**headers, "Transfer-Encoding": "chunked"}.items():
            conn.putheader(name, value)
        conn.endheaders()
        sock = conn.sock
        assert isinstance(sock, socket.socket)
        with source.path.open("rb", buffering=0) as fh:
            fd = fh.fileno()
            position = start
            while position < end and not cancelled.is_set():
                count = min(PIECE, end - position)
                at = source.offset + position
                sock.sendall(b"%x\r\n" % count)
                if hash_update:
                    # One read: the bytes hashed are the bytes sent.
                    piece = os.pread(fd, count, at)
                    if len(piece) != count:
                        raise OSError(f"{source.path} ended before byte {position + count}")
                    hash_update(piece)
                    sock.sendall(piece)
                elif sock.sendfile(fh, at, count) != count:  # sendfile(2), waiting as the socket's timeout says
                    raise OSError(f"{source.path} ended before byte {position + count}")
                sock.sendall(b"\r\n")
                if progress:
                    progress(count)
                position += count
        sock.sendall(b"0\r\n\r\n")
        resp = conn.getresponse()
        return Answer(resp.status, resp.reason, Headers(resp.getheaders()), resp.read())
    finally:
        conn.close()
