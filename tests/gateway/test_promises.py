"""Promises of annotations-spec/v1/access-control.md and deploy/README.md that had no test.

Each test works on repositories of its own (named after the test), so the order the
tests run in does not matter.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import jwt
import pytest
import requests

from ecr_oci.errors import RegistryError
from ecr_oci.registry.client import MANIFEST_ACCEPT
from tests.gateway.support import PASSWORDS, GatewayProcess, password_of, push_image


@pytest.fixture
def repo(gw: GatewayProcess) -> str:
    """A fresh repository in alice's namespace holding one image under tag 1.0.0."""
    name = f"alice/promise-{secrets.token_hex(4)}"
    push_image(gw.client("alice"), name, "1.0.0", payload=name.encode())
    return name


def ecr(gw: GatewayProcess, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ECR_USERNAME": user, "ECR_PASSWORD": password_of(user, gw), "ECR_SERVER": gw.host}
    return subprocess.run(["ecr", *args], capture_output=True, text=True, timeout=120, env=env)


def bearer(gw: GatewayProcess, token: str, method: str, path: str, **kwargs: object) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}", "Accept": MANIFEST_ACCEPT, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    return requests.request(method, gw.url + path, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


def test_revoke_takes_effect_on_a_token_already_issued(gw: GatewayProcess, repo: str) -> None:
    gw.admin("alice").set_visibility(repo, "protected")
    gw.admin("alice").grant(repo, "bob", "read")
    token = gw.token("bob", f"repository:{repo}:pull")["token"]
    assert bearer(gw, token, "GET", f"/v2/{repo}/tags/list").json()["tags"] == ["1.0.0"]

    revoked = ecr(gw, "alice", "repo", "revoke", repo, "bob")
    assert revoked.returncode == 0, revoked.stderr
    # the same, unexpired token now sees what a missing repository shows
    after = bearer(gw, token, "GET", f"/v2/{repo}/tags/list")
    ghost = repo + "-ghost"
    missing = bearer(gw, gw.token("bob", f"repository:{ghost}:pull")["token"], "GET", f"/v2/{ghost}/tags/list")
    assert after.status_code == missing.status_code == 401
    assert after.json() == missing.json()
    manifest = bearer(gw, token, "GET", f"/v2/{repo}/manifests/1.0.0")
    assert manifest.status_code == 401
    # and a new token no longer carries the action
    fresh = jwt.decode(gw.token("bob", f"repository:{repo}:pull")["token"], options={"verify_signature": False})
    assert fresh["access"] == []


def test_write_grant_allows_push_but_not_delete_or_manage(gw: GatewayProcess, repo: str) -> None:
    gw.admin("alice").set_visibility(repo, "protected")
    gw.admin("alice").grant(repo, "bob", "write")
    token = gw.token("bob", f"repository:{repo}:pull,push,delete")
    actions = jwt.decode(token["token"], options={"verify_signature": False})["access"][0]["actions"]
    assert actions == ["pull", "push"]
    digest, _ = push_image(gw.client("bob"), repo, "dev", payload=b"pushed by bob")
    assert gw.client("alice").head_manifest(repo, "dev") == digest
    deleted = gw.call("bob", "DELETE", f"/v2/{repo}/manifests/{digest}", f"repository:{repo}:delete")
    assert deleted.status_code == 401  # the token holds no delete: the registry's challenge
    assert gw.client("alice").head_manifest(repo, "dev") == digest
    with pytest.raises(RegistryError):
        gw.admin("bob").grant(repo, "eve", "read")  # managing needs the admin grant
    with pytest.raises(RegistryError):
        gw.admin("bob").set_visibility(repo, "public")
    assert gw.call("eve", "GET", f"/v2/{repo}/tags/list", f"repository:{repo}:pull").status_code == 401


def test_admin_grant_allows_delete_and_managing(gw: GatewayProcess, repo: str) -> None:
    gw.admin("alice").set_visibility(repo, "protected")
    gw.admin("alice").grant(repo, "carol", "admin")
    digest, _ = push_image(gw.client("carol"), repo, "scratch", payload=b"to be deleted")
    deleted = gw.call("carol", "DELETE", f"/v2/{repo}/manifests/{digest}", f"repository:{repo}:delete")
    assert deleted.status_code == 202, deleted.text
    assert gw.client("alice").head_manifest(repo, "scratch") is None
    gw.admin("carol").grant(repo, "eve", "read")  # manage: grants
    assert gw.call("eve", "GET", f"/v2/{repo}/tags/list", f"repository:{repo}:pull").status_code == 200
    gw.admin("carol").set_visibility(repo, "private")  # manage: visibility
    assert gw.call("eve", "GET", f"/v2/{repo}/tags/list", f"repository:{repo}:pull").status_code == 401


