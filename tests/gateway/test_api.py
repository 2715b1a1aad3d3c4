"""Catalog/search API filtered by visibility, OpenAPI, /metrics."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BASE_METADATA, write_bundle
from tests.gateway.support import GatewayProcess, password_of


@pytest.fixture(scope="module")
def published(gw: GatewayProcess, tmp_path_factory: pytest.TempPathFactory, tiny_layout: Path) -> None:
    for repo, keywords in (("alice/owl-counter", ["owls", "wildlife"]), ("alice/poacher-watch", ["poacher"])):
        root = write_bundle(tmp_path_factory.mktemp("api") / "b", tiny_layout,
                            {**BASE_METADATA, "name": repo.split("/")[1], "keywords": keywords})
        proc = subprocess.run(["ecr", "push", "--quiet", str(root), f"{gw.host}/{repo}:0.1.0"], capture_output=True,
                              text=True, timeout=300, env={**os.environ, "ECR_USERNAME": "alice",
                                                           "ECR_PASSWORD": password_of("alice", gw)})
        assert proc.returncode == 0, proc.stderr
    gw.admin("alice").set_visibility("alice/poacher-watch", "protected")
    gw.admin("alice").grant("alice/poacher-watch", "carol", "read")


def search(gw: GatewayProcess, user: str | None, **params: str) -> requests.Response:
    auth = (user, password_of(user, gw)) if user else None
    return requests.get(f"{gw.url}/api/v1/bundles", params=params, auth=auth, timeout=60)


@pytest.mark.usefixtures("published")
@pytest.mark.parametrize(("user", "sees_protected"), [(None, False), ("eve", False), ("bob", False),
                                                      ("carol", True), ("alice", True)])
def test_search_is_filtered(gw: GatewayProcess, user: str | None, sees_protected: bool) -> None:
    everything = search(gw, user)
    assert everything.status_code == 200
    names = {b["repository"] for b in everything.json()["bundles"]}
    assert "alice/owl-counter" in names
    assert ("alice/poacher-watch" in names) == sees_protected
    assert ("poacher" in everything.text) == sees_protected
    hit = search(gw, user, q="poacher").json()["bundles"]
    assert [b["repository"] for b in hit] == (["alice/poacher-watch"] if sees_protected else [])
    detail = requests.get(f"{gw.url}/api/v1/bundles/alice/poacher-watch", timeout=30,
                          auth=(user, password_of(user, gw)) if user else None)
    ghost = requests.get(f"{gw.url}/api/v1/bundles/alice/poacher-watcx", timeout=30,
                         auth=(user, password_of(user, gw)) if user else None)
    if sees_protected:
        assert detail.status_code == 200 and detail.json()["versions"][0]["tag"] == "0.1.0"
    else:
        assert detail.status_code == ghost.status_code == 404
        assert detail.json()["error"].replace("watch", "watcx") == ghost.json()["error"]


@pytest.mark.usefixtures("published")
def test_search_filters(gw: GatewayProcess) -> None:
    owls = search(gw, "eve", keyword="owls", platform="linux/arm64", runtime="torch", hardware="camera").json()
    assert [b["repository"] for b in owls["bundles"]] == ["alice/owl-counter"]
    version = owls["bundles"][0]["versions"][0]
    assert version["metadata"]["keywords"] == ["owls", "wildlife"]
    assert sorted(version["platforms"]) == ["linux/amd64", "linux/arm64"]
    assert search(gw, "eve", platform="linux/riscv64").json()["bundles"] == []
    assert search(gw, "eve", stage="approved", name="owl").json()["bundles"] == []


def test_openapi(gw: GatewayProcess) -> None:
    spec = requests.get(f"{gw.url}/api/v1/openapi.json", timeout=10).json()
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/bundles" in spec["paths"]


def test_metrics(gw: GatewayProcess) -> None:
    gw.call("eve", "GET", "/v2/alice/priv/tags/list", "repository:alice/priv:pull")  # a denial
    gw.call("eve", "GET", "/v2/alice/pub/manifests/1.0.0", "repository:alice/pub:pull")
    text = requests.get(f"{gw.url}/metrics", timeout=10).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert any(name == "ecr_gateway_requests_total" and ("decision", "deny") in labels
               for name, labels in samples)
    assert any(name == "ecr_gateway_denials_total" and v > 0 for (name, _), v in samples.items())
    assert samples[("ecr_gateway_bytes_total", (("direction", "out"),))] > 0
    assert any(name == "ecr_gateway_request_seconds_bucket" for name, _ in samples)
