"""EZID provider: DataCite XML kernel 4 in ANVL, minted on a shoulder."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from ecr_oci.doi.ezid import EzidProvider, anvl, datacite_xml
from ecr_oci.errors import AuthError
from tests.doi.conftest import Pushed
from tests.doi.fake_ezid import KERNEL4, FakeEzid, parse_anvl
from tests.doi.test_datacite import MINIMAL
from tests.trust.helpers import ecr


@pytest.fixture
def ezid() -> Iterator[FakeEzid]:
    fake = FakeEzid().start()
    yield fake
    fake.stop()


def test_anvl_escapes_and_xml_carries_the_kernel_4_fields() -> None:
    assert parse_anvl(anvl({"a:b": "x%y\nz"}).decode()) == {"a:b": "x%y\nz"}
    root = ET.fromstring(datacite_xml(MINIMAL))
    assert root.find(f"{KERNEL4}identifier").text == "(:tba)"  # type: ignore[union-attr]
    assert root.find(f"{KERNEL4}resourceType").get("resourceTypeGeneral") == "Software"  # type: ignore[union-attr]
    rights = root.find(f"{KERNEL4}rightsList/{KERNEL4}rights")
    assert rights is not None and rights.get("rightsIdentifierScheme") == "SPDX"


def test_provider_mints_on_the_shoulder(ezid: FakeEzid) -> None:
    registration = EzidProvider(ezid.url, ezid.user, ezid.password, shoulder=ezid.shoulder).register(MINIMAL)
    assert registration.doi.startswith("10.5072/FK2") and registration.state == "findable" and registration.test
    [(method, path, pairs)] = ezid.requests
    assert (method, path) == ("POST", "/shoulder/doi:10.5072/FK2")
    assert pairs["_status"] == "public" and pairs["_target"] == MINIMAL["url"]
    with pytest.raises(AuthError):
        EzidProvider(ezid.url, ezid.user, "wrong", shoulder=ezid.shoulder).register(MINIMAL)


def test_cli_mints_through_ezid(pushed: Pushed, ezid: FakeEzid) -> None:
    env = {"ECR_DOI_PROVIDER": "ezid", "ECR_DOI_ENDPOINT": ezid.url, "ECR_DOI_PREFIX": ezid.shoulder,
           "ECR_DOI_USER": ezid.user, "ECR_DOI_PASSWORD": ezid.password, "ECR_DOI_CONFIG": "/nonexistent"}
    doi = ecr("doi", "mint", pushed.ref, env=env).stdout.strip()
    assert doi in ezid.ids
    shown = json.loads(ecr("doi", "show", "--json", pushed.ref).stdout)
    assert shown["doi"] == doi and shown["records"][0]["provider"] == "ezid"
