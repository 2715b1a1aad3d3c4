"""The distribution client's transfer mechanics against a real Distribution: chunked and
resumed uploads, resumed and verified downloads, cross-repository mounts."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ecr_oci.errors import DigestMismatchError
from ecr_oci.registry import filesend
from ecr_oci.registry.client import RegistryClient
from tests.conftest import write_bundle
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


@pytest.mark.parametrize("broken_at", [MIB, MIB + MIB // 2])
def test_an_upload_hashed_as_sent_survives_a_broken_connection(registry: Registry, broken_at: int) -> None:
    """The digest of bytes hashed while sent is that of the whole blob, even when a chunk
    broke: the hash goes back to the registry's offset (re-reading, not re-sending)."""
    data, digest = _blob(3 * MIB)
    client = RegistryClient(registry.host, chunk_size=MIB)
    calls = 0

    def read_from(start: int) -> Iterator[bytes]:
        nonlocal calls
        calls += 1
        if calls == 1:
            yield data[:broken_at]
            raise requests.ConnectionError("connection reset (simulated)")
        yield data[start:]

    got, resumed_from = client.upload_hashing(f"client/hashing{broken_at}", len(data), read_from, session_key="k")
    assert (got, resumed_from) == (digest, 0)
    assert client.get_blob(f"client/hashing{broken_at}", digest) == data


def _record_blob_gets(client: RegistryClient) -> list[tuple[str | None, int, int]]:
    """What goes over the wire for each blob GET: (Range header sent, status, body bytes received)."""
    seen: list[tuple[str | None, int, int]] = []

    def hook(resp: requests.Response, *args: object, **kwargs: object) -> None:
        if resp.request.method == "GET" and "/blobs/" in (resp.request.url or ""):
            seen.append((resp.request.headers.get("Range"), resp.status_code, int(resp.headers["Content-Length"])))

    client.session.hooks["response"].append(hook)
    return seen


def _registry_blob_path(registry: Registry, digest: str) -> Path:
    """Where Distribution's filesystem driver keeps a blob's bytes."""
    hex_ = digest.split(":")[1]
    return registry.storage / "docker" / "registry" / "v2" / "blobs" / "sha256" / hex_[:2] / hex_ / "data"


_UPLOAD_WATCHING_IMPORTS = """
import sys
from pathlib import Path
from ecr_oci.oci import file_reader
from ecr_oci.registry.client import RegistryClient

path = Path(sys.argv[2])
size = path.stat().st_size
loaded_while_sending = []
client = RegistryClient(sys.argv[1])
digest, _ = client.upload_hashing("client/lazy", size, file_reader(path, 0, size),
                                  lambda n: loaded_while_sending.append("requests" in sys.modules), session_key="k")
print(digest, any(loaded_while_sending), "requests" in sys.modules)
"""


