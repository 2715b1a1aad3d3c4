"""The distribution client's transfer mechanics against a real Distribution: chunked and
resumed uploads, resumed and verified downloads, cross-repository mounts."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ecr_oci.errors import DigestMismatchError
from ecr_oci.registry.client import RegistryClient
from tests.support import Registry

MIB = 1 << 20


def _blob(size: int) -> tuple[bytes, str]:
    data = os.urandom(size)
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


def test_multi_chunk_upload_round_trips(registry: Registry) -> None:
    data, digest = _blob(3 * MIB + 123)
    client = RegistryClient(registry.host, chunk_size=MIB)
    sent: list[int] = []
    client.upload_blob("client/chunks", digest, len(data), lambda start: iter([data[start:]]), sent.append)
    assert sum(sent) == len(data)
    assert client.get_blob("client/chunks", digest) == data


@pytest.mark.parametrize(("broken_at", "resumes"), [(MIB, [[0, MIB]]), (MIB + MIB // 2, [[0, 0], [0, MIB, 0]])])
def test_upload_resumes_after_a_broken_connection(registry: Registry, broken_at: int, resumes: list[list[int]]) -> None:
    """Broken between chunks: the session goes on where the registry says it stands.
    Broken inside a chunk: Distribution invalidates the session (at once, or once the
    next chunk shows the damage); a new session starts at 0."""
    data, digest = _blob(3 * MIB)
    client = RegistryClient(registry.host, chunk_size=MIB)
    starts: list[int] = []

    def read_from(start: int) -> Iterator[bytes]:
        starts.append(start)
        if len(starts) == 1:
            yield data[:broken_at]
            raise requests.ConnectionError("connection reset (simulated)")
        yield data[start:]

    client.upload_blob(f"client/resume{broken_at}", digest, len(data), read_from)
    assert starts in resumes
    assert client.get_blob(f"client/resume{broken_at}", digest) == data


def test_download_resumes_a_partial_file_and_restarts_a_bad_one(registry: Registry, tmp_path: Path) -> None:
    data, digest = _blob(2 * MIB)
    client = RegistryClient(registry.host)
    client.upload_blob("client/dl", digest, len(data), lambda start: iter([data[start:]]))
    dest = tmp_path / "blob"
    dest.with_name("blob.part").write_bytes(data[:MIB])  # an interrupted earlier download
    client.download_blob("client/dl", digest, dest, len(data))
    assert dest.read_bytes() == data and not dest.with_name("blob.part").exists()

    bad = tmp_path / "again"
    bad.with_name("again.part").write_bytes(b"\0" * MIB)  # kept bytes that are wrong
    client.download_blob("client/dl", digest, bad, len(data))
    assert bad.read_bytes() == data


def test_download_refuses_content_that_does_not_match(registry: Registry, tmp_path: Path) -> None:
    data, digest = _blob(1000)
    client = RegistryClient(registry.host)
    client.upload_blob("client/bad", digest, len(data), lambda start: iter([data[start:]]))
    wrong = "sha256:" + "0" * 64
    with pytest.raises(DigestMismatchError):
        # ask for the blob's bytes under the right digest but claim another size
        client.download_blob("client/bad", digest, tmp_path / "x", size=999)
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.part").exists()
    assert client.blob_size("client/bad", wrong) is None


def test_cross_repository_mount(registry: Registry) -> None:
    data, digest = _blob(4096)
    client = RegistryClient(registry.host)
    client.upload_blob("client/mount-src", digest, len(data), lambda start: iter([data[start:]]))
    assert client.blob_size("client/mount-dst", digest) is None
    assert client.mount_blob("client/mount-dst", digest, "client/mount-src")
    assert client.blob_size("client/mount-dst", digest) == len(data)
