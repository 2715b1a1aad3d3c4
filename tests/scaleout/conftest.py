"""One replicated setup per test session (one Ceph cluster per machine: fixed monitor ports).

Population: users alice and eve (passwords in ``tests.gateway.support.PASSWORDS``).
Every process started here dies with the run (PR_SET_PDEATHSIG, and stopped at teardown).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.pgserver import PostgresServer, start_postgres
from tests.gateway.support import PASSWORDS
from tests.scaleout.ceph import CephCluster, start_ceph
from tests.scaleout.stack import BUCKET, ScaleOut, start_scaleout
from tests.scaleout.tls import LocalCA, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def ceph(tmp_path_factory: pytest.TempPathFactory, pki: LocalCA) -> Iterator[CephCluster]:
    try:
        cluster = start_ceph(tmp_path_factory.mktemp("ceph"), tls=(pki.cert, pki.key), host="localhost")
    except (FileNotFoundError, RuntimeError) as exc:
        pytest.fail(str(exc))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def scaleout_postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server; each setup gets its own database."""
    try:
        server = start_postgres()
    except FileNotFoundError as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


def populated(root: Path, pki: LocalCA, ceph: CephCluster, state_url: str, bucket: str) -> ScaleOut:
    """A started setup with users alice and eve."""
    try:
        setup = start_scaleout(root, pki, ceph, state_url, bucket=bucket)
    except (FileNotFoundError, RuntimeError) as exc:
        pytest.fail(str(exc))
    try:
        admin = setup.gateways[0].admin()
        for user in ("alice", "eve"):
            admin.add_user(user, PASSWORDS[user])
    except BaseException:
        setup.stop()
        raise
    return setup


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, pki: LocalCA, ceph: CephCluster,
          scaleout_postgres: PostgresServer) -> Iterator[ScaleOut]:
    setup = populated(tmp_path_factory.mktemp("scaleout"), pki, ceph, scaleout_postgres.create_database("ecr"),
                      BUCKET)
    yield setup
    setup.stop()
