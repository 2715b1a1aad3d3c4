"""Stock clients through the gateway: skopeo, oras-py, and ecr's own push/pull/login."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.gateway.support import GatewayProcess, password_of

needs_skopeo = pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo not installed")


def run(*cmd: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=300, input=stdin,
                          env={**os.environ, **(env or {})})


def creds(user: str, gw: GatewayProcess) -> str:
    return f"{user}:{password_of(user, gw)}"


@needs_skopeo
def test_skopeo_copy_push_and_pull(gw: GatewayProcess, tiny_layout: Path, tmp_path: Path) -> None:
    dest = f"docker://{gw.host}/alice/skopeo-img:1.0.0"
    pushed = run("skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", creds("alice", gw),
                 f"oci:{tiny_layout}:amd64", dest)
    assert pushed.returncode == 0, pushed.stderr
    # Someone else cannot push into alice's namespace, nor overwrite her release.
    refused = run("skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", creds("eve", gw),
                  f"oci:{tiny_layout}:arm64", dest)
    assert refused.returncode == 1 and "unauthorized" in refused.stderr.lower(), refused.stderr
    repointed = run("skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", creds("alice", gw),
                    f"oci:{tiny_layout}:arm64", dest)
    assert repointed.returncode == 1 and "DENIED" in repointed.stderr.upper()
    # neither changed the release: it is still the amd64 image
    inspected = run("skopeo", "inspect", "--tls-verify=false", "--no-creds", dest)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["Architecture"] == "amd64"
    pulled = run("skopeo", "copy", "--src-tls-verify=false", "--src-creds", creds("eve", gw), dest,
                 f"oci:{tmp_path / 'out'}:x")
    assert pulled.returncode == 0, pulled.stderr
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert len(index["manifests"]) == 1
    anon = run("skopeo", "copy", "--src-tls-verify=false", "--src-no-creds", dest, f"oci:{tmp_path / 'anon'}:x")
    assert anon.returncode == 0, anon.stderr


@needs_skopeo
def test_skopeo_multiarch_index(gw: GatewayProcess, tiny_layout: Path, tmp_path: Path) -> None:
    layout = tmp_path / "multi"
    shutil.copytree(tiny_layout, layout)
    index = json.loads((layout / "index.json").read_text())
    # One index over both architectures, pushed with --all as a plain (non-bundle) index.
    entries = []
    for m in index["manifests"]:
        arch = m["annotations"]["org.opencontainers.image.ref.name"]
        entries.append({**{k: m[k] for k in ("mediaType", "digest", "size")},
                        "platform": {"os": "linux", "architecture": arch}})
    body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": entries}).encode()
    from ecr_oci.digest import sha256_bytes

    digest = sha256_bytes(body)
    (layout / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(body)
    index["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest,
                               "size": len(body), "annotations": {"org.opencontainers.image.ref.name": "multi"}})
    (layout / "index.json").write_text(json.dumps(index))
    pushed = run("skopeo", "copy", "--all", "--dest-tls-verify=false", "--dest-creds", creds("alice", gw),
                 f"oci:{layout}:multi", f"docker://{gw.host}/alice/multi:1.0.0")
    assert pushed.returncode == 0, pushed.stderr
    pulled = run("skopeo", "copy", "--override-arch", "arm64", "--src-tls-verify=false", "--src-no-creds",
                 f"docker://{gw.host}/alice/multi:1.0.0", f"oci:{tmp_path / 'arm'}:x")
    assert pulled.returncode == 0, pulled.stderr
    # the arm64 entry was picked: its config says so, and it is the arm64 image of the layout
    arm = tmp_path / "arm"
    (entry,) = json.loads((arm / "index.json").read_text())["manifests"]
    assert entry["digest"] == next(m["digest"] for m in index["manifests"]
                                   if m["annotations"]["org.opencontainers.image.ref.name"] == "arm64")
    manifest = json.loads((arm / "blobs" / "sha256" / entry["digest"].split(":")[1]).read_text())
    config = json.loads((arm / "blobs" / "sha256" / manifest["config"]["digest"].split(":")[1]).read_text())
    assert (config["os"], config["architecture"]) == ("linux", "arm64")


def test_ecr_login_push_pull(gw: GatewayProcess, bundle_dir: Path, tmp_path: Path) -> None:
    login = run("ecr", "login", gw.host, "-u", "alice", "--password-stdin", stdin=password_of("alice", gw) + "\n")
    assert login.returncode == 0, login.stderr
    pushed = run("ecr", "push", "--quiet", str(bundle_dir), f"{gw.host}/alice/tiny-detector:0.1.0")
    assert pushed.returncode == 0, pushed.stderr
    assert "@sha256:" in pushed.stdout
    # eve pulls the public bundle with her own credentials
    pulled = run("ecr", "pull", "--quiet", "--platform", "linux/arm64", "-o", str(tmp_path / "out"),
                 f"{gw.host}/alice/tiny-detector:0.1.0", env={"ECR_USERNAME": "eve",
                                                              "ECR_PASSWORD": password_of("eve", gw)})
    assert pulled.returncode == 0, pulled.stderr
    assert any((tmp_path / "out").rglob("weights.bin"))
    # the wrong password is refused at login
    bad = run("ecr", "login", gw.host, "-u", "alice", "--password-stdin", stdin="nope\n")
    assert bad.returncode == 7


def test_oras_py_push_pull(gw: GatewayProcess, tmp_path: Path) -> None:
    oras_client = pytest.importorskip("oras.client")
    artifact = tmp_path / "notes.txt"
    artifact.write_text("field notes\n")
    client = oras_client.OrasClient(hostname=gw.host, insecure=True)
    # oras-py keeps its first (pull-only) token (FIELD-NOTES): hand it a pull,push token.
    client.auth.set_token_auth(gw.token("alice", "repository:alice/oras-notes:pull,push")["token"])
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        resp = client.push(target=f"{gw.host}/alice/oras-notes:v1", files=["notes.txt"])
        assert resp.status_code in (200, 201)
        reader = oras_client.OrasClient(hostname=gw.host, insecure=True)
        reader.auth.set_token_auth(gw.token("bob", "repository:alice/oras-notes:pull")["token"])
        files = reader.pull(target=f"{gw.host}/alice/oras-notes:v1", outdir=str(tmp_path / "pulled"))
        assert Path(files[0]).read_text() == "field notes\n"
    finally:
        os.chdir(cwd)


def test_oras_py_login_flow_through_the_gateway(gw: GatewayProcess, tmp_path: Path) -> None:
    """oras-py's own login (basic credentials, then its token flow against the gateway's
    realm) pulls a protected artifact for a user with a grant, and gets nothing for others."""
    oras_client = pytest.importorskip("oras.client")
    repo = "alice/oras-login"
    (tmp_path / "field.txt").write_text("protected notes\n")
    pusher = oras_client.OrasClient(hostname=gw.host, insecure=True)
    # pushing with oras-py's basic credentials fails against a token server (FIELD-NOTES); pulling does not
    pusher.auth.set_token_auth(gw.token("alice", f"repository:{repo}:pull,push")["token"])
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert pusher.push(target=f"{gw.host}/{repo}:v1", files=["field.txt"]).status_code in (200, 201)
    finally:
        os.chdir(cwd)
    gw.admin("alice").set_visibility(repo, "protected")
    gw.admin("alice").grant(repo, "bob", "read")

    bob = oras_client.OrasClient(hostname=gw.host, insecure=True)
    bob.login(username="bob", password=password_of("bob", gw), hostname=gw.host,
              config_path=str(tmp_path / "oras-config.json"))
    files = bob.pull(target=f"{gw.host}/{repo}:v1", outdir=str(tmp_path / "bob"))
    assert [Path(f).read_text() for f in files] == ["protected notes\n"]

    eve = oras_client.OrasClient(hostname=gw.host, insecure=True)
    eve.login(username="eve", password=password_of("eve", gw), hostname=gw.host,
              config_path=str(tmp_path / "oras-config-eve.json"))
    with pytest.raises(Exception) as info:  # oras-py raises its own ValueError/HTTPError mix
        eve.pull(target=f"{gw.host}/{repo}:v1", outdir=str(tmp_path / "eve"))
    assert "401" in str(info.value) or "unauthorized" in str(info.value).lower() or "denied" in str(info.value).lower()
    assert not (tmp_path / "eve").exists() or not any((tmp_path / "eve").iterdir())


def test_cross_repository_mount_checks_the_source(gw: GatewayProcess) -> None:
    from ecr_oci.digest import sha256_bytes

    layer = sha256_bytes(b"alice/priv")  # the layer of alice/priv:1.0.0
    query = f"?mount={layer}&from=alice/priv"
    # eve may push to her own namespace but not read alice/priv: no mount, a plain session
    resp = gw.call("eve", "POST", f"/v2/eve/copy/blobs/uploads/{query}",
                   "repository:eve/copy:pull,push repository:alice/priv:pull")
    assert resp.status_code == 202
    assert gw.call("eve", "HEAD", f"/v2/eve/copy/blobs/{layer}", "repository:eve/copy:pull").status_code == 404
    # alice reads her own repository: mounted
    resp = gw.call("alice", "POST", f"/v2/alice/copy/blobs/uploads/{query}",
                   "repository:alice/copy:pull,push repository:alice/priv:pull")
    assert resp.status_code == 201
    assert resp.headers["Location"].startswith(gw.url + "/v2/alice/copy/blobs/")


def test_blob_reads_ranges_and_repository_scoping(gw: GatewayProcess) -> None:
    from ecr_oci.digest import sha256_bytes

    layer = sha256_bytes(b"alice/pub")  # the layer of alice/pub:1.0.0
    scope = "repository:alice/pub:pull"
    full = gw.call("eve", "GET", f"/v2/alice/pub/blobs/{layer}", scope)
    assert full.status_code == 200 and full.content == b"alice/pub"
    assert full.headers["Docker-Content-Digest"] == layer
    head = gw.call("eve", "HEAD", f"/v2/alice/pub/blobs/{layer}", scope)
    assert head.status_code == 200 and head.headers["Content-Length"] == "9" and head.content == b""
    part = gw.call("eve", "GET", f"/v2/alice/pub/blobs/{layer}", scope, headers={"Range": "bytes=6-"})
    assert part.status_code == 206 and part.content == b"pub"
    # a blob stored for another repository is not readable through this one
    other = gw.call("alice", "GET", f"/v2/alice/prot/blobs/{layer}", "repository:alice/prot:pull")
    assert other.status_code == 404 and other.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
