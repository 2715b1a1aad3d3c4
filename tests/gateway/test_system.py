"""The gateway acting on its own: countersigning approved bundles (issue: trust) and
collecting node profiles from Prometheus in the background (issue: profiles)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import requests

from ecr_oci.bundle.remote import fetch_bundle
from ecr_oci.profile.attach import list_profiles
from ecr_oci.registry.reference import parse_reference
from tests.conftest import BASE_METADATA, write_bundle
from tests.gateway.support import GatewayProcess, password_of
from tests.profile.support import Exporter, PrometheusServer, free_port


def ecr(gw: GatewayProcess, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ECR_USERNAME": user, "ECR_PASSWORD": password_of(user, gw), "ECR_SERVER": gw.host}
    return subprocess.run(["ecr", *args], capture_output=True, text=True, timeout=300, env=env)


def test_approval_is_countersigned_and_nodes_can_require_it(gw: GatewayProcess, tiny_layout: Path,
                                                           tmp_path: Path) -> None:
    root = write_bundle(tmp_path / "b", tiny_layout, dict(BASE_METADATA, name="countersigned"))
    ref = f"{gw.host}/alice/countersigned:0.1.0"
    pushed = ecr(gw, "alice", "push", "--quiet", str(root), ref)
    assert pushed.returncode == 0, pushed.stderr
    gw.admin("alice").set_visibility("alice/countersigned", "protected")
    key = tmp_path / "ecr.pub"
    key.write_bytes(requests.get(f"{gw.url}/api/v1/signing-key", timeout=10).content)
    assert key.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")

    # before approval: nothing for the node to verify (or even see)
    before = ecr(gw, "node-ok", "pull", "--require-signature", str(key), ref, "-o", str(tmp_path / "x"))
    # exit 7 (access denied), exactly as for a repository that does not exist
    ghost = ecr(gw, "node-ok", "pull", "--require-signature", str(key), ref.replace("countersigned", "nothing-here"),
                "-o", str(tmp_path / "y"))
    assert before.returncode == ghost.returncode == 7, before.stderr
    # word for word the same apart from the name asked for, and saying both possibilities
    assert before.stderr.replace("countersigned", "X") == ghost.stderr.replace("nothing-here", "X")
    assert "not found, or user 'node-ok' has no access to it" in before.stderr
    assert not (tmp_path / "x").exists()
    approved = ecr(gw, "admin", "stage", "set", ref, "approved", "--deployment", "matrix")
    assert approved.returncode == 0, approved.stderr

    verified = ecr(gw, "node-ok", "verify", ref, "--key", str(key))
    assert verified.returncode == 0, verified.stderr
    pulled = ecr(gw, "node-ok", "pull", "--quiet", "--model-only", "--require-signature", str(key), ref,
                 "-o", str(tmp_path / "out"))
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "out" / "model" / "weights.bin").exists()
    # a node of another deployment still sees nothing
    other = ecr(gw, "node-no", "verify", ref, "--key", str(key))
    shown = other.stderr.replace(ref, "").replace(f"{gw.host}/alice/countersigned", "")  # the name it asked for
    assert other.returncode == 7 and "countersigned" not in shown, other.stderr


def test_collector_in_serve_attaches_node_profiles(tmp_path: Path, tiny_layout: Path) -> None:
    prom_port = free_port()
    gateway = GatewayProcess(tmp_path / "data", extra_args=[
        "--collect-prometheus", f"http://127.0.0.1:{prom_port}", "--collect-interval", "3s"])
    gateway.start()
    exporter = None
    prometheus = None
    try:
        root = write_bundle(tmp_path / "b", tiny_layout, dict(BASE_METADATA, name="collected"))
        ref = f"{gateway.host}/admin/collected:0.1.0"
        pushed = ecr(gateway, "admin", "push", "--quiet", str(root), ref)
        assert pushed.returncode == 0, pushed.stderr
        digest = pushed.stdout.strip().split("@")[1]
        # a cycle runs while Prometheus is down: it is logged, and the gateway goes on serving
        log = tmp_path / "gateway.log"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and "retrying next cycle" not in log.read_text():
            time.sleep(0.2)
        failed = [line for line in log.read_text().splitlines() if "retrying next cycle" in line]
        assert failed, f"no collector cycle logged within 15 s:\n{log.read_text()[-2000:]}"
        assert f"127.0.0.1:{prom_port}" in failed[0] and "Traceback" not in log.read_text()
        assert gateway.proc is not None and gateway.proc.poll() is None
        assert requests.get(f"{gateway.url}/healthz", timeout=10).status_code == 200

        exporter = Exporter(bundle=digest)
        exporter.start_workload()
        target = exporter.serve("prometheus").split("/")[2]
        (tmp_path / "prom").mkdir()
        prometheus = PrometheusServer(tmp_path / "prom", [target], node="W0C3", port=prom_port)
        client = gateway.client("admin")
        bundle = fetch_bundle(client, parse_reference(ref))
        deadline = time.monotonic() + 40
        profiles = []
        while time.monotonic() < deadline and len(profiles) < 2:
            time.sleep(1)
            profiles = list_profiles(client, bundle)
        assert len(profiles) >= 2, "the collector attached no profiles"
        assert {p.summary.node for p in profiles} == {"W0C3"}
        windows = [p.summary.window for p in profiles]
        assert len(windows) == len(set(windows)), "a window was attached twice"
        # served by the gateway's OCI 1.1 referrers API (not the tag fallback)
        via_api = client.request("GET", f"/v2/admin/collected/referrers/{digest}",
                                 scopes=("repository:admin/collected:pull",))
        assert {m["digest"] for m in via_api.json()["manifests"]} >= {p.digest for p in profiles}
    finally:
        if prometheus:
            prometheus.stop()
        if exporter:
            exporter.stop()
        gateway.stop()


def test_catalog_api_shows_the_doi(gw: GatewayProcess, tiny_layout: Path, tmp_path: Path) -> None:
    from ecr_oci.digest import sha256_bytes
    from ecr_oci.doi.record import DoiRecord, attach_record, metadata_bytes

    root = write_bundle(tmp_path / "b", tiny_layout, dict(BASE_METADATA, name="with-doi"))
    ref = f"{gw.host}/alice/with-doi:0.1.0"
    pushed = ecr(gw, "alice", "push", "--quiet", str(root), ref)
    assert pushed.returncode == 0, pushed.stderr
    client = gw.client("alice")
    bundle = fetch_bundle(client, parse_reference(ref))
    attributes = {"doi": "10.5072/ecr.with-doi", "titles": [{"title": "with-doi"}]}
    record = DoiRecord(doi="10.5072/ecr.with-doi", url=f"http://{gw.host}/alice/with-doi", provider="datacite",
                       registered="2026-11-25T00:00:00Z", bundle=bundle.digest,
                       metadata_digest=sha256_bytes(metadata_bytes(attributes)), state="findable", test=True)
    attach_record(client, bundle, record, attributes)
    detail = requests.get(f"{gw.url}/api/v1/bundles/alice/with-doi", timeout=10).json()
    [version] = detail["versions"]
    assert version["doi"] == "10.5072/ecr.with-doi"
    found = requests.get(f"{gw.url}/api/v1/bundles", params={"name": "with-doi"}, timeout=10).json()
    assert found["bundles"][0]["versions"][0]["doi"] == "10.5072/ecr.with-doi"


def test_tags_list_pagination(gw: GatewayProcess) -> None:
    """distribution-spec 1.1 pagination, which Distribution 2.8 behind the gateway ignores."""
    from tests.gateway.support import push_image

    client = gw.client("alice")
    names = ["a1", "b2", "c3", "d4", "e5"]
    for tag in reversed(names):
        push_image(client, "alice/paged", tag, payload=tag.encode())
    scope = "repository:alice/paged:pull"
    first = gw.call("alice", "GET", "/v2/alice/paged/tags/list?n=2", scope)
    assert first.json()["tags"] == ["a1", "b2"]
    assert first.headers["Link"] == '</v2/alice/paged/tags/list?n=2&last=b2>; rel="next"'
    second = gw.call("alice", "GET", "/v2/alice/paged/tags/list?n=2&last=b2", scope)
    assert second.json()["tags"] == ["c3", "d4"]
    last = gw.call("alice", "GET", "/v2/alice/paged/tags/list?n=2&last=d4", scope)
    assert last.json()["tags"] == ["e5"] and "Link" not in last.headers
    assert gw.call("alice", "GET", "/v2/alice/paged/tags/list?n=0", scope).json()["tags"] == []
    assert client.tags("alice/paged") == names  # n=1000: one page, in lexical order


def test_profiles_of_a_protected_bundle_are_protected(gw: GatewayProcess, tiny_layout: Path, tmp_path: Path) -> None:
    root = write_bundle(tmp_path / "b", tiny_layout, dict(BASE_METADATA, name="secret-owl"))
    ref = f"{gw.host}/alice/secret-owl:0.1.0"
    pushed = ecr(gw, "alice", "push", "--quiet", str(root), ref)
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.strip().split("@")[1]
    gw.admin("alice").set_visibility("alice/secret-owl", "protected")
    gw.admin("alice").grant("alice/secret-owl", "bob", "read")
    exporter = Exporter(bundle=digest)
    try:
        exporter.start_workload()
        endpoint = exporter.serve("direct")
        attached = ecr(gw, "alice", "profile", "attach", ref, "--scrape", endpoint, "--duration", "1s",
                       "--interval", "0.5s", "--node", "vw-owl", "--stage", "vw")
        assert attached.returncode == 0, attached.stderr
    finally:
        exporter.stop()
    assert "vw-owl" in ecr(gw, "bob", "profile", "list", ref).stdout  # granted: sees the profile
    for outsider in ("eve", None):
        env = {k: v for k, v in os.environ.items() if k not in ("ECR_USERNAME", "ECR_PASSWORD")}
        if outsider:
            env |= {"ECR_USERNAME": outsider, "ECR_PASSWORD": password_of(outsider, gw)}
        denied = subprocess.run(["ecr", "profile", "list", ref], capture_output=True, text=True, env=env, timeout=60)
        ghost = subprocess.run(["ecr", "profile", "list", ref.replace("secret-owl", "no-such-owl")],
                               capture_output=True, text=True, env=env, timeout=60)
        # exit 7, word for word what a repository that does not exist gives
        assert denied.returncode == ghost.returncode == 7, (outsider, denied.stderr)
        assert denied.stderr.replace("secret-owl", "X") == ghost.stderr.replace("no-such-owl", "X"), (
            denied.stderr, ghost.stderr)  # the same apart from the name asked for
        assert "vw-owl" not in denied.stdout + denied.stderr
        referrers = requests.get(f"{gw.url}/v2/alice/secret-owl/referrers/{digest}", timeout=10)
        assert referrers.status_code == 401 and "secret-owl" not in referrers.text


def test_out_of_order_chunk_is_refused_with_416(gw: GatewayProcess) -> None:
    """distribution-spec 1.1: a PATCH whose Content-Range does not continue the upload gets
    416 (Distribution 2.8 alone accepts it); in-order chunks go on."""
    scope = "repository:alice/chunks:pull,push"
    started = gw.call("alice", "POST", "/v2/alice/chunks/blobs/uploads/", scope)
    assert started.status_code == 202
    location = started.headers["Location"]
    path = location if location.startswith("/") else "/" + location.split("/", 3)[3]
    first = gw.call("alice", "PATCH", path, scope, data=b"a" * 30,
                    headers={"Content-Range": "0-29", "Content-Type": "application/octet-stream"})
    assert first.status_code == 202, first.text
    path = first.headers["Location"]
    path = path if path.startswith("/") else "/" + path.split("/", 3)[3]
    skipped = gw.call("alice", "PATCH", path, scope, data=b"b" * 30,
                      headers={"Content-Range": "40-69", "Content-Type": "application/octet-stream"})
    assert skipped.status_code == 416 and skipped.headers["Range"] == "0-29"
    assert skipped.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
    second = gw.call("alice", "PATCH", path, scope, data=b"b" * 30,
                     headers={"Content-Range": "30-59", "Content-Type": "application/octet-stream"})
    assert second.status_code == 202 and second.headers["Range"] == "0-59"


def test_a_profile_moves_the_bundle_to_tested_vw_when_policy_says_so(gw: GatewayProcess, tiny_layout: Path,
                                                                     tmp_path: Path) -> None:
    import json

    root = write_bundle(tmp_path / "b", tiny_layout, dict(BASE_METADATA, name="auto-staged"))
    ref = f"{gw.host}/alice/auto-staged:0.1.0"
    pushed = ecr(gw, "alice", "push", "--quiet", str(root), ref)
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.strip().split("@")[1]
    policy = gw.data_dir / "stage-policy.json"
    policy.write_text(json.dumps({"profile_triggers": {"vw": "tested-vw", "node": "tested-node"}}))
    exporter = Exporter(bundle=digest)
    try:
        exporter.start_workload()
        endpoint = exporter.serve("direct")
        for stage in ("vw", "vw", "node"):
            attached = ecr(gw, "alice", "profile", "attach", ref, "--scrape", endpoint, "--duration", "1s",
                           "--interval", "0.5s", "--node", f"{stage}-box", "--stage", stage, "--json")
            assert attached.returncode == 0, attached.stderr
    finally:
        exporter.stop()
        policy.unlink()
    stages = requests.get(f"{gw.url}/api/v1/repositories/alice/auto-staged/stages",
                          auth=("alice", password_of("alice", gw)), timeout=10).json()
    events = [e for e in stages["events"] if e["digest"] == digest]
    # one move per stage reached (the second vw profile changes nothing), each with its profile as evidence
    assert [e["stage"] for e in events] == ["tested-vw", "tested-node"]
    assert all(e["evidence"]["profile"].startswith("sha256:") and e["actor"].endswith("(profile)") for e in events)


def test_a_node_profile_moves_an_approved_bundle_to_tested_node_and_keeps_the_approval(
        gw: GatewayProcess, tiny_layout: Path, tmp_path: Path) -> None:
    """Lifecycle and approvals are two axes: a node can only run approved content, so the
    node profile that moves a bundle to tested-node arrives after the approval and must
    neither be ignored nor take the approval away."""
    import json

    root = write_bundle(tmp_path / "b", tiny_layout, dict(BASE_METADATA, name="node-staged"))
    ref = f"{gw.host}/alice/node-staged:0.1.0"
    pushed = ecr(gw, "alice", "push", "--quiet", str(root), ref)
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.strip().split("@")[1]
    gw.admin("alice").set_visibility("alice/node-staged", "protected")
    gw.admin().set_stage("alice/node-staged", "0.1.0", "approved", "matrix")
    policy = gw.data_dir / "stage-policy.json"
    policy.write_text(json.dumps({"profile_triggers": {"node": "tested-node"}}))
    exporter = Exporter(bundle=digest)
    try:
        exporter.start_workload()
        endpoint = exporter.serve("direct")
        attached = ecr(gw, "alice", "profile", "attach", ref, "--scrape", endpoint, "--duration", "1s",
                       "--interval", "0.5s", "--node", "W0A1", "--stage", "node", "--json")
        assert attached.returncode == 0, attached.stderr
    finally:
        exporter.stop()
        policy.unlink()
    events = requests.get(f"{gw.url}/api/v1/repositories/alice/node-staged/stages",
                          auth=("alice", password_of("alice", gw)), timeout=10).json()["events"]
    assert [(e["stage"], e["deployment"]) for e in events if e["digest"] == digest] == [
        ("approved", "matrix"), ("tested-node", "")]
    detail = requests.get(f"{gw.url}/api/v1/bundles/alice/node-staged", auth=("alice", password_of("alice", gw)),
                          timeout=10).json()
    assert detail["versions"][0]["stages"] == {"matrix": "approved", "": "tested-node"}
    # the deployment's node still pulls it
    scope = "repository:alice/node-staged:pull"
    assert gw.call("node-ok", "GET", "/v2/alice/node-staged/manifests/0.1.0", scope).status_code == 200
    # deprecation, and only it, still ends every approval
    gw.admin().set_stage("alice/node-staged", "0.1.0", "deprecated")
    assert gw.call("node-ok", "GET", "/v2/alice/node-staged/manifests/0.1.0", scope).status_code == 401
