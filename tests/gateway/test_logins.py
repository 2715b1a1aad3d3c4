"""The same credentials work for skopeo login, podman login, ecr login; API tokens too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.gateway.support import GatewayProcess, password_of

PODMAN = ["podman", "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]


def run(cmd: list[str], stdin: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, input=stdin,
                          env={**os.environ, **(env or {})})


@pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo not installed")
def test_skopeo_login_then_inspect(gw: GatewayProcess) -> None:
    bad = run(["skopeo", "login", "--tls-verify=false", "-u", "bob", "--password-stdin", gw.host], stdin="nope\n")
    assert bad.returncode == 1 and "invalid username/password" in bad.stderr, bad.stderr
    assert json.loads((Path(os.environ["REGISTRY_AUTH_FILE"])).read_text())["auths"] == {}  # nothing stored
    ok = run(["skopeo", "login", "--tls-verify=false", "-u", "bob", "--password-stdin", gw.host],
             stdin=password_of("bob", gw) + "\n")
    assert ok.returncode == 0, ok.stderr
    # the stored login is used: bob sees the protected repository he was granted
    inspected = run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{gw.host}/alice/prot:1.0.0"])
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["schemaVersion"] == 2


@pytest.mark.skipif(not shutil.which("podman") or not shutil.which("skopeo"), reason="podman/skopeo not installed")
def test_podman_login_and_pull(gw: GatewayProcess, tmp_path: Path, tiny_layout: Path) -> None:
    image = f"{gw.host}/alice/podman-prot:1.0.0"
    pushed = run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds",
                  f"alice:{password_of('alice', gw)}", f"oci:{tiny_layout}:amd64", f"docker://{image}"])
    assert pushed.returncode == 0, pushed.stderr
    gw.admin("alice").set_visibility("alice/podman-prot", "protected")
    gw.admin("alice").grant("alice/podman-prot", "bob", "read")
    runroot = tempfile.mkdtemp(prefix="ecr-gw-", dir="/tmp")  # podman wants a runroot under 50 chars
    storage = ["--root", str(tmp_path / "root"), "--runroot", runroot]
    try:
        login = run([*PODMAN, *storage, "login", "--tls-verify=false", "-u", "bob", "--password-stdin", gw.host],
                    stdin=password_of("bob", gw) + "\n")
        assert login.returncode == 0, login.stderr
        pulled = run([*PODMAN, *storage, "pull", "--arch", "amd64", "--tls-verify=false", image])
        assert pulled.returncode == 0, pulled.stderr
        relogin = run([*PODMAN, *storage, "login", "--tls-verify=false", "-u", "eve", "--password-stdin", gw.host],
                      stdin=password_of("eve", gw) + "\n")
        assert relogin.returncode == 0, relogin.stderr
        denied = run([*PODMAN, *storage, "pull", "--arch", "amd64", "--tls-verify=false",
                      f"{gw.host}/alice/podman-prot:1.0.0"])
        ghost = run([*PODMAN, *storage, "pull", "--arch", "amd64", "--tls-verify=false",
                     f"{gw.host}/alice/podman-none:1.0.0"])
        # eve is told what a missing repository tells: same exit code, same reason
        assert denied.returncode == ghost.returncode == 125, denied.stderr
        assert "unauthorized" in denied.stderr.lower() or "denied" in denied.stderr.lower(), denied.stderr
        assert denied.stderr.replace("podman-prot", "X").splitlines()[-1] == \
            ghost.stderr.replace("podman-none", "X").splitlines()[-1]
    finally:
        shutil.rmtree(runroot, ignore_errors=True)


def test_api_token_works_as_password(gw: GatewayProcess) -> None:
    created = run(["ecr", "admin", "user", "token", "carol", "--label", "ci"],
                  env={"ECR_USERNAME": "carol", "ECR_PASSWORD": password_of("carol", gw), "ECR_SERVER": gw.host})
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("ecr_")
    login = run(["ecr", "login", gw.host, "-u", "carol", "--password-stdin"], stdin=token + "\n")
    assert login.returncode == 0, login.stderr
    # someone else's token is not carol's password, nor a token under another name
    assert run(["ecr", "login", gw.host, "-u", "eve", "--password-stdin"], stdin=token + "\n").returncode == 7
    # only admins create tokens for others
    other = run(["ecr", "admin", "user", "token", "eve"],
                env={"ECR_USERNAME": "carol", "ECR_PASSWORD": password_of("carol", gw), "ECR_SERVER": gw.host})
    assert other.returncode == 7


def _ecr_tags(gw: GatewayProcess, repo: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("ECR_USERNAME", "ECR_PASSWORD")}
    return subprocess.run(["ecr", "tags", f"{gw.host}/{repo}"], capture_output=True, text=True, timeout=120,
                          env={**clean, **(env or {})})


def test_logins_are_shared_between_ecr_and_the_stock_clients(gw: GatewayProcess) -> None:
    """README: ecr uses podman/skopeo logins (auth.json), and skopeo uses `ecr login`'s
    (docker's config.json). alice/prot is protected; bob has a read grant."""
    auth_json, docker_config = Path(os.environ["REGISTRY_AUTH_FILE"]), Path(os.environ["DOCKER_CONFIG"])
    assert _ecr_tags(gw, "alice/prot").returncode == 7  # no login anywhere: access denied
    skopeo = run(["skopeo", "login", "--tls-verify=false", "-u", "bob", "--password-stdin", gw.host],
                 stdin=password_of("bob", gw) + "\n")
    assert skopeo.returncode == 0, skopeo.stderr
    assert gw.host in json.loads(auth_json.read_text())["auths"]
    via_auth_json = _ecr_tags(gw, "alice/prot")
    assert via_auth_json.returncode == 0, via_auth_json.stderr
    assert "1.0.0" in via_auth_json.stdout.split()

    auth_json.write_text('{"auths": {}}')  # forget it; now the other direction
    login = run(["ecr", "login", gw.host, "-u", "bob", "--password-stdin"], stdin=password_of("bob", gw) + "\n")
    assert login.returncode == 0, login.stderr
    assert gw.host in json.loads((docker_config / "config.json").read_text())["auths"]
    inspected = run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{gw.host}/alice/prot:1.0.0"])
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["schemaVersion"] == 2


def test_ecr_uses_a_docker_credential_helper(gw: GatewayProcess, tmp_path: Path) -> None:
    """config.json `credHelpers` names docker-credential-NAME on PATH; ecr asks it for the host."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    asked = tmp_path / "asked"
    helper = bin_dir / "docker-credential-ecrtest"
    helper.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = get ] || exit 1\nread host\necho "$host" >> {asked}\n'
        f'[ "$host" = "{gw.host}" ] || {{ echo "credentials not found in native keychain"; exit 1; }}\n'
        f'printf \'{{"ServerURL":"%s","Username":"bob","Secret":"{password_of("bob", gw)}"}}\' "$host"\n'
    )
    helper.chmod(0o755)
    config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    config.write_text(json.dumps({"auths": {}, "credHelpers": {gw.host: "ecrtest"}}))
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    listed = _ecr_tags(gw, "alice/prot", env)
    assert listed.returncode == 0, listed.stderr
    assert "1.0.0" in listed.stdout.split()
    assert asked.read_text().split() == [gw.host]
    # a helper that has nothing for the host leaves ecr without credentials: denied, no traceback
    config.write_text(json.dumps({"auths": {}, "credHelpers": {gw.host: "missing-helper"}}))
    denied = _ecr_tags(gw, "alice/prot", env)
    assert denied.returncode == 7 and "Traceback" not in denied.stderr, denied.stderr
