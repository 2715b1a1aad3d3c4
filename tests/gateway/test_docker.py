"""A real Docker engine through the gateway: login, pull of a public and a protected bundle."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import BASE_METADATA, write_bundle
from tests.gateway.support import GatewayProcess, password_of
from tests.support import start_dockerd

pytestmark = pytest.mark.slow
# what dockerd says for a repository that is missing or hidden (the two must look alike)
DOES_NOT_EXIST = "repository does not exist or may require 'docker login'"


def test_docker_login_and_pull_through_the_gateway(gw: GatewayProcess, tiny_layout: Path, tmp_path: Path) -> None:
    env = {**os.environ, "ECR_USERNAME": "alice", "ECR_PASSWORD": password_of("alice", gw)}
    for name in ("docker-pub", "docker-prot"):
        root = write_bundle(tmp_path / name, tiny_layout, dict(BASE_METADATA, name=name))
        pushed = subprocess.run(["ecr", "push", "--quiet", str(root), f"{gw.host}/alice/{name}:0.1.0"],
                                capture_output=True, text=True, env=env, timeout=300)
        assert pushed.returncode == 0, pushed.stderr
    gw.admin("alice").set_visibility("alice/docker-prot", "protected")

    engine = start_dockerd(Path(tempfile.mkdtemp(prefix="ecr-dk-", dir="/tmp")), gw.host)
    if isinstance(engine, str):
        pytest.skip(engine)
    try:
        # anonymous: the public bundle's amd64 image; the protected one does not exist
        engine.docker("pull", f"{gw.host}/alice/docker-pub:0.1.0")
        arch = engine.docker("image", "inspect", "--format", "{{.Architecture}}",
                             f"{gw.host}/alice/docker-pub:0.1.0").stdout.strip()
        assert arch == "amd64"
        denied = engine.try_docker("pull", f"{gw.host}/alice/docker-prot:0.1.0", timeout=120)
        assert denied.returncode == 1 and DOES_NOT_EXIST in denied.stderr, denied.stderr
        engine.docker("login", "-u", "bob", "--password-stdin", gw.host, input_text=password_of("bob", gw))
        denied_bob = engine.try_docker("pull", f"{gw.host}/alice/docker-prot:0.1.0", timeout=120)
        # bob has no grant on this repository: to him it does not exist, like to anonymous
        assert denied_bob.returncode == 1 and DOES_NOT_EXIST in denied_bob.stderr, denied_bob.stderr
        engine.docker("login", "-u", "alice", "--password-stdin", gw.host, input_text=password_of("alice", gw))
        engine.docker("pull", f"{gw.host}/alice/docker-prot:0.1.0")
    finally:
        engine.stop()
        shutil.rmtree(engine.root, ignore_errors=True)
