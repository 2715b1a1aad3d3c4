"""One replicated setup per test session (one Ceph cluster per machine: fixed monitor ports).

Population: users alice and eve (passwords in ``tests.gateway.support.PASSWORDS``).
Every process started here dies with the run (PR_SET_PDEATHSIG, and stopped at teardown).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway.pgserver import start_postgres
from tests.gateway.support import PASSWORDS
from tests.scaleout.ceph import CephCluster, start_ceph
from tests.scaleout.stack import ScaleOut, start_scaleout
from tests.scaleout.tls import TestPKI, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def ceph(tmp_path_factory: pytest.TempPathFactory, pki: TestPKI) -> Iterator[CephCluster]:
    try:
        cluster = start_ceph(tmp_path_factory.mktemp("ceph"), tls=(pki.cert, pki.key), host="localhost")
    except (FileNotFoundError, RuntimeError) as exc:
        pytest.fail(str(exc))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, pki: TestPKI, ceph: CephCluster) -> Iterator[ScaleOut]:
    try:
        postgres = start_postgres()
    except FileNotFoundError as exc:
        pytest.fail(str(exc))
    try:
        setup = start_scaleout(tmp_path_factory.mktemp("scaleout"), pki, ceph, postgres.create_database("ecr"))
    except (FileNotFoundError, RuntimeError) as exc:
        postgres.stop()
        pytest.fail(str(exc))
    try:
        admin = setup.gateways[0].admin()
        for user in ("alice", "eve"):
            admin.add_user(user, PASSWORDS[user])
        yield setup
    finally:
        setup.stop()
        postgres.stop()
