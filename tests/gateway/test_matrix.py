"""The authorization matrix, through real HTTP (token flow) and partly through skopeo.

Policy table (annotations-spec/v1/access-control.md):

    caller \\ visibility   public          protected        private
    anonymous             pull            -                -
    owner (alice)         pull push del   pull push del    pull push del
    other user (eve)      pull            -                -
    granted read (bob)    pull            pull             -   (private ignores grants)
    approved node         pull            pull             pull  (approved content only)
    unapproved node       -               -                -
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from ecr_oci import mediatypes as mt
from tests.gateway.support import GatewayProcess, password_of

CALLERS = (None, "alice", "eve", "bob", "node-ok", "node-no")
REPOS = ("pub", "prot", "priv")
PULL = {
    (None, "pub"), ("alice", "pub"), ("alice", "prot"), ("alice", "priv"),
    ("eve", "pub"), ("bob", "pub"), ("bob", "prot"),
    ("node-ok", "pub"), ("node-ok", "prot"), ("node-ok", "priv"),
}
PUSH = {("alice", r) for r in REPOS}


def cells() -> list[tuple[str | None, str]]:
    return [(c, r) for c in CALLERS for r in REPOS]


@pytest.mark.parametrize(("caller", "repo"), cells())
def test_pull_tags_referrers(gw: GatewayProcess, caller: str | None, repo: str) -> None:
    name = f"alice/{repo}"
    digest, _ = gw.images[name]
    scope = f"repository:{name}:pull"
    allowed = (caller, repo) in PULL
    manifest = gw.call(caller, "GET", f"/v2/{name}/manifests/1.0.0", scope)
    tags = gw.call(caller, "GET", f"/v2/{name}/tags/list", scope)
    refs = gw.call(caller, "GET", f"/v2/{name}/referrers/{digest}", scope)
    head = gw.call(caller, "HEAD", f"/v2/{name}/manifests/1.0.0", scope)
    if allowed:
        assert manifest.status_code == 200 and manifest.headers["Docker-Content-Digest"] == digest
        # the approval (conftest) was countersigned by the gateway: cosign's .sig tag, the
        # referrers fallback tag, and the signature as the one referrer
        hex_ = digest.split(":")[1]
        listed = set(tags.json()["tags"])
        # (other tests add tags to these repositories, in any order: check what must and must not be there)
        if caller and caller.startswith("node"):
            # a node sees tags of its approved content only: not the referrers fallback index
            # of the approved digest, nor tags of other pushes (test_delete's "scratch")
            assert {"1.0.0", f"sha256-{hex_}.sig"} <= listed, listed
            assert f"sha256-{hex_}" not in listed and "scratch" not in listed, listed
        else:
            assert {"1.0.0", f"sha256-{hex_}", f"sha256-{hex_}.sig"} <= listed, listed
        assert refs.status_code == 200
        assert [m["artifactType"] for m in refs.json()["manifests"]] == [mt.COSIGN_ARTIFACT_TYPE]
        assert head.status_code == 200
        return
    # A denied read looks exactly like a read of a repository that does not exist.
    ghost = name.replace(repo, "q" * len(repo))
    for resp, path in ((manifest, f"/v2/{ghost}/manifests/1.0.0"), (tags, f"/v2/{ghost}/tags/list"),
                       (refs, f"/v2/{ghost}/referrers/{digest}")):
        twin = gw.call(caller, "GET", path, f"repository:{ghost}:pull")
        assert resp.status_code == twin.status_code == 401
        assert resp.content == twin.content
        assert resp.headers["WWW-Authenticate"].replace(name, ghost) == twin.headers["WWW-Authenticate"]
        assert repo not in resp.text
    assert head.status_code == 401


@pytest.mark.parametrize(("caller", "repo"), cells())
def test_push(gw: GatewayProcess, caller: str | None, repo: str) -> None:
    name = f"alice/{repo}"
    _, manifest = gw.images[name]
    tag = f"by-{caller or 'anon'}"
    resp = gw.call(caller, "PUT", f"/v2/{name}/manifests/{tag}", f"repository:{name}:pull,push",
                   data=manifest, headers={"Content-Type": mt.OCI_MANIFEST})
    if (caller, repo) in PUSH:
        assert resp.status_code == 201, resp.text
    else:
        assert resp.status_code == 401
        # nothing stored: the owner does not see the tag
        tags = gw.call("alice", "GET", f"/v2/{name}/tags/list", f"repository:{name}:pull").json()["tags"]
        assert tag not in tags
    upload = gw.call(caller, "POST", f"/v2/{name}/blobs/uploads/", f"repository:{name}:pull,push")
    assert (upload.status_code == 202) == ((caller, repo) in PUSH)


@pytest.mark.parametrize(("caller", "repo"), cells())
def test_delete(gw: GatewayProcess, caller: str | None, repo: str) -> None:
    from tests.gateway.support import push_image

    name = f"alice/{repo}"
    digest, _ = push_image(gw.client("alice"), name, "scratch", payload=f"scratch {caller} {repo}".encode())
    resp = gw.call(caller, "DELETE", f"/v2/{name}/manifests/{digest}", f"repository:{name}:delete")
    if caller == "alice":
        assert resp.status_code == 202
    else:
        assert resp.status_code == 401
        assert gw.call("alice", "HEAD", f"/v2/{name}/manifests/{digest}", f"repository:{name}:pull").status_code == 200


@pytest.mark.parametrize("caller", CALLERS)
def test_catalog(gw: GatewayProcess, caller: str | None) -> None:
    repos = gw.call(caller, "GET", "/v2/_catalog", "registry:catalog:*").json()["repositories"]
    expected = {f"alice/{r}" for r in REPOS if (caller, r) in PULL}
    assert {r for r in repos if r in {f"alice/{x}" for x in REPOS}} == expected


def test_token_grants_the_allowed_subset(gw: GatewayProcess) -> None:
    import jwt

    for caller, repo, want in (("eve", "pub", ["pull"]), ("bob", "prot", ["pull"]), ("alice", "prot",
                               ["pull", "push"]), ("eve", "prot", None), (None, "priv", None)):
        token = gw.token(caller, f"repository:alice/{repo}:pull,push")["token"]
        access = jwt.decode(token, options={"verify_signature": False})["access"]
        assert access == ([{"type": "repository", "name": f"alice/{repo}", "actions": want}] if want else [])
    # oras >= 1.2 asks for pull on a repository before it exists: the owner gets it.
    token = gw.token("alice", "repository:alice/not-yet:pull")["token"]
    assert jwt.decode(token, options={"verify_signature": False})["access"][0]["actions"] == ["pull"]


def test_bad_password_refused(gw: GatewayProcess) -> None:
    import requests

    resp = requests.get(f"{gw.url}/auth/token", params={"scope": "repository:alice/pub:pull"},
                        auth=("alice", "wrong"), timeout=30)
    assert resp.status_code == 401


@pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo not installed")
@pytest.mark.parametrize(("caller", "repo"), cells())
def test_skopeo_inspect(gw: GatewayProcess, caller: str | None, repo: str) -> None:
    creds = ["--creds", f"{caller}:{password_of(caller, gw)}"] if caller else ["--no-creds"]
    proc = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", *creds, f"docker://{gw.host}/alice/{repo}:1.0.0"],
        capture_output=True, text=True, timeout=60,
    )
    assert (proc.returncode == 0) == ((caller, repo) in PULL), proc.stderr
