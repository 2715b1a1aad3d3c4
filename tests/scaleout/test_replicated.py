"""The replicated setup (conftest.py): object storage, two registries, two gateways, TLS balancer.

Blob reads are redirected by the registry to presigned storage URLs; the gateway
authorizes the read and passes the redirect on, so the bytes bypass it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import requests

from tests.conftest import BASE_METADATA, write_bundle
from tests.gateway.support import password_of, push_image
from tests.scaleout.stack import ScaleOut
from tests.scaleout.support import (
    PODMAN,
    attach_test_profile,
    ecr,
    gateway_bytes_out,
    manifest_at_replica,
    missing_parts,
    profile_digests,
    run,
)
from tests.support import start_dockerd


def _push_bundle(stack: ScaleOut, tiny_layout: Path, tmp_path: Path, name: str, *, weights: bytes) -> str:
    root = write_bundle(tmp_path / name, tiny_layout, dict(BASE_METADATA, name=name), weights=weights)
    pushed = ecr(stack, "alice", "push", "--quiet", str(root), f"{stack.host}/alice/{name}:0.1.0")
    assert pushed.returncode == 0, pushed.stderr
    return pushed.stdout.strip().rsplit("@", 1)[1]


def test_pushed_through_one_path_pulled_through_the_other(stack: ScaleOut, tiny_layout: Path,
                                                          tmp_path: Path) -> None:
    gateway_a, gateway_b = stack.gateways
    root = write_bundle(tmp_path / "paths", tiny_layout, dict(BASE_METADATA, name="paths"))
    env = {"ECR_USERNAME": "alice", "ECR_PASSWORD": password_of("alice", gateway_a), "ECR_PLAIN_HTTP": "true"}
    # in through gateway A's own port (plain http; its token realm is the balancer's), ...
    pushed = run(["ecr", "push", "--quiet", str(root), f"{gateway_a.host}/alice/paths:0.1.0"],
                 env=stack.client_env() | env)
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.strip().rsplit("@", 1)[1]
    # ... both registry replicas answer for it (one bucket) ...
    assert [manifest_at_replica(stack, i, "alice/paths", "0.1.0") for i in (0, 1)] == [digest, digest]
    # ... and out through gateway B's own port and through the TLS balancer
    client_b = stack.client("eve", via=gateway_b)
    assert client_b.get_manifest("alice/paths", "0.1.0").digest == digest
    assert missing_parts(client_b, "alice/paths", digest) == []
    pulled = ecr(stack, "eve", "pull", "--quiet", "--platform", "linux/arm64", "-o", str(tmp_path / "out"),
                 f"{stack.host}/alice/paths:0.1.0")
    assert pulled.returncode == 0, pulled.stderr
    assert next((tmp_path / "out").rglob("weights.bin")).read_bytes() == b"\x01" * 4096


def test_blob_read_is_redirected_to_storage_after_authorization(stack: ScaleOut) -> None:
    _, manifest = push_image(stack.client("alice"), "alice/redirected", "1.0.0", payload=b"r" * 70000)
    layer = json.loads(manifest)["layers"][0]["digest"]
    gateway = stack.gateways[0]
    stack.gateways[0].admin("alice").set_visibility("alice/redirected", "protected")

    def read(user: str | None) -> requests.Response:
        token = gateway.token(user, "repository:alice/redirected:pull")["token"]
        return requests.get(f"{stack.url}/v2/alice/redirected/blobs/{layer}", allow_redirects=False, timeout=30,
                            headers={"Authorization": f"Bearer {token}"}, verify=str(stack.pki.ca))

    allowed = read("alice")
    assert allowed.status_code == 307
    location = allowed.headers["Location"]
    assert location.startswith(stack.ceph.endpoint + "/registry/") and "X-Amz-Signature=" in location
    assert requests.get(location, timeout=30, verify=str(stack.pki.ca)).content == b"r" * 70000
    # no redirect (no presigned URL) for a caller who may not read it: the same answer as a missing repository
    for user in (None, "eve"):
        denied = read(user)
        assert denied.status_code == 401 and "Location" not in denied.headers
    assert stack.client("alice").get_blob("alice/redirected", layer) == b"r" * 70000  # ecr's client follows


def test_clients_follow_the_storage_redirect(stack: ScaleOut, tiny_layout: Path, tmp_path: Path) -> None:
    """skopeo, podman, oras-py and ecr pull a bundle whose blobs come from storage, not from the gateway."""
    weights = os.urandom(3 << 20)
    digest = _push_bundle(stack, tiny_layout, tmp_path, "followed", weights=weights)
    image = f"{stack.host}/alice/followed:0.1.0"
    before = gateway_bytes_out(stack)

    pulled = ecr(stack, "eve", "pull", "--quiet", "--platform", "linux/amd64", "-o", str(tmp_path / "ecr"), image)
    assert pulled.returncode == 0, pulled.stderr
    assert next((tmp_path / "ecr").rglob("weights.bin")).read_bytes() == weights

    cert_dir = stack.pki.cert_dir()
    copied = run(["skopeo", "copy", "--src-cert-dir", str(cert_dir), "--override-arch", "arm64",
                  f"docker://{image}", f"oci:{tmp_path / 'skopeo'}:x"])
    assert copied.returncode == 0, copied.stderr

    runroot = tempfile.mkdtemp(prefix="ecr-so-", dir="/tmp")  # podman wants a short runroot
    try:
        podman = run([*PODMAN, "--root", str(tmp_path / "podman"), "--runroot", runroot, "pull", "--arch", "amd64",
                      "--cert-dir", str(cert_dir), image])
        assert podman.returncode == 0, podman.stderr
    finally:
        shutil.rmtree(runroot, ignore_errors=True)

    oras_client = pytest.importorskip("oras.client")
    bundle = stack.client("eve").get_manifest("alice/followed", digest).json()
    model = next(m for m in bundle["manifests"] if m.get("artifactType", "").endswith("model.v1+json")
                 or "model" in json.dumps(m.get("annotations", {})))
    old_bundle = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = str(stack.pki.ca)  # oras-py's requests session reads it
    try:
        oras = oras_client.OrasClient(hostname=stack.host, tls_verify=True)
        oras.auth.set_token_auth(stack.gateways[1].token("eve", "repository:alice/followed:pull")["token"])
        files = oras.pull(target=f"{stack.host}/alice/followed@{model['digest']}", outdir=str(tmp_path / "oras"))
    finally:
        if old_bundle is None:
            os.environ.pop("REQUESTS_CA_BUNDLE")
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = old_bundle
    assert any(Path(f).read_bytes() == weights for f in files if Path(f).is_file())

    # four pulls of a 3 MiB model through the gateways, yet they sent only manifests
    assert gateway_bytes_out(stack) - before < 1 << 20


def test_profile_attached_when_the_gate_reads_it_from_storage(stack: ScaleOut, tiny_layout: Path,
                                                             tmp_path: Path) -> None:
    """The gate reads a profile's summary blob to check it: it follows the storage redirect."""
    digest = _push_bundle(stack, tiny_layout, tmp_path, "profiled", weights=b"\x02" * 1024)
    client = stack.client("alice")
    profile = attach_test_profile(client, "alice/profiled", "0.1.0")
    assert profile_digests(stack.client("eve", via=stack.gateways[1]), "alice/profiled", digest) == [profile]
    shown = ecr(stack, "eve", "profile", "show", f"{stack.host}/alice/profiled:0.1.0")
    assert shown.returncode == 0, shown.stderr
    assert "W0S1" in shown.stdout


