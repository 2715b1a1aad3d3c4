"""The scheduler feed through a real gateway: content, per-node fit, ETag and cursor polling,
access (admins and the deployment's nodes only; 404 for everyone else), and revocation
refusing a real client's next pull."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from ecr_oci.bundle.remote import fetch_bundle
from ecr_oci.profile.attach import attach_profile
from ecr_oci.profile.result import ProfileResult
from ecr_oci.profile.summary import ProfileSummary
from ecr_oci.registry.reference import Reference
from tests.conftest import BASE_METADATA, write_bundle
from tests.gateway.support import GatewayProcess, password_of
from tests.nodes.conftest import ecr

REPO = "alice/bird"  # 1.0.0 approved for neon by the fixture, 2.0.0 never
ROLLOUT = "alice/rollout"  # approved and revoked by the polling test
EXAMPLES = Path(__file__).resolve().parents[2] / "annotations-spec" / "v1" / "examples"


@pytest.fixture(scope="module")
def neon(gw: GatewayProcess, tmp_path_factory: pytest.TempPathFactory, tiny_layout: Path) -> dict[str, str]:
    """Two protected versions of alice/bird and of alice/rollout; nodes W0A1 (arm64, camera)
    and W0B2 (riscv64, no camera) in neon, W0C3 in other; alice/bird:1.0.0 approved for
    neon (and countersigned). Keys: "1.0.0", "rollout:1.0.0", ..."""
    digests = {}
    for repo in (REPO, ROLLOUT):
        for version in ("1.0.0", "2.0.0"):
            root = write_bundle(tmp_path_factory.mktemp("feed") / "b", tiny_layout,
                                {**BASE_METADATA, "version": version}, weights=(repo + version).encode() * 200)
            pushed = ecr(gw, "alice", "push", "--quiet", str(root), f"{gw.host}/{repo}:{version}")
            assert pushed.returncode == 0, pushed.stderr
            key = version if repo == REPO else f"rollout:{version}"
            digests[key] = pushed.stdout.strip().rsplit("@", 1)[1]
        gw.admin("alice").set_visibility(repo, "protected")
    for node, deployment, facts in (
        ("W0A1", "neon", ["--platform", "linux/arm64", "--accelerator", "nvidia-jetson-xavier-nx", "--memory", "8Gi",
                          "--sensor", "camera", "--sensor", "microphone"]),
        ("W0B2", "neon", ["--platform", "linux/riscv64", "--memory", "128Mi"]),
        ("W0C3", "other", ["--platform", "linux/amd64"]),
    ):
        added = ecr(gw, "admin", "admin", "node", "add", node, "--deployment", deployment, *facts)
        assert added.returncode == 0, added.stderr
        gw.nodes[node] = added.stdout.strip()
    approved = ecr(gw, "admin", "stage", "set", f"{gw.host}/{REPO}:1.0.0", "approved", "--deployment", "neon")
    assert approved.returncode == 0, approved.stderr
    return digests


def get_feed(gw: GatewayProcess, who: str | None, deployment: str = "neon", **kwargs: Any) -> requests.Response:
    auth = (who, password_of(who, gw)) if who else None
    return requests.get(f"{gw.url}/api/v1/deployments/{deployment}/feed", auth=auth, timeout=30, **kwargs)


def test_node_add_with_invalid_facts_creates_nothing(gw: GatewayProcess) -> None:
    bad = ecr(gw, "admin", "admin", "node", "add", "W0Z9", "--deployment", "neon", "--platform", "linux/sparc")
    assert bad.returncode == 3 and "sparc" in bad.stderr and "Traceback" not in bad.stderr
    assert gw.admin().whoami()["name"] == "admin"
    assert all(a != "W0Z9" for a in _accounts(gw))


def _accounts(gw: GatewayProcess) -> list[str]:
    from ecr_oci.gateway.stores.state import SqliteStore

    store = SqliteStore(gw.data_dir / "state.db")
    try:
        return [a.name for a in store.list_accounts()]
    finally:
        store.close()


def test_a_node_updates_its_own_facts_only(gw: GatewayProcess, neon: dict[str, str]) -> None:
    url = f"{gw.url}/api/v1/nodes/W0B2/facts"
    mine = requests.get(url, auth=("W0B2", gw.nodes["W0B2"]), timeout=30)
    assert mine.status_code == 200 and mine.json()["facts"] == {"platform": "linux/riscv64", "memory": "128Mi"}
    # another node, a user, anonymous: the same 404 as a node that does not exist
    for auth in (("W0A1", gw.nodes["W0A1"]), ("eve", password_of("eve", gw))):
        assert requests.get(url, auth=auth, timeout=30).status_code == 404
        assert requests.put(url, json={"platform": "linux/amd64"}, auth=auth, timeout=30).status_code == 404
    ghost = requests.get(f"{gw.url}/api/v1/nodes/W9X9/facts", auth=("eve", password_of("eve", gw)), timeout=30)
    assert ghost.json() == {"error": "no node W9X9"}
    assert requests.get(url, timeout=30).status_code == 401
    # invalid facts: 400 naming the field, nothing changed
    bad = requests.put(url, json={"platform": "linux/riscv64", "memory": "a lot"}, auth=("W0B2", gw.nodes["W0B2"]),
                       timeout=30)
    assert bad.status_code == 400 and "facts: memory" in bad.json()["error"]
    assert requests.get(url, auth=("W0B2", gw.nodes["W0B2"]), timeout=30).json()["facts"]["memory"] == "128Mi"
    # its own update works (and is what the feed then uses)
    new = {"platform": "linux/riscv64", "memory": "512Mi", "sensors": ["bme680"]}
    put = requests.put(url, json=new, auth=("W0B2", gw.nodes["W0B2"]), timeout=30)
    assert put.status_code == 200 and put.json()["facts"] == new
    assert "node.facts" in (gw.data_dir / "audit.log").read_text()


def test_feed_lists_approved_bundle_with_fit_signatures_and_performance(
    gw: GatewayProcess, neon: dict[str, str]
) -> None:
    _attach_w0a1_profile(gw, neon["1.0.0"])
    resp = get_feed(gw, "admin")
    assert resp.status_code == 200, resp.text
    feed = resp.json()
    assert feed["deployment"] == "neon" and feed["signing_key"] == f"{gw.url}/api/v1/signing-key"
    [entry] = [b for b in feed["bundles"] if b["repository"] == REPO]  # 2.0.0 is not approved
    assert entry["digest"] == neon["1.0.0"]
    index = fetch_bundle(gw.client("alice"), Reference(gw.host, REPO, tag="1.0.0"))
    assert entry["repository"] == REPO and entry["tags"] == ["1.0.0"] and entry["version"] == "1.0.0"
    assert {p["platform"]: p["digest"] for p in entry["platforms"]} == {
        "linux/amd64": index.images()[0]["digest"], "linux/arm64": index.images()[1]["digest"]}
    model = index.model_entry()
    assert model is not None
    assert entry["model"]["digest"] == model["digest"] and entry["model"]["path"] == "/app/model"
    assert entry["model"]["files"] == 2
    assert entry["requirements"]["hardware"] == {"camera": True, "memory": "256Mi"}
    assert entry["requirements"]["runtime"]["torch"] == "2.1"
    assert entry["approved"]["by"] == "admin"
    assert entry["signatures"] == {"signed": False, "countersigned": True, "key_url": feed["signing_key"]}
    nodes = {n["node"]: n for n in entry["nodes"]}
    assert set(nodes) == {"W0A1", "W0B2"}  # W0C3 is in another deployment
    # a node sees its own fit only; an admin may narrow to one node
    own = get_feed(gw, "W0A1").json()
    assert [n["node"] for b in own["bundles"] for n in b["nodes"]] == ["W0A1"] * len(own["bundles"])
    assert [n["node"] for n in own["nodes"]] == ["W0A1"] and own["node"] == "W0A1"
    assert get_feed(gw, "admin", params={"node": "W0B2"}).json()["nodes"][0]["node"] == "W0B2"
    assert get_feed(gw, "admin", params={"node": "W0C3"}).status_code == 404
    assert nodes["W0A1"]["can_run"] and nodes["W0A1"]["platform"] == "linux/arm64"
    assert not nodes["W0B2"]["can_run"]
    assert any("platform linux/riscv64" in r for r in nodes["W0B2"]["reasons"])
    assert any("needs a camera" in r for r in nodes["W0B2"]["reasons"])
    perf = nodes["W0A1"]["performance"]
    assert perf["node"] == "W0A1" and perf["latency_seconds"]["p50"] == 0.0421
    assert entry["performance"] == [perf]
    assert nodes["W0B2"]["performance"] is None  # no profile from riscv64 hardware
    # the feed serves the spec for the nodes that can run it
    assert nodes["W0B2"]["spec"] is None
    spec = requests.get(nodes["W0A1"]["spec"], auth=("W0A1", gw.nodes["W0A1"]), timeout=30)
    assert spec.status_code == 200 and spec.headers["content-type"].startswith("application/yaml")
    pod = yaml.safe_load(spec.text)
    assert pod["spec"]["containers"][0]["image"] == f"{gw.host}/{REPO}@{index.images()[1]['digest']}"
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "w0a1"}
    assert pod["spec"]["initContainers"][0]["env"][3] == {"name": "ECR_MODEL_MANIFEST", "value": model["digest"]}
    assert requests.get(nodes["W0A1"]["spec"], auth=("W0C3", gw.nodes["W0C3"]), timeout=30).status_code == 404
    assert requests.get(nodes["W0A1"]["spec"], auth=("W0B2", gw.nodes["W0B2"]), timeout=30).status_code == 404
    assert requests.get(nodes["W0A1"]["spec"], auth=("admin", password_of("admin", gw)), timeout=30).ok
    other = nodes["W0A1"]["spec"].replace(neon["1.0.0"][7:], neon["2.0.0"][7:])  # not approved
    assert other != nodes["W0A1"]["spec"]
    assert requests.get(other, auth=("W0A1", gw.nodes["W0A1"]), timeout=30).status_code == 404
    # the key the feed points at verifies the countersignature a node checks with `ecr pull --require-signature`
    key = requests.get(feed["signing_key"], timeout=30)
    assert key.status_code == 200 and b"PUBLIC KEY" in key.content


def _attach_w0a1_profile(gw: GatewayProcess, bundle: str) -> None:
    document = json.loads((EXAMPLES / "profile-node.json").read_text())
    document["bundle"] = bundle
    summary = ProfileSummary.from_dict(document)
    client = gw.client("alice")
    remote = fetch_bundle(client, Reference(gw.host, REPO, digest=bundle))
    attach_profile(client, remote, ProfileResult(summary, ()))


def test_feed_polling_etag_and_cursor(gw: GatewayProcess, neon: dict[str, str], tmp_path: Path) -> None:
    first = get_feed(gw, "W0A1")
    etag, cursor = first.headers["ETag"], first.json()["cursor"]
    assert etag.startswith('"sha256:')
    same = get_feed(gw, "W0A1", headers={"If-None-Match": etag})
    assert same.status_code == 304 and same.content == b"" and same.headers["ETag"] == etag
    assert get_feed(gw, "W0B2", headers={"If-None-Match": etag}).status_code == 200  # its own view
    quiet = get_feed(gw, "W0A1", params={"since": cursor}).json()
    assert quiet["bundles"] == [] and quiet["removed"] == [] and quiet["cursor"] == cursor
    assert get_feed(gw, "W0A1", params={"since": "-1"}).status_code == 400
    assert get_feed(gw, "W0A1", params={"since": "x' OR 1=1"}).json()["error"].startswith("since:")

    # a version approved: only it comes with ?since, and the full feed changes
    assert ecr(gw, "admin", "stage", "set", f"{gw.host}/{ROLLOUT}:1.0.0", "approved", "--deployment",
               "neon").returncode == 0
    delta = get_feed(gw, "W0A1", params={"since": cursor}).json()
    assert [b["digest"] for b in delta["bundles"]] == [neon["rollout:1.0.0"]] and delta["removed"] == []
    assert int(delta["cursor"]) > int(cursor)
    assert get_feed(gw, "W0A1", headers={"If-None-Match": etag}).status_code == 200
    assert neon["rollout:2.0.0"] not in get_feed(gw, "W0A1").text  # never approved: never listed

    # the node pulls it with a real client; then the approval is revoked
    assert _skopeo_pull(gw, "W0A1", neon["rollout:1.0.0"], tmp_path / "before").returncode == 0
    revoked = ecr(gw, "admin", "stage", "set", f"{gw.host}/{ROLLOUT}:1.0.0", "deprecated", "--deployment", "neon")
    assert revoked.returncode == 0, revoked.stderr
    after = get_feed(gw, "W0A1", params={"since": delta["cursor"]}).json()
    assert after["removed"] == [{"repository": ROLLOUT, "digest": neon["rollout:1.0.0"]}] and after["bundles"] == []
    assert neon["rollout:1.0.0"] not in get_feed(gw, "W0A1").text
    refused = _skopeo_pull(gw, "W0A1", neon["rollout:1.0.0"], tmp_path / "after")
    assert refused.returncode != 0 and "denied" in refused.stderr.lower(), refused.stderr
    # what stays approved is still pulled
    assert _skopeo_pull(gw, "W0A1", neon["1.0.0"], tmp_path / "still", REPO).returncode == 0


def _skopeo_pull(gw: GatewayProcess, node: str, digest: str, out: Path,
                 repository: str = ROLLOUT) -> subprocess.CompletedProcess[str]:
    if not shutil.which("skopeo"):
        pytest.fail("skopeo is not installed: run `make deps`")
    return subprocess.run(
        ["skopeo", "copy", "-q", "--src-tls-verify=false", "--override-arch", "arm64",
         "--src-creds", f"{node}:{gw.nodes[node]}", f"docker://{gw.host}/{repository}@{digest}", f"oci:{out}:x"],
        capture_output=True, text=True, timeout=120,
    )


def test_feed_is_for_admins_and_the_deployments_nodes_only(gw: GatewayProcess, neon: dict[str, str]) -> None:
    assert get_feed(gw, "admin").status_code == 200
    assert get_feed(gw, None).status_code == 401
    absent = get_feed(gw, "admin", "nowhere")
    assert absent.status_code == 404
    for who in ("W0C3", "alice", "eve"):  # another deployment's node, the bundle's owner, a stranger
        denied = get_feed(gw, who)
        assert denied.status_code == 404
        assert denied.json() == {"error": "no deployment neon"}
        assert get_feed(gw, who, "nowhere").json() == {"error": "no deployment nowhere"}
    assert get_feed(gw, "W0C3", "other").status_code == 200
    wrong = requests.get(f"{gw.url}/api/v1/deployments/neon/feed", auth=("W0A1", "not-the-credential"), timeout=30)
    assert wrong.status_code == 401


def test_feed_is_described_in_openapi(gw: GatewayProcess) -> None:
    doc = requests.get(f"{gw.url}/api/v1/openapi.json", timeout=30).json()
    op = doc["paths"]["/api/v1/deployments/{deployment}/feed"]["get"]
    assert {p["name"] for p in op["parameters"]} == {"deployment", "since", "node", "If-None-Match"}
    assert "304" in op["responses"] and "Feed" in doc["components"]["schemas"]
    assert "put" in doc["paths"]["/api/v1/nodes/{node}/facts"]
