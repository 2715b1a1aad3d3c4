"""Fixtures for DOI tests: the fake DataCite API and a pushed bundle."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.doi.fake_datacite import FakeDataCite
from tests.support import Registry
from tests.trust.helpers import ecr


@pytest.fixture
def datacite() -> Iterator[FakeDataCite]:
    fake = FakeDataCite().start()
    yield fake
    fake.stop()


@dataclass
class Pushed:
    registry: Registry
    repo: str
    ref: str
    digest: str


@pytest.fixture
def pushed(registry: Registry, bundle_dir: Path) -> Pushed:
    """The test bundle pushed to a repository of its own (the registry is shared by the session)."""
    repo = f"alice/doi-{secrets.token_hex(6)}"
    ref = f"{registry.host}/{repo}:0.1.0"
    pinned = ecr("push", "--quiet", str(bundle_dir), ref).stdout.strip()
    return Pushed(registry, repo, ref, pinned.rsplit("@", 1)[1])


def doi_env(fake: FakeDataCite, *, password: str | None = None) -> dict[str, str]:
    """Configuration by environment, pointing at the fake API (and no config file)."""
    return {
        "ECR_DOI_ENDPOINT": fake.url,
        "ECR_DOI_PREFIX": fake.prefix,
        "ECR_DOI_USER": fake.user,
        "ECR_DOI_PASSWORD": fake.password if password is None else password,
        "ECR_DOI_CONFIG": "/nonexistent/doi.toml",
    }
