"""The DataCite provider and metadata helpers in isolation, and the fake API's own rules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from ecr_oci.doi.datacite import DataCiteProvider
from ecr_oci.doi.errors import DoiProviderError
from ecr_oci.doi.metadata import creators_from, publication_year, rights_from, validate_attributes
from ecr_oci.errors import AuthError, ValidationError
from tests.doi.fake_datacite import JSON_API, FakeDataCite

MINIMAL: dict[str, Any] = {
    "prefix": "10.5072",
    "event": "publish",
    "creators": [{"name": "Doe, Jane", "nameType": "Personal", "givenName": "Jane", "familyName": "Doe"}],
    "titles": [{"title": "bird-detector"}],
    "publisher": "Edge Code Repository",
    "publicationYear": 2026,
    "types": {"resourceTypeGeneral": "Software"},
    "url": "https://ecr.example.org/alice/bird-detector",
    "rightsList": rights_from("MIT"),
}


@pytest.fixture
def fake() -> Iterator[FakeDataCite]:
    server = FakeDataCite().start()
    yield server
    server.stop()


def test_fake_api_enforces_the_documented_request_shape(fake: FakeDataCite) -> None:
    body = json.dumps({"data": {"type": "dois", "attributes": MINIMAL}})
    auth = (fake.user, fake.password)
    post = f"{fake.url}/dois"
    assert requests.post(post, data=body, headers={"Content-Type": JSON_API}, timeout=5).status_code == 401
    assert requests.post(post, data=body, auth=(fake.user, "x"), headers={"Content-Type": JSON_API},
                         timeout=5).status_code == 401
    assert requests.post(post, data=body, auth=auth, headers={"Content-Type": "application/json"},
                         timeout=5).status_code == 415
    wrong_type = json.dumps({"data": {"type": "works", "attributes": MINIMAL}})
    assert requests.post(post, data=wrong_type, auth=auth, headers={"Content-Type": JSON_API},
                         timeout=5).status_code == 422
    no_creators = json.dumps({"data": {"type": "dois", "attributes": {**MINIMAL, "creators": []}}})
    resp = requests.post(post, data=no_creators, auth=auth, headers={"Content-Type": JSON_API}, timeout=5)
    assert resp.status_code == 422 and resp.json()["errors"][0]["status"] == "422"
    other_prefix = json.dumps({"data": {"type": "dois", "attributes": {**MINIMAL, "prefix": "10.9999"}}})
    assert requests.post(post, data=other_prefix, auth=auth, headers={"Content-Type": JSON_API},
                         timeout=5).status_code == 422
    assert requests.post(f"{fake.url}/works", data=body, auth=auth, headers={"Content-Type": JSON_API},
                         timeout=5).status_code == 404
    ok = requests.post(post, data=body, auth=auth, headers={"Content-Type": JSON_API}, timeout=5)
    assert ok.status_code == 201 and ok.json()["data"]["attributes"]["state"] == "findable"


def test_provider_registers_and_reports_refusals(fake: FakeDataCite) -> None:
    provider = DataCiteProvider(fake.url, fake.user, fake.password)
    registration = provider.register(MINIMAL)
    assert registration.doi.startswith("10.5072/") and registration.state == "findable"
    assert registration.provider == "datacite" and registration.url == MINIMAL["url"]
    updated = provider.update(registration.doi, {**MINIMAL, "url": "https://ecr.example.org/moved"})
    assert updated.doi == registration.doi and fake.requests[-1].method == "PUT"
    with pytest.raises(DoiProviderError, match="creators: can't be blank"):
        provider.register({**MINIMAL, "creators": []})
    with pytest.raises(AuthError, match="Bad credentials"):
        DataCiteProvider(fake.url, fake.user, "wrong").register(MINIMAL)
    with pytest.raises(DoiProviderError, match="cannot reach DataCite"):
        DataCiteProvider("http://127.0.0.1:9", fake.user, fake.password).register(MINIMAL)


def test_creators_rights_and_year() -> None:
    assert creators_from("Ada Lovelace <ada@example.org>, Sage <sage@example.org>") == [
        {"name": "Lovelace, Ada", "nameType": "Personal", "givenName": "Ada", "familyName": "Lovelace"},
        {"name": "Sage"},
    ]
    with pytest.raises(ValidationError, match="has no name"):
        creators_from("<nobody@example.org>")
    ids = [r["rights"] for r in rights_from("(MIT OR Apache-2.0) AND GPL-2.0-only WITH Classpath-exception-2.0")]
    assert ids == ["MIT", "Apache-2.0", "GPL-2.0-only"]
    assert rights_from("LicenseRef-Sage") == [{"rights": "LicenseRef-Sage"}]
    assert publication_year("2024-05-01T00:00:00Z") == 2024


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"creators": []}, "creators"),
        ({"types": {"resourceTypeGeneral": "Program"}}, "resourceTypeGeneral"),
        ({"relatedIdentifiers": [{"relatedIdentifier": "x", "relatedIdentifierType": "URL",
                                  "relationType": "IsDigestOf"}]}, "relationType"),
        ({"publicationYear": "26"}, "publicationYear"),
    ],
)
def test_schema_refuses_bad_metadata(change: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        validate_attributes({**MINIMAL, **change})
    validate_attributes(MINIMAL)