def test_a_new_file_is_on_the_wire_before_requests_is_loaded(registry: Registry, tmp_path: Path) -> None:
    """Over plain http the session is opened and the file streamed with the standard
    library, so an early push (cli/early.py) sends while requests (~45 ms of imports)
    is not loaded yet; the closing PUT brings it in (which shows the oracle sees it)."""
    model = tmp_path / "model.bin"
    data = os.urandom(24 * MIB)
    model.write_bytes(data)
    out = subprocess.run([sys.executable, "-c", _UPLOAD_WATCHING_IMPORTS, registry.host, str(model)],
                         capture_output=True, text=True, check=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    digest, loaded_while_sending, loaded_at_end = out.stdout.split()
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (loaded_while_sending, loaded_at_end) == ("False", "True")
    assert RegistryClient(registry.host).get_blob("client/lazy", digest) == data


def test_a_proxy_for_the_registry_keeps_requests_in_charge(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sending directly skips proxies, so any proxy setting that applies to the URL
    sends the upload through requests; no_proxy exempts hosts exactly as requests does."""
    for name in [n for n in os.environ if n.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)
    assert filesend.can_send_directly("http://127.0.0.1:5000/v2/a/blobs/uploads/")
    assert not filesend.can_send_directly("https://127.0.0.1:5000/v2/a/blobs/uploads/")
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    assert not filesend.can_send_directly("http://127.0.0.1:5000/v2/a/blobs/uploads/")
    monkeypatch.setenv("no_proxy", "127.0.0.0/8")
    assert filesend.can_send_directly("http://127.0.0.1:5000/v2/a/blobs/uploads/")
    assert not filesend.can_send_directly("http://10.1.2.3:5000/v2/a/blobs/uploads/")


def test_download_resumes_a_partial_file(registry: Registry, tmp_path: Path) -> None:
    data, digest = _blob(2 * MIB + 17)
    client = RegistryClient(registry.host)
    client.upload_blob("client/dl", digest, len(data), lambda start: iter([data[start:]]))
    dest = tmp_path / "blob"
    dest.with_name("blob.part").write_bytes(data[:MIB])  # an interrupted earlier download
    gets = _record_blob_gets(client)
    progress: list[int] = []
    client.download_blob("client/dl", digest, dest, len(data), progress.append)
    assert dest.read_bytes() == data and not dest.with_name("blob.part").exists()
    # one request, for the missing bytes only; the registry answered 206 with exactly those
    assert gets == [(f"bytes={MIB}-", 206, len(data) - MIB)]
    assert sum(progress) == len(data)  # the kept part counts towards progress, once


def test_download_restarts_when_the_kept_part_is_wrong(registry: Registry, tmp_path: Path) -> None:
    data, digest = _blob(2 * MIB)
    client = RegistryClient(registry.host)
    client.upload_blob("client/dl-bad", digest, len(data), lambda start: iter([data[start:]]))
    bad = tmp_path / "again"
    bad.with_name("again.part").write_bytes(b"\0" * MIB)  # kept bytes that are wrong
    gets = _record_blob_gets(client)
    client.download_blob("client/dl-bad", digest, bad, len(data))
    assert bad.read_bytes() == data
    # resumed first (the mismatch shows only at the end), then once more from the start
    assert gets == [(f"bytes={MIB}-", 206, MIB), (None, 200, len(data))]


def test_download_refuses_content_of_the_wrong_size(registry: Registry, tmp_path: Path) -> None:
    data, digest = _blob(1000)
    client = RegistryClient(registry.host)
    client.upload_blob("client/bad", digest, len(data), lambda start: iter([data[start:]]))
    with pytest.raises(DigestMismatchError, match="expected 999 bytes, received 1000"):
        # ask for the blob's bytes under the right digest but claim another size
        client.download_blob("client/bad", digest, tmp_path / "x", size=999)
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.part").exists()
    assert client.blob_size("client/bad", "sha256:" + "0" * 64) is None


def test_download_refuses_same_size_content_that_does_not_match(registry: Registry, tmp_path: Path) -> None:
    """The registry's storage is tampered with: same size, other bytes. Only the hash can tell."""
    data, digest = _blob(1000)
    client = RegistryClient(registry.host)
    client.upload_blob("client/tampered", digest, len(data), lambda start: iter([data[start:]]))
    stored = _registry_blob_path(registry, digest)
    assert stored.read_bytes() == data
    stored.write_bytes(bytes(b ^ 0xFF for b in data))
    try:
        with pytest.raises(DigestMismatchError, match="content does not match"):
            client.download_blob("client/tampered", digest, tmp_path / "x", size=len(data))
        assert not (tmp_path / "x").exists() and not (tmp_path / "x.part").exists()
    finally:
        stored.write_bytes(data)


def test_cross_repository_mount(registry: Registry) -> None:
    data, digest = _blob(4096)
    client = RegistryClient(registry.host)
    client.upload_blob("client/mount-src", digest, len(data), lambda start: iter([data[start:]]))
    assert client.blob_size("client/mount-dst", digest) is None
    assert client.mount_blob("client/mount-dst", digest, "client/mount-src")
    assert client.blob_size("client/mount-dst", digest) == len(data)


def test_ecr_pull_of_tampered_storage_exits_8_and_writes_nothing(registry: Registry, tiny_layout: Path,
                                                                 tmp_path: Path) -> None:
    """The registry's copy of the model was altered on disk (same size): `ecr pull` says
    so with exit code 8 (digest mismatch), one line, and leaves no model file behind."""
    weights = os.urandom(4096)  # a blob no other test shares: the storage is shared by the session
    root = write_bundle(tmp_path / "b", tiny_layout, weights=weights)
    ref = f"{registry.host}/client/tampered-pull:0.1.0"
    pushed = subprocess.run(["ecr", "push", "--quiet", str(root), ref], capture_output=True, text=True, timeout=300)
    assert pushed.returncode == 0, pushed.stderr
    digest = "sha256:" + hashlib.sha256(weights).hexdigest()
    stored = _registry_blob_path(registry, digest)
    stored.write_bytes(bytes(b ^ 0x5A for b in weights))
    out = tmp_path / "out"
    try:
        pulled = subprocess.run(["ecr", "pull", "--quiet", "--model-only", ref, "-o", str(out)],
                                capture_output=True, text=True, timeout=300)
    finally:
        stored.write_bytes(weights)
    assert pulled.returncode == 8, pulled.stderr
    assert pulled.stderr.startswith("error: ") and digest in pulled.stderr
    assert len(pulled.stderr.strip().splitlines()) == 1 and "Traceback" not in pulled.stderr
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert not [p for p in written if p.name.startswith("weights.bin")], written
    # with the storage repaired the same pull succeeds
    again = subprocess.run(["ecr", "pull", "--quiet", "--model-only", ref, "-o", str(out)],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert (out / "model" / "weights.bin").read_bytes() == weights
