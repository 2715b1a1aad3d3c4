"""Only public bundles get DOIs unless forced: a registry that refuses anonymous pulls."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.doi.conftest import doi_env
from tests.doi.fake_datacite import FakeDataCite
from tests.support import Registry, start_registry
from tests.trust.helpers import ecr


@pytest.fixture(scope="module")
def private_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    if not shutil.which("htpasswd"):
        pytest.skip("htpasswd (Debian apache2-utils) is needed to write the registry's bcrypt password file")
    work = tmp_path_factory.mktemp("private-registry")
    htpasswd = work / "htpasswd"
    subprocess.run(["htpasswd", "-Bbc", str(htpasswd), "alice", "pw"], check=True, capture_output=True)
    reg = start_registry(work, f"auth:\n  htpasswd:\n    realm: ecr-test\n    path: {htpasswd}\n")
    yield reg
    reg.stop()


def test_private_bundle_gets_no_doi_unless_forced(
    private_registry: Registry, bundle_dir: Path, datacite: FakeDataCite
) -> None:
    ref = f"{private_registry.host}/alice/private-doi:0.1.0"
    login = {"ECR_PASSWORD": "pw"}
    ecr("push", "--quiet", "-u", "alice", str(bundle_dir), ref, env=login)
    env = doi_env(datacite) | login

    refused = ecr("doi", "mint", "-u", "alice", ref, env=env, check=False)
    assert refused.returncode == 7, refused.stderr
    assert "not public" in refused.stderr and "--force" in refused.stderr
    assert datacite.requests == []

    doi = ecr("doi", "mint", "-u", "alice", "--force", ref, env=env).stdout.strip()
    assert doi in datacite.dois
    assert ecr("doi", "show", "-u", "alice", ref, env=login).stdout.strip() == doi
