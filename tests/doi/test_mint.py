"""``ecr doi mint | show`` and ``ecr inspect`` against a real registry and a fake DataCite API."""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.doi.conftest import Pushed, doi_env
from tests.doi.datacite_shape import shape_problems
from tests.doi.fake_datacite import FakeDataCite
from tests.trust.helpers import INDEX, ecr, get_blob, get_manifest, put_manifest, referrer_tag

DOI_TYPE = "application/vnd.waggle.ecr.doi.v1+json"
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "annotations-spec" / "v1" / "schemas" / "datacite-4.schema.json"
RECORD_SCHEMA = SCHEMA_PATH.parent / "doi-record.schema.json"


def doi_referrers(pushed: Pushed, digest: str | None = None) -> list[dict[str, Any]]:
    """DOI referrer descriptors read with plain HTTP from the referrers tag (Distribution 2.8)."""
    _, index = get_manifest(pushed.registry.url, pushed.repo, referrer_tag(digest or pushed.digest))
    return [m for m in index["manifests"] if m.get("artifactType") == DOI_TYPE]


def mint(pushed: Pushed, fake: FakeDataCite, *args: str, check: bool = True, ref: str | None = None,
         password: str | None = None) -> Any:
    return ecr("doi", "mint", ref or pushed.ref, *args, env=doi_env(fake, password=password), check=check)


def test_mint_registers_datacite_metadata_and_records_a_referrer(pushed: Pushed, datacite: FakeDataCite) -> None:
    proc = mint(pushed, datacite)
    doi = proc.stdout.strip()
    assert doi.startswith("10.5072/") and doi in datacite.dois
    assert "registered DOI" in proc.stderr

    [request] = datacite.requests
    assert (request.method, request.path, request.status) == ("POST", "/dois", 201)
    assert request.headers["Content-Type"] == "application/vnd.api+json"
    user, _, password = base64.b64decode(request.headers["Authorization"].split()[1]).decode().partition(":")
    assert (user, password) == ("ECR.TEST", "secret")
    body = request.json()
    assert body["data"]["type"] == "dois"
    attrs = body["data"]["attributes"]
    assert attrs["prefix"] == "10.5072" and attrs["event"] == "publish" and "doi" not in attrs
    assert attrs["creators"] == [{"name": "Author, Test", "nameType": "Personal",
                                  "givenName": "Test", "familyName": "Author"}]
    assert attrs["titles"] == [{"title": "tiny-detector"}]
    assert attrs["publisher"] == "Edge Code Repository"
    assert attrs["publicationYear"] == datetime.datetime.now(datetime.UTC).year
    assert attrs["types"]["resourceTypeGeneral"] == "Software"
    assert attrs["version"] == "0.1.0"
    assert attrs["rightsList"] == [{
        "rights": "MIT", "rightsUri": "https://spdx.org/licenses/MIT.html", "rightsIdentifier": "mit",
        "rightsIdentifierScheme": "SPDX", "schemeUri": "https://spdx.org/licenses/"}]
    assert [s["subject"] for s in attrs["subjects"]] == ["test", "birds"]
    assert {"description": "A tiny test bundle.", "descriptionType": "Abstract"} in attrs["descriptions"]
    manifest_url = f"{pushed.registry.url}/v2/{pushed.repo}/manifests/{pushed.digest}"
    assert attrs["url"] == manifest_url  # default landing page: the registry URL of the index
    related = {(r["relatedIdentifier"], r["relatedIdentifierType"], r["relationType"])
               for r in attrs["relatedIdentifiers"]}
    assert (manifest_url, "URL", "IsIdenticalTo") in related
    assert ("https://example.org/tiny.git", "URL", "IsDerivedFrom") in related

    # The DOI referrer, read without the project's code.
    [entry] = doi_referrers(pushed)
    assert entry["annotations"]["org.waggle.ecr.doi"] == doi
    _, manifest = get_manifest(pushed.registry.url, pushed.repo, entry["digest"])
    assert manifest["subject"]["digest"] == pushed.digest and manifest["artifactType"] == DOI_TYPE
    record_layer, metadata_layer = manifest["layers"]
    record = json.loads(get_blob(pushed.registry.url, pushed.repo, record_layer["digest"]))
    jsonschema.Draft202012Validator(json.loads(RECORD_SCHEMA.read_text())).validate(record)
    assert record["doi"] == doi and record["bundle"] == pushed.digest and record["provider"] == "datacite"
    assert record["url"] == manifest_url and record["state"] == "findable"
    metadata = get_blob(pushed.registry.url, pushed.repo, metadata_layer["digest"])
    assert record["metadataDigest"] == "sha256:" + hashlib.sha256(metadata).hexdigest()
    assert json.loads(metadata) == attrs
    # The bundle itself is unchanged: the tag still names the same index.
    data, _ = get_manifest(pushed.registry.url, pushed.repo, "0.1.0")
    assert "sha256:" + hashlib.sha256(data).hexdigest() == pushed.digest

    inspected = json.loads(ecr("inspect", "--json", pushed.ref).stdout)
    assert inspected["doi"] == doi
    assert any(r["artifactType"] == DOI_TYPE for r in inspected["referrers"])
    table = ecr("inspect", pushed.ref).stdout
    assert doi in table
    assert ecr("doi", "show", pushed.ref).stdout.strip() == doi
    shown = json.loads(ecr("doi", "show", "--json", pushed.ref).stdout)
    assert shown["doi"] == doi and shown["records"][0]["metadataDigest"] == record["metadataDigest"]


