"""``ecr serve --registry-url``: fronting a registry the gateway did not start.

Here the registry is a plain Distribution without auth on a private loopback port;
every byte goes through the streaming proxy (no local blob files).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ecr_oci.digest import sha256_bytes
from tests.gateway.support import PASSWORDS, GatewayProcess, push_image
from tests.gateway.test_conformance import PAYLOAD, check_ranges
from tests.support import Registry, start_registry


@pytest.fixture(scope="module")
def fronted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Registry]]:
    registry = start_registry(tmp_path_factory.mktemp("external-registry"))
    gateway = GatewayProcess(tmp_path_factory.mktemp("external") / "data",
                             extra_args=["--registry-url", registry.url])
    gateway.start()
    gateway.admin().add_user("alice", PASSWORDS["alice"])
    gateway.admin().add_user("eve", PASSWORDS["eve"])
    yield gateway, registry
    gateway.stop()
    registry.stop()


def test_streaming_proxy_roundtrip(fronted: tuple[GatewayProcess, Registry], tmp_path: Path) -> None:
    gw, registry = fronted
    alice = gw.client("alice")
    blob = os.urandom(5 << 20)
    (tmp_path / "blob").write_bytes(blob)
    digest = alice.upload_file("alice/ext", tmp_path / "blob")
    assert digest == sha256_bytes(blob)
    manifest_digest, _ = push_image(alice, "alice/ext", "1.0.0", payload=b"external")
    assert registry.tags("alice/ext") == ["1.0.0"]
    eve = gw.client("eve")
    assert eve.get_blob("alice/ext", digest) == blob
    part = gw.call("eve", "GET", f"/v2/alice/ext/blobs/{digest}", "repository:alice/ext:pull",
                   headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == blob[100:200]
    assert eve.get_manifest("alice/ext", "1.0.0").digest == manifest_digest
    gw.admin("alice").set_visibility("alice/ext", "protected")
    assert gw.call("eve", "GET", "/v2/_catalog", "registry:catalog:*").json()["repositories"] == []



def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_memory_stays_flat_while_streaming(fronted: tuple[GatewayProcess, Registry], tmp_path: Path) -> None:
    gw, _ = fronted
    assert gw.proc is not None
    alice = gw.client("alice")
    alice.chunk_size = 256 << 20  # one PATCH carrying the whole blob: the gateway must not hold it
    blob = tmp_path / "big"
    with blob.open("wb") as fh:
        for _ in range(24):
            fh.write(os.urandom(8 << 20))  # 192 MiB
    before = _peak_rss_kib(gw.proc.pid)
    digest = alice.upload_file("alice/big", blob)
    alice.download_blob("alice/big", digest, tmp_path / "back")
    assert (tmp_path / "back").stat().st_size == blob.stat().st_size
    grown_mib = (_peak_rss_kib(gw.proc.pid) - before) / 1024
    assert grown_mib < 48, f"gateway peak memory grew by {grown_mib:.0f} MiB for a 192 MiB blob"


def test_proxied_blob_ranges_follow_rfc9110(fronted: tuple[GatewayProcess, Registry]) -> None:
    """The same answers as from local storage (test_conformance), here from the registry's Go server."""
    gw, _ = fronted
    push_image(gw.client("alice"), "alice/ranged", "1.0.0", payload=PAYLOAD)
    gw.admin("alice").set_visibility("alice/ranged", "private")  # out of the catalog the roundtrip test reads
    assert check_ranges(gw, "alice/ranged", sha256_bytes(PAYLOAD), PAYLOAD) == []


def test_a_registry_dying_mid_stream_is_one_log_line(tmp_path: Path) -> None:
    """The fronted registry killed while a blob streams through the gateway: the client's
    download ends short (it sees a broken transfer, as from the registry itself), the
    gateway says what happened in one line, no traceback, and keeps serving."""
    registry = start_registry(tmp_path / "registry")
    gateway = GatewayProcess(tmp_path / "data", extra_args=["--registry-url", registry.url])
    gateway.start()
    try:
        gateway.admin().add_user("alice", PASSWORDS["alice"])
        alice = gateway.client("alice")
        blob = tmp_path / "blob"
        blob.write_bytes(os.urandom(64 << 20))
        digest = alice.upload_file("alice/dying", blob)
        token = gateway.token("alice", "repository:alice/dying:pull")["token"]
        received = 0
        with requests.get(f"{gateway.url}/v2/alice/dying/blobs/{digest}", stream=True, timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status_code == 200
            chunks = resp.iter_content(1 << 20)
            received += len(next(chunks))
            registry.proc.kill()  # mid-stream: the rest of the 64 MiB is still in the registry
            registry.proc.wait()
            with pytest.raises(requests.exceptions.ChunkedEncodingError):
                for chunk in chunks:
                    received += len(chunk)
        assert received < 64 << 20
        assert requests.get(f"{gateway.url}/healthz", timeout=30).ok
        time.sleep(0.5)  # the gateway's log line is written once the stream has failed
        log = (tmp_path / "gateway.log").read_text()
        assert "Traceback" not in log, log[-3000:]
        broke = [line for line in log.splitlines() if "registry stream broke" in line]
        assert len(broke) == 1 and f"/v2/alice/dying/blobs/{digest}" in broke[0], log[-3000:]
    finally:
        gateway.stop()
        if registry.proc.poll() is None:
            registry.stop()