def test_basic_credentials_directly_on_v2(gw: GatewayProcess, repo: str) -> None:
    gw.admin("alice").set_visibility(repo, "protected")
    gw.admin("alice").grant(repo, "bob", "read")
    path = f"{gw.url}/v2/{repo}/tags/list"
    ok = requests.get(path, auth=("bob", password_of("bob", gw)), timeout=10)
    assert ok.status_code == 200 and ok.json()["tags"] == ["1.0.0"]
    for auth in (("eve", password_of("eve", gw)), ("bob", "not-his-password")):
        refused = requests.get(path, auth=auth, timeout=10)
        assert refused.status_code == 401, auth
    # the owner pushes with Basic too (a script without a token client)
    started = requests.post(f"{gw.url}/v2/{repo}/blobs/uploads/", auth=("alice", password_of("alice", gw)),
                            timeout=10)
    assert started.status_code == 202, started.text


def test_anonymous_pulls_public_content_without_a_token(gw: GatewayProcess, repo: str) -> None:
    digest = gw.client("alice").head_manifest(repo, "1.0.0")
    plain = requests.get(f"{gw.url}/v2/{repo}/manifests/1.0.0", headers={"Accept": MANIFEST_ACCEPT}, timeout=10)
    assert plain.status_code == 200 and plain.headers["Docker-Content-Digest"] == digest
    layer = json.loads(plain.content)["layers"][0]["digest"]
    assert requests.get(f"{gw.url}/v2/{repo}/blobs/{layer}", timeout=10).content == repo.encode()
    # protected content is not: the standard challenge, pointing at the token endpoint
    gw.admin("alice").set_visibility(repo, "protected")
    hidden = requests.get(f"{gw.url}/v2/{repo}/manifests/1.0.0", headers={"Accept": MANIFEST_ACCEPT}, timeout=10)
    assert hidden.status_code == 401
    challenge = hidden.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and f'realm="{gw.url}/auth/token"' in challenge
    assert f"repository:{repo}:pull" in challenge
    # nor may anonymous push to public content
    gw.admin("alice").set_visibility(repo, "public")
    assert requests.post(f"{gw.url}/v2/{repo}/blobs/uploads/", timeout=10).status_code == 401