def test_second_mint_does_nothing_unless_forced(pushed: Pushed, datacite: FakeDataCite) -> None:
    first = mint(pushed, datacite).stdout.strip()
    again = mint(pushed, datacite)
    assert again.stdout.strip() == first
    assert "already has DOI" in again.stderr
    assert len(datacite.requests) == 1 and len(doi_referrers(pushed)) == 1

    forced = mint(pushed, datacite, "--force").stdout.strip()
    assert forced != first and len(datacite.registrations) == 2
    assert len(doi_referrers(pushed)) == 2
    assert ecr("doi", "show", pushed.ref).stdout.strip() in (first, forced)


def _crafted(pushed: Pushed, tag: str, edit: Any) -> str:
    """Push a copy of the bundle index with edited annotations under ``tag``; returns its ref."""
    _, index = get_manifest(pushed.registry.url, pushed.repo, pushed.digest)
    index = copy.deepcopy(index)
    edit(index["annotations"])
    put_manifest(pushed.registry.url, pushed.repo, tag, index, INDEX)
    return f"{pushed.registry.host}/{pushed.repo}:{tag}"


@pytest.mark.parametrize(
    ("removed", "words"),
    [
        ("org.opencontainers.image.licenses", "no license"),
        ("org.opencontainers.image.authors", "no authors"),
    ],
)
def test_incomplete_metadata_is_refused_without_a_request(
    pushed: Pushed, datacite: FakeDataCite, removed: str, words: str
) -> None:
    ref = _crafted(pushed, "bad", lambda notes: notes.pop(removed))
    proc = mint(pushed, datacite, ref=ref, check=False)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and removed in lines[0], proc.stderr
    assert datacite.requests == []
    assert ecr("doi", "show", ref, check=False).returncode == 6


def test_metadata_failing_the_datacite_schema_is_refused_without_a_request(
    pushed: Pushed, datacite: FakeDataCite
) -> None:
    ref = _crafted(pushed, "badsrc", lambda notes: notes.update({"org.opencontainers.image.source": "not a url"}))
    proc = mint(pushed, datacite, ref=ref, check=False)
    assert proc.returncode == 3, proc.stderr
    assert "DataCite metadata invalid" in proc.stderr and "relatedIdentifiers" in proc.stderr
    assert datacite.requests == []


def test_wrong_credentials_exit_7_and_record_nothing(pushed: Pushed, datacite: FakeDataCite) -> None:
    proc = mint(pushed, datacite, password="wrong", check=False)
    assert proc.returncode == 7, proc.stderr
    assert "refused the credentials of repository ECR.TEST" in proc.stderr
    assert [s.status for s in datacite.requests] == [401]
    assert doi_referrers_or_empty(pushed) == []


def doi_referrers_or_empty(pushed: Pushed) -> list[dict[str, Any]]:
    import requests

    resp = requests.get(f"{pushed.registry.url}/v2/{pushed.repo}/manifests/{referrer_tag(pushed.digest)}",
                        headers={"Accept": INDEX}, timeout=10)
    return [] if resp.status_code == 404 else doi_referrers(pushed)


def test_missing_credentials_are_reported_before_any_request(pushed: Pushed, datacite: FakeDataCite) -> None:
    env = doi_env(datacite)
    env["ECR_DOI_USER"] = ""
    proc = ecr("doi", "mint", pushed.ref, env=env, check=False)
    assert proc.returncode == 2 and "ECR_DOI_USER" in proc.stderr
    assert datacite.requests == []


