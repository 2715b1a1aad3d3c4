"""Nodes pull only bundles approved for their deployment; stages are recorded with evidence."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ecr_oci.errors import AuthError, RegistryError
from ecr_oci.registry.auth import Credentials
from ecr_oci.registry.client import RegistryClient
from tests.conftest import BASE_METADATA, write_bundle
from tests.gateway.support import GatewayProcess, password_of


def ecr(gw: GatewayProcess, user: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ECR_USERNAME": user, "ECR_PASSWORD": password_of(user, gw), "ECR_SERVER": gw.host}
    return subprocess.run(["ecr", *args], capture_output=True, text=True, timeout=300, env=env, input=stdin)


@pytest.fixture(scope="module")
def nodes(gw: GatewayProcess) -> None:
    """Two nodes: W0A1 in deployment neon, W0B2 in deployment other."""
    for node, deployment in (("W0A1", "neon"), ("W0B2", "other")):
        added = ecr(gw, "admin", "admin", "node", "add", node, "--deployment", deployment)
        assert added.returncode == 0, added.stderr
        gw.nodes[node] = added.stdout.strip()
        assert gw.nodes[node].startswith("ecr_")


@pytest.fixture
def bundles(gw: GatewayProcess, nodes: None, tmp_path_factory: pytest.TempPathFactory, tiny_layout: Path,
            request: pytest.FixtureRequest) -> tuple[str, dict[str, str]]:
    """A repository of this test's own holding two versions of a protected bundle: (repo, version -> digest).

    Protected, because public content is anyone's to pull, a node's included (as
    anonymous); what a node's identity adds is access to approved protected content.
    Each test gets its own repository, so none depends on another's stages or tags.
    """
    repo = "alice/bird-" + request.node.name.replace("_", "-").lower()
    out = {}
    for version in ("1.0.0", "1.1.0"):
        root = write_bundle(tmp_path_factory.mktemp("stage") / "b", tiny_layout, {**BASE_METADATA, "version": version},
                            weights=version.encode() * 100)
        pushed = ecr(gw, "alice", "push", "--quiet", str(root), f"{gw.host}/{repo}:{version}")
        assert pushed.returncode == 0, pushed.stderr
        out[version] = pushed.stdout.strip().rsplit("@", 1)[1]
    gw.admin("alice").set_visibility(repo, "protected")
    return repo, out


def node_client(gw: GatewayProcess, node: str) -> RegistryClient:
    return RegistryClient(gw.host, credentials=Credentials(node, gw.nodes[node]))


def test_node_pulls_only_approved(gw: GatewayProcess, bundles: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    repo, _ = bundles
    # before approval the node sees nothing at all
    with pytest.raises(AuthError):
        node_client(gw, "W0A1").get_manifest(repo, "1.0.0")
    approved = ecr(gw, "admin", "stage", "set", f"{gw.host}/{repo}:1.0.0", "approved", "--deployment", "neon",
                   "--evidence", "note=field test ok")
    assert approved.returncode == 0, approved.stderr
    # the approved node pulls the whole bundle (index, its platform's image, the model)
    pulled = ecr(gw, "W0A1", "pull", "--quiet", "--platform", "linux/arm64", "-o", str(tmp_path / "out"),
                 f"{gw.host}/{repo}:1.0.0")
    assert pulled.returncode == 0, pulled.stderr
    assert any((tmp_path / "out").rglob("weights.bin"))
    # not the other version
    with pytest.raises(RegistryError) as info:
        node_client(gw, "W0A1").get_manifest(repo, "1.1.0")
    assert info.value.code == "DENIED"
    # a node of another deployment sees nothing; nodes never push
    with pytest.raises(AuthError):
        node_client(gw, "W0B2").get_manifest(repo, "1.0.0")
    token = gw.token("W0A1", f"repository:{repo}:pull,push")
    import jwt

    assert jwt.decode(token["token"], options={"verify_signature": False})["access"][0]["actions"] == ["pull"]
    # deprecation withdraws it
    deprecated = ecr(gw, "admin", "stage", "set", f"{gw.host}/{repo}:1.0.0", "deprecated")
    assert deprecated.returncode == 0, deprecated.stderr
    with pytest.raises(AuthError):
        node_client(gw, "W0A1").get_manifest(repo, "1.0.0")


def test_stage_audit_trail_and_policy(gw: GatewayProcess, bundles: tuple[str, dict[str, str]]) -> None:
    repo, digests = bundles
    assert ecr(gw, "alice", "stage", "set", f"{gw.host}/{repo}:1.1.0", "submitted").returncode == 0
    # owners may not approve their own bundles; to others the protected bundle does not exist
    assert ecr(gw, "alice", "stage", "set", f"{gw.host}/{repo}:1.1.0", "approved", "--deployment", "neon"
               ).returncode == 7
    hidden = ecr(gw, "eve", "stage", "set", f"{gw.host}/{repo}:1.1.0", "submitted")
    assert hidden.returncode == 6 and "not found" in hidden.stderr
    # evidence requirements are policy
    (gw.data_dir / "stage-policy.json").write_text(json.dumps({"evidence": {"tested-vw": ["profile"]}}))
    try:
        missing = ecr(gw, "admin", "stage", "set", f"{gw.host}/{repo}:1.1.0", "tested-vw")
        # the gateway refuses the request as bad input (exit 2, usage) with one line naming the field
        assert missing.returncode == 2, missing.stderr
        assert missing.stderr == "error: evidence.profile: required for stage tested-vw\n"
        bogus = ecr(gw, "admin", "stage", "set", f"{gw.host}/{repo}:1.1.0", "tested-vw", "--evidence",
                    "profile=sha256:" + "0" * 64)
        assert bogus.returncode == 2 and "not a referrer" in bogus.stderr, bogus.stderr
        assert len(bogus.stderr.splitlines()) == 1 and "Traceback" not in bogus.stderr
    finally:
        (gw.data_dir / "stage-policy.json").unlink()
    trail = ecr(gw, "alice", "stage", "list", "--json", f"{gw.host}/{repo}")
    assert trail.returncode == 0, trail.stderr
    events = json.loads(trail.stdout)
    assert [(e["stage"], e["actor"]) for e in events if e["digest"] == digests["1.1.0"]] == [("submitted", "alice")]
    audit = [json.loads(line) for line in (gw.data_dir / "audit.log").read_text().splitlines()]
    assert any(e["event"] == "stage.set" and e["decision"] == "deny" and e["actor"] == "alice" for e in audit)


def test_release_tags_are_immutable(gw: GatewayProcess, bundles: tuple[str, dict[str, str]]) -> None:
    repo, digests = bundles
    alice = gw.client("alice")
    other = alice.get_manifest(repo, "1.1.0")
    with pytest.raises(RegistryError) as info:
        alice.put_manifest(repo, "1.0.0", other.data, other.media_type)
    assert info.value.code == "DENIED"
    with pytest.raises(RegistryError) as info:
        alice.delete_manifest(repo, digests["1.0.0"])
    assert info.value.code == "DENIED"
    assert alice.head_manifest(repo, "1.0.0") == digests["1.0.0"]
    # an admin may, and it is recorded
    admin = gw.client("admin")
    admin.put_manifest(repo, "1.0.0", other.data, other.media_type)
    assert alice.head_manifest(repo, "1.0.0") == digests["1.1.0"]
    audit = [json.loads(line) for line in (gw.data_dir / "audit.log").read_text().splitlines()]
    assert any(e["event"] == "tag.override" and e["tag"] == "1.0.0" and e["actor"] == "admin" for e in audit)
    # non-release tags move freely
    alice.put_manifest(repo, "latest", other.data, other.media_type)
    alice.put_manifest(repo, "latest", alice.get_manifest(repo, digests["1.0.0"]).data, other.media_type)