def test_token_endpoint_get_and_post_password_grant(gw: GatewayProcess, repo: str) -> None:
    scope = f"repository:{repo}:pull,push"
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    got = requests.get(f"{gw.url}/auth/token", params={"service": "ecr", "scope": scope},
                       auth=("alice", password_of("alice", gw)), timeout=10)
    posted = requests.post(f"{gw.url}/auth/token", timeout=10, data={
        "grant_type": "password", "username": "alice", "password": password_of("alice", gw),
        "service": "ecr", "scope": scope, "client_id": "test"})
    for answer in (got, posted):
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert {"token", "access_token", "expires_in", "issued_at"} <= set(body)
        assert body["token"] == body["access_token"]
        assert body["expires_in"] == 300  # the documented 5-minute lifetime
        issued = dt.datetime.fromisoformat(body["issued_at"].replace("Z", "+00:00"))
        assert before - dt.timedelta(seconds=2) <= issued <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
        claims = jwt.decode(body["token"], options={"verify_signature": False})
        assert claims["sub"] == "alice" and claims["exp"] - claims["iat"] == 300
        assert claims["access"] == [{"type": "repository", "name": repo, "actions": ["pull", "push"]}]
        assert jwt.get_unverified_header(body["token"])["alg"] == "RS256"
    assert posted.json()["scope"] == f"repository:{repo}:pull,push"
    # the token works for what it says
    assert bearer(gw, posted.json()["token"], "GET", f"/v2/{repo}/tags/list").status_code == 200
    wrong = requests.post(f"{gw.url}/auth/token", timeout=10, data={
        "grant_type": "password", "username": "alice", "password": "wrong", "service": "ecr", "scope": scope})
    assert wrong.status_code == 401 and wrong.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_forwarded_headers_from_a_trusted_proxy_and_default_visibility(tmp_path: Path) -> None:
    """deploy/README.md: behind a proxy named with --trusted-proxy, realms and Locations follow its
    X-Forwarded-Proto/Host; repositories created by a first push get --default-visibility."""
    gateway = GatewayProcess(tmp_path / "data", extra_args=[
        "--trusted-proxy", "127.0.0.1", "--default-visibility", "protected"])
    gateway.start()
    try:
        gateway.admin().add_user("alice", PASSWORDS["alice"])
        gateway.admin().add_user("eve", PASSWORDS["eve"])
        forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "ecr.example.org"}
        challenge = requests.get(f"{gateway.url}/v2/", headers=forwarded, timeout=10)
        assert challenge.status_code == 401
        assert 'realm="https://ecr.example.org/auth/token"' in challenge.headers["WWW-Authenticate"]
        token = gateway.token("alice", "repository:alice/fresh:pull,push")["token"]
        started = bearer(gateway, token, "POST", "/v2/alice/fresh/blobs/uploads/", headers=forwarded)
        assert started.status_code == 202
        assert started.headers["Location"].startswith("https://ecr.example.org/v2/alice/fresh/blobs/uploads/")

        push_image(gateway.client("alice"), "alice/fresh", "1.0.0", payload=b"fresh")
        for caller in (None, "eve"):  # protected by default: invisible to them
            tags = gateway.call(caller, "GET", "/v2/alice/fresh/tags/list", "repository:alice/fresh:pull")
            assert tags.status_code == 401, caller
        assert gateway.client("alice").tags("alice/fresh") == ["1.0.0"]
    finally:
        gateway.stop()


def test_public_url_wins_over_forwarded_headers(tmp_path: Path) -> None:
    """A gateway started with --public-url puts that address in realms and Locations, whatever
    a (trusted) proxy forwards."""
    gateway = GatewayProcess(tmp_path / "data")
    # reachable, and not the address the requests below use (127.0.0.1): where realms come from shows
    public = f"http://localhost:{gateway.port}"
    gateway.extra_args = ["--public-url", public, "--trusted-proxy", "127.0.0.1"]
    gateway.start()
    try:
        gateway.admin().add_user("alice", PASSWORDS["alice"])
        forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "elsewhere.example.org"}
        challenge = requests.get(f"{gateway.url}/v2/", timeout=10, headers=forwarded)
        assert f'realm="{public}/auth/token"' in challenge.headers["WWW-Authenticate"]
        token = gateway.token("alice", "repository:alice/fresh:pull,push")["token"]
        started = bearer(gateway, token, "POST", "/v2/alice/fresh/blobs/uploads/", headers=forwarded)
        assert started.headers["Location"].startswith(f"{public}/v2/alice/fresh/blobs/uploads/")
        # and clients following the realm get their tokens there
        digest, _ = push_image(gateway.client("alice"), "alice/fresh", "1.0.0", payload=b"fresh")
        assert gateway.client(None).head_manifest("alice/fresh", "1.0.0") == digest
    finally:
        gateway.stop()