def test_draft_and_landing_template_and_publisher(pushed: Pushed, datacite: FakeDataCite) -> None:
    doi = mint(pushed, datacite, "--draft", "--publisher", "Sage", "--url",
               "https://ecr.example.org/{repository}@{digest}").stdout.strip()
    attrs = datacite.requests[0].json()["data"]["attributes"]
    assert "event" not in attrs and attrs["publisher"] == "Sage"
    assert attrs["url"] == f"https://ecr.example.org/{pushed.repo}@{pushed.digest}"
    shown = json.loads(ecr("doi", "show", "--json", pushed.ref).stdout)
    assert shown["doi"] == doi and shown["records"][0]["state"] == "draft"


def test_dry_run_prints_valid_metadata_and_sends_nothing(pushed: Pushed, datacite: FakeDataCite) -> None:
    body = json.loads(mint(pushed, datacite, "--dry-run").stdout)
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator(schema).validate(body["data"]["attributes"])  # the published schema
    assert shape_problems(body["data"]["attributes"]) == []  # and DataCite's documented shape
    assert body["data"]["type"] == "dois" and datacite.requests == []


def test_the_fake_refuses_what_datacite_documents_as_invalid(datacite: FakeDataCite) -> None:
    """The fake's check is DataCite's documentation, so it can refuse what this project sends."""
    import requests

    good = {"event": "publish", "prefix": datacite.prefix, "creators": [{"name": "Doe, Jane", "nameType": "Personal"}],
            "titles": [{"title": "t"}], "publisher": "Sage", "publicationYear": 2026,
            "types": {"resourceTypeGeneral": "Software"}, "url": "https://ecr.example.org/x",
            "relatedIdentifiers": [{"relatedIdentifier": "https://e.org/s", "relatedIdentifierType": "URL",
                                    "relationType": "IsDerivedFrom"}]}
    for change, field in [({"types": {"resourceTypeGeneral": "Bundle"}}, "types.resourceTypeGeneral"),
                          ({"ecrDigest": "sha256:00"}, "ecrDigest"),
                          ({"publicationYear": "26"}, "publicationYear"),
                          ({"url": "ftp://x"}, "url"),
                          ({"creators": [{"nameType": "Personal"}]}, "creators[0].name"),
                          ({"relatedIdentifiers": [{"relatedIdentifier": "x", "relatedIdentifierType": "URL",
                                                    "relationType": "IsBundleOf"}]},
                           "relatedIdentifiers[0].relationType"),
                          ({"titles": []}, "titles")]:
        resp = requests.post(f"{datacite.url}/dois", auth=(datacite.user, datacite.password), timeout=10,
                             headers={"Content-Type": "application/vnd.api+json"},
                             data=json.dumps({"data": {"type": "dois", "attributes": {**good, **change}}}))
        assert resp.status_code == 422, (change, resp.text)
        assert field in [e["source"] for e in resp.json()["errors"]], (change, resp.text)
    accepted = requests.post(f"{datacite.url}/dois", auth=(datacite.user, datacite.password), timeout=10,
                             headers={"Content-Type": "application/vnd.api+json"},
                             data=json.dumps({"data": {"type": "dois", "attributes": good}}))
    assert accepted.status_code == 201, accepted.text


def test_reserved_doi_in_annotations_is_published_with_put(pushed: Pushed, datacite: FakeDataCite) -> None:
    ref = _crafted(pushed, "reserved", lambda notes: notes.update({"org.waggle.ecr.doi": "10.5072/ecr-tiny-1"}))
    assert mint(pushed, datacite, ref=ref).stdout.strip() == "10.5072/ecr-tiny-1"
    [request] = datacite.requests
    assert (request.method, request.path) == ("PUT", "/dois/10.5072/ecr-tiny-1")
    assert request.json()["data"]["attributes"]["doi"] == "10.5072/ecr-tiny-1"


def test_config_file_is_read(pushed: Pushed, datacite: FakeDataCite, tmp_path: Path) -> None:
    config = tmp_path / "doi.toml"
    config.write_text(
        f'endpoint = "{datacite.url}"\nprefix = "{datacite.prefix}"\nuser = "{datacite.user}"\n'
        f'password = "{datacite.password}"\npublisher = "Waggle"\n'
    )
    doi = ecr("doi", "mint", pushed.ref, env={"ECR_DOI_CONFIG": str(config)}).stdout.strip()
    assert doi in datacite.dois
    assert datacite.requests[0].json()["data"]["attributes"]["publisher"] == "Waggle"
