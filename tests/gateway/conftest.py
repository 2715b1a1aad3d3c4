"""One gateway for the whole gateway suite (session scope keeps it fast).

Population: users alice (owns ``alice/*``), bob (read grant on alice/prot and
alice/priv), eve (nobody special); repositories alice/pub (public), alice/prot
(protected), alice/priv (private), each with tag 1.0.0, approved for deployment
``matrix``; nodes node-ok (in ``matrix``) and node-no (in ``elsewhere``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.pgserver import PostgresServer, start_postgres
from tests.gateway.support import PASSWORDS, GatewayProcess, push_image


@pytest.fixture(scope="session")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    if not Path("/usr/bin/docker-registry").exists() and not shutil.which("docker-registry"):
        pytest.fail("docker-registry is not installed: run `make deps`")
    gateway = GatewayProcess(tmp_path_factory.mktemp("gateway") / "data")
    gateway.start()
    admin = gateway.admin()
    for user, password in PASSWORDS.items():
        admin.add_user(user, password)
    alice = gateway.client("alice")
    for repo in ("alice/pub", "alice/prot", "alice/priv"):
        gateway.images[repo] = push_image(alice, repo, "1.0.0", payload=repo.encode())
    owner = gateway.admin("alice")
    owner.set_visibility("alice/prot", "protected")
    owner.set_visibility("alice/priv", "private")
    owner.grant("alice/prot", "bob", "read")
    owner.grant("alice/priv", "bob", "read")
    for node, deployment in (("node-ok", "matrix"), ("node-no", "elsewhere")):
        gateway.nodes[node] = admin.add_node(node, [deployment])
    for repo in gateway.images:
        admin.set_stage(repo, "1.0.0", "approved", "matrix")
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server (state store tests); each test makes its own database."""
    try:
        server = start_postgres()
    except FileNotFoundError as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()