@pytest.mark.slow
def test_docker_pull_follows_the_storage_redirect(stack: ScaleOut, tiny_layout: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _push_bundle(stack, tiny_layout, tmp_path, "docked", weights=b"\x03" * 1024)
    monkeypatch.setenv("SSL_CERT_FILE", str(stack.pki.ca))  # dockerd trusts the test CA (Go reads it)
    engine = start_dockerd(Path(tempfile.mkdtemp(prefix="ecr-dk-", dir="/tmp")), "unused.invalid:1")
    if isinstance(engine, str):
        pytest.skip(engine)
    try:
        engine.docker("pull", f"{stack.host}/alice/docked:0.1.0")
        arch = engine.docker("image", "inspect", "--format", "{{.Architecture}}",
                             f"{stack.host}/alice/docked:0.1.0").stdout.strip()
        assert arch == "amd64"
    finally:
        engine.stop()
        shutil.rmtree(engine.root, ignore_errors=True)


def test_a_node_is_redirected_only_for_what_is_approved_for_it(stack: ScaleOut) -> None:
    """Node approvals decide before the redirect: an unapproved blob gives no presigned URL."""
    alice = stack.client("alice")
    _, approved_manifest = push_image(alice, "alice/fleet", "1.0.0", payload=b"approved weights")
    _, other_manifest = push_image(alice, "alice/fleet", "2.0.0", payload=b"not approved yet")
    admin = stack.gateways[0].admin()
    admin.set_stage("alice/fleet", "1.0.0", "approved", "fleet-edge")
    stack.gateways[0].admin("alice").set_visibility("alice/fleet", "private")
    node_password = admin.add_node("node-r1", ["fleet-edge"])
    token = requests.get(f"{stack.url}/auth/token", auth=("node-r1", node_password), timeout=30,
                         params={"service": "ecr", "scope": "repository:alice/fleet:pull"},
                         verify=str(stack.pki.ca)).json()["token"]

    def read(manifest: bytes) -> requests.Response:
        layer = json.loads(manifest)["layers"][0]["digest"]
        return requests.get(f"{stack.url}/v2/alice/fleet/blobs/{layer}", allow_redirects=False, timeout=30,
                            headers={"Authorization": f"Bearer {token}"}, verify=str(stack.pki.ca))

    allowed = read(approved_manifest)
    assert allowed.status_code == 307
    assert requests.get(allowed.headers["Location"], timeout=30, verify=str(stack.pki.ca)).content == (
        b"approved weights")
    refused = read(other_manifest)
    assert refused.status_code == 403 and "Location" not in refused.headers
    assert refused.json()["errors"][0]["code"] == "DENIED"