def test_audit_log_records_every_write_and_denial(gw: GatewayProcess, repo: str) -> None:
    """access-control.md §Audit: one JSON line per write and per denial, with ts/event/actor/decision."""
    log = gw.data_dir / "audit.log"
    start = log.stat().st_size
    admin, owner = gw.admin(), gw.admin("alice")
    user = f"audited{secrets.token_hex(3)}"
    admin.add_user(user, "audited-password")
    admin.add_token(user, "ci")
    admin.add_node(f"W{secrets.token_hex(3).upper()}", ["audit"])
    owner.set_visibility(repo, "protected")
    owner.grant(repo, "bob", "write")
    owner.grant(repo, "bob", None)  # revoke
    digest, _ = push_image(gw.client("alice"), repo, "scratch", payload=b"audited layer")
    assert gw.call("alice", "DELETE", f"/v2/{repo}/manifests/{digest}", f"repository:{repo}:delete"
                   ).status_code == 202
    admin.set_stage(repo, "1.0.0", "submitted")
    # denials: a push into someone else's namespace, a bad password, a management call without rights
    eve_push = gw.call("eve", "POST", f"/v2/{repo}/blobs/uploads/", f"repository:{repo}:pull,push")
    assert eve_push.status_code == 401
    assert requests.get(f"{gw.url}/auth/token", params={"service": "ecr"}, auth=("alice", "wrong"),
                        timeout=10).status_code == 401
    with pytest.raises(RegistryError):
        gw.admin("eve").set_visibility(repo, "public")
    with log.open("rb") as fh:
        fh.seek(start)
        entries = [json.loads(line) for line in fh.read().decode().splitlines()]
    assert all({"ts", "event", "actor", "decision"} <= set(e) for e in entries)
    decisions = {e["decision"] for e in entries}
    assert decisions <= {"allow", "deny", "challenge", "error"}, decisions

    def seen(event: str, decision: str, **fields: object) -> bool:
        return any(e["event"] == event and e["decision"] == decision
                   and all(e.get(k) == v for k, v in fields.items()) for e in entries)

    assert seen("user.add", "allow", actor="admin")
    assert seen("token.add", "allow", actor="admin")
    assert seen("node.add", "allow", actor="admin")
    assert seen("repo.visibility", "allow", actor="alice", repository=repo)
    assert sum(e["event"] == "repo.grant" and e["decision"] == "allow" for e in entries) == 2  # grant, revoke
    assert seen("blob.push", "allow", actor="alice", repository=repo)
    assert seen("manifest.put", "allow", actor="alice", repository=repo)
    assert seen("manifest.delete", "allow", actor="alice", repository=repo)
    assert seen("stage.set", "allow", actor="admin", repository=repo)
    assert seen("token", "deny")  # the bad password
    assert any(e["decision"] == "deny" and e["actor"] == "eve" and e.get("repository") == repo
               for e in entries), [e for e in entries if e["decision"] == "deny"]


def test_sqlite_backup_while_running_restores_accounts_access_and_content(tmp_path: Path) -> None:
    """deploy/README.md "Backup and rebuild": `sqlite3 state.db ".backup copy.db"` while the
    gateway runs, plus the registry storage and keys/, is a complete, working restore."""
    (tmp_path / "a").mkdir()
    original = GatewayProcess(tmp_path / "a" / "data")
    original.start()
    try:
        original.admin().add_user("alice", PASSWORDS["alice"])
        original.admin().add_user("bob", PASSWORDS["bob"])
        original.admin().add_user("eve", PASSWORDS["eve"])
        digest, _ = push_image(original.client("alice"), "alice/kept", "1.0.0", payload=b"backed up")
        original.admin("alice").set_visibility("alice/kept", "protected")
        original.admin("alice").grant("alice/kept", "bob", "read")
        backup = tmp_path / "backup"
        backup.mkdir()
        dumped = subprocess.run(["sqlite3", str(original.data_dir / "state.db"), f".backup {backup / 'state.db'}"],
                                capture_output=True, text=True, timeout=60)
        assert dumped.returncode == 0, dumped.stderr
    finally:
        original.stop()
    restored = GatewayProcess(tmp_path / "b" / "data")
    restored.data_dir.mkdir(parents=True)
    (backup / "state.db").rename(restored.data_dir / "state.db")
    shutil.copytree(original.data_dir / "keys", restored.data_dir / "keys")
    shutil.copytree(original.data_dir / "registry" / "storage", restored.data_dir / "registry" / "storage")
    restored.start()
    try:
        assert restored.client("bob").get_manifest("alice/kept", "1.0.0").digest == digest  # grant kept
        for caller in (None, "eve"):  # visibility kept
            tags = restored.call(caller, "GET", "/v2/alice/kept/tags/list", "repository:alice/kept:pull")
            assert tags.status_code == 401, caller
        wrong = requests.get(f"{restored.url}/auth/token", params={"service": "ecr"}, auth=("alice", "wrong"),
                             timeout=10)
        assert wrong.status_code == 401  # accounts kept, with their passwords
        # the release is still a release: re-pointing 1.0.0 is refused after the restore
        other, _ = push_image(restored.client("alice"), "alice/kept", "scratch", payload=b"other")
        moved = restored.call("alice", "PUT", "/v2/alice/kept/manifests/1.0.0", "repository:alice/kept:pull,push",
                              data=restored.client("alice").get_manifest("alice/kept", other).data,
                              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert moved.status_code == 403
    finally:
        restored.stop()
