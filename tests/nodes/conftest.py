"""A gateway of their own for the node/feed/deploy tests (nodes and deployments stay isolated)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.support import PASSWORDS, GatewayProcess, password_of


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    if not shutil.which("docker-registry") and not Path("/usr/bin/docker-registry").exists():
        pytest.fail("docker-registry is not installed: run `make deps`")
    gateway = GatewayProcess(tmp_path_factory.mktemp("nodes-gateway") / "data")
    gateway.start()
    admin = gateway.admin()
    for user, password in PASSWORDS.items():
        admin.add_user(user, password)
    yield gateway
    gateway.stop()


def ecr(gw: GatewayProcess, user: str | None, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The real CLI as ``user`` against ``gw``."""
    env = {**os.environ, "ECR_SERVER": gw.host}
    env.pop("ECR_USERNAME", None)
    env.pop("ECR_PASSWORD", None)
    if user:
        env |= {"ECR_USERNAME": user, "ECR_PASSWORD": password_of(user, gw)}
    return subprocess.run(["ecr", *args], capture_output=True, text=True, timeout=timeout, env=env)
